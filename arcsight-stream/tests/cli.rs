//! The binary as an operator runs it: exit statuses, one line per problem, the list check at
//! start against the ESM simulator, the container's healthcheck, and the committed metadata.

use std::collections::HashMap;
use std::process::Output;
use std::time::Duration;

use esm_simulator::{ActiveListConfig, SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_arcsight-stream");
const PASSWORD: &str = "sim-pa55word-secret";
const TOKEN: &str = "platform-t0ken-secret";

/// Runs the binary with exactly `env` (nothing inherited), in a directory without config.yml.
async fn run(args: &[&str], env: &HashMap<String, String>) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the command ends within 2 minutes")
        .expect("the binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Valid settings pointing at `esm` (and at a platform nobody serves: the list is checked
/// before the platform is contacted).
fn env_for(esm: &url::Url, list: &str, column: &str) -> HashMap<String, String> {
    [
        ("OPENCTI_URL", "http://127.0.0.1:9"),
        ("OPENCTI_TOKEN", TOKEN),
        ("CONNECTOR_ID", "2b7a3b4e-8f47-4d34-9a2e-1c7b3c2f1a10"),
        ("CONNECTOR_LIVE_STREAM_ID", "live-1"),
        ("ARCSIGHT_API_BASE_URL", esm.as_str()),
        ("ARCSIGHT_USERNAME", "admin"),
        ("ARCSIGHT_PASSWORD", PASSWORD),
        ("ARCSIGHT_ACTIVE_LIST_ID", list),
        ("ARCSIGHT_VALUE_COLUMN", column),
        ("ARCSIGHT_MAX_ATTEMPTS", "1"),
        ("OPENCTI_JSON_LOGGING", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        password: PASSWORD.into(),
        active_lists: vec![ActiveListConfig::new("list-1", &["value", "source"])],
        ..SimConfig::default()
    })
    .await
    .expect("the ESM simulator starts")
}

#[tokio::test]
async fn check_settings_exits_2_with_one_line_per_problem_naming_each_setting() {
    let out = run(&["check-settings"], &HashMap::new()).await;
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    let named: Vec<&str> = stderr
        .lines()
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        named,
        [
            "OPENCTI_URL",
            "OPENCTI_TOKEN",
            "CONNECTOR_ID",
            "CONNECTOR_LIVE_STREAM_ID",
            "ARCSIGHT_API_BASE_URL",
            "ARCSIGHT_USERNAME",
            "ARCSIGHT_PASSWORD",
            "ARCSIGHT_ACTIVE_LIST_ID"
        ],
        "{stderr}"
    );
}

#[tokio::test]
async fn check_settings_exits_0_on_valid_settings_and_never_prints_a_secret() {
    let url = url::Url::parse("https://esm.example:8443").unwrap();
    let env = env_for(&url, "list-1", "value");
    let out = run(&["check-settings"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("settings: OK"), "{stdout}");

    // The password pasted into a boolean: named, not shown.
    let mut env = env;
    env.insert("ARCSIGHT_SSL_VERIFY".into(), PASSWORD.into());
    env.insert("CONNECTOR_LOG_LEVEL".into(), TOKEN.into());
    let out = run(&["check-settings"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ARCSIGHT_SSL_VERIFY: "), "{stderr}");
    assert!(stderr.contains("CONNECTOR_LOG_LEVEL: "), "{stderr}");
    for secret in [PASSWORD, TOKEN] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn run_stops_with_exit_2_when_the_list_or_its_column_is_not_in_esm() {
    let sim = simulator().await;
    let url = sim.base_url();

    let out = run(&["run"], &env_for(&url, "no-such-list", "value")).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("ARCSIGHT_ACTIVE_LIST_ID: ") && last.contains("no-such-list"),
        "{stderr}"
    );

    let out = run(&["run"], &env_for(&url, "list-1", "ioc")).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("ARCSIGHT_VALUE_COLUMN: ") && last.contains("\"ioc\""),
        "{stderr}"
    );
    // The list's real fields are named, to fix the setting with.
    assert!(last.contains("value, source"), "{stderr}");
    for secret in [PASSWORD, TOKEN] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stderr}"
        );
    }
    // Nothing was written to the list.
    assert_eq!(sim.active_list_entries("list-1"), Some(vec![]));
    sim.shutdown().await;
}

#[tokio::test]
async fn check_says_which_check_failed_and_exits_1() {
    let sim = simulator().await;
    let out = run(
        &["check"],
        &env_for(&sim.base_url(), "no-such-list", "value"),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in {stdout}"))
            .to_owned()
    };
    assert!(line("settings").contains(" OK "), "{stdout}");
    assert!(line("esm login").contains(" OK "), "{stdout}");
    let list = line("esm list");
    assert!(
        list.contains("FAILED") && list.contains("ARCSIGHT_ACTIVE_LIST_ID"),
        "{stdout}"
    );
    assert!(line("esm logout").contains(" OK "), "{stdout}");
    assert!(line("platform").contains("FAILED"), "{stdout}");
    assert!(line("live stream").contains("FAILED"), "{stdout}");
    for secret in [PASSWORD, TOKEN] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}"
        );
    }
    assert_eq!(sim.active_sessions(), 0, "check logged out");
    sim.shutdown().await;

    // With the list there, the ESM checks pass.
    let sim = simulator().await;
    let out = run(&["check"], &env_for(&sim.base_url(), "list-1", "value")).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("esm list") && l.contains(" OK ")),
        "{stdout}"
    );
    sim.shutdown().await;
}

/// The runtime's metrics endpoint on a free port, with `metrics` as given; its port.
async fn serve(metrics: connector_runtime::metrics::Metrics) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(connector_runtime::metrics::serve_on(
        listener,
        metrics,
        Duration::from_secs(60),
        std::future::pending(),
    ));
    port
}

#[tokio::test]
async fn healthcheck_asks_healthz_and_fails_once_it_answers_503() {
    let healthy = connector_runtime::metrics::Metrics::new();
    let port = serve(healthy).await.to_string();
    let out = run(&["healthcheck", "--port", &port], &HashMap::new()).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // Failing for longer than the timeout: no progress marked for 100 s, 1 s allowed.
    let failing = connector_runtime::metrics::Metrics::new();
    failing.set_stall_timeout(Duration::from_secs(1));
    failing.progress(chrono::Utc::now().timestamp() - 100);
    let port = serve(failing).await.to_string();
    let out = run(&["healthcheck", "--port", &port], &HashMap::new()).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("unhealthy: HTTP 503"), "{stderr}");

    // Nothing listening: unhealthy too.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let out = run(&["healthcheck", "--port", &closed], &HashMap::new()).await;
    assert_eq!(out.status.code(), Some(1));

    // Metrics off in the settings: nothing to ask, healthy.
    let url = url::Url::parse("https://esm.example:8443").unwrap();
    let mut env = env_for(&url, "list-1", "value");
    env.insert("CONNECTOR_EXPOSE_METRICS".into(), "false".into());
    let out = run(&["healthcheck", "--port", &closed], &env).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

#[test]
fn committed_metadata_matches_the_settings_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (rel, generated) in arcsight_stream::metadata::files() {
        let committed = std::fs::read_to_string(root.join(rel)).unwrap_or_default();
        if committed != generated {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "stale (run `cargo run -p arcsight-stream -- metadata`): {stale:?}"
    );
}

#[test]
fn the_readme_settings_table_matches_the_settings_table() {
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(readme_path).unwrap();
    let regenerated = arcsight_stream::metadata::readme_with_settings(&readme)
        .expect("README.md has the stream connector's settings table markers");
    assert!(
        regenerated == readme,
        "README.md's stream settings table is stale: run `cargo run -p arcsight-stream -- metadata`"
    );
}

/// Sends SIGTERM to the child, as `docker stop` does.
fn sigterm(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

/// Waits (bounded) for `cond`, polling.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unreachable_esm_is_waited_for_and_sigterm_stops_the_wait_cleanly() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let mut env = env_for(&url::Url::parse(&closed).unwrap(), "list-1", "value");
    env.insert("CONNECTOR_LOG_LEVEL".into(), "warn".into());
    let mut child = tokio::process::Command::new(BIN)
        .arg("run")
        .env_clear()
        .envs(&env)
        .current_dir(std::env::temp_dir())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The warning says it waits; then a stop ends the wait at once, with success.
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("ESM is not reachable yet") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "no warning that ESM is waited for");
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stopped within 30 s")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn run_registers_and_keeps_its_position_in_pycti_s_state_keys() {
    let sim = simulator().await;
    // The platform answers a registration with its broker's address, for every connector type.
    let broker = serde_json::json!({
        "connection": {"host": "127.0.0.1", "port": 5672, "vhost": "/", "use_ssl": false,
                       "user": "guest", "pass": "guest"},
        "listen": "listen", "listen_routing": "listen_routing", "listen_exchange": "amq.direct",
        "push": "push", "push_routing": "push_routing", "push_exchange": "amq.direct",
    });
    let platform = platform_simulator::FakePlatform::start(TOKEN, broker).await;
    let mut env = env_for(&sim.base_url(), "list-1", "value");
    env.insert("OPENCTI_URL".into(), platform.url());
    env.insert("CONNECTOR_LOG_LEVEL".into(), "info".into());
    let child = tokio::process::Command::new(BIN)
        .arg("run")
        .env_clear()
        .envs(&env)
        .current_dir(std::env::temp_dir())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for("the registration", || {
        platform.recorded(|r| r.operations.iter().any(|o| o == "registerConnector"))
    })
    .await;
    sigterm(&child);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stopped within 30 s")
        .unwrap();
    let (_, stderr) = text(&out);
    // The state it left: pycti's keys, so a Python deployment's state is taken over as is.
    let last = platform
        .recorded(|r| r.pings.iter().rev().flatten().next().cloned())
        .unwrap_or_else(|| panic!("the state was not saved at the stop: {stderr}"));
    let state: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert!(state["start_from"].is_string(), "{state}");
    assert!(
        state["recover_until"].is_string() || state["recover_until"] == false,
        "{state}"
    );
    assert_eq!(platform.recorded(|r| r.invalid_documents.len()), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn healthz_turns_unhealthy_once_the_live_stream_fails_longer_than_the_timeout() {
    let sim = simulator().await;
    // A platform without live streams: every connection to the stream is refused (404).
    let broker = serde_json::json!({
        "connection": {"host": "127.0.0.1", "port": 5672, "vhost": "/", "use_ssl": false,
                       "user": "guest", "pass": "guest"},
        "listen": "listen", "listen_routing": "listen_routing", "listen_exchange": "amq.direct",
        "push": "push", "push_routing": "push_routing", "push_exchange": "amq.direct",
    });
    let platform = platform_simulator::FakePlatform::start(TOKEN, broker).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let mut env = env_for(&sim.base_url(), "list-1", "value");
    env.insert("OPENCTI_URL".into(), platform.url());
    env.insert("CONNECTOR_EXPOSE_METRICS".into(), "true".into());
    env.insert("CONNECTOR_METRICS_HOST".into(), "127.0.0.1".into());
    env.insert("CONNECTOR_METRICS_PORT".into(), port.clone());
    env.insert("CONNECTOR_HEALTH_STALL_TIMEOUT".into(), "1".into());
    let child = tokio::process::Command::new(BIN)
        .arg("run")
        .env_clear()
        .envs(&env)
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let stderr = loop {
        let out = run(&["healthcheck", "--port", &port], &HashMap::new()).await;
        let (_, stderr) = text(&out);
        if out.status.code() == Some(1) && stderr.contains("HTTP 503") {
            break stderr;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz did not turn unhealthy: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(stderr.starts_with("unhealthy: HTTP 503"), "{stderr}");
    sigterm(&child);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await;

    // The same failure with the default timeout (10 minutes): still healthy a few seconds in.
    env.remove("CONNECTOR_HEALTH_STALL_TIMEOUT");
    let child = tokio::process::Command::new(BIN)
        .arg("run")
        .env_clear()
        .envs(&env)
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(&["healthcheck", "--port", &port], &HashMap::new()).await;
        if out.status.code() == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never answered healthy: {:?}",
            text(&out)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = run(&["healthcheck", "--port", &port], &HashMap::new()).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    sigterm(&child);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn the_demo_converges_on_the_embedded_simulators_with_nothing_to_configure() {
    let out = run(&["demo"], &HashMap::new()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.lines().last() == Some("demo: OK"), "{stdout}");
    assert!(
        stdout.contains("first run (recovery): the list holds exactly"),
        "{stdout}"
    );
    assert!(stdout.contains("live changes"), "{stdout}");
    assert!(stdout.contains("is still there"), "{stdout}");
}
