//! Settings: environment variables and config.yml, typed and validated at start-up.
//!
//! Names and keys are the reference connector's and pycti's (see `defs::DEFS`). The
//! environment wins over config.yml key by key; an empty value counts as unset. Every problem
//! is collected, so an operator fixes all of them in one go, and no message ever shows a
//! secret's value.

pub mod compat;
pub mod defs;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::delivery::MqTls;
use crate::esm::{ApiDialect, EsmConfig};
use crate::opencti::{DEFAULT_TIMEOUT, MqOverrides, OpenCtiConfig, header_names};
use crate::stix::Tlp;
use crate::telemetry::LogLevel;
use defs::*;
pub(crate) use defs::{DEFS, Def, Key, Kind};

/// One invalid or missing setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable's name.
    pub(crate) name: &'static str,
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// Why settings could not be loaded: one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

impl SettingsError {
    /// The problems, one per line as printed.
    pub fn lines(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_owned).collect()
    }
}

/// `CONNECTOR_QUEUE_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueProtocol {
    Amqp,
    Api,
}

/// The platform.
#[derive(Clone)]
pub struct OpenCtiSettings {
    /// `None` only when `CONNECTOR_SEND_TO_QUEUE` is false and no platform is configured: the
    /// connector then works offline (directory delivery, state kept beside the files).
    pub url: Option<Url>,
    /// Set whenever `url` is.
    pub token: Option<SecretString>,
    pub ssl_verify: bool,
    /// PEM bundles trusted for the platform besides the bundled roots and the OS store:
    /// `OPENCTI_CA_FILE`, a path given as `OPENCTI_SSL_VERIFY` (pycti passes it to requests as
    /// `verify=`), and `REQUESTS_CA_BUNDLE` (which requests, under pycti, reads).
    pub(crate) ca_files: Vec<PathBuf>,
    pub json_logging: bool,
    /// `OPENCTI_CUSTOM_HEADERS`, parsed.
    pub(crate) custom_headers: Vec<(String, String)>,
    /// `OPENCTI_MAX_RESPONSE_MB`.
    pub(crate) max_response_mb: u64,
    /// `OPENCTI_UNREACHABLE_TIMEOUT`: how long a run-once start waits for the platform.
    pub(crate) unreachable_timeout: Duration,
}

/// Custom headers may carry credentials (an access proxy's client secret): show their names only.
impl fmt::Debug for OpenCtiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenCtiSettings")
            .field("url", &self.url.as_ref().map(Url::as_str))
            .field("token", &self.token)
            .field("ssl_verify", &self.ssl_verify)
            .field("ca_files", &self.ca_files)
            .field("json_logging", &self.json_logging)
            .field("custom_headers", &header_names(&self.custom_headers))
            .field("max_response_mb", &self.max_response_mb)
            .field("unreachable_timeout", &self.unreachable_timeout)
            .finish()
    }
}

impl OpenCtiSettings {
    /// The platform client's configuration; `None` when no platform is configured (offline
    /// mode).
    pub fn client_config(&self) -> Option<OpenCtiConfig> {
        Some(OpenCtiConfig {
            url: self.url.clone()?,
            token: self.token.clone()?,
            ssl_verify: self.ssl_verify,
            ca_files: self.ca_files.clone(),
            custom_headers: self.custom_headers.clone(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: self.max_response_mb.saturating_mul(crate::http::MIB),
        })
    }
}

/// The connector's own behaviour.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// Any string, as pycti takes it; a UUID is advised ([`Settings::advice`]).
    pub id: String,
    pub name: String,
    pub scope: Vec<String>,
    pub(crate) log_level: LogLevel,
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
    pub(crate) expose_metrics: bool,
    pub metrics_host: std::net::IpAddr,
    pub metrics_port: u16,
    /// `CONNECTOR_METRICS_NAMESPACE` and `_SUBSYSTEM`: the prefix of every metric name, as
    /// pycti builds it (`namespace_subsystem_name`); `None` when both are unset.
    pub metrics_prefix: Option<String>,
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

/// Where raw values come from: environment first, then config.yml, then defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    env: HashMap<String, String>,
    yml: HashMap<String, String>,
    /// config.yml keys whose value is a mapping where text was expected.
    yml_mappings: Vec<String>,
}

impl Sources {
    /// The process environment and, when it exists, the config file.
    pub(crate) fn from_process(config_file: Option<&Path>) -> Result<Sources, SettingsError> {
        // `vars()` panics on a non-UTF-8 variable anywhere in the environment, even one that is
        // not ours: skip foreign names, and read a non-UTF-8 value lossily so that its
        // validation names the variable instead of the process dying.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        let (yml, yml_mappings) = match config_file {
            Some(p) => read_yml(p)?,
            None => Default::default(),
        };
        Ok(Sources {
            env,
            yml,
            yml_mappings,
        })
    }

    /// Explicit sources, for tests and tools: `env` as the environment, `yml` as config.yml
    /// text.
    pub fn new(
        env: HashMap<String, String>,
        yml_text: Option<&str>,
    ) -> Result<Sources, SettingsError> {
        let (yml, yml_mappings) = match yml_text {
            Some(text) => parse_yml(text, Path::new("config.yml"))?,
            None => Default::default(),
        };
        Ok(Sources {
            env,
            yml,
            yml_mappings,
        })
    }

    /// An environment variable that is not a setting of ours but changes what we do (as
    /// `REQUESTS_CA_BUNDLE` does); `None` when unset or empty.
    pub(crate) fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The raw text of a setting, if set anywhere (empty counts as unset).
    pub(crate) fn raw(&self, def: &Def) -> Option<String> {
        let from_env = std::iter::once(def.env)
            .chain(def.env_aliases.iter().copied())
            .find_map(|name| self.env.get(name).filter(|v| !v.trim().is_empty()));
        if let Some(v) = from_env {
            return Some(v.clone());
        }
        let alias_keys = def.env_aliases.iter().map(|a| yml_key_for_alias(def, a));
        std::iter::once(def.yml.to_owned())
            .chain(alias_keys)
            .find_map(|k| self.yml.get(&k).filter(|v| !v.trim().is_empty()).cloned())
    }
}

impl Sources {
    /// Every value a secret setting has in any source, even one the environment overrides.
    fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for def in DEFS.iter().filter(|d| d.kind == Kind::Secret) {
            let names = std::iter::once(def.env).chain(def.env_aliases.iter().copied());
            out.extend(names.filter_map(|n| self.env.get(n).cloned()));
            let keys = std::iter::once(def.yml.to_owned())
                .chain(def.env_aliases.iter().map(|a| yml_key_for_alias(def, a)));
            out.extend(keys.filter_map(|k| self.yml.get(&k).cloned()));
        }
        out.retain(|v| !v.trim().is_empty());
        out
    }

    /// One problem per config.yml key holding a mapping where text is expected; its content
    /// is not shown (it may be the secret, one level down).
    fn mapping_problems(&self) -> Vec<Problem> {
        self.yml_mappings
            .iter()
            .filter_map(|key| {
                let def = DEFS.iter().find(|d| {
                    d.yml == key || d.env_aliases.iter().any(|a| yml_key_for_alias(d, a) == *key)
                })?;
                Some(Problem {
                    name: def.env,
                    message: format!(
                        "config.yml key {key} holds a mapping where a single value is expected (its content is not shown)"
                    ),
                })
            })
            .collect()
    }
}

/// What replaces a value a settings error must not show.
const HIDDEN: &str = "the value (not shown)";

/// Settings errors echo a value to say what is wrong with it ("purple" is not a TLP level),
/// but never one that could be a secret: one that equals, contains or is contained in a secret
/// setting's value (in any source, any case). When a required secret has no value at all, it
/// may well be the text pasted into the wrong setting, so then no value is shown.
fn hide_secret_values(problems: &mut [Problem], sources: &Sources) {
    let secrets: Vec<String> = sources
        .secret_values()
        .iter()
        .flat_map(|s| [s.to_lowercase(), s.trim().to_lowercase()])
        .collect();
    let a_secret_is_missing = DEFS
        .iter()
        .filter(|d| d.kind == Kind::Secret && d.required)
        .any(|d| sources.raw(d).is_none());
    let related = |value: &str| {
        let v = value.to_lowercase();
        secrets
            .iter()
            .any(|s| s.contains(v.as_str()) || v.contains(s.as_str()))
    };
    for p in problems.iter_mut() {
        // Secrets themselves, wherever they appear in a message.
        for secret in sources.secret_values() {
            for candidate in [secret.as_str(), secret.trim()] {
                if candidate.len() >= 4 && p.message.contains(candidate) {
                    p.message = p.message.replace(candidate, "[a secret's value]");
                }
            }
        }
        // The setting's own value, as the message quotes it.
        let Some(def) = DEFS.iter().find(|d| d.env == p.name) else {
            continue;
        };
        let Some(raw) = sources.raw(def) else {
            continue;
        };
        let value = raw.trim();
        if value.is_empty() || !(a_secret_is_missing || related(value)) {
            continue;
        }
        let quoted = format!("{value:?}");
        if p.message.contains(&quoted) {
            p.message = p.message.replace(&quoted, HIDDEN);
        } else if let Some(rest) = p.message.strip_prefix(value) {
            p.message = format!("{HIDDEN}{rest}");
        }
    }
}

/// `ARCSIGHT_INCIDENTS_URL` -> `arcsight_incidents.url`: an alias's key in the same section.
fn yml_key_for_alias(def: &Def, alias: &str) -> String {
    let section = def.yml.split('.').next().unwrap_or_default();
    let prefix = format!("{}_", section.to_ascii_uppercase());
    let key = alias
        .strip_prefix(&prefix)
        .unwrap_or(alias)
        .to_ascii_lowercase();
    format!("{section}.{key}")
}

/// config.yml as `section.key -> text`, and the keys that hold a mapping instead of text.
type Yml = (HashMap<String, String>, Vec<String>);

fn read_yml(path: &Path) -> Result<Yml, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
        path: path.to_owned(),
        message: e.kind().to_string(),
    })?;
    parse_yml(&text, path)
}

/// Flattens config.yml into `section.key -> text`. Keys are read explicitly, never split on
/// `_`, so `duration_period` stays one key.
fn parse_yml(text: &str, path: &Path) -> Result<Yml, SettingsError> {
    let cfg = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .build()
        .map_err(|e| SettingsError::File {
            path: path.to_owned(),
            // The config crate's messages quote positions, not values: safe to show.
            message: format!("not valid YAML ({})", redact_config_error(&e)),
        })?;
    let mut out = HashMap::new();
    let mut mappings = Vec::new();
    for def in DEFS {
        let keys = std::iter::once(def.yml.to_owned())
            .chain(def.env_aliases.iter().map(|a| yml_key_for_alias(def, a)));
        for key in keys {
            if let Ok(v) = cfg.get::<config::Value>(&key) {
                if v.clone().into_table().is_ok() {
                    mappings.push(key);
                    continue;
                }
                let text = match v.clone().into_array() {
                    Ok(items) => items
                        .into_iter()
                        .filter_map(|i| i.into_string().ok())
                        .collect::<Vec<_>>()
                        .join(","),
                    Err(_) => v.into_string().unwrap_or_default(),
                };
                out.insert(key, text);
            }
        }
    }
    Ok((out, mappings))
}

fn redact_config_error(e: &config::ConfigError) -> String {
    // Only the kind of failure; the underlying YAML error may quote the offending line, which
    // could hold a secret.
    match e {
        config::ConfigError::FileParse { .. } => "parse error".into(),
        _ => "unreadable".into(),
    }
}

/// Collects typed values and problems while building [`Settings`]. Each method reads one kind
/// of setting, so a key of another kind does not compile.
struct Reader<'a> {
    sources: &'a Sources,
    problems: Vec<Problem>,
    /// Every setting looked up, in order: lets a test check that each one read is in [`DEFS`]
    /// (config.yml is read by that list) and that each one listed is read.
    read: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    fn new(sources: &'a Sources) -> Self {
        Reader {
            sources,
            problems: Vec::new(),
            read: Vec::new(),
        }
    }

    fn raw<K>(&mut self, key: &Key<K>) -> Option<String> {
        self.read.push(key.def().env);
        self.sources.raw(key.def())
    }

    /// The trimmed value, or the default; records a problem when a required one is missing
    /// or still the placeholder of the compose file or config.yml.sample.
    fn text<K>(&mut self, key: &Key<K>) -> Option<String> {
        let def = key.def();
        let raw = self.raw(key).or_else(|| def.default.map(str::to_owned));
        if raw.is_none() && def.required {
            self.fail::<K, ()>(key, "is required but not set".into());
        }
        if raw.as_deref().is_some_and(is_placeholder) {
            return self.fail(key, PLACEHOLDER_PROBLEM.into());
        }
        raw.map(|s| s.trim().to_owned())
    }

    /// Reads `key` with `read`; when `optional`, its absence is not a problem.
    fn maybe_required<K, T>(
        &mut self,
        optional: bool,
        key: &Key<K>,
        read: impl FnOnce(&mut Self, &Key<K>) -> Option<T>,
    ) -> Option<T> {
        let before = self.problems.len();
        let value = read(self, key);
        if optional && value.is_none() && self.raw(key).is_none() {
            self.problems.truncate(before);
        }
        value
    }

    fn fail<K, T>(&mut self, key: &Key<K>, message: String) -> Option<T> {
        self.problems.push(Problem {
            name: key.def().env,
            message,
        });
        None
    }

    fn string(&mut self, key: &Key<kinds::Text>) -> Option<String> {
        self.text(key)
    }

    fn secret(&mut self, key: &Key<kinds::Secret>) -> Option<SecretString> {
        // Secrets are not trimmed: a password may legitimately end with a space.
        match self.raw(key) {
            Some(v) if is_placeholder(&v) => self.fail(key, PLACEHOLDER_PROBLEM.into()),
            Some(v) => Some(SecretString::from(v)),
            None if key.def().required => self.fail(key, "is required but not set".into()),
            None => None,
        }
    }

    fn url(&mut self, key: &Key<kinds::Url>) -> Option<Url> {
        let raw = self.text(key)?;
        match Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                if !u.username().is_empty() || u.password().is_some() {
                    return self.fail(
                        key,
                        "must not carry credentials; use the username and password settings".into(),
                    );
                }
                // Dropping them silently would send requests somewhere else than the operator
                // meant; the value is not shown (a query string often carries a key).
                if u.query().is_some() || u.fragment().is_some() {
                    return self.fail(
                        key,
                        "must not have a query string (?...) or a fragment (#...)".into(),
                    );
                }
                Some(u)
            }
            Ok(u) => self.fail(
                key,
                format!(
                    "must be an http:// or https:// URL with a host (got scheme {:?})",
                    u.scheme()
                ),
            ),
            // Never echo the URL: it may carry a password.
            Err(e) => self.fail(key, format!("is not a valid URL ({e})")),
        }
    }

    fn ip(&mut self, key: &Key<kinds::Text>) -> Option<std::net::IpAddr> {
        let raw = self.text(key)?;
        match raw.parse() {
            Ok(ip) => Some(ip),
            Err(_) => self.fail(
                key,
                format!("{raw:?} is not an IP address (e.g. 0.0.0.0, 127.0.0.1, ::)"),
            ),
        }
    }

    fn bool(&mut self, key: &Key<kinds::Bool>) -> Option<bool> {
        let raw = self.text(key)?;
        match parse_bool(&raw) {
            Some(b) => Some(b),
            None => self.fail(
                key,
                format!("{raw:?} is not a boolean (true, false, yes, no)"),
            ),
        }
    }

    fn int(&mut self, key: &Key<kinds::Int>) -> Option<i64> {
        let raw = self.text(key)?;
        let (min, max) = key.range();
        match raw.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(n) if n < min => self.fail(key, format!("{n} is less than {min}")),
            Ok(n) => self.fail(key, format!("{n} is more than {max}")),
            Err(_) => self.fail(key, format!("{raw:?} is not a whole number")),
        }
    }

    fn choice(&mut self, key: &Key<kinds::Enum>) -> Option<&'static str> {
        let raw = self.text(key)?;
        let values = key.values();
        let lowered = raw.to_ascii_lowercase();
        match values.iter().find(|v| **v == lowered) {
            Some(v) => Some(v),
            None => self.fail(key, format!("{raw:?} is not one of {}", values.join(", "))),
        }
    }

    /// A decimal number, zero or more (pycti reads the queue threshold with `float()`).
    fn float(&mut self, key: &Key<kinds::Float>) -> Option<f64> {
        let raw = self.text(key)?;
        match raw.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Some(n),
            Ok(_) => self.fail(key, format!("{raw:?} is not a number of zero or more")),
            Err(_) => self.fail(key, format!("{raw:?} is not a number")),
        }
    }

    /// `Some(None)` for a zero duration (run once).
    fn period(&mut self, key: &Key<kinds::Duration>) -> Option<Option<Duration>> {
        let raw = self.text(key)?;
        match parse_period(&raw) {
            Ok(p) => Some(p),
            Err(e) => self.fail(key, e),
        }
    }

    fn path(&mut self, key: &Key<kinds::Path>) -> Option<PathBuf> {
        self.text(key).map(PathBuf::from)
    }

    /// The non-empty items; empty when unset.
    fn list(&mut self, key: &Key<kinds::List>) -> Vec<String> {
        self.text(key)
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the generated compose file and config.yml.sample put where the operator must decide:
/// `ChangeMe`, or `ChangeMe-<what>` so that no two settings share a value (a shared one would
/// be hidden as a secret's value in every message).
pub(crate) const PLACEHOLDER: &str = "ChangeMe";

const PLACEHOLDER_PROBLEM: &str =
    "is still the placeholder (ChangeMe...) of the compose file or config.yml.sample: set it";

/// Is `value` a placeholder left in ([`PLACEHOLDER`], alone or followed by `-` or `_`)?
pub(crate) fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.get(..PLACEHOLDER.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PLACEHOLDER))
        && matches!(
            v.as_bytes().get(PLACEHOLDER.len()),
            None | Some(b'-' | b'_')
        )
}

/// `true/false/yes/no` in any case, which is what pycti takes; also what pydantic's `bool`
/// takes (`1/0`, `on/off`, `t/f`, `y/n`), for the settings the Python connector reads through
/// pydantic. (pycti keeps `0` or `off` as a string, which Python then finds true: ours is the
/// sane reading, see the differences table.)
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" | "t" | "y" => Some(true),
        "false" | "no" | "0" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Seconds per unit of an ISO-8601 duration, as pydantic counts them: a month is 30 days, a
/// year 365.
const DAY: f64 = 86_400.0;

/// A duration as pydantic's `timedelta` reads one (what the Python connector accepts for
/// `CONNECTOR_DURATION_PERIOD`): ISO-8601 (`PT15M`, `PT1.5H`, `P1W`, `P1M` = 30 days,
/// `P1Y` = 365 days), `[D day[s], ]HH:MM:SS[.ffffff]`, or a number of seconds (a YAML
/// integer arrives as one). A zero duration means "run once" and is returned as `None`.
/// Negative durations are refused: pycti would loop without pause.
pub(crate) fn parse_period(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    let secs = if t.starts_with(['P', 'p']) {
        iso_duration_secs(t)
    } else if t.contains(':') {
        clock_duration_secs(t)
    } else {
        t.parse::<f64>().ok().filter(|n| n.is_finite())
    }
    .ok_or_else(|| {
        format!(
            "{t:?} is not a duration such as PT15M, PT1H30M, P1D, 01:30:00 or 900 (seconds); zero runs once"
        )
    })?;
    if secs < 0.0 {
        return Err(format!("{t:?} is negative"));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| format!("{t:?} is too long"))
}

/// `P[nY][nM][nW][nD][T[nH][nM][nS]]`, each `n` possibly a decimal (`.` or `,`), any case.
fn iso_duration_secs(t: &str) -> Option<f64> {
    let upper = t.to_ascii_uppercase();
    let rest = upper.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, tm)) if !tm.is_empty() => (d, Some(tm)),
        Some(_) => return None,
        None => (rest, None),
    };
    let date_units: &[(char, f64)] = &[
        ('Y', 365.0 * DAY),
        ('M', 30.0 * DAY),
        ('W', 7.0 * DAY),
        ('D', DAY),
    ];
    let time_units: &[(char, f64)] = &[('H', 3600.0), ('M', 60.0), ('S', 1.0)];
    let mut total = 0.0;
    let mut any = false;
    for (part, units) in [(Some(date), date_units), (time, time_units)] {
        let Some(mut part) = part else { continue };
        let mut next_unit = 0;
        while !part.is_empty() {
            let end = part.find(|c: char| c.is_ascii_alphabetic())?;
            let number: f64 = part[..end].replace(',', ".").parse().ok()?;
            if part[..end].starts_with(['+', '-']) || !number.is_finite() {
                return None;
            }
            let unit = part[end..].chars().next()?;
            // Units in order, each at most once.
            let i = units[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
            total += number * units[i].1;
            next_unit = i + 1;
            any = true;
            part = &part[end + 1..];
        }
    }
    any.then_some(total)
}

/// `[D day[s], ]HH:MM:SS[.ffffff]` (Python's `str(timedelta)`), or `HH:MM:SS` alone.
fn clock_duration_secs(t: &str) -> Option<f64> {
    let (days, clock) = match t.split_once(',') {
        Some((d, c)) => {
            let d = d.trim();
            let n = d
                .strip_suffix("days")
                .or_else(|| d.strip_suffix("day"))?
                .trim()
                .parse::<u64>()
                .ok()?;
            (n as f64, c.trim())
        }
        None => (0.0, t),
    };
    let mut parts = clock.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let whole = |x: &str| {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse::<u64>().ok())
            .flatten()
    };
    let (h, m) = (whole(h)?, whole(m)?);
    let sec: f64 = sec
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
    if m >= 60 || sec >= 60.0 {
        return None;
    }
    Some(days * DAY + h as f64 * 3600.0 + m as f64 * 60.0 + sec)
}

/// `h1:v1;h2:v2` -> pairs. Header values are secrets-adjacent (they may carry API keys), so
/// errors name the position, never the text.
pub(crate) fn parse_custom_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, part) in s.split(';').enumerate() {
        if part.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once(':') else {
            return Err(format!(
                "header #{} has no ':' between name and value",
                i + 1
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("header #{} has an invalid name", i + 1));
        }
        out.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

impl Settings {
    /// Loads from the process environment and the config file (if given and present).
    pub(crate) fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::from_sources(&Sources::from_process(config_file)?)
    }

    /// Where config.yml is read from when `CONNECTOR_CONFIG_FILE` (or `--config`) does not say:
    /// the working directory, then where the Python connector's image has operators mount it.
    pub const CONFIG_FILE_CANDIDATES: &'static [&'static str] = &[
        "config.yml",
        "/opt/opencti-connector-arcsight-incidents/config.yml",
    ];

    /// The config file to read: `explicit` (which must then exist), else the first of
    /// [`Settings::CONFIG_FILE_CANDIDATES`] that exists, else none.
    pub(crate) fn config_file(explicit: Option<&Path>) -> Result<Option<PathBuf>, SettingsError> {
        match explicit {
            Some(p) if p.is_file() => Ok(Some(p.to_owned())),
            Some(p) => Err(SettingsError::File {
                path: p.to_owned(),
                message: "not found (CONNECTOR_CONFIG_FILE names a file that does not exist)"
                    .into(),
            }),
            None => Ok(Self::CONFIG_FILE_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())),
        }
    }

    /// Advice that does not stop the connector: one line each, logged as warnings at start-up.
    pub fn advice(&self) -> Vec<String> {
        let mut out = Vec::new();
        if uuid::Uuid::parse_str(&self.connector.id).is_err() {
            out.push(
                "CONNECTOR_ID is not a UUID: it works (pycti takes any string), but a UUIDv4 is \
                 what the platform's connector manager and other tools expect"
                    .to_owned(),
            );
        }
        out
    }

    /// What only the file system can tell, checked at start-up rather than at the first
    /// delivery: that this process's user can write the bundle directory (creating it if
    /// needed).
    pub(crate) fn check_directory(&self) -> Result<(), SettingsError> {
        let Some(dir) = &self.connector.send_to_directory else {
            return Ok(());
        };
        let probe = dir.join(format!(
            ".arcsight-incidents-write-test-{}",
            std::process::id()
        ));
        let result = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&probe, b""))
            .and_then(|()| std::fs::remove_file(&probe));
        result.map_err(|e| {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata("/proc/self")
                .map(|m| m.uid().to_string())
                .unwrap_or_else(|_| "?".into());
            SettingsError::Invalid(vec![Problem {
                name: CONNECTOR_SEND_TO_DIRECTORY_PATH.def().env,
                message: format!(
                    "{} is not writable by this process (uid {uid}): {}; give that user the \
                     directory (for a bind mount: chown {uid} on the host's directory)",
                    dir.display(),
                    e.kind()
                ),
            }])
        })
    }

    /// Builds and validates settings from explicit sources.
    pub fn from_sources(sources: &Sources) -> Result<Settings, SettingsError> {
        let mut r = Reader::new(sources);
        let settings = read_sections(&mut r);
        r.problems.extend(sources.mapping_problems());
        if !r.problems.is_empty() {
            hide_secret_values(&mut r.problems, sources);
            return Err(SettingsError::Invalid(r.problems));
        }
        // Each section is whole when nothing was reported: a `None` here would be a missing
        // problem report, which the tests guard against.
        settings.ok_or(SettingsError::Invalid(vec![]))
    }
}

/// Every section, in config.yml's order, which is the order problems are reported in; `None`
/// when a section is incomplete (a problem was then recorded).
fn read_sections(r: &mut Reader<'_>) -> Option<Settings> {
    // Whether bundles go to the platform decides whether the platform must be configured, so
    // it is read first, once, for both sections.
    let send_to_queue = r.bool(&CONNECTOR_SEND_TO_QUEUE);
    let opencti = read_opencti(r, send_to_queue);
    let connector = read_connector(r, send_to_queue);
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

/// `opencti.*`. `send_to_queue` is `CONNECTOR_SEND_TO_QUEUE`, `None` when invalid.
fn read_opencti(r: &mut Reader<'_>, send_to_queue: Option<bool>) -> Option<OpenCtiSettings> {
    // Without a queue, the platform is optional (an operator previewing an import into a
    // directory); with one, it is required as always.
    let platform_optional = send_to_queue == Some(false);
    let url = r.maybe_required(platform_optional, &OPENCTI_URL, Reader::url);
    let token = r.maybe_required(
        platform_optional && url.is_none(),
        &OPENCTI_TOKEN,
        Reader::secret,
    );
    let (ssl_verify, verify_bundle) = read_ssl_verify(r);
    let mut ca_files: Vec<PathBuf> = Vec::new();
    for (name, path) in [
        (OPENCTI_CA_FILE.def().env, r.path(&OPENCTI_CA_FILE)),
        (OPENCTI_SSL_VERIFY.def().env, verify_bundle),
        (
            "REQUESTS_CA_BUNDLE",
            r.sources.env_var("REQUESTS_CA_BUNDLE").map(PathBuf::from),
        ),
    ] {
        let Some(path) = path else { continue };
        if path.is_file() {
            ca_files.push(path);
        } else {
            r.problems.push(Problem {
                name,
                message: format!("{} is not a readable file", path.display()),
            });
        }
    }
    let json_logging = r.bool(&OPENCTI_JSON_LOGGING);
    let custom_headers = match r.string(&OPENCTI_CUSTOM_HEADERS) {
        Some(h) => match parse_custom_headers(&h) {
            Ok(v) => Some(v),
            Err(e) => r.fail(&OPENCTI_CUSTOM_HEADERS, e),
        },
        None => Some(Vec::new()),
    };
    let max_response_mb = r.int(&OPENCTI_MAX_RESPONSE_MB);
    let unreachable_timeout = r.int(&OPENCTI_UNREACHABLE_TIMEOUT);
    Some(OpenCtiSettings {
        url,
        token,
        ssl_verify: ssl_verify?,
        ca_files,
        json_logging: json_logging?,
        custom_headers: custom_headers?,
        max_response_mb: max_response_mb? as u64,
        unreachable_timeout: Duration::from_secs(unreachable_timeout? as u64),
    })
}

/// `OPENCTI_SSL_VERIFY`: a boolean, or (as pycti passes it to requests' `verify=`) the path
/// of a PEM CA bundle, which means "verify, trusting that bundle too". The second value is
/// that path.
fn read_ssl_verify(r: &mut Reader<'_>) -> (Option<bool>, Option<PathBuf>) {
    let Some(raw) = r.text(&OPENCTI_SSL_VERIFY) else {
        return (None, None);
    };
    match parse_bool(&raw) {
        Some(b) => (Some(b), None),
        None if raw.contains(['/', '\\']) || raw.ends_with(".pem") || raw.ends_with(".crt") => {
            (Some(true), Some(PathBuf::from(raw)))
        }
        None => (
            r.fail(
                &OPENCTI_SSL_VERIFY,
                format!(
                    "{raw:?} is neither a boolean (true, false, yes, no) nor a CA bundle's path"
                ),
            ),
            None,
        ),
    }
}

/// `connector.*`. `send_to_queue` is `CONNECTOR_SEND_TO_QUEUE`, `None` when invalid.
fn read_connector(r: &mut Reader<'_>, send_to_queue: Option<bool>) -> Option<ConnectorSettings> {
    let id = r.string(&CONNECTOR_ID);
    let name = r.string(&CONNECTOR_NAME);
    let scope = r.list(&CONNECTOR_SCOPE);
    let log_level = r.choice(&CONNECTOR_LOG_LEVEL).map(|l| match l {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        _ => LogLevel::Error,
    });
    let period = r.period(&CONNECTOR_DURATION_PERIOD);
    let verify_set = r.raw(&CONNECTOR_VERIFY_PERIOD).is_some();
    let verify = if verify_set {
        r.period(&CONNECTOR_VERIFY_PERIOD)
    } else {
        Some(None)
    };
    let health_stall = r.period(&CONNECTOR_HEALTH_STALL_TIMEOUT);
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
    let expose_metrics = r.bool(&CONNECTOR_EXPOSE_METRICS);
    let metrics_host = r.ip(&CONNECTOR_METRICS_HOST);
    let metrics_port = r.int(&CONNECTOR_METRICS_PORT);
    let metrics_prefix = metrics_prefix(
        r.string(&CONNECTOR_METRICS_NAMESPACE),
        r.string(&CONNECTOR_METRICS_SUBSYSTEM),
    );
    let period = period?;
    let run_once = run_and_terminate? || period.is_none();
    // Daily unless set; a run-once deployment verifies only when asked (each of its runs
    // would otherwise start a day's count from zero, or verify every time).
    let verify_period = match verify? {
        None if !verify_set && !run_once => Some(VERIFY_PERIOD_DEFAULT),
        v => v,
    };
    Some(ConnectorSettings {
        id: id?,
        name: name?,
        scope,
        log_level: log_level?,
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
        expose_metrics: expose_metrics?,
        metrics_host: metrics_host?,
        metrics_port: metrics_port? as u16,
        metrics_prefix,
        ping_interval: crate::opencti::PING_INTERVAL,
        amqp_publish_timeout: crate::delivery::AmqpOptions::default().publish_timeout,
    })
}

/// `CONNECTOR_VERIFY_PERIOD` when unset in a scheduled deployment.
const VERIFY_PERIOD_DEFAULT: Duration = Duration::from_secs(86_400);

/// `namespace_subsystem`, as prometheus_client (Python) joins them; either may be unset.
fn metrics_prefix(namespace: Option<String>, subsystem: Option<String>) -> Option<String> {
    let parts: Vec<String> = [namespace, subsystem].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("_"))
}

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
    use super::*;

    #[test]
    fn periods() {
        let p = |s: &str| parse_period(s);
        assert_eq!(p("PT15M"), Ok(Some(Duration::from_secs(900))));
        assert_eq!(p("PT1H30M"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(p("P1D"), Ok(Some(Duration::from_secs(86400))));
        assert_eq!(p("P1W"), Ok(Some(Duration::from_secs(7 * 86400))));
        assert_eq!(p("pt30s"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(p("0"), Ok(None));
        // pydantic's timedelta: months of 30 days, years of 365, fractions, clocks, seconds.
        assert_eq!(p("P1M"), Ok(Some(Duration::from_secs(30 * 86400))));
        assert_eq!(p("P1Y"), Ok(Some(Duration::from_secs(365 * 86400))));
        assert_eq!(
            p("P1Y2M3W4DT5H6M7S"),
            Ok(Some(Duration::from_secs(
                365 * 86400 + 60 * 86400 + 21 * 86400 + 4 * 86400 + 5 * 3600 + 6 * 60 + 7
            )))
        );
        assert_eq!(p("PT1.5H"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(p("PT0,5M"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(p("PT0S"), Ok(None));
        assert_eq!(p("00:00:00"), Ok(None));
        assert_eq!(p("01:30:00"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(p("0:00:01.5"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(
            p("2 days, 01:00:00"),
            Ok(Some(Duration::from_secs(2 * 86400 + 3600)))
        );
        assert_eq!(p("1 day, 0:00:30"), Ok(Some(Duration::from_secs(86430))));
        assert_eq!(p("900"), Ok(Some(Duration::from_secs(900))));
        assert_eq!(p("1.5"), Ok(Some(Duration::from_millis(1500))));
        for bad in [
            "PT", "P", "15m", "", "P1DT", "PT1M1H", "P1D1D", "-PT1M", "P-1D", "-5", "01:60:00",
            "1:2", "abc", "NaN", "inf", "P1.5.5D",
        ] {
            assert!(p(bad).is_err(), "{bad} should be refused");
        }
    }

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
        let sources = Sources {
            env,
            yml: HashMap::new(),
            yml_mappings: Vec::new(),
        };
        let read = read_esm(&mut Reader::new(&sources))
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
    fn placeholders() {
        for p in [
            "ChangeMe",
            "changeme",
            "ChangeMe-opencti-token",
            "ChangeMe_X",
            " ChangeMe ",
        ] {
            assert!(is_placeholder(p), "{p}");
        }
        for v in ["ChangeMeNot", "change", "my-ChangeMe", ""] {
            assert!(!is_placeholder(v), "{v}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["true", "True", "YES", "yes"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["false", "False", "NO", "no"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn custom_headers() {
        assert_eq!(
            parse_custom_headers("X-A:1; X-B : two:parts;"),
            Ok(vec![
                ("X-A".into(), "1".into()),
                ("X-B".into(), "two:parts".into())
            ])
        );
        assert!(parse_custom_headers("novalue").is_err());
    }

    #[test]
    fn every_setting_read_is_listed_and_every_listed_one_is_read() {
        let sources = Sources::default();
        let mut r = Reader::new(&sources);
        read_sections(&mut r);
        let read: std::collections::BTreeSet<&str> = r.read.iter().copied().collect();
        let listed: std::collections::BTreeSet<&str> = DEFS.iter().map(|d| d.env).collect();
        assert_eq!(listed.len(), DEFS.len(), "a setting is listed twice");
        assert_eq!(read, listed);
    }

    #[test]
    fn alias_yml_keys() {
        assert_eq!(
            yml_key_for_alias(
                ARCSIGHT_INCIDENTS_API_BASE_URL.def(),
                "ARCSIGHT_INCIDENTS_URL"
            ),
            "arcsight_incidents.url"
        );
    }
}
