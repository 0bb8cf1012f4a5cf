//! How each setting is read here compared with the Python `stream/arcsight` connector (its
//! pydantic models, and pycti for the settings it reads itself): the README's table, generated
//! from [`DIFFERENCES`]. A test loads every value a row lists as accepted.

use connector_runtime::settings::common;
pub use connector_runtime::settings::compat::Difference;

/// Every row, in the README's order; `common::` rows are the runtime's.
pub const DIFFERENCES: &[Difference] = &[
    Difference {
        setting: "CONNECTOR_LIVE_STREAM_ID",
        python: "required; `None`, blank or `changeme` (any case, trimmed) refused when the connector starts listening",
        ours: "the same values refused, with every other problem at once, before anything starts (exit 2)",
        why: "",
        accepted: &[("live-1", "live-1"), ("0b7e4cc1-live", "0b7e4cc1-live")],
    },
    Difference {
        setting: "CONNECTOR_TYPE",
        python: "the constant `STREAM`",
        ours: "`STREAM`, any case",
        why: "",
        accepted: &[("STREAM", "STREAM")],
    },
    Difference {
        setting: "ARCSIGHT_API_BASE_URL (config.yml alias key `url`)",
        python: "required; pydantic `HttpUrl` (http or https, a host); `arcsight.url` also read",
        ours: "the same, `arcsight.url` too (and `ARCSIGHT_URL`); a URL carrying credentials or a query string is refused",
        why: "credentials in a URL end up in logs and proxies; a query string would be silently dropped",
        accepted: &[
            (
                "https://esm.example.com:8443",
                "https://esm.example.com:8443/",
            ),
            ("http://10.0.0.5:8443/", "http://10.0.0.5:8443/"),
        ],
    },
    Difference {
        setting: "Booleans (ARCSIGHT_SSL_VERIFY, CONNECTOR_LIVE_STREAM_LISTEN_DELETE, _NO_DEPENDENCIES, _WITH_INFERENCES)",
        python: "pydantic: `true/false/1/0/yes/no/on/off/t/f/y/n`, any case; pycti (`_WITH_INFERENCES`): `true/false/yes/no`, any other text is a string Python treats as true",
        ours: "pydantic's spellings for every boolean; any other value stops the connector at start-up",
        why: "a typo is reported instead of read as true",
        accepted: &[
            ("true", "true"),
            ("0", "false"),
            ("Off", "false"),
            ("YES", "true"),
        ],
    },
    Difference {
        setting: "CONNECTOR_LOG_LEVEL",
        python: "`error`; exactly `debug`, `info`, `warn`, `warning` or `error`",
        ours: "the same words, any case",
        why: "",
        accepted: &[("warning", "warn"), ("error", "error")],
    },
    Difference {
        setting: "CONNECTOR_LIVE_STREAM_START_TIMESTAMP, CONNECTOR_LIVE_STREAM_RECOVER_ISO_DATE",
        python: "pycti, first run only: the stream read from `<timestamp>-0`, objects recovered up to the date; any text taken as is",
        ours: "the same meaning; a whole number of milliseconds and an ISO-8601 date, checked at start-up",
        why: "a value the platform cannot read would otherwise fail at the first connection",
        accepted: &[
            ("1700000000000", "1700000000000-0"),
            ("2026-01-31", "2026-01-31T00:00:00.000Z"),
        ],
    },
    common::CONNECTOR_ID_DIFFERENCE,
    Difference {
        setting: "CONNECTOR_SCOPE",
        python: "`arcsight`; a list: YAML list or comma-separated string",
        ours: "the same",
        why: "",
        accepted: &[("arcsight", "[arcsight]"), ("a, b", "[a, b]")],
    },
    common::OPENCTI_SSL_VERIFY_DIFFERENCE,
    Difference {
        setting: "CONNECTOR_METRICS_PORT",
        python: "pycti: `9095`",
        ours: "`9096`",
        why: "the import connector serves 9095: both run side by side on one host",
        accepted: &[("9095", "9095")],
    },
    Difference {
        setting: "config.yml",
        python: "read beside `main.py`: in the image, a file mounted at `/opt/opencti-connector-arcsight/config.yml`",
        ours: "CONNECTOR_CONFIG_FILE (or `--config`) when set, else `./config.yml`, else `/opt/opencti-connector-arcsight/config.yml`",
        why: "",
        accepted: &[],
    },
];

/// The README's table.
pub fn table() -> String {
    connector_runtime::settings::compat::table(DIFFERENCES)
}
