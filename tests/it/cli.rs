//! The operator's commands, run as the binary: `demo`, `check`, `healthcheck`, `--help`.

use crate::common;

use std::process::Output;

use esm_simulator::{SimConfig, Simulator};
use serde_json::json;

use common::fake_platform::FakePlatform;

const BIN: &str = env!("CARGO_BIN_EXE_arcsight-incidents");
const ESM_PASSWORD: &str = "Check-Pa55-GRUE";
const OPENCTI_TOKEN: &str = "check-token-ZORK-42";

async fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).env_clear().current_dir(std::env::temp_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn help_lists_the_subcommands() {
    let out = run(&["--help"], &[]).await;
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in [
        "run",
        "demo",
        "convert",
        "check",
        "check-settings",
        "simulate-esm",
        "metadata",
        "healthcheck",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing:\n{help}"
        );
    }
}

#[tokio::test]
async fn the_demo_imports_the_simulated_esm_into_a_directory_and_says_what_it_did() {
    let dir = std::env::temp_dir().join(format!("demo-test-{}", uuid::Uuid::new_v4().simple()));
    let out = run(
        &[
            "demo",
            "--cases",
            "7",
            "--events-per-case",
            "3",
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.starts_with("Imported 7 of 7 cases from the simulated ESM"),
        "{stdout}"
    );
    // What it says matches what it wrote.
    let mut case_incidents = 0;
    let mut incidents = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        files += 1;
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        for o in v["bundle"]["objects"].as_array().unwrap() {
            match o["type"].as_str().unwrap() {
                "case-incident" => case_incidents += 1,
                "incident" => incidents += 1,
                _ => {}
            }
        }
    }
    assert_eq!(case_incidents, 7);
    assert!(
        stdout.contains(&format!("case-incidents  {case_incidents}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("incidents       {incidents}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("files written   {files} in")),
        "{stdout}"
    );
    assert!(stdout.contains("One of them:\ncase \""), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

struct World {
    sim: Simulator,
    platform: FakePlatform,
}

impl World {
    async fn start() -> World {
        let sim = Simulator::start(SimConfig {
            cases: 9,
            password: ESM_PASSWORD.into(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let platform = FakePlatform::start(OPENCTI_TOKEN, json!({})).await;
        World { sim, platform }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENCTI_URL", self.platform.url()),
            ("OPENCTI_TOKEN", OPENCTI_TOKEN.into()),
            (
                "CONNECTOR_ID",
                "5d1c9e53-4a0b-4f55-9a3e-26ab1c0de111".into(),
            ),
            (
                "ARCSIGHT_INCIDENTS_API_BASE_URL",
                self.sim.base_url().to_string(),
            ),
            ("ARCSIGHT_INCIDENTS_USERNAME", "admin".into()),
            ("ARCSIGHT_INCIDENTS_PASSWORD", ESM_PASSWORD.into()),
            ("MQ_HOST", "127.0.0.1".into()),
            ("MQ_USER", "guest".into()),
            ("MQ_PASS", "guest".into()),
        ]
    }
}

fn status_of<'a>(stdout: &'a str, check: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{stdout}"))
}

#[tokio::test]
async fn check_passes_when_esm_the_platform_and_the_broker_answer() {
    let w = World::start().await;
    let out = run(&["check"], &w.env()).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(status_of(&stdout, "esm").contains("OK"));
    assert!(stdout.contains("OK      9 cases"), "{stdout}");
    assert!(status_of(&stdout, "platform").contains("OK      OpenCTI"));
    assert!(status_of(&stdout, "broker").contains("OK      connected to 127.0.0.1:5672"));
    assert_eq!(w.sim.active_sessions(), 0, "check logs out");
    for secret in [ESM_PASSWORD, OPENCTI_TOKEN] {
        assert!(!stdout.contains(secret) && !text(&out.stderr).contains(secret));
    }
}

#[tokio::test]
async fn check_names_each_failure_and_exits_non_zero_without_printing_secrets() {
    let w = World::start().await;
    let mut env = w.env();
    for (k, v) in env.iter_mut() {
        match *k {
            "ARCSIGHT_INCIDENTS_PASSWORD" => *v = "wrong-Pa55-FROBOZZ".into(),
            "OPENCTI_TOKEN" => *v = "wrong-token-BLORB".into(),
            "MQ_PASS" => *v = "wrong-mq-pass-REZROV".into(),
            _ => {}
        }
    }
    let out = run(&["check"], &env).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for check in ["esm", "platform", "broker"] {
        assert!(
            status_of(&stdout, check).contains("FAILED"),
            "{check}:\n{stdout}"
        );
    }
    let all = format!("{stdout}{}", text(&out.stderr));
    for secret in [
        "wrong-Pa55-FROBOZZ",
        "wrong-token-BLORB",
        "wrong-mq-pass-REZROV",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
}

#[tokio::test]
async fn check_reports_invalid_settings_one_line_each_and_exits_2() {
    let out = run(
        &["check"],
        &[("ARCSIGHT_INCIDENTS_TLP_LEVEL", "purple".into())],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().all(|l| l.starts_with("settings     FAILED")),
        "{stdout}"
    );
    // Neither ESM's password nor the token is set here, so the value may be one of them pasted
    // into the wrong setting: it is not shown.
    assert!(
        stdout.contains("ARCSIGHT_INCIDENTS_TLP_LEVEL: the value (not shown) is not one of"),
        "{stdout}"
    );
    assert!(!stdout.contains("purple"), "{stdout}");
}

#[tokio::test]
async fn healthcheck_follows_the_metrics_endpoint() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let metrics = arcsight_incidents::metrics::ImportMetrics::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(arcsight_incidents::metrics::serve_on(
        listener,
        metrics,
        std::time::Duration::from_secs(60),
        async {
            let _ = stop_rx.await;
        },
    ));
    let out = run(
        &["healthcheck"],
        &[("CONNECTOR_METRICS_PORT", port.clone())],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    // Nothing listening any more: unhealthy.
    let out = run(&["healthcheck", "--port", &port], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("unhealthy:"));
}

#[tokio::test]
async fn the_daemon_serves_metrics_and_stops_cleanly_on_sigterm() {
    let w = World::start().await;
    let topo = common::amqp::Topology::new().await;
    w.platform.update(|r| r.mq = topo.registration_config(5672));
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("run")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .envs(w.env())
        .env("CONNECTOR_DURATION_PERIOD", "PT1H")
        .env("CONNECTOR_LOG_LEVEL", "info")
        .env("CONNECTOR_EXPOSE_METRICS", "true")
        .env("CONNECTOR_METRICS_PORT", metrics_port.to_string())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();

    // The first run ends with its summary line (logged after its metrics are recorded); the
    // daemon then waits an hour.
    use tokio::io::AsyncBufReadExt;
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logs = String::new();
    let first_run = async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            logs.push_str(&line);
            logs.push('\n');
            if line.contains("\"run finished\"") {
                return;
            }
        }
        panic!("the daemon exited before finishing a run:\n{logs}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), first_run)
        .await
        .expect("the first run finishes");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{metrics_port}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("runs_total 1"), "{metrics}");
    assert!(
        metrics.contains("arcsight_cases_delivered_total 9"),
        "{metrics}"
    );
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "a run succeeded just now");

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .expect("stops within seconds of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "the last run had succeeded");
    while let Some(line) = stderr.next_line().await.unwrap() {
        logs.push_str(&line);
        logs.push('\n');
    }
    let finished: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["message"] == "run finished")
        .collect();
    assert_eq!(finished.len(), 1, "{logs}");
    assert_eq!(finished[0]["delivered"], 9);
    assert!(!logs.contains(ESM_PASSWORD) && !logs.contains(OPENCTI_TOKEN));
    topo.drop_all().await;
}

/// `check` against ESM and a platform behind TLS servers whose certificates the connector
/// cannot accept: each failure names the setting that fixes it.
#[tokio::test]
async fn check_names_the_setting_that_fixes_a_refused_certificate() {
    use common::tls::{self, Presents};

    let login = json!({"log.loginResponse": {"log.return": "tls-session-TOKEN-1"}}).to_string();
    let dir = std::env::temp_dir().join(format!("check-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for presents in [Presents::LeafFromCa, Presents::CaItself] {
        let (esm_port, esm_ca) = tls::start(presents, login.clone()).await;
        let (platform_port, _) = tls::start(presents, "{}".into()).await;
        let mut env = vec![
            (
                "CONNECTOR_ID",
                "6d3c2a3e-1f4b-4a57-9f0e-2b8f8f0d2c11".to_owned(),
            ),
            ("OPENCTI_URL", format!("https://localhost:{platform_port}")),
            ("OPENCTI_TOKEN", OPENCTI_TOKEN.into()),
            (
                "ARCSIGHT_INCIDENTS_API_BASE_URL",
                format!("https://localhost:{esm_port}"),
            ),
            ("ARCSIGHT_INCIDENTS_USERNAME", "admin".into()),
            ("ARCSIGHT_INCIDENTS_PASSWORD", ESM_PASSWORD.into()),
        ];
        if presents == Presents::CaItself {
            // The operator did trust the certificate ESM presents: no CA file can help.
            let ca_file = dir.join("esm-ca.pem");
            std::fs::write(&ca_file, esm_ca).unwrap();
            env.push(("ARCSIGHT_INCIDENTS_CA_FILE", ca_file.display().to_string()));
        }
        let out = run(&["check"], &env).await;
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{presents:?}:\n{stdout}");
        let esm = status_of(&stdout, "esm");
        let platform = status_of(&stdout, "platform");
        assert!(
            esm.contains("FAILED") && platform.contains("FAILED"),
            "{stdout}"
        );
        assert!(esm.contains("ARCSIGHT_INCIDENTS_SSL_VERIFY=false"), "{esm}");
        assert!(platform.contains("OPENCTI_SSL_VERIFY=false"), "{platform}");
        match presents {
            Presents::LeafFromCa => {
                assert!(esm.contains("UnknownIssuer"), "{esm}");
                assert!(esm.contains("set ARCSIGHT_INCIDENTS_CA_FILE"), "{esm}");
            }
            Presents::CaItself => {
                assert!(esm.contains("CaUsedAsEndEntity"), "{esm}");
                assert!(
                    esm.contains("presents a CA certificate as its own"),
                    "{esm}"
                );
                // Pointing at a CA file again would not help: not suggested.
                assert!(!esm.contains("set ARCSIGHT_INCIDENTS_CA_FILE"), "{esm}");
                assert!(platform.contains("CaUsedAsEndEntity"), "{platform}");
                assert!(
                    platform.contains("presents a CA certificate as its own"),
                    "{platform}"
                );
            }
        }
        let all = format!("{stdout}{}", text(&out.stderr));
        for secret in [ESM_PASSWORD, OPENCTI_TOKEN] {
            assert!(!all.contains(secret), "{secret} printed:\n{all}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check`'s output with stdout and stderr on a pseudo-terminal (util-linux `script`), or on
/// pipes when `terminal` is false; `NO_COLOR` set to `no_color` when given.
async fn check_output(terminal: bool, no_color: Option<&str>) -> String {
    // Closed ports: every check fails quickly, so every line has a status word to colour.
    let closed = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut env = vec![
        (
            "CONNECTOR_ID",
            "6d3c2a3e-1f4b-4a57-9f0e-2b8f8f0d2c11".to_owned(),
        ),
        ("OPENCTI_URL", format!("http://127.0.0.1:{}", closed())),
        ("OPENCTI_TOKEN", OPENCTI_TOKEN.into()),
        (
            "ARCSIGHT_INCIDENTS_API_BASE_URL",
            format!("http://127.0.0.1:{}", closed()),
        ),
        ("ARCSIGHT_INCIDENTS_USERNAME", "admin".into()),
        ("ARCSIGHT_INCIDENTS_PASSWORD", ESM_PASSWORD.into()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ];
    if let Some(v) = no_color {
        env.push(("NO_COLOR", v.into()));
    }
    let out = if terminal {
        let mut cmd = tokio::process::Command::new("script");
        // -q: no banner; -e: the command's status; -c: the command; no typescript file.
        cmd.args(["-qec", &format!("{BIN} check"), "/dev/null"])
            .env_clear()
            .current_dir(std::env::temp_dir())
            .stdin(std::process::Stdio::null());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.output()
            .await
            .expect("util-linux `script` runs (this test needs it for a pseudo-terminal)")
    } else {
        run(&["check"], &env).await
    };
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("FAILED"), "{shown}");
    assert!(!shown.contains(ESM_PASSWORD) && !shown.contains(OPENCTI_TOKEN));
    shown
}

#[tokio::test]
async fn check_colours_only_a_terminal_and_honours_no_color() {
    let on_terminal = check_output(true, None).await;
    assert!(
        on_terminal.contains("\u{1b}[31mFAILED\u{1b}[0m"),
        "no colour on a terminal:\n{on_terminal:?}"
    );
    // The columns still line up: the padding is outside the colour.
    assert!(
        on_terminal.contains("platform     \u{1b}[31mFAILED\u{1b}[0m  "),
        "{on_terminal:?}"
    );
    for (what, shown) in [
        ("NO_COLOR=1", check_output(true, Some("1")).await),
        ("a pipe", check_output(false, None).await),
    ] {
        assert!(
            !shown.contains('\u{1b}'),
            "an escape sequence with {what}:\n{shown:?}"
        );
    }
    // An empty NO_COLOR does not count (no-color.org).
    let empty = check_output(true, Some("")).await;
    assert!(empty.contains("\u{1b}[31mFAILED"), "{empty:?}");
}
