//! The security suite, beyond what every end-to-end scenario already checks when it stops (no
//! credential or token in TRACE logs, in requested URLs, in GraphQL documents): secrets in a
//! settings file are never echoed, and TLS verification is on by default.

use crate::common;

use std::process::Output;

use esm_simulator::{SimConfig, Simulator};
use serde_json::json;

use common::fake_platform::FakePlatform;

const BIN: &str = env!("CARGO_BIN_EXE_arcsight-incidents");
const YML_PASSWORD: &str = "Yml-Esm-Pa55-WAXWORK";
const YML_TOKEN: &str = "yml-opencti-token-ZEMBLA";
const YML_MQ_PASS: &str = "yml-mq-pass-QUINCE";

fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args).env_clear().current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sec-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn assert_no_yml_secret(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for s in [YML_PASSWORD, YML_TOKEN, YML_MQ_PASS] {
        assert!(!all.contains(s), "{s} echoed:\n{all}");
    }
}

#[test]
fn invalid_values_in_a_settings_file_with_secrets_are_reported_without_them() {
    let dir = temp_dir();
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "opencti:\n  url: 'not a url {YML_TOKEN}'\n  token: '{YML_TOKEN}'\n\
             connector:\n  id: 'x'\n  duration_period: 'not-a-duration'\n\
             arcsight_incidents:\n  api_base_url: 'https://admin:{YML_PASSWORD}@esm:8443'\n\
             \x20 username: 'admin'\n  password: '{YML_PASSWORD}'\n  tlp_level: '{YML_PASSWORD}'\n\
             mq:\n  pass: '{YML_MQ_PASS}'\n  port: '{YML_MQ_PASS}'\n"
        ),
    )
    .unwrap();
    for cmd in ["check-settings", "check", "run"] {
        let out = run_in(&dir, &[cmd], &[]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let stderr_and_out = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for name in [
            "OPENCTI_URL",
            "CONNECTOR_DURATION_PERIOD",
            "ARCSIGHT_INCIDENTS_API_BASE_URL",
            "ARCSIGHT_INCIDENTS_TLP_LEVEL",
            "MQ_PORT",
        ] {
            assert!(
                stderr_and_out.contains(name),
                "{cmd}: {name} not named:\n{stderr_and_out}"
            );
        }
        assert_no_yml_secret(&out);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_settings_file_is_reported_without_its_content() {
    let dir = temp_dir();
    // A YAML syntax error on the very line that holds the secret.
    std::fs::write(
        dir.join("config.yml"),
        format!("arcsight_incidents:\n  password: '{YML_PASSWORD}\n  username: [admin\n"),
    )
    .unwrap();
    let out = run_in(&dir, &["check-settings"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.yml"));
    assert_no_yml_secret(&out);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn tls_verification_is_on_by_default() {
    let sim = Simulator::start(SimConfig {
        tls: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let platform = FakePlatform::start("t", json!({})).await;
    let dir = temp_dir();
    let env = |extra: Vec<(&'static str, String)>| {
        let mut e = vec![
            ("OPENCTI_URL", platform.url()),
            ("OPENCTI_TOKEN", "t".to_owned()),
            (
                "CONNECTOR_ID",
                "8c3c1ad5-1e2b-4c7d-9f00-5e6f7a8b9c0d".into(),
            ),
            (
                "ARCSIGHT_INCIDENTS_API_BASE_URL",
                sim.base_url().to_string(),
            ),
            ("ARCSIGHT_INCIDENTS_USERNAME", "admin".into()),
            ("ARCSIGHT_INCIDENTS_PASSWORD", "password".into()),
        ];
        e.extend(extra);
        e
    };
    let esm_line = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("esm login"))
            .unwrap_or_default()
            .to_owned()
    };
    let check = |env: Vec<(&'static str, String)>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || run_in(&dir, &["check"], &env))
    };

    // Defaults: the simulator's self-signed certificate is refused.
    let out = check(env(vec![])).await.unwrap();
    let line = esm_line(&out);
    assert!(line.contains("FAILED"), "{line}");
    assert!(line.to_lowercase().contains("certificate"), "{line}");

    // Trusting its CA makes it pass; so does turning verification off (with a warning).
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, sim.ca_pem().unwrap()).unwrap();
    let out = check(env(vec![(
        "ARCSIGHT_INCIDENTS_CA_FILE",
        ca.to_string_lossy().into_owned(),
    )]))
    .await
    .unwrap();
    assert!(esm_line(&out).contains("OK"), "{}", esm_line(&out));
    let out = check(env(vec![("ARCSIGHT_INCIDENTS_SSL_VERIFY", "false".into())]))
        .await
        .unwrap();
    assert!(esm_line(&out).contains("OK"), "{}", esm_line(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}
