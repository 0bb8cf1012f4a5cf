//! Settings: environment variables and config.yml, typed and validated at start-up.
//!
//! Names and keys are the reference connector's and pycti's (see `defs::DEFS`). The
//! environment wins over config.yml key by key; an empty value counts as unset. Every problem
//! is collected, so an operator fixes all of them in one go, and no message ever shows a
//! secret's value. The machinery (loading, validation, secret hiding, the value parsers) is
//! `connector_runtime::settings`, driven by this connector's table; this module reads the
//! table's sections into the clients' configurations. The sections every connector has (the
//! platform, identity, log level, metrics) are read by `connector_runtime::settings::common`.

pub mod compat;
pub mod defs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_runtime::settings::common;
use connector_runtime::settings::{self as runtime, Reader};

use crate::delivery::MqTls;
use crate::esm::{ApiDialect, EsmConfig, SettingNames};
use crate::manifest::MANIFEST;
use crate::opencti::MqOverrides;
use crate::stix::Tlp;
use crate::telemetry::LogLevel;
/// The platform: the runtime's section, as every connector reads it.
pub use connector_runtime::settings::common::OpenCtiSettings;
pub use connector_runtime::settings::{Problem, SettingsError};
use defs::*;

/// `CONNECTOR_QUEUE_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueProtocol {
    Amqp,
    Api,
}

/// The connector's own behaviour.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// Any string, as pycti takes it; a UUID is advised ([`Settings::advice`]).
    pub id: String,
    pub name: String,
    pub scope: Vec<String>,
    pub(crate) log_level: LogLevel,
    /// `OPENCTI_UNREACHABLE_TIMEOUT`: how long a run-once start waits for the platform.
    pub(crate) unreachable_timeout: Duration,
    /// `None`: run once and exit (a zero `CONNECTOR_DURATION_PERIOD`, or run_and_terminate).
    pub duration_period: Option<Duration>,
    /// How often the delivered cases are looked up in the platform (`None`: never). Unset,
    /// daily, or never when running once.
    pub verify_period: Option<Duration>,
    /// Case-incident ids per verification call. Not read from the environment; tests
    /// shorten it.
    pub verify_batch: usize,
    /// `/healthz` turns unhealthy after a run made no progress this long (`None`: never).
    pub health_stall_timeout: Option<Duration>,
    /// MB of 10^6 bytes, as pycti: a run is skipped while the queue holds this much or more.
    pub queue_threshold_mb: f64,
    pub run_and_terminate: bool,
    pub queue_protocol: QueueProtocol,
    pub send_to_queue: bool,
    /// `Some` when `CONNECTOR_SEND_TO_DIRECTORY` is true.
    pub(crate) send_to_directory: Option<PathBuf>,
    pub(crate) send_to_directory_retention_days: u32,
    /// `CONNECTOR_EXPOSE_METRICS`, `CONNECTOR_METRICS_*`: the runtime's section.
    pub metrics: common::MetricsSettings,
    /// How often the connector pings the platform (pycti: 40 s). Not read from the
    /// environment; tests shorten it to make pings race the run's saves.
    pub ping_interval: Duration,
    /// How long an AMQP publish or confirmation is awaited (30 s); a blocked broker is
    /// awaited twice that. Not read from the environment; tests shorten it (lapin's I/O runs
    /// on its own thread, so paused tokio time cannot).
    pub amqp_publish_timeout: Duration,
}

impl ConnectorSettings {
    /// One run then exit?
    pub fn run_once(&self) -> bool {
        self.run_and_terminate || self.duration_period.is_none()
    }
}

/// ArcSight ESM: how to talk to it (the client's own configuration) and what to import.
#[derive(Debug, Clone)]
pub struct EsmSettings {
    pub client: EsmConfig,
    pub max_cases: usize,
    pub tlp: Tlp,
    pub import_observables: bool,
    pub page_size: usize,
}

/// Every setting, valid by construction: the only way to get one is `Settings::load` (or
/// [`Settings::from_sources`]), which checks everything.
#[derive(Debug, Clone)]
pub struct Settings {
    pub opencti: OpenCtiSettings,
    pub connector: ConnectorSettings,
    pub esm: EsmSettings,
    /// `MQ_*`.
    pub(crate) mq: MqOverrides,
    /// `MQ_USE_SSL_*`: the broker's TLS.
    pub mq_tls: MqTls,
}

/// Where raw values come from: environment first, then config.yml, then defaults; read by
/// this connector's table ([`defs::DEFS`]).
#[derive(Debug, Clone)]
pub struct Sources(runtime::Sources);

impl Sources {
    /// The process environment and, when it exists, the config file.
    pub(crate) fn from_process(config_file: Option<&Path>) -> Result<Sources, SettingsError> {
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
    /// Loads from the process environment and the config file (if given and present).
    pub(crate) fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::from_sources(&Sources::from_process(config_file)?)
    }

    /// Where config.yml is read from when `CONNECTOR_CONFIG_FILE` (or `--config`) does not say:
    /// the working directory, then where the Python connector's image has operators mount it.
    pub const CONFIG_FILE_CANDIDATES: &'static [&'static str] = MANIFEST.config_file_candidates;

    /// The config file to read: `explicit` (which must then exist), else the first of
    /// [`Settings::CONFIG_FILE_CANDIDATES`] that exists, else none.
    pub(crate) fn config_file(explicit: Option<&Path>) -> Result<Option<PathBuf>, SettingsError> {
        runtime::config_file(explicit, Self::CONFIG_FILE_CANDIDATES)
    }

    /// Advice that does not stop the connector: one line each, logged as warnings at start-up.
    pub fn advice(&self) -> Vec<String> {
        common::id_advice(&self.connector.id).into_iter().collect()
    }

    /// What only the file system can tell, checked at start-up rather than at the first
    /// delivery: that this process's user can write the bundle directory (creating it if
    /// needed).
    pub(crate) fn check_directory(&self) -> Result<(), SettingsError> {
        let Some(dir) = &self.connector.send_to_directory else {
            return Ok(());
        };
        runtime::check_writable_dir(
            dir,
            MANIFEST.probe_name,
            CONNECTOR_SEND_TO_DIRECTORY_PATH.def().env,
        )
    }

    /// Builds and validates settings from explicit sources.
    pub fn from_sources(sources: &Sources) -> Result<Settings, SettingsError> {
        runtime::load(&sources.0, read_sections)
    }
}

/// Every section, in config.yml's order, which is the order problems are reported in; `None`
/// when a section is incomplete (a problem was then recorded).
fn read_sections(r: &mut Reader<'_>) -> Option<Settings> {
    // Whether bundles go to the platform decides whether the platform must be configured, so
    // it is read first, once, for both sections.
    let send_to_queue = r.bool(&CONNECTOR_SEND_TO_QUEUE);
    // Without a queue, the platform is optional (an operator previewing an import into a
    // directory); with one, it is required as always.
    let opencti = common::read_opencti(r, send_to_queue == Some(false));
    let unreachable_timeout = r.int(&OPENCTI_UNREACHABLE_TIMEOUT);
    let connector = read_connector(r, send_to_queue, unreachable_timeout);
    let esm = read_esm(r);
    let mq = read_mq(r);
    let mq_tls = read_mq_tls(r);
    Some(Settings {
        opencti: opencti?,
        connector: connector?,
        esm: esm?,
        mq,
        mq_tls: mq_tls?,
    })
}

/// `connector.*`. `send_to_queue` is `CONNECTOR_SEND_TO_QUEUE`, `None` when invalid;
/// `unreachable_timeout` is `OPENCTI_UNREACHABLE_TIMEOUT`, read in its section.
fn read_connector(
    r: &mut Reader<'_>,
    send_to_queue: Option<bool>,
    unreachable_timeout: Option<i64>,
) -> Option<ConnectorSettings> {
    let identity = common::read_identity(r);
    let log_level = common::read_log_level(r);
    let period = r.period(&CONNECTOR_DURATION_PERIOD);
    let verify_set = r.raw(&CONNECTOR_VERIFY_PERIOD).is_some();
    let verify = if verify_set {
        r.period(&CONNECTOR_VERIFY_PERIOD)
    } else {
        Some(None)
    };
    let health_stall = common::read_health_stall_timeout(r);
    let queue_threshold = r.float(&CONNECTOR_QUEUE_THRESHOLD);
    let run_and_terminate = r.bool(&CONNECTOR_RUN_AND_TERMINATE);
    let queue_protocol = r.choice(&CONNECTOR_QUEUE_PROTOCOL).map(|p| match p {
        "api" => QueueProtocol::Api,
        _ => QueueProtocol::Amqp,
    });
    let send_to_directory = r.bool(&CONNECTOR_SEND_TO_DIRECTORY);
    if send_to_queue == Some(false) && send_to_directory == Some(false) {
        r.fail::<_, ()>(
            &CONNECTOR_SEND_TO_QUEUE,
            "is false and CONNECTOR_SEND_TO_DIRECTORY is not true: bundles would go nowhere".into(),
        );
    }
    let directory_path = r.path(&CONNECTOR_SEND_TO_DIRECTORY_PATH);
    let directory = match (send_to_directory, directory_path) {
        (Some(true), Some(p)) => Some(Some(p)),
        (Some(true), None) => r.fail(
            &CONNECTOR_SEND_TO_DIRECTORY_PATH,
            "is required when CONNECTOR_SEND_TO_DIRECTORY is true".into(),
        ),
        _ => Some(None),
    };
    let retention = r.int(&CONNECTOR_SEND_TO_DIRECTORY_RETENTION);
    let metrics = common::read_metrics(r);
    let period = period?;
    let run_once = run_and_terminate? || period.is_none();
    // Daily unless set; a run-once deployment verifies only when asked (each of its runs
    // would otherwise start a day's count from zero, or verify every time).
    let verify_period = match verify? {
        None if !verify_set && !run_once => Some(VERIFY_PERIOD_DEFAULT),
        v => v,
    };
    let common::Identity { id, name, scope } = identity?;
    Some(ConnectorSettings {
        id,
        name,
        scope,
        log_level: log_level?,
        unreachable_timeout: Duration::from_secs(unreachable_timeout? as u64),
        duration_period: period,
        verify_period,
        verify_batch: crate::import::VERIFY_BATCH,
        health_stall_timeout: health_stall?,
        queue_threshold_mb: queue_threshold?,
        run_and_terminate: run_and_terminate?,
        queue_protocol: queue_protocol?,
        send_to_queue: send_to_queue?,
        send_to_directory: directory?,
        send_to_directory_retention_days: retention? as u32,
        metrics: metrics?,
        ping_interval: crate::opencti::PING_INTERVAL,
        amqp_publish_timeout: crate::delivery::AmqpOptions::default().publish_timeout,
    })
}

/// `CONNECTOR_VERIFY_PERIOD` when unset in a scheduled deployment.
const VERIFY_PERIOD_DEFAULT: Duration = Duration::from_secs(86_400);

/// `arcsight_incidents.*`: the ESM client's configuration and what to import.
fn read_esm(r: &mut Reader<'_>) -> Option<EsmSettings> {
    let base_url = r.url(&ARCSIGHT_INCIDENTS_API_BASE_URL);
    let username = r.string(&ARCSIGHT_INCIDENTS_USERNAME);
    let password = r.secret(&ARCSIGHT_INCIDENTS_PASSWORD);
    let max_cases = r.int(&ARCSIGHT_INCIDENTS_MAX_CASES);
    let tlp = r
        .choice(&ARCSIGHT_INCIDENTS_TLP_LEVEL)
        .and_then(|t| t.parse::<Tlp>().ok());
    let ssl_verify = r.bool(&ARCSIGHT_INCIDENTS_SSL_VERIFY);
    let ca_file = r.path(&ARCSIGHT_INCIDENTS_CA_FILE);
    if let Some(p) = &ca_file
        && !p.is_file()
    {
        r.fail::<_, ()>(
            &ARCSIGHT_INCIDENTS_CA_FILE,
            format!("{} is not a readable file", p.display()),
        );
    }
    let import_observables = r.bool(&ARCSIGHT_INCIDENTS_IMPORT_OBSERVABLES);
    let dialect = r.choice(&ARCSIGHT_INCIDENTS_API_DIALECT).map(|d| match d {
        "prefixed" => ApiDialect::Prefixed,
        "plain" => ApiDialect::Plain,
        _ => ApiDialect::Auto,
    });
    let max_attempts = r.int(&ARCSIGHT_INCIDENTS_MAX_ATTEMPTS);
    let min_wait = r.int(&ARCSIGHT_INCIDENTS_RETRY_MIN_WAIT);
    let max_wait = r.int(&ARCSIGHT_INCIDENTS_RETRY_MAX_WAIT);
    let timeout = r.int(&ARCSIGHT_INCIDENTS_REQUEST_TIMEOUT);
    let max_response_mb = r.int(&ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB);
    let concurrency = r.int(&ARCSIGHT_INCIDENTS_CONCURRENCY);
    let case_batch = r.int(&ARCSIGHT_INCIDENTS_CASE_BATCH_SIZE);
    let event_batch = r.int(&ARCSIGHT_INCIDENTS_EVENT_BATCH_SIZE);
    let page_size = r.int(&ARCSIGHT_INCIDENTS_PAGE_SIZE);
    let secs = |n: i64| Duration::from_secs(n as u64);
    Some(EsmSettings {
        client: EsmConfig {
            base_url: base_url?,
            username: username?,
            password: password?,
            ssl_verify: ssl_verify?,
            ca_file,
            dialect: dialect?,
            max_attempts: max_attempts? as u32,
            retry_min_wait: secs(min_wait?),
            retry_max_wait: secs(max_wait?),
            request_timeout: secs(timeout?),
            concurrency: concurrency? as usize,
            case_batch_size: case_batch? as usize,
            event_batch_size: event_batch? as usize,
            max_response_bytes: (max_response_mb? as u64).saturating_mul(crate::http::MIB),
            // What the client's messages tell an operator to set: this table's names.
            setting_names: SettingNames {
                ssl_verify: ARCSIGHT_INCIDENTS_SSL_VERIFY.def().env,
                ca_file: Some(ARCSIGHT_INCIDENTS_CA_FILE.def().env),
                max_response_mb: ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB.def().env,
            },
        },
        max_cases: max_cases? as usize,
        tlp: tlp?,
        import_observables: import_observables?,
        page_size: page_size? as usize,
    })
}

/// `mq.*`: every one optional.
fn read_mq(r: &mut Reader<'_>) -> MqOverrides {
    MqOverrides {
        host: r.string(&MQ_HOST),
        port: r.int(&MQ_PORT).map(|p| p as u16),
        vhost: r.string(&MQ_VHOST),
        use_ssl: r.bool(&MQ_USE_SSL),
        user: r.string(&MQ_USER),
        pass: r.secret(&MQ_PASS),
    }
}

/// `MQ_USE_SSL_*`, with pycti's meaning: each certificate or key is a PEM file's path or the
/// PEM text itself. Read here, so a missing file or a key that does not decrypt stops the
/// connector at start-up rather than at its first delivery.
fn read_mq_tls(r: &mut Reader<'_>) -> Option<MqTls> {
    let ca = r.string(&MQ_USE_SSL_CA);
    let cert = r.string(&MQ_USE_SSL_CERT);
    let key = r.secret(&MQ_USE_SSL_KEY);
    let passphrase = r.secret(&MQ_USE_SSL_PASSPHRASE);
    let verify = r.bool(&MQ_USE_SSL_REJECT_UNAUTHORIZED);
    let mut ok = true;
    let ca_certs = match ca.as_deref().map(crate::tls::certificates_from) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            ok = false;
            r.fail::<_, ()>(&MQ_USE_SSL_CA, e);
            Vec::new()
        }
        None => Vec::new(),
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => {
            use secrecy::ExposeSecret;
            let certs = crate::tls::certificates_from(&cert);
            let key = crate::tls::private_key_from(
                key.expose_secret(),
                passphrase.as_ref().map(|p| p.expose_secret()),
            );
            match (certs, key) {
                (Ok(c), Ok(k)) => Some(crate::tls::Identity::new(c, k)),
                (c, k) => {
                    ok = false;
                    if let Err(e) = c {
                        r.fail::<_, ()>(&MQ_USE_SSL_CERT, e);
                    }
                    if let Err(e) = k {
                        r.fail::<_, ()>(&MQ_USE_SSL_KEY, e);
                    }
                    None
                }
            }
        }
        (Some(_), None) => {
            ok = false;
            r.fail::<_, ()>(
                &MQ_USE_SSL_KEY,
                "is required when MQ_USE_SSL_CERT is set".into(),
            );
            None
        }
        (None, Some(_)) => {
            ok = false;
            r.fail::<_, ()>(
                &MQ_USE_SSL_CERT,
                "is required when MQ_USE_SSL_KEY is set".into(),
            );
            None
        }
        (None, None) => None,
    };
    let verify = verify?;
    ok.then_some(MqTls {
        ca_certs,
        identity,
        verify,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use url::Url;

    use super::*;

    /// `EsmConfig::new` spells the ESM defaults a second time (the client crate cannot see
    /// this table): the two must agree, or a test, bench or the demo would run with values an
    /// operator never gets.
    #[test]
    fn the_esm_client_defaults_are_the_settings_defaults() {
        let env: HashMap<String, String> = [
            (
                "ARCSIGHT_INCIDENTS_API_BASE_URL",
                "https://esm.example:8443",
            ),
            ("ARCSIGHT_INCIDENTS_USERNAME", "admin"),
            ("ARCSIGHT_INCIDENTS_PASSWORD", "pw"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let sources = Sources::new(env, None).unwrap();
        let read = read_esm(&mut Reader::new(&sources.0))
            .expect("the ESM section reads")
            .client;
        let new = EsmConfig::new(
            Url::parse("https://esm.example:8443").unwrap(),
            "admin",
            SecretString::from("pw"),
        );
        assert_eq!(format!("{read:?}"), format!("{new:?}"));
    }

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
}
