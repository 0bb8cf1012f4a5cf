//! Logging: JSON lines (the default, as pycti) or human-readable text, at the configured level.
//!
//! Dependencies log at `warn` at most unless `RUST_LOG` says otherwise: at debug level, HTTP and
//! AMQP libraries print connection details we do not control, and the rule is that no log line
//! ever carries a credential, a token or a URL holding one.

use tracing_subscriber::EnvFilter;

/// How much to log (`CONNECTOR_LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub(crate) fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The filter for `level`: ours at `level`, everything else at `warn` (or quieter).
pub(crate) fn filter(level: LogLevel) -> EnvFilter {
    if let Ok(explicit) = std::env::var("RUST_LOG")
        && !explicit.trim().is_empty()
    {
        return EnvFilter::new(explicit);
    }
    let deps = match level {
        LogLevel::Error => "error",
        _ => "warn",
    };
    EnvFilter::new(format!("{deps},arcsight_incidents={}", level.as_filter()))
}

/// Installs the global subscriber; a second call is a no-op (tests and subcommands may both
/// try).
pub(crate) fn init(json: bool, level: LogLevel) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// A reqwest error as text safe for a log line or an error message: the URL (which may carry a
/// query string or credentials) removed, then every cause in the chain, since the useful part
/// ("connection refused", "invalid peer certificate") sits in the innermost layers.
pub(crate) fn reqwest_error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
