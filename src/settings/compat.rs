//! How each setting is read here compared with the Python connector (pycti, the connectors
//! SDK's pydantic models): the table the README shows, generated from [`DIFFERENCES`].
//!
//! Every row lists values the Python connector accepts with what they mean there; a test
//! (`tests/it/dropin.rs`) loads each one here and checks it means the same. Where ours is
//! deliberately stricter or safer, the row says so and why.

use connector_runtime::settings::common;
pub use connector_runtime::settings::compat::Difference;

/// Every row, in the README's order; `common::` rows are the runtime's, as every connector
/// reads those settings.
pub const DIFFERENCES: &[Difference] = &[
    Difference {
        setting: "CONNECTOR_DURATION_PERIOD",
        python: "`PT15M`; pydantic `timedelta`: ISO-8601 with months of 30 days and years of 365, fractions, `HH:MM:SS`, `D days, HH:MM:SS`, a number of seconds; zero runs once",
        ours: "the same",
        why: "",
        accepted: &[
            ("PT15M", "900s"),
            ("PT1.5H", "5400s"),
            ("P1D", "86400s"),
            ("P1W", "604800s"),
            ("P1M", "2592000s"),
            ("P1Y", "31536000s"),
            ("PT0S", "run once"),
            ("01:30:00", "5400s"),
            ("1 day, 00:00:30", "86430s"),
            ("900", "900s"),
        ],
    },
    Difference {
        setting: "CONNECTOR_QUEUE_THRESHOLD",
        python: "`500`; a float, in MB of 10^6 bytes; a run is skipped while the queue holds that much or more, also before a run-and-terminate run, with `buffering: true` reported",
        ours: "the same",
        why: "",
        accepted: &[("500", "500 MB"), ("250.5", "250.5 MB"), ("0", "0 MB")],
    },
    common::CONNECTOR_ID_DIFFERENCE,
    common::CONNECTOR_SCOPE_DIFFERENCE,
    Difference {
        setting: "CONNECTOR_QUEUE_PROTOCOL (deprecated alias QUEUE_PROTOCOL)",
        python: "`amqp`; `amqp` or `api`",
        ours: "the same, any case",
        why: "",
        accepted: &[("amqp", "amqp"), ("api", "api")],
    },
    common::CONNECTOR_METRICS_PREFIX_DIFFERENCE,
    Difference {
        setting: "Booleans (CONNECTOR_RUN_AND_TERMINATE, CONNECTOR_SEND_TO_QUEUE, ...)",
        python: "pycti: the words `true/false/yes/no` (any case); any other text stays a string, which Python treats as true (`0` and `off` mean true). Settings read by pydantic (ARCSIGHT_INCIDENTS_SSL_VERIFY) also take `1/0`, `on/off`, `t/f`, `y/n`",
        ours: "`true/false/yes/no/on/off/1/0/t/f/y/n`, any case, for every boolean; any other value stops the connector at start-up",
        why: "`0` or `off` meaning true is a trap; a typo is reported instead of read as true",
        accepted: &[
            ("true", "true"),
            ("False", "false"),
            ("YES", "true"),
            ("no", "false"),
        ],
    },
    common::OPENCTI_SSL_VERIFY_DIFFERENCE,
    Difference {
        setting: "MQ_USE_SSL_REJECT_UNAUTHORIZED",
        python: "pycti: `false` (the broker's certificate is not verified)",
        ours: "`true`; set MQ_USE_SSL_CA for a private CA, or `false` as pycti",
        why: "an unverified connection gives the broker's password to whoever sits in the path",
        accepted: &[("false", "no verification"), ("true", "verify")],
    },
    Difference {
        setting: "MQ_USE_SSL_CA, MQ_USE_SSL_CERT, MQ_USE_SSL_KEY, MQ_USE_SSL_PASSPHRASE",
        python: "unset; each a PEM file's path or the PEM text itself; the passphrase decrypts the key",
        ours: "the same (an encrypted key must be PKCS#8, `ENCRYPTED PRIVATE KEY`); a file that cannot be read stops the connector at start-up",
        why: "",
        accepted: &[("ca.pem", "1 CA certificate")],
    },
    Difference {
        setting: "config.yml",
        python: "read beside `main.py`: in the image, a file mounted at `/opt/opencti-connector-arcsight-incidents/config.yml`",
        ours: "CONNECTOR_CONFIG_FILE (or `--config`) when set, else `./config.yml`, else `/opt/opencti-connector-arcsight-incidents/config.yml`",
        why: "",
        accepted: &[],
    },
    Difference {
        setting: "CONNECTOR_SEND_TO_QUEUE",
        python: "`true`; `false`: no bundle and no work in the platform",
        ours: "the same",
        why: "",
        accepted: &[("false", "no work")],
    },
    Difference {
        setting: "ARCSIGHT_INCIDENTS_TLP_LEVEL",
        python: "`amber`; exactly `clear`, `white`, `green`, `amber`, `amber+strict` or `red`",
        ours: "the same words, any case",
        why: "",
        accepted: &[("amber+strict", "amber+strict"), ("clear", "clear")],
    },
    Difference {
        setting: "ARCSIGHT_INCIDENTS_IMPORT_OBSERVABLES",
        python: "does not exist: no observables are sent",
        ours: "`true`: the first run also adds the events' IP addresses, host names and user names as observables, objects the Python connector never sent",
        why: "they are what an analyst pivots on; set `false` for exactly the Python connector's objects",
        accepted: &[],
    },
];

/// The README's table.
pub fn table() -> String {
    connector_runtime::settings::compat::table(DIFFERENCES)
}
