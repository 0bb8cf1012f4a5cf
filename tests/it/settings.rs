//! Settings: names, precedence, validation, secrets, and the exit status of a bad configuration.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use arcsight_incidents::esm::ApiDialect;
use arcsight_incidents::settings::{QueueProtocol, Settings, SettingsError, Sources};
use arcsight_incidents::stix::Tlp;
use secrecy::ExposeSecret;

const PASSWORD: &str = "Esm-Pa55w0rd-XYZZY";
const TOKEN: &str = "opencti-token-PLUGH";
const MQ_PASS: &str = "mq-pass-FROTZ";

fn minimal_env() -> HashMap<String, String> {
    crate::common::env::required(TOKEN, PASSWORD)
}

fn load(env: HashMap<String, String>, yml: Option<&str>) -> Result<Settings, SettingsError> {
    Settings::from_sources(&Sources::new(env, yml)?)
}

fn problems(env: HashMap<String, String>, yml: Option<&str>) -> Vec<String> {
    match load(env, yml) {
        Ok(_) => panic!("settings should be refused"),
        Err(e) => e.lines(),
    }
}

#[test]
fn defaults_match_the_reference_connector() {
    let s = load(minimal_env(), None).unwrap();
    assert_eq!(s.connector.name, "ArcSight Incidents");
    assert_eq!(
        s.connector.duration_period,
        Some(Duration::from_secs(15 * 60))
    );
    assert_eq!(s.esm.max_cases, 200);
    assert_eq!(s.esm.tlp, Tlp::Amber);
    assert!(s.esm.client.ssl_verify);
    assert!(s.esm.import_observables);
    assert_eq!(s.esm.client.dialect, ApiDialect::Auto);
    assert_eq!(s.connector.queue_protocol, QueueProtocol::Amqp);
    assert_eq!(s.connector.queue_threshold_mb, 500.0);
    assert_eq!(s.connector.metrics.port, 9095);
    assert!(s.opencti.json_logging);
    assert!(!s.connector.run_once());
    assert_eq!(s.esm.page_size, 100);
    assert_eq!(s.esm.client.max_attempts, 4);
    assert_eq!(s.esm.client.request_timeout, Duration::from_secs(30));
}

#[test]
fn environment_wins_over_config_yml_key_by_key() {
    let yml = r#"
opencti:
  url: "http://from-file:8080"
connector:
  duration_period: PT1H30M
  name: From File
arcsight_incidents:
  max_cases: 50
  tlp_level: red
  ssl_verify: no
"#;
    let mut env = minimal_env();
    env.remove("OPENCTI_URL");
    env.insert("ARCSIGHT_INCIDENTS_MAX_CASES".into(), "7".into());
    // An empty variable counts as unset: the file's value applies.
    env.insert("ARCSIGHT_INCIDENTS_TLP_LEVEL".into(), "".into());
    let s = load(env, Some(yml)).unwrap();
    assert_eq!(
        s.opencti.url.as_ref().map(url::Url::as_str),
        Some("http://from-file:8080/")
    );
    assert_eq!(s.connector.duration_period, Some(Duration::from_secs(5400)));
    assert_eq!(s.connector.name, "From File");
    assert_eq!(s.esm.max_cases, 7);
    assert_eq!(s.esm.tlp, Tlp::Red);
    assert!(!s.esm.client.ssl_verify);
}

#[test]
fn the_old_url_name_is_an_alias() {
    let mut env = minimal_env();
    env.remove("ARCSIGHT_INCIDENTS_API_BASE_URL");
    env.insert(
        "ARCSIGHT_INCIDENTS_URL".into(),
        "https://old-name:8443".into(),
    );
    let s = load(env, None).unwrap();
    assert_eq!(s.esm.client.base_url.host_str(), Some("old-name"));
}

#[test]
fn every_problem_is_reported_once_with_its_variable() {
    let mut env = minimal_env();
    env.insert("ARCSIGHT_INCIDENTS_TLP_LEVEL".into(), "purple".into());
    // Any string is an id (as for pycti), but not the compose file's placeholder.
    env.insert("CONNECTOR_ID".into(), "ChangeMe".into());
    env.insert("CONNECTOR_DURATION_PERIOD".into(), "P1X".into());
    env.insert("ARCSIGHT_INCIDENTS_MAX_CASES".into(), "0".into());
    env.insert("ARCSIGHT_INCIDENTS_SSL_VERIFY".into(), "maybe".into());
    env.insert("OPENCTI_URL".into(), "not a url".into());
    env.remove("ARCSIGHT_INCIDENTS_USERNAME");
    let lines = problems(env, None);
    assert!(lines.contains(
        &"ARCSIGHT_INCIDENTS_TLP_LEVEL: \"purple\" is not one of clear, white, green, amber, amber+strict, red".to_owned()
    ));
    let names: Vec<&str> = lines.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "OPENCTI_URL",
            "CONNECTOR_ID",
            "CONNECTOR_DURATION_PERIOD",
            "ARCSIGHT_INCIDENTS_USERNAME",
            "ARCSIGHT_INCIDENTS_MAX_CASES",
            "ARCSIGHT_INCIDENTS_TLP_LEVEL",
            "ARCSIGHT_INCIDENTS_SSL_VERIFY",
        ],
        "{lines:?}"
    );
}

#[test]
fn periods_refuse_what_pydantic_refuses_and_negative_ones() {
    for bad in ["P1X", "PT", "15m", "-PT15M"] {
        let mut env = minimal_env();
        env.insert("CONNECTOR_DURATION_PERIOD".into(), bad.into());
        let lines = problems(env, None);
        assert_eq!(lines.len(), 1, "{bad}: {lines:?}");
        assert!(
            lines[0].starts_with("CONNECTOR_DURATION_PERIOD: "),
            "{lines:?}"
        );
    }
    let mut env = minimal_env();
    env.insert("CONNECTOR_DURATION_PERIOD".into(), "0".into());
    assert!(load(env, None).unwrap().connector.run_once());
}

#[test]
fn booleans_accept_yes_and_no_in_any_case() {
    for (raw, want) in [
        ("YES", true),
        ("No", false),
        ("True", true),
        ("false", false),
    ] {
        let mut env = minimal_env();
        env.insert("CONNECTOR_RUN_AND_TERMINATE".into(), raw.into());
        assert_eq!(
            load(env, None).unwrap().connector.run_and_terminate,
            want,
            "{raw}"
        );
    }
}

#[test]
fn directory_delivery_needs_a_path() {
    let mut env = minimal_env();
    env.insert("CONNECTOR_SEND_TO_DIRECTORY".into(), "true".into());
    assert_eq!(
        problems(env, None),
        ["CONNECTOR_SEND_TO_DIRECTORY_PATH: is required when CONNECTOR_SEND_TO_DIRECTORY is true"]
    );
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    let mut env = minimal_env();
    env.insert("MQ_PASS".into(), MQ_PASS.into());
    // An access proxy's client secret, as operators put in custom headers.
    env.insert(
        "OPENCTI_CUSTOM_HEADERS".into(),
        "CF-Access-Client-Secret:hdr-secret-XANADU".into(),
    );
    let s = load(env.clone(), None).unwrap();
    assert_eq!(s.esm.client.password.expose_secret(), PASSWORD);
    let config = s.opencti.client_config().unwrap();
    let debug = format!("{s:?} {config:?}");
    assert!(
        debug.contains("CF-Access-Client-Secret"),
        "header names stay visible"
    );
    for secret in [PASSWORD, TOKEN, MQ_PASS, "hdr-secret-XANADU"] {
        assert!(!debug.contains(secret), "{secret} leaked in Debug");
    }
    // A URL carrying credentials is refused without being echoed.
    env.insert(
        "ARCSIGHT_INCIDENTS_API_BASE_URL".into(),
        format!("https://user:{PASSWORD}@esm:8443"),
    );
    env.insert("OPENCTI_URL".into(), format!("http://x:{TOKEN}@[bad"));
    let text = problems(env, None).join("\n");
    assert!(!text.contains(PASSWORD) && !text.contains(TOKEN), "{text}");
    assert!(
        text.contains("ARCSIGHT_INCIDENTS_API_BASE_URL: must not carry credentials"),
        "{text}"
    );
}

#[test]
fn the_binary_exits_2_with_one_line_per_problem() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arcsight-incidents"));
    cmd.arg("check-settings")
        .env_clear()
        .current_dir(std::env::temp_dir());
    for (k, v) in minimal_env() {
        cmd.env(k, v);
    }
    cmd.env("ARCSIGHT_INCIDENTS_TLP_LEVEL", "purple");
    cmd.env("CONNECTOR_ID", "ChangeMe-connector-id");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "CONNECTOR_ID: is still the placeholder (ChangeMe...) of the compose file or config.yml.sample: set it",
            "ARCSIGHT_INCIDENTS_TLP_LEVEL: \"purple\" is not one of clear, white, green, amber, amber+strict, red",
        ]
    );
    assert!(!stderr.contains(PASSWORD) && !stderr.contains(TOKEN));
}

#[cfg(unix)]
#[test]
fn a_non_utf8_variable_in_the_environment_does_not_stop_the_process() {
    use std::os::unix::ffi::OsStrExt;
    let junk = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arcsight-incidents"));
    cmd.arg("check-settings")
        .env_clear()
        .current_dir(std::env::temp_dir());
    for (k, v) in minimal_env() {
        cmd.env(k, v);
    }
    // Someone else's variable, and one of ours, both in Latin-1.
    cmd.env("LEGACY_APP_LABEL", junk);
    cmd.env("CONNECTOR_NAME", junk);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_platform_is_optional_only_when_nothing_goes_to_its_queue() {
    let mut env = minimal_env();
    env.remove("OPENCTI_URL");
    env.remove("OPENCTI_TOKEN");
    assert_eq!(
        problems(env.clone(), None),
        [
            "OPENCTI_URL: is required but not set",
            "OPENCTI_TOKEN: is required but not set"
        ]
    );
    env.insert("CONNECTOR_SEND_TO_QUEUE".into(), "false".into());
    env.insert("CONNECTOR_SEND_TO_DIRECTORY".into(), "true".into());
    env.insert(
        "CONNECTOR_SEND_TO_DIRECTORY_PATH".into(),
        "/tmp/preview".into(),
    );
    let s = load(env.clone(), None).unwrap();
    assert!(s.opencti.url.is_none() && s.opencti.token.is_none());

    // A platform named without its token is still an error.
    env.insert("OPENCTI_URL".into(), "http://opencti:8080".into());
    assert_eq!(
        problems(env.clone(), None),
        ["OPENCTI_TOKEN: is required but not set"]
    );

    // Neither queue nor directory: bundles would go nowhere.
    env.insert("CONNECTOR_SEND_TO_DIRECTORY".into(), "false".into());
    env.insert("OPENCTI_TOKEN".into(), TOKEN.into());
    let p = problems(env, None);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("CONNECTOR_SEND_TO_QUEUE: is false"),
        "{p:?}"
    );
}
