//! The stream connector's settings: environment variables and config.yml, typed and validated
//! at start-up, by the table in [`defs`] (names, defaults and accepted values of the Python
//! `stream/arcsight` connector, plus ours).
//!
//! The environment wins over config.yml key by key; an empty value counts as unset. Every
//! problem is collected and reported with the setting's name, and no message ever shows a
//! secret's value (`connector_runtime::settings` does both). The sections every connector has
//! (the platform, identity, log level, metrics) are read by `connector_runtime::settings::common`;
//! this module reads the rest into the clients' and the engine's configurations. Each type here
//! is built only by [`Settings::from_sources`], so holding one means it is valid.

pub mod compat;
pub mod defs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use connector_runtime::settings::common::{self, Identity, MetricsSettings};
use connector_runtime::settings::{self as runtime, Reader};
use connector_runtime::telemetry::LogLevel;
use esm_client::{ApiDialect, EsmConfig, SettingNames};
use opencti_client::OpenCtiConfig;
use opencti_client::stream::{StreamConfig, StreamPosition};
use stream_core::pattern::ExtractPolicy;
use stream_core::policy::Policy;

pub use connector_runtime::settings::{Problem, SettingsError};
use defs::*;

use crate::manifest::MANIFEST;

/// The platform: where it is, and how logs are written.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// `OPENCTI_*`, always with a URL and a token (both required here).
    pub client: OpenCtiConfig,
    /// `OPENCTI_JSON_LOGGING`.
    pub json_logging: bool,
}

/// `CONNECTOR_LIVE_STREAM_*`: which stream, and how it is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStreamSettings {
    /// Never blank, never the placeholder.
    pub id: String,
    pub listen_delete: bool,
    pub no_dependencies: bool,
    pub with_inferences: bool,
    /// `CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE`, normalised to RFC 3339 UTC.
    pub recover_until: Option<String>,
    /// `CONNECTOR_LIVE_STREAM_START_TIMESTAMP`, Unix milliseconds.
    pub start_timestamp_ms: Option<u64>,
}

impl LiveStreamSettings {
    /// Where a first run (no state in the platform) reads from, as pycti decides it:
    /// `START_TIMESTAMP-0` or the start of the stream, recovering up to `RECOVER_ISO_DATE` or
    /// `now`.
    pub fn first_position(&self, now: DateTime<Utc>) -> StreamPosition {
        let base = StreamPosition::first_run(now);
        StreamPosition {
            start_from: match self.start_timestamp_ms {
                Some(ms) => Some(format!("{ms}-0")),
                None => base.start_from,
            },
            recover_until: self.recover_until.clone().or(base.recover_until),
        }
    }
}

/// The connector itself.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    pub identity: Identity,
    pub log_level: LogLevel,
    pub live_stream: LiveStreamSettings,
    /// `CONNECTOR_HEALTH_STALL_TIMEOUT`: `/healthz` turns unhealthy after the stream or ESM
    /// has failed this long (`None`: never).
    pub health_timeout: Option<Duration>,
    pub metrics: MetricsSettings,
    /// How often the connector pings the platform with its state (pycti: 40 s). Not read
    /// from the environment; tests shorten it.
    pub ping_interval: Duration,
}

/// ESM: the client's configuration and the list kept in sync.
#[derive(Debug, Clone)]
pub struct EsmSettings {
    pub client: EsmConfig,
    pub list_id: String,
    pub value_column: String,
    /// `ARCSIGHT_BATCH_SIZE`: entries per write request.
    pub batch_size: usize,
}

/// How the engine writes: timing, bounds, reconciliation, the ledger file, the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    /// Zero: at once.
    pub flush_delay: Duration,
    pub max_pending: usize,
    /// `None`: at start only.
    pub reconcile_period: Option<Duration>,
    pub ledger_path: Option<PathBuf>,
    pub policy: Policy,
}

/// Every setting, valid by construction: the only way to get one is [`Settings::load`] or
/// [`Settings::from_sources`], which check everything.
#[derive(Debug, Clone)]
pub struct Settings {
    pub platform: PlatformSettings,
    pub connector: ConnectorSettings,
    pub esm: EsmSettings,
    pub sync: SyncSettings,
}

/// Where raw values come from: environment first, then config.yml, then defaults; read by this
/// connector's table ([`defs::DEFS`]).
#[derive(Debug, Clone)]
pub struct Sources(runtime::Sources);

impl Sources {
    /// The process environment and, when it exists, the config file.
    pub fn from_process(config_file: Option<&Path>) -> Result<Sources, SettingsError> {
        runtime::Sources::from_process(DEFS, config_file).map(Sources)
    }

    /// Explicit sources, for tests and tools: `env` as the environment, `yml` as config.yml
    /// text.
    pub fn new(
        env: HashMap<String, String>,
        yml_text: Option<&str>,
    ) -> Result<Sources, SettingsError> {
        runtime::Sources::new(DEFS, env, yml_text).map(Sources)
    }
}

impl Settings {
    /// Loads from the process environment and the config file (if given).
    pub fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::from_sources(&Sources::from_process(config_file)?)
    }

    /// Where config.yml is read from when `CONNECTOR_CONFIG_FILE` (or `--config`) does not
    /// say: the working directory, then where the Python connector's image reads it.
    pub const CONFIG_FILE_CANDIDATES: &'static [&'static str] = MANIFEST.config_file_candidates;

    /// The config file to read: `explicit` (which must then exist), else the first of
    /// [`Settings::CONFIG_FILE_CANDIDATES`] that exists, else none.
    pub fn config_file(explicit: Option<&Path>) -> Result<Option<PathBuf>, SettingsError> {
        runtime::config_file(explicit, Self::CONFIG_FILE_CANDIDATES)
    }

    /// Builds and validates settings from explicit sources.
    pub fn from_sources(sources: &Sources) -> Result<Settings, SettingsError> {
        runtime::load(&sources.0, read_sections)
    }

    /// Advice that does not stop the connector: one line each, logged as warnings at start-up.
    pub fn advice(&self) -> Vec<String> {
        let mut out: Vec<String> = self.connector.identity.advice().into_iter().collect();
        if !self.connector.live_stream.listen_delete {
            out.push(
                "CONNECTOR_LIVE_STREAM_LISTEN_DELETE is false: the values of indicators deleted \
                 in OpenCTI, or leaving the stream's filters, stay in the list"
                    .to_owned(),
            );
        }
        out
    }

    /// What only the file system can tell, checked at start-up rather than at the first
    /// snapshot: that this process's user can write the ledger's directory.
    pub fn check_ledger_dir(&self) -> Result<(), SettingsError> {
        let Some(path) = &self.sync.ledger_path else {
            return Ok(());
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        runtime::check_writable_dir(dir, MANIFEST.probe_name, ARCSIGHT_LEDGER_PATH.def().env)
    }

    /// The live stream reader's configuration: the platform's connection and pycti's flags.
    pub fn stream_config(&self) -> StreamConfig {
        let p = &self.platform.client;
        let s = &self.connector.live_stream;
        StreamConfig {
            ssl_verify: p.ssl_verify,
            ca_files: p.ca_files.clone(),
            custom_headers: p.custom_headers.clone(),
            listen_delete: s.listen_delete,
            no_dependencies: s.no_dependencies,
            with_inferences: s.with_inferences,
            user_agent: concat!("arcsight-stream/", env!("CARGO_PKG_VERSION")).to_owned(),
            ..StreamConfig::new(p.url.clone(), p.token.clone(), s.id.clone())
        }
    }
}

/// Every section, in config.yml's order, which is the order problems are reported in; `None`
/// when a section is incomplete (a problem was then recorded).
fn read_sections(r: &mut Reader<'_>) -> Option<Settings> {
    let opencti = common::read_opencti(r, false);
    let connector = read_connector(r);
    let esm = read_esm(r);
    let sync = read_sync(r);
    let opencti = opencti?;
    Some(Settings {
        platform: PlatformSettings {
            // Both are required (not optional) here, so a section read whole has them.
            client: opencti.client_config()?,
            json_logging: opencti.json_logging,
        },
        connector: connector?,
        esm: esm?,
        sync: sync?,
    })
}

/// `connector.*`.
fn read_connector(r: &mut Reader<'_>) -> Option<ConnectorSettings> {
    let identity = common::read_identity(r);
    let log_level = common::read_log_level(r);
    // Only STREAM is valid; the value itself is not needed beyond that.
    let kind = r.choice(&CONNECTOR_TYPE);
    let live_stream = read_live_stream(r);
    let health_timeout = common::read_health_stall_timeout(r);
    let metrics = common::read_metrics(r);
    kind?;
    Some(ConnectorSettings {
        identity: identity?,
        log_level: log_level?,
        live_stream: live_stream?,
        health_timeout: health_timeout?,
        metrics: metrics?,
        ping_interval: opencti_client::PING_INTERVAL,
    })
}

/// `CONNECTOR_LIVE_STREAM_*`.
fn read_live_stream(r: &mut Reader<'_>) -> Option<LiveStreamSettings> {
    // Blank counts as unset (required) and `ChangeMe` is the placeholder: both refused, as
    // the Python connector's `check_stream_id` refuses them.
    let id = r.string(&CONNECTOR_LIVE_STREAM_ID);
    let listen_delete = r.bool(&CONNECTOR_LIVE_STREAM_LISTEN_DELETE);
    let no_dependencies = r.bool(&CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES);
    let with_inferences = r.bool(&CONNECTOR_LIVE_STREAM_WITH_INFERENCES);
    let recover = match r.string(&CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE) {
        Some(raw) => match parse_iso_date(&raw) {
            Some(d) => Some(Some(d.to_rfc3339_opts(SecondsFormat::Millis, true))),
            None => r.fail(
                &CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE,
                format!(
                    "{raw:?} is not an ISO-8601 date such as 2026-01-31T00:00:00Z or 2026-01-31"
                ),
            ),
        },
        None => Some(None),
    };
    let start = r.int(&CONNECTOR_LIVE_STREAM_START_TIMESTAMP);
    let start = match r.raw(&CONNECTOR_LIVE_STREAM_START_TIMESTAMP) {
        Some(_) => Some(start.map(|ms| ms as u64)),
        None => Some(None),
    };
    Some(LiveStreamSettings {
        id: id?,
        listen_delete: listen_delete?,
        no_dependencies: no_dependencies?,
        with_inferences: with_inferences?,
        recover_until: recover?,
        start_timestamp_ms: start?,
    })
}

/// A date as the platform reads `recover` (JavaScript's date parsing of an ISO string): with
/// a zone, without one (UTC), or a day alone (its midnight, UTC).
fn parse_iso_date(raw: &str) -> Option<DateTime<Utc>> {
    let t = raw.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(d.and_utc());
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// `arcsight.*` that configure the ESM client and name the list.
fn read_esm(r: &mut Reader<'_>) -> Option<EsmSettings> {
    let base_url = r.url(&ARCSIGHT_API_BASE_URL);
    let username = r.string(&ARCSIGHT_USERNAME);
    let password = r.secret(&ARCSIGHT_PASSWORD);
    let list_id = r.string(&ARCSIGHT_ACTIVE_LIST_ID);
    let value_column = r.string(&ARCSIGHT_VALUE_COLUMN);
    let ssl_verify = r.bool(&ARCSIGHT_SSL_VERIFY);
    let ca_file = r.path(&ARCSIGHT_CA_FILE);
    if let Some(p) = &ca_file
        && !p.is_file()
    {
        r.fail::<_, ()>(
            &ARCSIGHT_CA_FILE,
            format!("{} is not a readable file", p.display()),
        );
    }
    let dialect = r.choice(&ARCSIGHT_API_DIALECT).map(|d| match d {
        "prefixed" => ApiDialect::Prefixed,
        "plain" => ApiDialect::Plain,
        _ => ApiDialect::Auto,
    });
    let max_attempts = r.int(&ARCSIGHT_MAX_ATTEMPTS);
    let min_wait = r.int(&ARCSIGHT_RETRY_MIN_WAIT);
    let max_wait = r.int(&ARCSIGHT_RETRY_MAX_WAIT);
    let timeout = r.int(&ARCSIGHT_REQUEST_TIMEOUT);
    let max_response_mb = r.int(&ARCSIGHT_MAX_RESPONSE_MB);
    let concurrency = r.int(&ARCSIGHT_CONCURRENCY);
    let batch_size = r.int(&ARCSIGHT_BATCH_SIZE);
    let secs = |n: i64| Duration::from_secs(n as u64);
    let defaults = EsmConfig::new(base_url?, username?, password?);
    Some(EsmSettings {
        client: EsmConfig {
            ssl_verify: ssl_verify?,
            ca_file,
            dialect: dialect?,
            max_attempts: max_attempts? as u32,
            retry_min_wait: secs(min_wait?),
            retry_max_wait: secs(max_wait?),
            request_timeout: secs(timeout?),
            concurrency: concurrency? as usize,
            max_response_bytes: (max_response_mb? as u64).saturating_mul(peer_http::http::MIB),
            // The client's messages name this connector's settings.
            setting_names: SettingNames {
                ssl_verify: ARCSIGHT_SSL_VERIFY.def().env,
                ca_file: Some(ARCSIGHT_CA_FILE.def().env),
                max_response_mb: ARCSIGHT_MAX_RESPONSE_MB.def().env,
            },
            ..defaults
        },
        list_id: list_id?,
        value_column: value_column?,
        batch_size: batch_size? as usize,
    })
}

/// `arcsight.*` that say how and what the engine writes.
fn read_sync(r: &mut Reader<'_>) -> Option<SyncSettings> {
    let flush_delay = r.period(&ARCSIGHT_FLUSH_DELAY);
    let max_pending = r.int(&ARCSIGHT_MAX_PENDING);
    let reconcile_period = r.period(&ARCSIGHT_RECONCILE_PERIOD);
    let ledger_path = r.path(&ARCSIGHT_LEDGER_PATH);
    let or_values = r.bool(&ARCSIGHT_PATTERN_OR_VALUES);
    let extra_types = r.bool(&ARCSIGHT_EXTRA_TYPES);
    let min_score = r.int(&ARCSIGHT_MIN_SCORE);
    let min_score = match r.raw(&ARCSIGHT_MIN_SCORE) {
        Some(_) => Some(min_score),
        None => Some(None),
    };
    Some(SyncSettings {
        flush_delay: flush_delay?.unwrap_or(Duration::ZERO),
        max_pending: max_pending? as usize,
        reconcile_period: reconcile_period?,
        ledger_path,
        policy: Policy {
            extract: ExtractPolicy {
                or_values: or_values?,
                extra_types: extra_types?,
            },
            min_score: min_score?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_read_is_listed_and_every_listed_one_is_read() {
        let sources = Sources::new(HashMap::new(), None).unwrap();
        let mut r = Reader::new(&sources.0);
        read_sections(&mut r);
        let read: std::collections::BTreeSet<&str> = r.names_read().iter().copied().collect();
        let listed: std::collections::BTreeSet<&str> = DEFS.iter().map(|d| d.env).collect();
        assert_eq!(listed.len(), DEFS.len(), "a setting is listed twice");
        assert_eq!(read, listed);
    }

    #[test]
    fn recover_dates_in_the_forms_the_platform_reads() {
        let d = |s: &str| parse_iso_date(s).map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true));
        assert_eq!(
            d("2026-01-31T10:20:30Z").as_deref(),
            Some("2026-01-31T10:20:30Z")
        );
        assert_eq!(
            d("2026-01-31T12:20:30+02:00").as_deref(),
            Some("2026-01-31T10:20:30Z")
        );
        assert_eq!(
            d("2026-01-31T10:20:30.5").as_deref(),
            Some("2026-01-31T10:20:30Z")
        );
        assert_eq!(d("2026-01-31").as_deref(), Some("2026-01-31T00:00:00Z"));
        for bad in ["yesterday", "2026-13-01", "31/01/2026", ""] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }
}
