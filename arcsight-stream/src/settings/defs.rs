//! The table of every setting of the stream connector: environment name, config.yml key, type,
//! default, description.
//!
//! One table drives loading, validation, `config.yml.sample`, the compose service and the
//! `__metadata__` JSON schema. Names, defaults and accepted values are the Python
//! `stream/arcsight` connector's (its pydantic models and the pycti settings it still reads);
//! the settings it does not have are ours, each documented below. The rows every connector has
//! (`OPENCTI_*`, identity, log level, metrics, health) are the runtime's
//! (`connector_runtime::settings::common`), listed in their place and adjusted where this
//! connector differs.

use connector_runtime::settings::common;
use connector_runtime::settings::kinds::*;
use connector_runtime::settings::{Def, Key, choice, int, key};

pub(crate) const API_DIALECTS: &[&str] = &["auto", "prefixed", "plain"];
/// The Python connector's schema: `CONNECTOR_TYPE` is the constant `STREAM` (any case here).
pub(crate) const CONNECTOR_TYPES: &[&str] = &["stream"];

// --- connector
pub(crate) const CONNECTOR_NAME: Key<Text> = common::CONNECTOR_NAME.with_default("ArcSight");
pub(crate) const CONNECTOR_SCOPE: Key<List> = common::CONNECTOR_SCOPE.with_default("arcsight");
pub(crate) const CONNECTOR_TYPE: Key<Enum> = choice(
    "CONNECTOR_TYPE",
    "connector.type",
    CONNECTOR_TYPES,
    Some("STREAM"),
    false,
    "The connector's type in the platform: `STREAM`, the only value (as the Python connector's schema).",
);
pub(crate) const CONNECTOR_LIVE_STREAM_ID: Key<Text> = key(
    "CONNECTOR_LIVE_STREAM_ID",
    "connector.live_stream_id",
    None,
    true,
    "Id of the OpenCTI live stream (Data sharing > Live streams) whose indicators go into the Active List; blank or `ChangeMe` is refused.",
);
pub(crate) const CONNECTOR_LIVE_STREAM_LISTEN_DELETE: Key<Bool> = key(
    "CONNECTOR_LIVE_STREAM_LISTEN_DELETE",
    "connector.live_stream_listen_delete",
    Some("true"),
    false,
    "Receive delete events (sent as the stream's `listen-delete`); false: nothing deleted in OpenCTI, nor leaving the stream's filters, is ever removed from the list.",
);
pub(crate) const CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES: Key<Bool> = key(
    "CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES",
    "connector.live_stream_no_dependencies",
    Some("true"),
    false,
    "Do not receive the objects an event's object depends on (sent as `no-dependencies`).",
);
pub(crate) const CONNECTOR_LIVE_STREAM_WITH_INFERENCES: Key<Bool> = key(
    "CONNECTOR_LIVE_STREAM_WITH_INFERENCES",
    "connector.live_stream_with_inferences",
    Some("false"),
    false,
    "Also receive inferred objects (sent as `with-inferences`), as pycti.",
);
pub(crate) const CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE: Key<Text> = key(
    "CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE",
    "connector.live_stream_recover_iso_date",
    None,
    false,
    "First run only (no state in the platform yet), as pycti: recover the stream's existing objects up to this date (ISO-8601, e.g. `2026-01-31T00:00:00Z` or `2026-01-31`). Unset: up to the start.",
);
pub(crate) const CONNECTOR_LIVE_STREAM_START_TIMESTAMP: Key<Int> = int(
    "CONNECTOR_LIVE_STREAM_START_TIMESTAMP",
    "connector.live_stream_start_timestamp",
    (0, i64::MAX),
    None,
    false,
    "First run only, as pycti: read the stream from this time, in Unix milliseconds (the stream id `<ms>-0`). Unset: from the start of the stream.",
);
pub(crate) const CONNECTOR_HEALTH_STALL_TIMEOUT: Key<Duration> =
    common::CONNECTOR_HEALTH_STALL_TIMEOUT
        .with_default("PT10M")
        .described(
            "`/healthz` answers 503 when the live stream has been disconnected, or ESM failing, for this long (ESM down for minutes is waited out without loss; a longer outage must show). ISO-8601 (`PT10M`), `HH:MM:SS`, or seconds; zero: off.",
        );
// Beside the import connector's 9095, so both can run on one host.
pub(crate) const CONNECTOR_METRICS_PORT: Key<Int> = common::CONNECTOR_METRICS_PORT
    .with_default("9096")
    .described("Port of the metrics server (9096: the import connector's default is 9095).");

// --- arcsight
pub(crate) const ARCSIGHT_API_BASE_URL: Key<Url> = key(
    "ARCSIGHT_API_BASE_URL",
    "arcsight.api_base_url",
    None,
    true,
    "Base URL of the ArcSight ESM Manager, e.g. `https://esm.example.com:8443` (config.yml also takes the Python connector's alias key `url`).",
)
.aliases(&["ARCSIGHT_URL"]);
pub(crate) const ARCSIGHT_USERNAME: Key<Text> = key(
    "ARCSIGHT_USERNAME",
    "arcsight.username",
    None,
    true,
    "ESM user the connector logs in as.",
);
pub(crate) const ARCSIGHT_PASSWORD: Key<Secret> = key(
    "ARCSIGHT_PASSWORD",
    "arcsight.password",
    None,
    true,
    "Password of that ESM user (sent in a POST body, never in a URL).",
);
pub(crate) const ARCSIGHT_ACTIVE_LIST_ID: Key<Text> = key(
    "ARCSIGHT_ACTIVE_LIST_ID",
    "arcsight.active_list_id",
    None,
    true,
    "Resource id of the Active List kept in sync; checked at start (it must exist and have ARCSIGHT_VALUE_COLUMN).",
);
pub(crate) const ARCSIGHT_VALUE_COLUMN: Key<Text> = key(
    "ARCSIGHT_VALUE_COLUMN",
    "arcsight.value_column",
    Some("value"),
    false,
    "The list's column that holds the indicator value.",
);
pub(crate) const ARCSIGHT_SSL_VERIFY: Key<Bool> = key(
    "ARCSIGHT_SSL_VERIFY",
    "arcsight.ssl_verify",
    Some("true"),
    false,
    "Verify ESM's TLS certificate.",
);
pub(crate) const ARCSIGHT_CA_FILE: Key<Path> = key(
    "ARCSIGHT_CA_FILE",
    "arcsight.ca_file",
    None,
    false,
    "PEM bundle of extra CA certificates to trust for ESM.",
);
pub(crate) const ARCSIGHT_API_DIALECT: Key<Enum> = choice(
    "ARCSIGHT_API_DIALECT",
    "arcsight.api_dialect",
    API_DIALECTS,
    Some("auto"),
    false,
    "ESM JSON dialect: `prefixed` (ESM <= 7.8), `plain` (7.9+), or `auto` (detected at login).",
);
pub(crate) const ARCSIGHT_MAX_ATTEMPTS: Key<Int> = int(
    "ARCSIGHT_MAX_ATTEMPTS",
    "arcsight.max_attempts",
    (1, 100),
    Some("4"),
    false,
    "Attempts per ESM request on transient failures (a write that still fails waits and is tried again later; nothing is dropped).",
);
pub(crate) const ARCSIGHT_RETRY_MIN_WAIT: Key<Int> = int(
    "ARCSIGHT_RETRY_MIN_WAIT",
    "arcsight.retry_min_wait",
    (0, 3600),
    Some("1"),
    false,
    "Seconds before the first retry (doubles each time, with jitter).",
);
pub(crate) const ARCSIGHT_RETRY_MAX_WAIT: Key<Int> = int(
    "ARCSIGHT_RETRY_MAX_WAIT",
    "arcsight.retry_max_wait",
    (0, 3600),
    Some("30"),
    false,
    "Longest wait between retries, in seconds (also caps Retry-After).",
);
pub(crate) const ARCSIGHT_REQUEST_TIMEOUT: Key<Int> = int(
    "ARCSIGHT_REQUEST_TIMEOUT",
    "arcsight.request_timeout",
    (1, 3600),
    Some("30"),
    false,
    "Timeout of one ESM request, in seconds.",
);
pub(crate) const ARCSIGHT_MAX_RESPONSE_MB: Key<Int> = int(
    "ARCSIGHT_MAX_RESPONSE_MB",
    "arcsight.max_response_mb",
    (1, 4096),
    Some("64"),
    false,
    "Largest ESM answer accepted, in MiB (getEntries returns the whole list in one answer); a larger one fails that request (it is never read whole).",
);
pub(crate) const ARCSIGHT_CONCURRENCY: Key<Int> = int(
    "ARCSIGHT_CONCURRENCY",
    "arcsight.concurrency",
    (1, 64),
    Some("4"),
    false,
    "ESM requests in flight at once.",
);
pub(crate) const ARCSIGHT_BATCH_SIZE: Key<Int> = int(
    "ARCSIGHT_BATCH_SIZE",
    "arcsight.batch_size",
    (1, 10000),
    Some("500"),
    false,
    "Most entries one addEntries or deleteEntries request carries.",
);
pub(crate) const ARCSIGHT_FLUSH_DELAY: Key<Duration> = key(
    "ARCSIGHT_FLUSH_DELAY",
    "arcsight.flush_delay",
    Some("PT0.25S"),
    false,
    "Longest a change waits before it is written (changes arriving meanwhile share its requests; a create, update and delete of one indicator in that time cost one write or none). ISO-8601 (`PT0.25S`) or seconds (`0.25`); zero: at once.",
);
pub(crate) const ARCSIGHT_MAX_PENDING: Key<Int> = int(
    "ARCSIGHT_MAX_PENDING",
    "arcsight.max_pending",
    (1, 1_000_000),
    Some("5000"),
    false,
    "Most changes waiting to be written: a flush starts at once when this many wait, and the stream is paused (not buffered) while ESM cannot take them.",
);
pub(crate) const ARCSIGHT_RECONCILE_PERIOD: Key<Duration> = key(
    "ARCSIGHT_RECONCILE_PERIOD",
    "arcsight.reconcile_period",
    Some("PT1H"),
    false,
    "How often the list is read back (getEntries) and repaired: entries of ours removed by an admin, evicted at capacity or expired are added again; entries the connector does not manage are never touched. It also runs at every start. ISO-8601 (`PT1H`), `HH:MM:SS`, or seconds; zero: at start only.",
);
pub(crate) const ARCSIGHT_LEDGER_PATH: Key<Path> = key(
    "ARCSIGHT_LEDGER_PATH",
    "arcsight.ledger_path",
    None,
    false,
    "File where the connector keeps which indicator put which value in the list, so a restart resumes from the saved stream position (the image sets `/data/ledger.bin`, a volume). Unset: every start reads the whole stream again.",
);
pub(crate) const ARCSIGHT_PATTERN_OR_VALUES: Key<Bool> = key(
    "ARCSIGHT_PATTERN_OR_VALUES",
    "arcsight.pattern_or_values",
    Some("false"),
    false,
    "Also take every value of a pattern that is an OR of equality comparisons (`[ipv4-addr:value = 'a' OR ipv4-addr:value = 'b']`). False, as the Python connector: only a single equality comparison gives a value.",
);
pub(crate) const ARCSIGHT_EXTRA_TYPES: Key<Bool> = key(
    "ARCSIGHT_EXTRA_TYPES",
    "arcsight.extra_types",
    Some("false"),
    false,
    "Also take `hostname:value`, `email-addr:value` and `file:hashes.SHA-512`, besides the Python connector's IPv4, IPv6, domain, URL, MD5, SHA-1 and SHA-256.",
);
pub(crate) const ARCSIGHT_MIN_SCORE: Key<Int> = int(
    "ARCSIGHT_MIN_SCORE",
    "arcsight.min_score",
    (0, 100),
    None,
    false,
    "Only indicators scoring at least this much (`x_opencti_score`; none counts as 0) go into the list. Unset: any score.",
);

/// Every setting, grouped by config.yml section: what metadata, config.yml.sample, the compose
/// service and the README are generated from, in this order. `common::` rows are the
/// runtime's, as every connector has them.
pub(crate) const DEFS: &[Def] = &[
    // --- opencti
    *common::OPENCTI_URL.def(),
    *common::OPENCTI_TOKEN.def(),
    *common::OPENCTI_SSL_VERIFY.def(),
    *common::OPENCTI_CA_FILE.def(),
    *common::OPENCTI_JSON_LOGGING.def(),
    *common::OPENCTI_CUSTOM_HEADERS.def(),
    *common::OPENCTI_MAX_RESPONSE_MB.def(),
    // --- connector
    *common::CONNECTOR_ID.def(),
    *CONNECTOR_NAME.def(),
    *CONNECTOR_SCOPE.def(),
    *common::CONNECTOR_LOG_LEVEL.def(),
    *CONNECTOR_TYPE.def(),
    *CONNECTOR_LIVE_STREAM_ID.def(),
    *CONNECTOR_LIVE_STREAM_LISTEN_DELETE.def(),
    *CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES.def(),
    *CONNECTOR_LIVE_STREAM_WITH_INFERENCES.def(),
    *CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE.def(),
    *CONNECTOR_LIVE_STREAM_START_TIMESTAMP.def(),
    *CONNECTOR_HEALTH_STALL_TIMEOUT.def(),
    *common::CONNECTOR_EXPOSE_METRICS.def(),
    *common::CONNECTOR_METRICS_HOST.def(),
    *CONNECTOR_METRICS_PORT.def(),
    *common::CONNECTOR_METRICS_NAMESPACE.def(),
    *common::CONNECTOR_METRICS_SUBSYSTEM.def(),
    // --- arcsight
    *ARCSIGHT_API_BASE_URL.def(),
    *ARCSIGHT_USERNAME.def(),
    *ARCSIGHT_PASSWORD.def(),
    *ARCSIGHT_ACTIVE_LIST_ID.def(),
    *ARCSIGHT_VALUE_COLUMN.def(),
    *ARCSIGHT_SSL_VERIFY.def(),
    *ARCSIGHT_CA_FILE.def(),
    *ARCSIGHT_API_DIALECT.def(),
    *ARCSIGHT_MAX_ATTEMPTS.def(),
    *ARCSIGHT_RETRY_MIN_WAIT.def(),
    *ARCSIGHT_RETRY_MAX_WAIT.def(),
    *ARCSIGHT_REQUEST_TIMEOUT.def(),
    *ARCSIGHT_MAX_RESPONSE_MB.def(),
    *ARCSIGHT_CONCURRENCY.def(),
    *ARCSIGHT_BATCH_SIZE.def(),
    *ARCSIGHT_FLUSH_DELAY.def(),
    *ARCSIGHT_MAX_PENDING.def(),
    *ARCSIGHT_RECONCILE_PERIOD.def(),
    *ARCSIGHT_LEDGER_PATH.def(),
    *ARCSIGHT_PATTERN_OR_VALUES.def(),
    *ARCSIGHT_EXTRA_TYPES.def(),
    *ARCSIGHT_MIN_SCORE.def(),
];
