//! The settings every OpenCTI connector has, as pycti names them: the platform (`OPENCTI_*`),
//! the connector's identity, its log level, its metrics server and its health, with the
//! section readers both connectors read them with.
//!
//! A connector lists these rows in its table beside its own, in its config.yml order, adjusted
//! where it differs: [`Key::described`] where its text must say more (the import's
//! `OPENCTI_URL` may be unset when it sends nothing to the platform),
//! [`Key::with_default`] for [`CONNECTOR_NAME`]. The readers below read each row as the
//! table lists it (see the module [`settings`](super)).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use opencti_client::{DEFAULT_TIMEOUT, OpenCtiConfig, header_names};
use secrecy::SecretString;
use url::Url;

use super::compat::Difference;
use super::kinds;
use super::{Key, Reader, choice, int, key, parse_bool, parse_custom_headers};
use crate::telemetry::LogLevel;

/// `CONNECTOR_LOG_LEVEL`'s values.
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "warning", "error"];

const PORT: (i64, i64) = (1, 65535);

// --- opencti
/// Required; the import adjusts the text (it may run without a platform).
pub const OPENCTI_URL: Key<kinds::Url> = key(
    "OPENCTI_URL",
    "opencti.url",
    None,
    true,
    "URL of the OpenCTI platform.",
);
pub const OPENCTI_TOKEN: Key<kinds::Secret> = key(
    "OPENCTI_TOKEN",
    "opencti.token",
    None,
    true,
    "API token of the connector's OpenCTI user.",
);
pub const OPENCTI_SSL_VERIFY: Key<kinds::Bool> = key(
    "OPENCTI_SSL_VERIFY",
    "opencti.ssl_verify",
    Some("true"),
    false,
    "Verify the platform's TLS certificate (against the bundled public roots, the OS store, SSL_CERT_FILE, REQUESTS_CA_BUNDLE and OPENCTI_CA_FILE). As with pycti, the path of a PEM CA bundle also means true, trusting that bundle.",
);
pub const OPENCTI_CA_FILE: Key<kinds::Path> = key(
    "OPENCTI_CA_FILE",
    "opencti.ca_file",
    None,
    false,
    "PEM bundle of extra CA certificates to trust for the platform (a private CA).",
);
pub const OPENCTI_JSON_LOGGING: Key<kinds::Bool> = key(
    "OPENCTI_JSON_LOGGING",
    "opencti.json_logging",
    Some("true"),
    false,
    "Write logs as JSON lines (false: human-readable text).",
);
pub const OPENCTI_CUSTOM_HEADERS: Key<kinds::Text> = key(
    "OPENCTI_CUSTOM_HEADERS",
    "opencti.custom_headers",
    None,
    false,
    "Extra HTTP headers for the platform, as `name1:value1;name2:value2`.",
);
pub const OPENCTI_MAX_RESPONSE_MB: Key<kinds::Int> = int(
    "OPENCTI_MAX_RESPONSE_MB",
    "opencti.max_response_mb",
    (1, 4096),
    Some("8"),
    false,
    "Largest answer accepted from the platform, in MiB; a larger one fails that request (it is never read whole).",
);

// --- connector
pub const CONNECTOR_ID: Key<kinds::Text> = key(
    "CONNECTOR_ID",
    "connector.id",
    None,
    true,
    "A unique id of this connector instance, a UUIDv4 preferably (any other string is accepted, with a warning, as pycti does).",
);
/// Each connector lists it with its own default (`CONNECTOR_NAME.with_default("...")`);
/// unadjusted, it is required.
pub const CONNECTOR_NAME: Key<kinds::Text> = key(
    "CONNECTOR_NAME",
    "connector.name",
    None,
    true,
    "Name of the connector in the platform.",
);
pub const CONNECTOR_SCOPE: Key<kinds::List> = key(
    "CONNECTOR_SCOPE",
    "connector.scope",
    None,
    false,
    "Scope of the connector: a YAML list, or a comma-separated string.",
);
pub const CONNECTOR_LOG_LEVEL: Key<kinds::Enum> = choice(
    "CONNECTOR_LOG_LEVEL",
    "connector.log_level",
    LOG_LEVELS,
    Some("error"),
    false,
    "Log level: debug, info, warn, warning or error.",
);
// 30 minutes: every step against a peer is bounded well below it, so only a connector stuck
// beyond its own limits stays silent that long. Each connector says what progress is for it
// (`described`).
pub const CONNECTOR_HEALTH_STALL_TIMEOUT: Key<kinds::Duration> = key(
    "CONNECTOR_HEALTH_STALL_TIMEOUT",
    "connector.health_stall_timeout",
    Some("PT30M"),
    false,
    "`/healthz` answers 503 when the connector has made no progress for this long: ISO-8601 (`PT30M`), `HH:MM:SS`, or seconds; zero: off.",
);
pub const CONNECTOR_EXPOSE_METRICS: Key<kinds::Bool> = key(
    "CONNECTOR_EXPOSE_METRICS",
    "connector.expose_metrics",
    Some("false"),
    false,
    "Serve Prometheus metrics, /healthz and /readyz.",
);
pub const CONNECTOR_METRICS_HOST: Key<kinds::Text> = key(
    "CONNECTOR_METRICS_HOST",
    "connector.metrics_host",
    Some("0.0.0.0"),
    false,
    "IP address the metrics server listens on (as pycti: all interfaces by default).",
);
pub const CONNECTOR_METRICS_PORT: Key<kinds::Int> = int(
    "CONNECTOR_METRICS_PORT",
    "connector.metrics_port",
    PORT,
    Some("9095"),
    false,
    "Port of the metrics server.",
);
pub const CONNECTOR_METRICS_NAMESPACE: Key<kinds::Text> = key(
    "CONNECTOR_METRICS_NAMESPACE",
    "connector.metrics_namespace",
    None,
    false,
    "Prefix of every metric name (Prometheus namespace), as in pycti.",
);
pub const CONNECTOR_METRICS_SUBSYSTEM: Key<kinds::Text> = key(
    "CONNECTOR_METRICS_SUBSYSTEM",
    "connector.metrics_subsystem",
    None,
    false,
    "Second prefix of every metric name (Prometheus subsystem), after the namespace, as in pycti.",
);

/// The platform (`opencti.*`, as [`read_opencti`] reads it).
#[derive(Clone)]
pub struct OpenCtiSettings {
    /// `None` only when the connector may run without a platform (the import with
    /// `CONNECTOR_SEND_TO_QUEUE=false`) and none is configured.
    pub url: Option<Url>,
    /// Set whenever `url` is.
    pub token: Option<SecretString>,
    pub ssl_verify: bool,
    /// PEM bundles trusted for the platform besides the bundled roots and the OS store:
    /// `OPENCTI_CA_FILE`, a path given as `OPENCTI_SSL_VERIFY` (pycti passes it to requests as
    /// `verify=`), and `REQUESTS_CA_BUNDLE` (which requests, under pycti, reads).
    pub ca_files: Vec<PathBuf>,
    pub json_logging: bool,
    /// `OPENCTI_CUSTOM_HEADERS`, parsed.
    pub custom_headers: Vec<(String, String)>,
    /// `OPENCTI_MAX_RESPONSE_MB`.
    pub max_response_mb: u64,
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
            max_response_bytes: self.max_response_mb.saturating_mul(peer_http::http::MIB),
        })
    }
}

/// `opencti.*` but what a connector adds to it. `platform_optional`: the connector may run
/// without a platform (the import sending nothing to it), so `OPENCTI_URL` may be unset, and
/// `OPENCTI_TOKEN` then too; otherwise both are required as listed.
pub fn read_opencti(r: &mut Reader<'_>, platform_optional: bool) -> Option<OpenCtiSettings> {
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
            r.sources().env_var("REQUESTS_CA_BUNDLE").map(PathBuf::from),
        ),
    ] {
        let Some(path) = path else { continue };
        if path.is_file() {
            ca_files.push(path);
        } else {
            r.problem(name, format!("{} is not a readable file", path.display()));
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
    Some(OpenCtiSettings {
        url,
        token,
        ssl_verify: ssl_verify?,
        ca_files,
        json_logging: json_logging?,
        custom_headers: custom_headers?,
        max_response_mb: max_response_mb? as u64,
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

/// Who the connector is in the platform: `CONNECTOR_ID`, `CONNECTOR_NAME`, `CONNECTOR_SCOPE`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Any string, as pycti takes it; a UUID is advised ([`Identity::advice`]).
    pub id: String,
    pub name: String,
    pub scope: Vec<String>,
}

impl Identity {
    /// Advice that does not stop the connector, logged as a warning at start-up.
    pub fn advice(&self) -> Option<String> {
        id_advice(&self.id)
    }
}

/// The advice on a `CONNECTOR_ID` that is not a UUID (pycti takes any string).
pub fn id_advice(id: &str) -> Option<String> {
    uuid::Uuid::parse_str(id).is_err().then(|| {
        "CONNECTOR_ID is not a UUID: it works (pycti takes any string), but a UUIDv4 is \
         what the platform's connector manager and other tools expect"
            .to_owned()
    })
}

/// `CONNECTOR_ID`, `CONNECTOR_NAME`, `CONNECTOR_SCOPE`, in that order.
pub fn read_identity(r: &mut Reader<'_>) -> Option<Identity> {
    let id = r.string(&CONNECTOR_ID);
    let name = r.string(&CONNECTOR_NAME);
    let scope = r.list(&CONNECTOR_SCOPE);
    Some(Identity {
        id: id?,
        name: name?,
        scope,
    })
}

/// `CONNECTOR_LOG_LEVEL`.
pub fn read_log_level(r: &mut Reader<'_>) -> Option<LogLevel> {
    r.choice(&CONNECTOR_LOG_LEVEL).map(|l| match l {
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" | "warning" => LogLevel::Warn,
        _ => LogLevel::Error,
    })
}

/// `CONNECTOR_HEALTH_STALL_TIMEOUT`: `/healthz` turns unhealthy after this long without
/// progress (`None`: never).
pub fn read_health_stall_timeout(r: &mut Reader<'_>) -> Option<Option<Duration>> {
    r.period(&CONNECTOR_HEALTH_STALL_TIMEOUT)
}

/// The metrics server: `CONNECTOR_EXPOSE_METRICS`, `CONNECTOR_METRICS_*`.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub expose: bool,
    pub host: std::net::IpAddr,
    pub port: u16,
    /// `CONNECTOR_METRICS_NAMESPACE` and `_SUBSYSTEM`: the prefix of every metric name, as
    /// pycti builds it (`namespace_subsystem_name`); `None` when both are unset.
    pub prefix: Option<String>,
}

/// `CONNECTOR_EXPOSE_METRICS`, `_METRICS_HOST`, `_PORT`, `_NAMESPACE`, `_SUBSYSTEM`, in that
/// order.
pub fn read_metrics(r: &mut Reader<'_>) -> Option<MetricsSettings> {
    let expose = r.bool(&CONNECTOR_EXPOSE_METRICS);
    let host = r.ip(&CONNECTOR_METRICS_HOST);
    let port = r.int(&CONNECTOR_METRICS_PORT);
    let prefix = metrics_prefix(
        r.string(&CONNECTOR_METRICS_NAMESPACE),
        r.string(&CONNECTOR_METRICS_SUBSYSTEM),
    );
    Some(MetricsSettings {
        expose: expose?,
        host: host?,
        port: port? as u16,
        prefix,
    })
}

/// `namespace_subsystem`, as prometheus_client (Python) joins them; either may be unset.
fn metrics_prefix(namespace: Option<String>, subsystem: Option<String>) -> Option<String> {
    let parts: Vec<String> = [namespace, subsystem].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("_"))
}

// --- how these settings are read compared with pycti (the rows of a connector's differences
// table, `compat`); each connector lists them among its own and tests each accepted value.

/// `CONNECTOR_ID`.
pub const CONNECTOR_ID_DIFFERENCE: Difference = Difference {
    setting: "CONNECTOR_ID",
    python: "required; any string",
    ours: "any string; a warning at start-up when it is not a UUID",
    why: "the platform's connector manager and other tools expect a UUIDv4",
    accepted: &[
        (
            "2b7a3b4e-8f47-4d34-9a2e-1c7b3c2f1a10",
            "2b7a3b4e-8f47-4d34-9a2e-1c7b3c2f1a10",
        ),
        ("arcsight-prod", "arcsight-prod"),
    ],
};

/// `CONNECTOR_SCOPE`.
pub const CONNECTOR_SCOPE_DIFFERENCE: Difference = Difference {
    setting: "CONNECTOR_SCOPE",
    python: "optional; a list: YAML list or comma-separated string",
    ours: "the same",
    why: "",
    accepted: &[("arcsight", "[arcsight]"), ("a, b", "[a, b]")],
};

/// `CONNECTOR_METRICS_NAMESPACE` and `_SUBSYSTEM`.
pub const CONNECTOR_METRICS_PREFIX_DIFFERENCE: Difference = Difference {
    setting: "CONNECTOR_METRICS_NAMESPACE, CONNECTOR_METRICS_SUBSYSTEM",
    python: "empty; prefixes of the metric names, `namespace_subsystem_name`",
    ours: "the same",
    why: "",
    accepted: &[("opencti", "opencti_")],
};

/// `OPENCTI_SSL_VERIFY`.
pub const OPENCTI_SSL_VERIFY_DIFFERENCE: Difference = Difference {
    setting: "OPENCTI_SSL_VERIFY",
    python: "pycti: `false`; a boolean, or a CA bundle's path (passed to requests as `verify=`); requests also reads REQUESTS_CA_BUNDLE",
    ours: "`true`; a boolean, or a CA bundle's path; trusts the bundled public roots, the OS store (or SSL_CERT_FILE), REQUESTS_CA_BUNDLE and OPENCTI_CA_FILE",
    why: "an unverified connection gives the platform token to whoever sits in the path",
    accepted: &[("true", "verify"), ("false", "no verification")],
};

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::settings::{Def, Sources, load};

    /// A connector's table: the shared rows, `CONNECTOR_NAME` adjusted.
    const ADJUSTED: &[Def] = &[
        *OPENCTI_URL.def(),
        *OPENCTI_TOKEN.def(),
        *OPENCTI_SSL_VERIFY.def(),
        *OPENCTI_CA_FILE.def(),
        *OPENCTI_JSON_LOGGING.def(),
        *OPENCTI_CUSTOM_HEADERS.def(),
        *OPENCTI_MAX_RESPONSE_MB.def(),
        *CONNECTOR_ID.def(),
        *CONNECTOR_NAME.with_default("Stream Test").def(),
        *CONNECTOR_SCOPE.def(),
        *CONNECTOR_LOG_LEVEL.def(),
        *CONNECTOR_HEALTH_STALL_TIMEOUT.def(),
        *CONNECTOR_EXPOSE_METRICS.def(),
        *CONNECTOR_METRICS_HOST.def(),
        *CONNECTOR_METRICS_PORT.def(),
        *CONNECTOR_METRICS_NAMESPACE.def(),
        *CONNECTOR_METRICS_SUBSYSTEM.def(),
    ];
    /// The same rows, `CONNECTOR_NAME` as shared (required).
    const UNADJUSTED: &[Def] = &[*CONNECTOR_ID.def(), *CONNECTOR_NAME.def()];

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    type All = (
        OpenCtiSettings,
        Identity,
        LogLevel,
        Option<Duration>,
        MetricsSettings,
    );

    fn read_all(
        defs: &'static [Def],
        pairs: &[(&str, &str)],
        platform_optional: bool,
    ) -> Result<All, Vec<String>> {
        let sources = Sources::new(defs, env(pairs), None).unwrap();
        load(&sources, |r| {
            let opencti = read_opencti(r, platform_optional);
            let identity = read_identity(r);
            let level = read_log_level(r);
            let stall = read_health_stall_timeout(r);
            let metrics = read_metrics(r);
            Some((opencti?, identity?, level?, stall?, metrics?))
        })
        .map_err(|e| e.lines())
    }

    const PLATFORM: &[(&str, &str)] = &[
        ("OPENCTI_URL", "https://opencti.example"),
        ("OPENCTI_TOKEN", "token-1234"),
        ("CONNECTOR_ID", "c1"),
    ];

    #[test]
    fn the_readers_read_each_row_as_the_connector_adjusted_it() {
        let (opencti, identity, level, stall, metrics) =
            read_all(ADJUSTED, PLATFORM, false).unwrap();
        assert_eq!(identity.name, "Stream Test");
        assert_eq!(identity.id, "c1");
        assert!(identity.scope.is_empty());
        assert_eq!(level, LogLevel::Error);
        assert_eq!(stall, Some(Duration::from_secs(30 * 60)));
        assert!(opencti.ssl_verify && opencti.json_logging);
        assert_eq!(opencti.max_response_mb, 8);
        let config = opencti.client_config().unwrap();
        assert_eq!(config.max_response_bytes, 8 * 1024 * 1024);
        assert!(!metrics.expose);
        assert_eq!(metrics.port, 9095);
        assert_eq!(metrics.host.to_string(), "0.0.0.0");
        assert_eq!(metrics.prefix, None);

        let sources = Sources::new(UNADJUSTED, env(&[("CONNECTOR_ID", "c1")]), None).unwrap();
        let problems = load(&sources, read_identity).unwrap_err().lines();
        assert_eq!(problems, ["CONNECTOR_NAME: is required but not set"]);
    }

    #[test]
    fn the_platform_is_required_unless_the_connector_says_it_may_be_left_out() {
        let bare = [("CONNECTOR_ID", "c1")];
        let problems = read_all(ADJUSTED, &bare, false).unwrap_err();
        assert_eq!(
            problems,
            [
                "OPENCTI_URL: is required but not set",
                "OPENCTI_TOKEN: is required but not set"
            ]
        );
        let (opencti, ..) = read_all(ADJUSTED, &bare, true).unwrap();
        assert!(opencti.url.is_none() && opencti.client_config().is_none());
        // A platform named needs its token, even where it may be left out.
        let url_only = [("CONNECTOR_ID", "c1"), ("OPENCTI_URL", "https://o.example")];
        let problems = read_all(ADJUSTED, &url_only, true).unwrap_err();
        assert_eq!(problems, ["OPENCTI_TOKEN: is required but not set"]);
    }

    #[test]
    fn metric_names_are_prefixed_as_pycti_joins_namespace_and_subsystem() {
        let with = |pairs: &[(&str, &str)]| {
            let all: Vec<(&str, &str)> = PLATFORM.iter().chain(pairs).copied().collect();
            read_all(ADJUSTED, &all, false).unwrap().4.prefix
        };
        assert_eq!(
            with(&[("CONNECTOR_METRICS_NAMESPACE", "ns")]),
            Some("ns".into())
        );
        assert_eq!(
            with(&[
                ("CONNECTOR_METRICS_NAMESPACE", "ns"),
                ("CONNECTOR_METRICS_SUBSYSTEM", "sub")
            ]),
            Some("ns_sub".into())
        );
        assert_eq!(
            with(&[("CONNECTOR_METRICS_SUBSYSTEM", "sub")]),
            Some("sub".into())
        );
    }

    #[test]
    fn an_id_that_is_not_a_uuid_gets_advice() {
        assert!(id_advice("2b7a3b4e-8f47-4d34-9a2e-1c7b3c2f1a10").is_none());
        assert!(id_advice("arcsight-prod").is_some());
    }
}
