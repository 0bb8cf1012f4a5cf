//! The stream connector's settings: the Python connector's names, defaults and every value it
//! accepts; ours with their documented defaults; every problem named; no secret shown.

use std::collections::HashMap;
use std::time::Duration;

use arcsight_stream::settings::{Settings, Sources};
use connector_runtime::telemetry::LogLevel;

const PASSWORD: &str = "esm-pa55word-very-secret";
const TOKEN: &str = "opencti-t0ken-very-secret";

/// What the Python connector's docker-compose requires, set.
fn base_env() -> HashMap<String, String> {
    [
        ("OPENCTI_URL", "http://opencti:8080"),
        ("OPENCTI_TOKEN", TOKEN),
        ("CONNECTOR_ID", "2b7a3b4e-8f47-4d34-9a2e-1c7b3c2f1a10"),
        ("CONNECTOR_LIVE_STREAM_ID", "live-1"),
        ("ARCSIGHT_API_BASE_URL", "https://esm.example.com:8443"),
        ("ARCSIGHT_USERNAME", "admin"),
        ("ARCSIGHT_PASSWORD", PASSWORD),
        ("ARCSIGHT_ACTIVE_LIST_ID", "HxyZ1AbcDEF"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn load(env: HashMap<String, String>, yml: Option<&str>) -> Result<Settings, Vec<String>> {
    let sources = Sources::new(env, yml).map_err(|e| e.lines())?;
    Settings::from_sources(&sources).map_err(|e| e.lines())
}

fn with(pairs: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
    let mut env = base_env();
    for (k, v) in pairs {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    load(env, None)
}

#[test]
fn defaults_are_the_python_connector_s_and_ours_as_documented() {
    let s = with(&[]).unwrap();
    let c = &s.connector;
    assert_eq!(c.identity.name, "ArcSight");
    assert_eq!(c.identity.scope, ["arcsight"]);
    assert_eq!(c.log_level, LogLevel::Error);
    assert!(c.live_stream.listen_delete);
    assert!(c.live_stream.no_dependencies);
    assert!(!c.live_stream.with_inferences);
    assert_eq!(c.live_stream.recover_until, None);
    assert_eq!(c.live_stream.start_timestamp_ms, None);
    assert_eq!(c.health_timeout, Some(Duration::from_secs(600)));
    assert!(!c.metrics.expose);
    assert_eq!(c.metrics.port, 9096, "beside the import connector's 9095");
    assert_eq!(s.esm.value_column, "value");
    assert_eq!(s.esm.list_id, "HxyZ1AbcDEF");
    assert!(s.esm.client.ssl_verify);
    assert_eq!(s.esm.client.username, "admin");
    assert_eq!(s.esm.client.max_attempts, 4);
    assert_eq!(s.esm.client.request_timeout, Duration::from_secs(30));
    assert_eq!(s.esm.client.concurrency, 4);
    // ESM's messages name this connector's settings, not the import's.
    assert_eq!(s.esm.client.setting_names.ssl_verify, "ARCSIGHT_SSL_VERIFY");
    assert_eq!(s.esm.client.setting_names.ca_file, Some("ARCSIGHT_CA_FILE"));
    assert_eq!(s.esm.batch_size, 500);
    assert_eq!(s.sync.flush_delay, Duration::from_millis(250));
    assert_eq!(s.sync.max_pending, 5000);
    assert_eq!(s.sync.reconcile_period, Some(Duration::from_secs(3600)));
    assert_eq!(s.sync.ledger_path, None);
    assert!(!s.sync.policy.extract.or_values);
    assert!(!s.sync.policy.extract.extra_types);
    assert_eq!(s.sync.policy.min_score, None);
    assert!(s.platform.client.ssl_verify);
    assert!(s.platform.json_logging);
    // The live stream is asked for as pycti asks: these flags, this stream.
    let stream = s.stream_config();
    assert_eq!(stream.stream_id, "live-1");
    assert!(stream.listen_delete && stream.no_dependencies && !stream.with_inferences);
}

#[test]
fn every_boolean_spelling_pydantic_accepts_is_accepted() {
    let names = [
        "ARCSIGHT_SSL_VERIFY",
        "CONNECTOR_LIVE_STREAM_LISTEN_DELETE",
        "CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES",
        "CONNECTOR_LIVE_STREAM_WITH_INFERENCES",
    ];
    let read = |s: &Settings| {
        [
            s.esm.client.ssl_verify,
            s.connector.live_stream.listen_delete,
            s.connector.live_stream.no_dependencies,
            s.connector.live_stream.with_inferences,
        ]
    };
    for (spelling, want) in [
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("on", true),
        ("t", true),
        ("y", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("no", false),
        ("off", false),
        ("f", false),
        ("n", false),
    ] {
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, spelling)).collect();
        let s = with(&pairs).unwrap_or_else(|e| panic!("{spelling}: {e:?}"));
        assert_eq!(read(&s), [want; 4], "{spelling}");
    }
    // And YAML booleans in config.yml.
    let yml = "arcsight:\n  ssl_verify: false\nconnector:\n  live_stream_listen_delete: false\n";
    let s = load(base_env(), Some(yml)).unwrap();
    assert!(!s.esm.client.ssl_verify && !s.connector.live_stream.listen_delete);
}

#[test]
fn every_log_level_and_the_stream_type_are_accepted() {
    for (level, want) in [
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("warning", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        let s = with(&[("CONNECTOR_LOG_LEVEL", level)]).unwrap();
        assert_eq!(s.connector.log_level, want, "{level}");
    }
    assert!(with(&[("CONNECTOR_TYPE", "STREAM")]).is_ok());
    let lines = with(&[("CONNECTOR_TYPE", "EXTERNAL_IMPORT")]).unwrap_err();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("CONNECTOR_TYPE: "), "{lines:?}");
}

#[test]
fn urls_scopes_and_the_url_alias_key_read_as_the_python_connector_reads_them() {
    for url in [
        "https://esm.example.com:8443",
        "https://esm.example.com:8443/",
        "http://10.0.0.5:8443/esm",
    ] {
        let s = with(&[("ARCSIGHT_API_BASE_URL", url)]).unwrap();
        assert_eq!(
            s.esm.client.base_url.as_str().trim_end_matches('/'),
            url.trim_end_matches('/')
        );
    }
    let s = with(&[("CONNECTOR_SCOPE", "arcsight, esm")]).unwrap();
    assert_eq!(s.connector.identity.scope, ["arcsight", "esm"]);

    // config.yml: `arcsight.url`, the pydantic alias of api_base_url; lists for the scope.
    let mut env = base_env();
    env.remove("ARCSIGHT_API_BASE_URL");
    let yml =
        "arcsight:\n  url: 'https://alias.example:8443'\nconnector:\n  scope:\n    - a\n    - b\n";
    let s = load(env.clone(), Some(yml)).unwrap();
    assert_eq!(s.esm.client.base_url.host_str(), Some("alias.example"));
    assert_eq!(s.connector.identity.scope, ["a", "b"]);
    // The environment wins over the file.
    env.insert("ARCSIGHT_API_BASE_URL".into(), "https://env.example".into());
    let s = load(env, Some(yml)).unwrap();
    assert_eq!(s.esm.client.base_url.host_str(), Some("env.example"));
}

#[test]
fn a_blank_or_placeholder_stream_id_is_refused_naming_the_setting() {
    for bad in ["", "   ", "ChangeMe", "changeme", " CHANGEME "] {
        let lines = with(&[("CONNECTOR_LIVE_STREAM_ID", bad)]).unwrap_err();
        assert_eq!(lines.len(), 1, "{bad:?}: {lines:?}");
        assert!(
            lines[0].starts_with("CONNECTOR_LIVE_STREAM_ID: "),
            "{bad:?}: {lines:?}"
        );
    }
}

#[test]
fn every_missing_required_setting_is_named_at_once() {
    let lines = load(HashMap::new(), None).unwrap_err();
    let named: Vec<&str> = lines
        .iter()
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
        ]
    );
    for line in &lines {
        assert!(line.ends_with("is required but not set"), "{line}");
    }
}

#[test]
fn bad_values_of_our_settings_are_named_with_what_is_wrong() {
    for (name, value, says) in [
        ("ARCSIGHT_BATCH_SIZE", "0", "less than 1"),
        ("ARCSIGHT_MAX_PENDING", "many", "not a whole number"),
        ("ARCSIGHT_FLUSH_DELAY", "soon", "not a duration"),
        ("ARCSIGHT_RECONCILE_PERIOD", "-PT1H", "not a duration"),
        ("ARCSIGHT_MIN_SCORE", "101", "more than 100"),
        (
            "ARCSIGHT_API_DIALECT",
            "xml",
            "not one of auto, prefixed, plain",
        ),
        (
            "ARCSIGHT_CA_FILE",
            "/nonexistent/ca.pem",
            "not a readable file",
        ),
        ("CONNECTOR_METRICS_PORT", "70000", "more than 65535"),
        (
            "CONNECTOR_LIVE_STREAM_START_TIMESTAMP",
            "yesterday",
            "not a whole number",
        ),
        (
            "CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE",
            "31/01/2026",
            "not an ISO-8601 date",
        ),
        (
            "ARCSIGHT_API_BASE_URL",
            "esm.example.com",
            "not a valid URL",
        ),
    ] {
        let lines = with(&[(name, value)]).unwrap_err();
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert!(lines[0].starts_with(&format!("{name}: ")), "{lines:?}");
        assert!(lines[0].contains(says), "{name}: {lines:?}");
    }
}

#[test]
fn our_settings_take_their_values() {
    let s = with(&[
        ("ARCSIGHT_BATCH_SIZE", "200"),
        ("ARCSIGHT_FLUSH_DELAY", "0"),
        ("ARCSIGHT_MAX_PENDING", "10"),
        ("ARCSIGHT_RECONCILE_PERIOD", "PT0S"),
        ("ARCSIGHT_LEDGER_PATH", "/data/ledger.bin"),
        ("ARCSIGHT_PATTERN_OR_VALUES", "true"),
        ("ARCSIGHT_EXTRA_TYPES", "yes"),
        ("ARCSIGHT_MIN_SCORE", "50"),
        ("ARCSIGHT_API_DIALECT", "PLAIN"),
        ("CONNECTOR_METRICS_PORT", "9200"),
        ("CONNECTOR_HEALTH_STALL_TIMEOUT", "0"),
    ])
    .unwrap();
    assert_eq!(s.esm.batch_size, 200);
    assert_eq!(s.sync.flush_delay, Duration::ZERO, "zero: at once");
    assert_eq!(s.sync.max_pending, 10);
    assert_eq!(s.sync.reconcile_period, None, "zero: at start only");
    assert_eq!(
        s.sync.ledger_path.as_deref(),
        Some(std::path::Path::new("/data/ledger.bin"))
    );
    assert!(s.sync.policy.extract.or_values && s.sync.policy.extract.extra_types);
    assert_eq!(s.sync.policy.min_score, Some(50));
    assert_eq!(s.esm.client.dialect, esm_client::ApiDialect::Plain);
    assert_eq!(s.connector.metrics.port, 9200);
    assert_eq!(s.connector.health_timeout, None);
}

#[test]
fn a_first_run_starts_where_pycti_would() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let s = with(&[]).unwrap();
    let p = s.connector.live_stream.first_position(now);
    assert_eq!(p.start_from.as_deref(), Some("0-0"));
    assert_eq!(p.recover_until.as_deref(), Some("2026-12-07T10:00:00.000Z"));

    let s = with(&[
        ("CONNECTOR_LIVE_STREAM_START_TIMESTAMP", "1700000000000"),
        ("CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE", "2026-01-31"),
    ])
    .unwrap();
    let p = s.connector.live_stream.first_position(now);
    assert_eq!(p.start_from.as_deref(), Some("1700000000000-0"));
    assert_eq!(p.recover_until.as_deref(), Some("2026-01-31T00:00:00.000Z"));
}

#[test]
fn no_secret_is_shown_in_a_problem_nor_in_the_settings_debug_text() {
    // The password pasted into the wrong setting: the problem names it, never shows it.
    let lines = with(&[("ARCSIGHT_SSL_VERIFY", PASSWORD)]).unwrap_err();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("ARCSIGHT_SSL_VERIFY: "), "{lines:?}");
    let lines = with(&[("CONNECTOR_LOG_LEVEL", TOKEN)]).unwrap_err();
    assert!(lines[0].starts_with("CONNECTOR_LOG_LEVEL: "), "{lines:?}");
    for line in lines
        .iter()
        .chain(&with(&[("ARCSIGHT_SSL_VERIFY", PASSWORD)]).unwrap_err())
    {
        assert!(!line.contains(PASSWORD) && !line.contains(TOKEN), "{line}");
    }
    let debug = format!("{:?}", with(&[]).unwrap());
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(!debug.contains(TOKEN), "{debug}");
}

#[test]
fn every_value_the_differences_table_lists_as_accepted_loads() {
    for row in arcsight_stream::settings::compat::DIFFERENCES {
        // Rows naming one setting (the others are families, tested above).
        let name = row.setting.split(' ').next().unwrap_or("");
        if row.setting.contains(',') || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        for (value, _) in row.accepted {
            assert!(
                with(&[(name, value)]).is_ok(),
                "{name}={value} is listed as accepted"
            );
        }
    }
}
