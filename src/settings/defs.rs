//! The table of every setting: environment name, config.yml key, type, default, description.
//!
//! One table drives loading, validation, `config.yml.sample`, the docker-compose file and the
//! `__metadata__` JSON schema, so that documentation can never drift from what the code reads.
//!
//! Each setting is a constant `Key` whose type parameter (one of `connector_runtime`'s
//! `settings::kinds`) says which reader applies: the settings loader names settings by these
//! constants, so a misspelt name or a boolean read as a number does not compile. `DEFS` lists
//! them all. The machinery is `connector_runtime::settings`; this file is only the table.
//! The settings every connector has (`OPENCTI_*`, identity, log level, metrics, health) are
//! the runtime's rows (`connector_runtime::settings::common`), listed here in their place and
//! adjusted where this connector says more.

use connector_runtime::settings::common;
use connector_runtime::settings::kinds::*;
use connector_runtime::settings::{Def, Key, choice, int, key};

pub(crate) const TLP_LEVELS: &[&str] = &["clear", "white", "green", "amber", "amber+strict", "red"];
pub(crate) const QUEUE_PROTOCOLS: &[&str] = &["amqp", "api"];
pub(crate) const API_DIALECTS: &[&str] = &["auto", "prefixed", "plain"];

const PORT: (i64, i64) = (1, 65535);
const POSITIVE: (i64, i64) = (1, i32::MAX as i64);

// --- opencti
// The platform may be left out when nothing is sent to it.
pub(crate) const OPENCTI_URL: Key<Url> = common::OPENCTI_URL.described(
    "URL of the OpenCTI platform. May be left unset only with CONNECTOR_SEND_TO_QUEUE=false (offline preview into a directory).",
);
pub(crate) const OPENCTI_TOKEN: Key<Secret> = common::OPENCTI_TOKEN
    .described("API token of the connector's OpenCTI user (required whenever OPENCTI_URL is set).");
pub(crate) const OPENCTI_UNREACHABLE_TIMEOUT: Key<Int> = int(
    "OPENCTI_UNREACHABLE_TIMEOUT",
    "opencti.unreachable_timeout",
    (1, 86400),
    Some("300"),
    false,
    "When running once (CONNECTOR_RUN_AND_TERMINATE or a zero period): how long to wait, in seconds, for an unreachable platform before exiting with status 1.",
);

// --- connector
pub(crate) const CONNECTOR_NAME: Key<Text> =
    common::CONNECTOR_NAME.with_default("ArcSight Incidents");
pub(crate) const CONNECTOR_DURATION_PERIOD: Key<Duration> = key(
    "CONNECTOR_DURATION_PERIOD",
    "connector.duration_period",
    Some("PT15M"),
    false,
    "Time between the end of a run and the start of the next: ISO-8601 (`PT15M`, `PT1.5H`, `P1D`, `P1W`, `P1M` = 30 days, `P1Y` = 365 days), `HH:MM:SS`, or seconds; zero (`PT0S`, `0`) runs once.",
);
pub(crate) const CONNECTOR_VERIFY_PERIOD: Key<Duration> = key(
    "CONNECTOR_VERIFY_PERIOD",
    "connector.verify_period",
    None,
    false,
    "How often every case delivered is looked up in the platform (by its case-incident id, 500 a call) and the missing ones sent again; same formats as CONNECTOR_DURATION_PERIOD. Unset: `P1D`, or off when running once; zero (`PT0S`, `0`): off.",
);
// 30 minutes: a healthy run commits a page every few seconds to minutes, and every step
// against a peer is bounded well below it (an AMQP publish 30 s, a blocked broker 60 s, ESM
// and the platform by their retries), so only a run stuck beyond its own limits stays
// silent that long; far below a daily period plus a run, so a stuck connector shows the
// same day.
pub(crate) const CONNECTOR_HEALTH_STALL_TIMEOUT: Key<Duration> = common::CONNECTOR_HEALTH_STALL_TIMEOUT.described(
    "`/healthz` answers 503 when a run has made no progress (started, or committed a page of cases) for this long; waiting for the next scheduled run is healthy. Same formats as CONNECTOR_DURATION_PERIOD; zero: off.",
);
pub(crate) const CONNECTOR_QUEUE_THRESHOLD: Key<Float> = key(
    "CONNECTOR_QUEUE_THRESHOLD",
    "connector.queue_threshold",
    Some("500"),
    false,
    "Skip a run (reporting `buffering`) while the connector's queue in the platform holds this many MB (10^6 bytes) or more; a decimal number.",
);
pub(crate) const CONNECTOR_RUN_AND_TERMINATE: Key<Bool> = key(
    "CONNECTOR_RUN_AND_TERMINATE",
    "connector.run_and_terminate",
    Some("false"),
    false,
    "Run once, then exit.",
);
pub(crate) const CONNECTOR_QUEUE_PROTOCOL: Key<Enum> = choice(
    "CONNECTOR_QUEUE_PROTOCOL",
    "connector.queue_protocol",
    QUEUE_PROTOCOLS,
    Some("amqp"),
    false,
    "How bundles reach the platform: `amqp` (RabbitMQ) or `api` (GraphQL stixBundlePush).",
)
.aliases(&["QUEUE_PROTOCOL"]);
pub(crate) const CONNECTOR_SEND_TO_QUEUE: Key<Bool> = key(
    "CONNECTOR_SEND_TO_QUEUE",
    "connector.send_to_queue",
    Some("true"),
    false,
    "Send bundles to the platform (false: no work is created in the platform either).",
);
pub(crate) const CONNECTOR_SEND_TO_DIRECTORY: Key<Bool> = key(
    "CONNECTOR_SEND_TO_DIRECTORY",
    "connector.send_to_directory",
    Some("false"),
    false,
    "Also write each bundle to a directory.",
);
pub(crate) const CONNECTOR_SEND_TO_DIRECTORY_PATH: Key<Path> = key(
    "CONNECTOR_SEND_TO_DIRECTORY_PATH",
    "connector.send_to_directory_path",
    None,
    false,
    "Directory for bundle files (required when CONNECTOR_SEND_TO_DIRECTORY is true).",
);
pub(crate) const CONNECTOR_SEND_TO_DIRECTORY_RETENTION: Key<Int> = int(
    "CONNECTOR_SEND_TO_DIRECTORY_RETENTION",
    "connector.send_to_directory_retention",
    (0, 36500),
    Some("7"),
    false,
    "Days to keep bundle files; 0 keeps them forever.",
);

// --- arcsight_incidents
pub(crate) const ARCSIGHT_INCIDENTS_API_BASE_URL: Key<Url> = key(
    "ARCSIGHT_INCIDENTS_API_BASE_URL",
    "arcsight_incidents.api_base_url",
    None,
    true,
    "Base URL of the ArcSight ESM Manager, e.g. `https://esm.example.com:8443`.",
)
.aliases(&["ARCSIGHT_INCIDENTS_URL"]);
pub(crate) const ARCSIGHT_INCIDENTS_USERNAME: Key<Text> = key(
    "ARCSIGHT_INCIDENTS_USERNAME",
    "arcsight_incidents.username",
    None,
    true,
    "ESM user the connector logs in as.",
);
pub(crate) const ARCSIGHT_INCIDENTS_PASSWORD: Key<Secret> = key(
    "ARCSIGHT_INCIDENTS_PASSWORD",
    "arcsight_incidents.password",
    None,
    true,
    "Password of that ESM user.",
);
pub(crate) const ARCSIGHT_INCIDENTS_MAX_CASES: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_MAX_CASES",
    "arcsight_incidents.max_cases",
    POSITIVE,
    Some("200"),
    false,
    "At most this many changed cases are sent per run; the rest follow in later runs.",
);
pub(crate) const ARCSIGHT_INCIDENTS_TLP_LEVEL: Key<Enum> = choice(
    "ARCSIGHT_INCIDENTS_TLP_LEVEL",
    "arcsight_incidents.tlp_level",
    TLP_LEVELS,
    Some("amber"),
    false,
    "TLP marking of imported objects: clear, white, green, amber, amber+strict, red.",
);
pub(crate) const ARCSIGHT_INCIDENTS_SSL_VERIFY: Key<Bool> = key(
    "ARCSIGHT_INCIDENTS_SSL_VERIFY",
    "arcsight_incidents.ssl_verify",
    Some("true"),
    false,
    "Verify ESM's TLS certificate.",
);
pub(crate) const ARCSIGHT_INCIDENTS_CA_FILE: Key<Path> = key(
    "ARCSIGHT_INCIDENTS_CA_FILE",
    "arcsight_incidents.ca_file",
    None,
    false,
    "PEM bundle of extra CA certificates to trust for ESM.",
);
pub(crate) const ARCSIGHT_INCIDENTS_IMPORT_OBSERVABLES: Key<Bool> = key(
    "ARCSIGHT_INCIDENTS_IMPORT_OBSERVABLES",
    "arcsight_incidents.import_observables",
    Some("true"),
    false,
    "Import events' IP addresses, host names and user names as observables.",
);
pub(crate) const ARCSIGHT_INCIDENTS_API_DIALECT: Key<Enum> = choice(
    "ARCSIGHT_INCIDENTS_API_DIALECT",
    "arcsight_incidents.api_dialect",
    API_DIALECTS,
    Some("auto"),
    false,
    "ESM JSON dialect: `prefixed` (ESM <= 7.8), `plain` (7.9+), or `auto` (detected at login).",
);
pub(crate) const ARCSIGHT_INCIDENTS_MAX_ATTEMPTS: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_MAX_ATTEMPTS",
    "arcsight_incidents.max_attempts",
    (1, 100),
    Some("4"),
    false,
    "Attempts per ESM request on transient failures.",
);
pub(crate) const ARCSIGHT_INCIDENTS_RETRY_MIN_WAIT: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_RETRY_MIN_WAIT",
    "arcsight_incidents.retry_min_wait",
    (0, 3600),
    Some("1"),
    false,
    "Seconds before the first retry (doubles each time, with jitter).",
);
pub(crate) const ARCSIGHT_INCIDENTS_RETRY_MAX_WAIT: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_RETRY_MAX_WAIT",
    "arcsight_incidents.retry_max_wait",
    (0, 3600),
    Some("30"),
    false,
    "Longest wait between retries, in seconds (also caps Retry-After).",
);
pub(crate) const ARCSIGHT_INCIDENTS_REQUEST_TIMEOUT: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_REQUEST_TIMEOUT",
    "arcsight_incidents.request_timeout",
    (1, 3600),
    Some("30"),
    false,
    "Timeout of one ESM request, in seconds.",
);
pub(crate) const ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB",
    "arcsight_incidents.max_response_mb",
    (1, 4096),
    Some("64"),
    false,
    "Largest ESM answer accepted, in MiB; a larger one fails that request (it is never read whole) and a batch is then fetched one by one.",
);

pub(crate) const ARCSIGHT_INCIDENTS_CONCURRENCY: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_CONCURRENCY",
    "arcsight_incidents.concurrency",
    (1, 64),
    Some("4"),
    false,
    "ESM requests in flight at once.",
);
pub(crate) const ARCSIGHT_INCIDENTS_CASE_BATCH_SIZE: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_CASE_BATCH_SIZE",
    "arcsight_incidents.case_batch_size",
    (1, 10000),
    Some("100"),
    false,
    "Cases fetched per getResourcesByIds call.",
);
pub(crate) const ARCSIGHT_INCIDENTS_EVENT_BATCH_SIZE: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_EVENT_BATCH_SIZE",
    "arcsight_incidents.event_batch_size",
    (1, 10000),
    Some("200"),
    false,
    "Events fetched per getSecurityEvents call.",
);
pub(crate) const ARCSIGHT_INCIDENTS_PAGE_SIZE: Key<Int> = int(
    "ARCSIGHT_INCIDENTS_PAGE_SIZE",
    "arcsight_incidents.page_size",
    (1, 10000),
    Some("100"),
    false,
    "Cases per delivered bundle; the state advances after each page.",
);

// --- mq (override what registerConnector returns)
pub(crate) const MQ_HOST: Key<Text> = key(
    "MQ_HOST",
    "mq.host",
    None,
    false,
    "RabbitMQ host (overrides the platform's answer).",
);
pub(crate) const MQ_PORT: Key<Int> = int("MQ_PORT", "mq.port", PORT, None, false, "RabbitMQ port.");
pub(crate) const MQ_VHOST: Key<Text> = key(
    "MQ_VHOST",
    "mq.vhost",
    None,
    false,
    "RabbitMQ virtual host.",
);
pub(crate) const MQ_USE_SSL: Key<Bool> = key(
    "MQ_USE_SSL",
    "mq.use_ssl",
    None,
    false,
    "Connect to RabbitMQ over TLS.",
);
pub(crate) const MQ_USE_SSL_CA: Key<Text> = key(
    "MQ_USE_SSL_CA",
    "mq.use_ssl_ca",
    None,
    false,
    "CA certificates to trust for RabbitMQ: a PEM file's path, or the PEM text itself (as pycti).",
);
pub(crate) const MQ_USE_SSL_CERT: Key<Text> = key(
    "MQ_USE_SSL_CERT",
    "mq.use_ssl_cert",
    None,
    false,
    "Client certificate (chain) for RabbitMQ: a PEM file's path, or the PEM text itself.",
);
pub(crate) const MQ_USE_SSL_KEY: Key<Secret> = key(
    "MQ_USE_SSL_KEY",
    "mq.use_ssl_key",
    None,
    false,
    "Private key of that certificate: a PEM file's path, or the PEM text itself (PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 with MQ_USE_SSL_PASSPHRASE).",
);
pub(crate) const MQ_USE_SSL_PASSPHRASE: Key<Secret> = key(
    "MQ_USE_SSL_PASSPHRASE",
    "mq.use_ssl_passphrase",
    None,
    false,
    "Passphrase of an encrypted MQ_USE_SSL_KEY.",
);
pub(crate) const MQ_USE_SSL_REJECT_UNAUTHORIZED: Key<Bool> = key(
    "MQ_USE_SSL_REJECT_UNAUTHORIZED",
    "mq.use_ssl_reject_unauthorized",
    Some("true"),
    false,
    "Verify RabbitMQ's TLS certificate (pycti's default is false: see the differences table).",
);
pub(crate) const MQ_USER: Key<Text> = key("MQ_USER", "mq.user", None, false, "RabbitMQ user.");
pub(crate) const MQ_PASS: Key<Secret> =
    key("MQ_PASS", "mq.pass", None, false, "RabbitMQ password.");

/// Every setting, grouped by config.yml section: what metadata, config.yml.sample, the
/// docker-compose file and the README are generated from, in this order. `common::` rows are
/// the runtime's, as every connector has them.
pub(crate) const DEFS: &[Def] = &[
    // --- opencti
    *OPENCTI_URL.def(),
    *OPENCTI_TOKEN.def(),
    *common::OPENCTI_SSL_VERIFY.def(),
    *common::OPENCTI_CA_FILE.def(),
    *common::OPENCTI_JSON_LOGGING.def(),
    *common::OPENCTI_CUSTOM_HEADERS.def(),
    *common::OPENCTI_MAX_RESPONSE_MB.def(),
    *OPENCTI_UNREACHABLE_TIMEOUT.def(),
    // --- connector
    *common::CONNECTOR_ID.def(),
    *CONNECTOR_NAME.def(),
    *common::CONNECTOR_SCOPE.def(),
    *common::CONNECTOR_LOG_LEVEL.def(),
    *CONNECTOR_DURATION_PERIOD.def(),
    *CONNECTOR_VERIFY_PERIOD.def(),
    *CONNECTOR_HEALTH_STALL_TIMEOUT.def(),
    *CONNECTOR_QUEUE_THRESHOLD.def(),
    *CONNECTOR_RUN_AND_TERMINATE.def(),
    *CONNECTOR_QUEUE_PROTOCOL.def(),
    *CONNECTOR_SEND_TO_QUEUE.def(),
    *CONNECTOR_SEND_TO_DIRECTORY.def(),
    *CONNECTOR_SEND_TO_DIRECTORY_PATH.def(),
    *CONNECTOR_SEND_TO_DIRECTORY_RETENTION.def(),
    *common::CONNECTOR_EXPOSE_METRICS.def(),
    *common::CONNECTOR_METRICS_HOST.def(),
    *common::CONNECTOR_METRICS_PORT.def(),
    *common::CONNECTOR_METRICS_NAMESPACE.def(),
    *common::CONNECTOR_METRICS_SUBSYSTEM.def(),
    // --- arcsight_incidents
    *ARCSIGHT_INCIDENTS_API_BASE_URL.def(),
    *ARCSIGHT_INCIDENTS_USERNAME.def(),
    *ARCSIGHT_INCIDENTS_PASSWORD.def(),
    *ARCSIGHT_INCIDENTS_MAX_CASES.def(),
    *ARCSIGHT_INCIDENTS_TLP_LEVEL.def(),
    *ARCSIGHT_INCIDENTS_SSL_VERIFY.def(),
    *ARCSIGHT_INCIDENTS_CA_FILE.def(),
    *ARCSIGHT_INCIDENTS_IMPORT_OBSERVABLES.def(),
    *ARCSIGHT_INCIDENTS_API_DIALECT.def(),
    *ARCSIGHT_INCIDENTS_MAX_ATTEMPTS.def(),
    *ARCSIGHT_INCIDENTS_RETRY_MIN_WAIT.def(),
    *ARCSIGHT_INCIDENTS_RETRY_MAX_WAIT.def(),
    *ARCSIGHT_INCIDENTS_REQUEST_TIMEOUT.def(),
    *ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB.def(),
    *ARCSIGHT_INCIDENTS_CONCURRENCY.def(),
    *ARCSIGHT_INCIDENTS_CASE_BATCH_SIZE.def(),
    *ARCSIGHT_INCIDENTS_EVENT_BATCH_SIZE.def(),
    *ARCSIGHT_INCIDENTS_PAGE_SIZE.def(),
    // --- mq (override what registerConnector returns)
    *MQ_HOST.def(),
    *MQ_PORT.def(),
    *MQ_VHOST.def(),
    *MQ_USE_SSL.def(),
    *MQ_USE_SSL_CA.def(),
    *MQ_USE_SSL_CERT.def(),
    *MQ_USE_SSL_KEY.def(),
    *MQ_USE_SSL_PASSPHRASE.def(),
    *MQ_USE_SSL_REJECT_UNAUTHORIZED.def(),
    *MQ_USER.def(),
    *MQ_PASS.def(),
];
