//! Settings: environment variables and config.yml, typed and validated at start-up, over a
//! table of definitions each connector passes in (`&'static [Def]`, written with [`key`],
//! [`int`] and [`choice`]).
//!
//! The environment wins over config.yml key by key; an empty value counts as unset. Every
//! problem is collected, so an operator fixes all of them in one go, and no message ever shows
//! a secret's value. A connector reads its sections with a [`Reader`] inside [`load`].
//!
//! The settings every OpenCTI connector has (`OPENCTI_*`, the connector's identity, log level,
//! metrics and health) are [`common`]'s rows and section readers: a connector lists those rows
//! in its table beside its own, adjusted where it differs ([`Key::described`],
//! [`Key::with_default`]). A key names a setting and its kind; what the setting is (default,
//! whether required, aliases) is the row of that name in the table the sources were built
//! with, so the shared readers read a row as the connector adjusted it.

pub mod common;
pub mod compat;
mod key;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

pub use key::{Def, Key, Kind, Simple, choice, int, key, kinds};

/// One invalid or missing setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable's name.
    pub name: &'static str,
    pub message: String,
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

/// Where raw values come from: environment first, then config.yml, then defaults; read by
/// the connector's table of definitions.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The connector's settings: config.yml is read by this list, and secrets hidden by it.
    defs: &'static [Def],
    env: HashMap<String, String>,
    yml: HashMap<String, String>,
    /// config.yml keys whose value is a mapping where text was expected.
    yml_mappings: Vec<String>,
}

impl Sources {
    /// The process environment and, when it exists, the config file.
    pub fn from_process(
        defs: &'static [Def],
        config_file: Option<&Path>,
    ) -> Result<Sources, SettingsError> {
        // `vars()` panics on a non-UTF-8 variable anywhere in the environment, even one that is
        // not ours: skip foreign names, and read a non-UTF-8 value lossily so that its
        // validation names the variable instead of the process dying.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        let (yml, yml_mappings) = match config_file {
            Some(p) => read_yml(p, defs)?,
            None => Default::default(),
        };
        Ok(Sources {
            defs,
            env,
            yml,
            yml_mappings,
        })
    }

    /// Explicit sources, for tests and tools: `env` as the environment, `yml` as config.yml
    /// text.
    pub fn new(
        defs: &'static [Def],
        env: HashMap<String, String>,
        yml_text: Option<&str>,
    ) -> Result<Sources, SettingsError> {
        let (yml, yml_mappings) = match yml_text {
            Some(text) => parse_yml(text, Path::new("config.yml"), defs)?,
            None => Default::default(),
        };
        Ok(Sources {
            defs,
            env,
            yml,
            yml_mappings,
        })
    }

    /// An environment variable that is not a setting of ours but changes what we do (as
    /// `REQUESTS_CA_BUNDLE` does); `None` when unset or empty.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The table's row named as `def` (the connector's, possibly adjusted from a shared
    /// row); `def` itself when the table does not list it.
    fn row<'k>(&self, def: &'k Def) -> &'k Def {
        match self.defs.iter().find(|d| d.env == def.env) {
            Some(row) => {
                // Adjusting a row never changes its kind: a key of another kind under the
                // same name would be a table error.
                debug_assert_eq!(
                    row.kind, def.kind,
                    "{} is listed with another kind",
                    def.env
                );
                row
            }
            None => def,
        }
    }

    /// The raw text of a setting, if set anywhere (empty counts as unset).
    pub fn raw(&self, def: &Def) -> Option<String> {
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
        for def in self.defs.iter().filter(|d| d.kind == Kind::Secret) {
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
                let def = self.defs.iter().find(|d| {
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
    let a_secret_is_missing = sources
        .defs
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
        let Some(def) = sources.defs.iter().find(|d| d.env == p.name) else {
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

fn read_yml(path: &Path, defs: &[Def]) -> Result<Yml, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
        path: path.to_owned(),
        message: e.kind().to_string(),
    })?;
    parse_yml(&text, path, defs)
}

/// Flattens config.yml into `section.key -> text`. Keys are read explicitly, never split on
/// `_`, so `duration_period` stays one key.
fn parse_yml(text: &str, path: &Path, defs: &[Def]) -> Result<Yml, SettingsError> {
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
    for def in defs {
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

/// Collects typed values and problems while a connector builds its settings. Each method
/// reads one kind of setting, so a key of another kind does not compile. A method returns
/// `None` when the value is missing or invalid, the problem then recorded.
pub struct Reader<'a> {
    sources: &'a Sources,
    problems: Vec<Problem>,
    /// Every setting looked up, in order: lets a test check that each one read is in the
    /// table (config.yml is read by that list) and that each one listed is read.
    read: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    pub fn new(sources: &'a Sources) -> Self {
        Reader {
            sources,
            problems: Vec::new(),
            read: Vec::new(),
        }
    }

    /// Where the values come from (for a variable outside the table, [`Sources::env_var`]).
    pub fn sources(&self) -> &'a Sources {
        self.sources
    }

    /// Every setting looked up so far, in order.
    pub fn names_read(&self) -> &[&'static str] {
        &self.read
    }

    /// The problems recorded so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Records a problem of a variable that is not a key of the table (as
    /// `REQUESTS_CA_BUNDLE`).
    pub fn problem(&mut self, name: &'static str, message: String) {
        self.problems.push(Problem { name, message });
    }

    /// The raw text, if set anywhere (empty counts as unset); no default, no check.
    pub fn raw<K>(&mut self, key: &Key<K>) -> Option<String> {
        self.read.push(key.def().env);
        self.sources.raw(self.sources.row(key.def()))
    }

    /// The trimmed value, or the default; records a problem when a required one is missing
    /// or still the placeholder of the compose file or config.yml.sample.
    pub fn text<K>(&mut self, key: &Key<K>) -> Option<String> {
        let def = self.sources.row(key.def());
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
    pub fn maybe_required<K, T>(
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

    /// Records a problem of `key`; `None`, for the reader that found it.
    pub fn fail<K, T>(&mut self, key: &Key<K>, message: String) -> Option<T> {
        self.problems.push(Problem {
            name: key.def().env,
            message,
        });
        None
    }

    pub fn string(&mut self, key: &Key<kinds::Text>) -> Option<String> {
        self.text(key)
    }

    pub fn secret(&mut self, key: &Key<kinds::Secret>) -> Option<SecretString> {
        // Secrets are not trimmed: a password may legitimately end with a space.
        match self.raw(key) {
            Some(v) if is_placeholder(&v) => self.fail(key, PLACEHOLDER_PROBLEM.into()),
            Some(v) => Some(SecretString::from(v)),
            None if self.sources.row(key.def()).required => {
                self.fail(key, "is required but not set".into())
            }
            None => None,
        }
    }

    pub fn url(&mut self, key: &Key<kinds::Url>) -> Option<Url> {
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

    pub fn ip(&mut self, key: &Key<kinds::Text>) -> Option<std::net::IpAddr> {
        let raw = self.text(key)?;
        match raw.parse() {
            Ok(ip) => Some(ip),
            Err(_) => self.fail(
                key,
                format!("{raw:?} is not an IP address (e.g. 0.0.0.0, 127.0.0.1, ::)"),
            ),
        }
    }

    pub fn bool(&mut self, key: &Key<kinds::Bool>) -> Option<bool> {
        let raw = self.text(key)?;
        match parse_bool(&raw) {
            Some(b) => Some(b),
            None => self.fail(
                key,
                format!("{raw:?} is not a boolean (true, false, yes, no)"),
            ),
        }
    }

    pub fn int(&mut self, key: &Key<kinds::Int>) -> Option<i64> {
        let raw = self.text(key)?;
        let (min, max) = key.range();
        match raw.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(n) if n < min => self.fail(key, format!("{n} is less than {min}")),
            Ok(n) => self.fail(key, format!("{n} is more than {max}")),
            Err(_) => self.fail(key, format!("{raw:?} is not a whole number")),
        }
    }

    pub fn choice(&mut self, key: &Key<kinds::Enum>) -> Option<&'static str> {
        let raw = self.text(key)?;
        let values = key.values();
        let lowered = raw.to_ascii_lowercase();
        match values.iter().find(|v| **v == lowered) {
            Some(v) => Some(v),
            None => self.fail(key, format!("{raw:?} is not one of {}", values.join(", "))),
        }
    }

    /// A decimal number, zero or more (pycti reads the queue threshold with `float()`).
    pub fn float(&mut self, key: &Key<kinds::Float>) -> Option<f64> {
        let raw = self.text(key)?;
        match raw.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Some(n),
            Ok(_) => self.fail(key, format!("{raw:?} is not a number of zero or more")),
            Err(_) => self.fail(key, format!("{raw:?} is not a number")),
        }
    }

    /// `Some(None)` for a zero duration (run once).
    pub fn period(&mut self, key: &Key<kinds::Duration>) -> Option<Option<Duration>> {
        let raw = self.text(key)?;
        match parse_period(&raw) {
            Ok(p) => Some(p),
            Err(e) => self.fail(key, e),
        }
    }

    pub fn path(&mut self, key: &Key<kinds::Path>) -> Option<PathBuf> {
        self.text(key).map(PathBuf::from)
    }

    /// The non-empty items; empty when unset.
    pub fn list(&mut self, key: &Key<kinds::List>) -> Vec<String> {
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
pub const PLACEHOLDER: &str = "ChangeMe";

const PLACEHOLDER_PROBLEM: &str =
    "is still the placeholder (ChangeMe...) of the compose file or config.yml.sample: set it";

/// Is `value` a placeholder left in ([`PLACEHOLDER`], alone or followed by `-` or `_`)?
pub fn is_placeholder(value: &str) -> bool {
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
pub fn parse_bool(s: &str) -> Option<bool> {
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
pub fn parse_period(s: &str) -> Result<Option<Duration>, String> {
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
pub fn parse_custom_headers(s: &str) -> Result<Vec<(String, String)>, String> {
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

/// Loads settings: `read` reads every section of the connector with a [`Reader`] (in
/// config.yml's order, the order problems are reported in), returning `None` when a section is
/// incomplete; config.yml keys holding a mapping are reported too. Every problem is returned at
/// once, secrets hidden.
pub fn load<T>(
    sources: &Sources,
    read: impl FnOnce(&mut Reader<'_>) -> Option<T>,
) -> Result<T, SettingsError> {
    let mut r = Reader::new(sources);
    let settings = read(&mut r);
    r.problems.extend(sources.mapping_problems());
    if !r.problems.is_empty() {
        hide_secret_values(&mut r.problems, sources);
        return Err(SettingsError::Invalid(r.problems));
    }
    // Each section is whole when nothing was reported: a `None` here would be a missing
    // problem report, which the connectors' tests guard against.
    settings.ok_or(SettingsError::Invalid(vec![]))
}

/// The config file to read: `explicit` (which must then exist), else the first of
/// `candidates` (the connector's manifest's) that exists, else none.
pub fn config_file(
    explicit: Option<&Path>,
    candidates: &[&str],
) -> Result<Option<PathBuf>, SettingsError> {
    match explicit {
        Some(p) if p.is_file() => Ok(Some(p.to_owned())),
        Some(p) => Err(SettingsError::File {
            path: p.to_owned(),
            message: "not found (CONNECTOR_CONFIG_FILE names a file that does not exist)".into(),
        }),
        None => Ok(candidates.iter().map(PathBuf::from).find(|p| p.is_file())),
    }
}

/// What only the file system can tell, checked at start-up rather than at the first write:
/// that this process's user can write `dir` (creating it if needed), the value of `setting`.
/// The probe file is `.<probe>-write-test-<pid>`.
pub fn check_writable_dir(
    dir: &Path,
    probe: &str,
    setting: &'static str,
) -> Result<(), SettingsError> {
    let probe = dir.join(format!(".{probe}-write-test-{}", std::process::id()));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe));
    result.map_err(|e| {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid().to_string())
            .unwrap_or_else(|_| "?".into());
        SettingsError::Invalid(vec![Problem {
            name: setting,
            message: format!(
                "{} is not writable by this process (uid {uid}): {}; give that user the \
                 directory (for a bind mount: chown {uid} on the host's directory)",
                dir.display(),
                e.kind()
            ),
        }])
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
    fn alias_yml_keys() {
        assert_eq!(
            yml_key_for_alias(
                key::<kinds::Url>(
                    "ARCSIGHT_INCIDENTS_API_BASE_URL",
                    "arcsight_incidents.api_base_url",
                    None,
                    true,
                    ""
                )
                .def(),
                "ARCSIGHT_INCIDENTS_URL"
            ),
            "arcsight_incidents.url"
        );
    }
}
