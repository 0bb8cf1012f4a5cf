//! The table of every setting: environment name, config.yml key, type, default, description.
//!
//! One table drives loading, validation, `config.yml.sample`, the docker-compose file and the
//! `__metadata__` JSON schema, so that documentation can never drift from what the code reads.

/// The type of a setting's value, and what a valid value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// Free text that must never be shown.
    Secret,
    /// An absolute http(s) URL.
    Url,
    /// `true/false/yes/no`, any case.
    Bool,
    /// An integer within `[min, max]`.
    Int { min: i64, max: i64 },
    /// A UUID.
    Uuid,
    /// An ISO-8601 duration (`PT15M`, `P1D`), or `0`.
    Duration,
    /// One of a fixed list of words.
    Enum(&'static [&'static str]),
    /// A filesystem path.
    Path,
    /// A comma-separated list.
    List,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// The environment variable.
    pub env: &'static str,
    /// Older or alternative environment names, read when `env` is unset.
    pub env_aliases: &'static [&'static str],
    /// `section.key` in config.yml.
    pub yml: &'static str,
    pub kind: Kind,
    /// The default, as text; `None` when the setting is optional or required.
    pub default: Option<&'static str>,
    pub required: bool,
    pub description: &'static str,
}

const fn def(
    env: &'static str,
    yml: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    required: bool,
    description: &'static str,
) -> Def {
    Def {
        env,
        env_aliases: &[],
        yml,
        kind,
        default,
        required,
        description,
    }
}

pub const TLP_LEVELS: &[&str] = &["clear", "white", "green", "amber", "amber+strict", "red"];
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "warning", "error"];
pub const QUEUE_PROTOCOLS: &[&str] = &["amqp", "api"];
pub const API_DIALECTS: &[&str] = &["auto", "prefixed", "plain"];

const PORT: Kind = Kind::Int { min: 1, max: 65535 };
const POSITIVE: Kind = Kind::Int {
    min: 1,
    max: i32::MAX as i64,
};

/// Every setting, grouped by config.yml section.
pub const DEFS: &[Def] = &[
    // --- opencti
    def(
        "OPENCTI_URL",
        "opencti.url",
        Kind::Url,
        None,
        true,
        "URL of the OpenCTI platform. May be left unset only with CONNECTOR_SEND_TO_QUEUE=false (offline preview into a directory).",
    ),
    def(
        "OPENCTI_TOKEN",
        "opencti.token",
        Kind::Secret,
        None,
        true,
        "API token of the connector's OpenCTI user (required whenever OPENCTI_URL is set).",
    ),
    def(
        "OPENCTI_SSL_VERIFY",
        "opencti.ssl_verify",
        Kind::Bool,
        Some("true"),
        false,
        "Verify the platform's TLS certificate.",
    ),
    def(
        "OPENCTI_JSON_LOGGING",
        "opencti.json_logging",
        Kind::Bool,
        Some("true"),
        false,
        "Write logs as JSON lines (false: human-readable text).",
    ),
    def(
        "OPENCTI_CUSTOM_HEADERS",
        "opencti.custom_headers",
        Kind::Text,
        None,
        false,
        "Extra HTTP headers for the platform, as `name1:value1;name2:value2`.",
    ),
    def(
        "OPENCTI_MAX_RESPONSE_MB",
        "opencti.max_response_mb",
        Kind::Int { min: 1, max: 4096 },
        Some("8"),
        false,
        "Largest answer accepted from the platform, in MiB; a larger one fails that request (it is never read whole).",
    ),
    def(
        "OPENCTI_UNREACHABLE_TIMEOUT",
        "opencti.unreachable_timeout",
        Kind::Int { min: 1, max: 86400 },
        Some("300"),
        false,
        "When running once (CONNECTOR_RUN_AND_TERMINATE or a zero period): how long to wait, in seconds, for an unreachable platform before exiting with status 1.",
    ),
    // --- connector
    def(
        "CONNECTOR_ID",
        "connector.id",
        Kind::Uuid,
        None,
        true,
        "A unique UUIDv4 identifying this connector instance.",
    ),
    def(
        "CONNECTOR_NAME",
        "connector.name",
        Kind::Text,
        Some("ArcSight Incidents"),
        false,
        "Name of the connector in the platform.",
    ),
    def(
        "CONNECTOR_SCOPE",
        "connector.scope",
        Kind::List,
        None,
        false,
        "Comma-separated scope of the connector.",
    ),
    def(
        "CONNECTOR_LOG_LEVEL",
        "connector.log_level",
        Kind::Enum(LOG_LEVELS),
        Some("error"),
        false,
        "Log level: debug, info, warn, warning or error.",
    ),
    def(
        "CONNECTOR_DURATION_PERIOD",
        "connector.duration_period",
        Kind::Duration,
        Some("PT15M"),
        false,
        "Time between the end of a run and the start of the next, ISO-8601 (`PT15M`, `PT1H30M`, `P1D`); `0` runs once.",
    ),
    def(
        "CONNECTOR_QUEUE_THRESHOLD",
        "connector.queue_threshold",
        Kind::Int {
            min: 1,
            max: i32::MAX as i64,
        },
        Some("500"),
        false,
        "Skip a run while the connector's queue in the platform holds more than this many MB.",
    ),
    def(
        "CONNECTOR_RUN_AND_TERMINATE",
        "connector.run_and_terminate",
        Kind::Bool,
        Some("false"),
        false,
        "Run once, then exit.",
    ),
    def(
        "CONNECTOR_QUEUE_PROTOCOL",
        "connector.queue_protocol",
        Kind::Enum(QUEUE_PROTOCOLS),
        Some("amqp"),
        false,
        "How bundles reach the platform: `amqp` (RabbitMQ) or `api` (GraphQL stixBundlePush).",
    ),
    def(
        "CONNECTOR_SEND_TO_QUEUE",
        "connector.send_to_queue",
        Kind::Bool,
        Some("true"),
        false,
        "Send bundles to the platform.",
    ),
    def(
        "CONNECTOR_SEND_TO_DIRECTORY",
        "connector.send_to_directory",
        Kind::Bool,
        Some("false"),
        false,
        "Also write each bundle to a directory.",
    ),
    def(
        "CONNECTOR_SEND_TO_DIRECTORY_PATH",
        "connector.send_to_directory_path",
        Kind::Path,
        None,
        false,
        "Directory for bundle files (required when CONNECTOR_SEND_TO_DIRECTORY is true).",
    ),
    def(
        "CONNECTOR_SEND_TO_DIRECTORY_RETENTION",
        "connector.send_to_directory_retention",
        Kind::Int { min: 0, max: 36500 },
        Some("7"),
        false,
        "Days to keep bundle files; 0 keeps them forever.",
    ),
    def(
        "CONNECTOR_EXPOSE_METRICS",
        "connector.expose_metrics",
        Kind::Bool,
        Some("false"),
        false,
        "Serve Prometheus metrics, /healthz and /readyz.",
    ),
    def(
        "CONNECTOR_METRICS_HOST",
        "connector.metrics_host",
        Kind::Text,
        Some("0.0.0.0"),
        false,
        "IP address the metrics server listens on (as pycti: all interfaces by default).",
    ),
    def(
        "CONNECTOR_METRICS_PORT",
        "connector.metrics_port",
        PORT,
        Some("9095"),
        false,
        "Port of the metrics server.",
    ),
    // --- arcsight_incidents
    Def {
        env: "ARCSIGHT_INCIDENTS_API_BASE_URL",
        env_aliases: &["ARCSIGHT_INCIDENTS_URL"],
        yml: "arcsight_incidents.api_base_url",
        kind: Kind::Url,
        default: None,
        required: true,
        description: "Base URL of the ArcSight ESM Manager, e.g. `https://esm.example.com:8443`.",
    },
    def(
        "ARCSIGHT_INCIDENTS_USERNAME",
        "arcsight_incidents.username",
        Kind::Text,
        None,
        true,
        "ESM user the connector logs in as.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_PASSWORD",
        "arcsight_incidents.password",
        Kind::Secret,
        None,
        true,
        "Password of that ESM user.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_MAX_CASES",
        "arcsight_incidents.max_cases",
        POSITIVE,
        Some("200"),
        false,
        "At most this many changed cases are sent per run; the rest follow in later runs.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_TLP_LEVEL",
        "arcsight_incidents.tlp_level",
        Kind::Enum(TLP_LEVELS),
        Some("amber"),
        false,
        "TLP marking of imported objects: clear, white, green, amber, amber+strict, red.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_SSL_VERIFY",
        "arcsight_incidents.ssl_verify",
        Kind::Bool,
        Some("true"),
        false,
        "Verify ESM's TLS certificate.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_CA_FILE",
        "arcsight_incidents.ca_file",
        Kind::Path,
        None,
        false,
        "PEM bundle of extra CA certificates to trust for ESM.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_IMPORT_OBSERVABLES",
        "arcsight_incidents.import_observables",
        Kind::Bool,
        Some("true"),
        false,
        "Import events' IP addresses, host names and user names as observables.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_API_DIALECT",
        "arcsight_incidents.api_dialect",
        Kind::Enum(API_DIALECTS),
        Some("auto"),
        false,
        "ESM JSON dialect: `prefixed` (ESM <= 7.8), `plain` (7.9+), or `auto` (detected at login).",
    ),
    def(
        "ARCSIGHT_INCIDENTS_MAX_ATTEMPTS",
        "arcsight_incidents.max_attempts",
        Kind::Int { min: 1, max: 100 },
        Some("4"),
        false,
        "Attempts per ESM request on transient failures.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_RETRY_MIN_WAIT",
        "arcsight_incidents.retry_min_wait",
        Kind::Int { min: 0, max: 3600 },
        Some("1"),
        false,
        "Seconds before the first retry (doubles each time, with jitter).",
    ),
    def(
        "ARCSIGHT_INCIDENTS_RETRY_MAX_WAIT",
        "arcsight_incidents.retry_max_wait",
        Kind::Int { min: 0, max: 3600 },
        Some("30"),
        false,
        "Longest wait between retries, in seconds (also caps Retry-After).",
    ),
    def(
        "ARCSIGHT_INCIDENTS_REQUEST_TIMEOUT",
        "arcsight_incidents.request_timeout",
        Kind::Int { min: 1, max: 3600 },
        Some("30"),
        false,
        "Timeout of one ESM request, in seconds.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB",
        "arcsight_incidents.max_response_mb",
        Kind::Int { min: 1, max: 4096 },
        Some("64"),
        false,
        "Largest ESM answer accepted, in MiB; a larger one fails that request (it is never read whole) and a batch is then fetched one by one.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_CONCURRENCY",
        "arcsight_incidents.concurrency",
        Kind::Int { min: 1, max: 64 },
        Some("4"),
        false,
        "ESM requests in flight at once.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_CASE_BATCH_SIZE",
        "arcsight_incidents.case_batch_size",
        Kind::Int { min: 1, max: 10000 },
        Some("100"),
        false,
        "Cases fetched per getResourcesByIds call.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_EVENT_BATCH_SIZE",
        "arcsight_incidents.event_batch_size",
        Kind::Int { min: 1, max: 10000 },
        Some("200"),
        false,
        "Events fetched per getSecurityEvents call.",
    ),
    def(
        "ARCSIGHT_INCIDENTS_PAGE_SIZE",
        "arcsight_incidents.page_size",
        Kind::Int { min: 1, max: 10000 },
        Some("100"),
        false,
        "Cases per delivered bundle; the state advances after each page.",
    ),
    // --- mq (override what registerConnector returns)
    def(
        "MQ_HOST",
        "mq.host",
        Kind::Text,
        None,
        false,
        "RabbitMQ host (overrides the platform's answer).",
    ),
    def("MQ_PORT", "mq.port", PORT, None, false, "RabbitMQ port."),
    def(
        "MQ_VHOST",
        "mq.vhost",
        Kind::Text,
        None,
        false,
        "RabbitMQ virtual host.",
    ),
    def(
        "MQ_USE_SSL",
        "mq.use_ssl",
        Kind::Bool,
        None,
        false,
        "Connect to RabbitMQ over TLS.",
    ),
    def(
        "MQ_USER",
        "mq.user",
        Kind::Text,
        None,
        false,
        "RabbitMQ user.",
    ),
    def(
        "MQ_PASS",
        "mq.pass",
        Kind::Secret,
        None,
        false,
        "RabbitMQ password.",
    ),
];

/// The definition of `env`, if it is one of ours.
pub fn find(env: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.env == env)
}
