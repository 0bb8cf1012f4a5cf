//! A drop-in for operators of the Python connector: every value it accepts means the same here
//! (the README's differences table, row by row), the compose file's placeholders, where
//! config.yml is read, no work without the queue, back-pressure as pycti applies it, and a
//! deployment that says when it cannot start.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use arcsight_incidents::metrics::ImportMetrics as Metrics;
use arcsight_incidents::settings::compat::DIFFERENCES;
use arcsight_incidents::settings::{QueueProtocol, Settings, Sources};
use connector_runtime::schedule::shutdown_pair;

use crate::common::tls_proxy::Pki;
use crate::common::world::Env;

fn base_env() -> HashMap<String, String> {
    crate::common::env::required("dropin-token-PLUGH", "esm-password-XYZZY")
}

fn load(env: HashMap<String, String>, yml: Option<&str>) -> Result<Settings, Vec<String>> {
    Settings::from_sources(&Sources::new(env, yml).map_err(|e| e.lines())?).map_err(|e| e.lines())
}

fn with(pairs: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
    let mut env = base_env();
    for (k, v) in pairs {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    load(env, None)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("arcsight-dropin-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What `value` of the row's setting means once loaded here, in the words of the table.
fn meaning(setting: &str, value: &str) -> String {
    let first = setting.split([' ', ',']).next().unwrap();
    let s = |pairs: &[(&str, &str)]| {
        with(pairs).unwrap_or_else(|e| panic!("{setting}={value:?} refused: {e:?}"))
    };
    match first {
        "CONNECTOR_DURATION_PERIOD" => match s(&[(first, value)]).connector.duration_period {
            None => "run once".into(),
            Some(d) => format!("{}s", d.as_secs_f64()),
        },
        "CONNECTOR_QUEUE_THRESHOLD" => {
            format!("{} MB", s(&[(first, value)]).connector.queue_threshold_mb)
        }
        "CONNECTOR_ID" => s(&[(first, value)]).connector.id,
        "CONNECTOR_SCOPE" => format!("[{}]", s(&[(first, value)]).connector.scope.join(", ")),
        "CONNECTOR_QUEUE_PROTOCOL" => {
            // The deprecated name means the same.
            let main = s(&[(first, value)]).connector.queue_protocol;
            let alias = s(&[("QUEUE_PROTOCOL", value)]).connector.queue_protocol;
            assert_eq!(main, alias, "QUEUE_PROTOCOL={value}");
            match main {
                QueueProtocol::Amqp => "amqp".into(),
                QueueProtocol::Api => "api".into(),
            }
        }
        "CONNECTOR_METRICS_NAMESPACE" => {
            let prefix = s(&[(first, value)]).connector.metrics.prefix.unwrap();
            // The exposition's names carry it, as pycti's do.
            let text = Metrics::with_prefix(Some(&prefix)).encode();
            assert!(text.contains(&format!("{prefix}_runs_total")), "{text}");
            format!("{prefix}_")
        }
        "Booleans" => s(&[("CONNECTOR_RUN_AND_TERMINATE", value)])
            .connector
            .run_and_terminate
            .to_string(),
        "OPENCTI_SSL_VERIFY" => {
            if s(&[(first, value)]).opencti.ssl_verify {
                "verify".into()
            } else {
                "no verification".into()
            }
        }
        "MQ_USE_SSL_REJECT_UNAUTHORIZED" => {
            if s(&[(first, value)]).mq_tls.verify {
                "verify".into()
            } else {
                "no verification".into()
            }
        }
        "MQ_USE_SSL_CA" => {
            // The row's value names a file: give it one holding a CA.
            let dir = temp_dir("ca");
            let path = dir.join(value);
            std::fs::write(&path, Pki::new("row CA").ca_pem()).unwrap();
            let n = s(&[(first, path.to_str().unwrap())]).mq_tls.ca_certs.len();
            std::fs::remove_dir_all(dir).unwrap();
            format!("{n} CA certificate")
        }
        "CONNECTOR_SEND_TO_QUEUE" => {
            let st = s(&[
                (first, value),
                ("CONNECTOR_SEND_TO_DIRECTORY", "true"),
                ("CONNECTOR_SEND_TO_DIRECTORY_PATH", "/tmp/preview"),
            ]);
            // That no work is created is the daemon's part, checked below.
            if st.connector.send_to_queue {
                "works".into()
            } else {
                "no work".into()
            }
        }
        "ARCSIGHT_INCIDENTS_TLP_LEVEL" => s(&[(first, value)]).esm.tlp.as_str().to_owned(),
        other => panic!("no test for the row {other:?}: add one"),
    }
}

#[test]
fn every_value_the_python_connector_accepts_means_the_same_here() {
    let mut tested = 0;
    for row in DIFFERENCES {
        for (value, expected) in row.accepted {
            assert_eq!(
                meaning(row.setting, value),
                *expected,
                "{}={value:?}",
                row.setting
            );
            tested += 1;
        }
    }
    assert!(tested >= 30, "{tested}");
    // The rows without values are about where files are read and what is sent: tested below
    // (config_yml_is_read_where_the_python_image_reads_it, no_work_without_the_queue) and in
    // the golden tests (observables).
    let without: Vec<&str> = DIFFERENCES
        .iter()
        .filter(|r| r.accepted.is_empty())
        .map(|r| r.setting)
        .collect();
    assert_eq!(
        without,
        ["config.yml", "ARCSIGHT_INCIDENTS_IMPORT_OBSERVABLES"]
    );
}

#[test]
fn the_readme_shows_the_generated_differences_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&arcsight_incidents::settings::compat::table()),
        "run `cargo run --bin arcsight-incidents -- metadata`"
    );
}

#[test]
fn pydantic_values_also_load_from_config_yml() {
    // A YAML integer is seconds; a YAML list is a scope.
    let yml = "connector:\n  duration_period: 900\n  scope:\n    - arcsight\n    - esm\n  queue_threshold: 12.5\n";
    let s = load(base_env(), Some(yml)).unwrap();
    assert_eq!(
        s.connector.duration_period,
        Some(std::time::Duration::from_secs(900))
    );
    assert_eq!(s.connector.scope, ["arcsight", "esm"]);
    assert_eq!(s.connector.queue_threshold_mb, 12.5);
}

#[test]
fn an_id_that_is_not_a_uuid_works_with_a_warning() {
    let s = with(&[("CONNECTOR_ID", "arcsight-prod")]).unwrap();
    assert_eq!(s.connector.id, "arcsight-prod");
    let advice = s.advice();
    assert_eq!(advice.len(), 1);
    assert!(
        advice[0].starts_with("CONNECTOR_ID is not a UUID"),
        "{advice:?}"
    );
    assert!(with(&[]).unwrap().advice().is_empty());
}

#[test]
fn every_placeholder_of_the_compose_file_is_distinct_and_refused_as_such() {
    let compose =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
            .unwrap();
    // This connector's service only: the stream connector's follows it in the same file.
    let start = compose
        .find("  connector-arcsight-incidents:\n")
        .expect("the import connector's service");
    let service = &compose[start..];
    let end = service[1..]
        .find("\n  connector-")
        .map_or(service.len(), |i| i + 1);
    let placeholders: Vec<(String, String)> = service[..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_once('='))
        .filter(|(_, v)| v.starts_with("ChangeMe"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let names: BTreeSet<&str> = placeholders.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "OPENCTI_TOKEN",
            "CONNECTOR_ID",
            "ARCSIGHT_INCIDENTS_API_BASE_URL",
            "ARCSIGHT_INCIDENTS_USERNAME",
            "ARCSIGHT_INCIDENTS_PASSWORD",
        ])
    );
    let values: BTreeSet<&str> = placeholders.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        values.len(),
        placeholders.len(),
        "placeholders are distinct"
    );

    let mut env = base_env();
    env.extend(placeholders.iter().cloned());
    let lines = load(env, None).unwrap_err();
    assert_eq!(lines.len(), placeholders.len(), "{lines:?}");
    for line in &lines {
        assert!(line.contains("is still the placeholder"), "{line}");
        assert!(!line.contains("secret's value"), "{line}");
    }
}

#[test]
fn config_yml_is_read_where_the_python_image_reads_it_and_connector_config_file_must_exist() {
    assert_eq!(
        Settings::CONFIG_FILE_CANDIDATES,
        [
            "config.yml",
            "/opt/opencti-connector-arcsight-incidents/config.yml"
        ]
    );
    let dir = temp_dir("config");
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_arcsight-incidents"));
        cmd.arg("check-settings").env_clear().current_dir(&dir);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // Nothing set and no file: the required settings are missing.
    assert_eq!(run(&[]).status.code(), Some(2));
    // ./config.yml is read.
    let mut yml = String::from("opencti:\n  url: http://opencti:8080\n  token: t0ken-value\n");
    yml += "connector:\n  id: 2b7a3b4e-8f47-4d34-9a2e-1c7b3c2f1a10\n";
    yml += "arcsight_incidents:\n  api_base_url: https://esm:8443\n  username: u\n  password: p4ssword\n";
    std::fs::write(dir.join("config.yml"), &yml).unwrap();
    let out = run(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // CONNECTOR_CONFIG_FILE naming a missing file is an error, not a silent default.
    let out = run(&[("CONNECTOR_CONFIG_FILE", "/nonexistent/config.yml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.yml"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bundle_directory_that_cannot_be_written_stops_the_start_naming_the_setting_and_uid() {
    let dir = temp_dir("unwritable");
    // A path under a regular file can never be a directory (the tests may run as root, who
    // can write anywhere else).
    std::fs::write(dir.join("file"), "").unwrap();
    let target = dir.join("file").join("bundles");
    for cmd_name in ["check-settings", "run"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_arcsight-incidents"));
        cmd.arg(cmd_name).env_clear().current_dir(&dir);
        for (k, v) in base_env() {
            cmd.env(k, v);
        }
        cmd.env("CONNECTOR_SEND_TO_DIRECTORY", "true")
            .env("CONNECTOR_SEND_TO_DIRECTORY_PATH", &target);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd_name}: {stderr}");
        assert!(
            stderr.starts_with("CONNECTOR_SEND_TO_DIRECTORY_PATH: ") && stderr.contains("uid "),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn no_work_is_created_without_the_queue() {
    let mut env = Env::start(2, 1).await;
    let dir = temp_dir("no-queue");
    env.set("CONNECTOR_SEND_TO_QUEUE", "false");
    env.set("CONNECTOR_SEND_TO_DIRECTORY", "true");
    env.set("CONNECTOR_SEND_TO_DIRECTORY_PATH", dir.to_string_lossy());
    let r = env.run().await;
    assert!(r.succeeded);
    assert!(r.new_works.is_empty(), "{:?}", r.new_works);
    assert!(r.objects.is_empty(), "nothing on the queue");
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    assert!(files > 0, "the bundles went to the directory");
    // The state still lives in the platform.
    assert!(env.platform.recorded(|r| r.connector_state.is_some()));
    env.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_run_and_terminate_run_is_skipped_while_the_queue_is_at_the_threshold_in_decimal_mb() {
    let mut env = Env::start(2, 1).await;
    // 1.5 MB of 10^6 bytes: exactly at the threshold, which pycti already skips.
    env.set("CONNECTOR_QUEUE_THRESHOLD", "1.5");
    env.platform.update(|r| r.queue_messages_size = 1_500_000);
    let r = env.run().await;
    assert!(r.succeeded);
    assert!(r.new_works.is_empty() && r.objects.is_empty(), "skipped");
    assert!(env.logs.text().contains("run skipped"));
    // The final ping reports the buffering and the size in MB.
    let info = env
        .platform
        .recorded(|r| r.ping_infos.last().cloned())
        .unwrap();
    assert_eq!(info["buffering"], true, "{info}");
    assert_eq!(info["queue_messages_size"], 1.5, "{info}");
    assert_eq!(info["queue_threshold"], 1.5, "{info}");

    // One byte under: the run goes ahead, and buffering is over.
    env.platform.update(|r| r.queue_messages_size = 1_499_999);
    let r = env.run().await;
    assert_eq!(r.case_count(), 2);
    assert_eq!(r.new_works.len(), 1);
    let info = env
        .platform
        .recorded(|r| r.ping_infos.last().cloned())
        .unwrap();
    assert_eq!(info["buffering"], false, "{info}");
    env.stop().await;
}

#[tokio::test]
async fn healthz_turns_unhealthy_once_the_platform_has_been_unreachable_too_long() {
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, mut shutdown) = shutdown_pair();
    let server = tokio::spawn(arcsight_incidents::metrics::serve_on(
        listener,
        metrics.clone(),
        std::time::Duration::from_secs(60),
        async move { shutdown.wait().await },
    ));
    let get = || async {
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get().await, 200);
    let now = chrono::Utc::now().timestamp();
    let limit = arcsight_incidents::metrics::PLATFORM_DOWN_UNHEALTHY_AFTER.as_secs() as i64;
    // Unreachable, but not for long yet: still healthy.
    metrics.platform_down(now - limit + 30);
    assert_eq!(get().await, 200);
    metrics.platform_up();
    metrics.platform_down(now - limit - 1);
    assert_eq!(get().await, 503);
    // It answered: healthy again.
    metrics.platform_up();
    assert_eq!(get().await, 200);
    trigger.trigger();
    server.await.unwrap().unwrap();
}
