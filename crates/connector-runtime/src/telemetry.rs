//! Logging: JSON lines (the default, as pycti) or human-readable text, at the configured level.
//!
//! Dependencies log at `warn` at most unless `RUST_LOG` says otherwise: at debug level, HTTP and
//! AMQP libraries print connection details we do not control, and the rule is that no log line
//! ever carries a credential, a token or a URL holding one.

use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// How much to log (`CONNECTOR_LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The filter for `level`: the connector's own crates (`ours`, crate names as `tracing`
/// targets spell them: `arcsight_incidents`, `connector_runtime`) at `level`, everything else
/// at `warn` (or quieter).
pub fn filter(ours: &[&str], level: LogLevel) -> EnvFilter {
    if let Ok(explicit) = std::env::var("RUST_LOG")
        && !explicit.trim().is_empty()
    {
        return EnvFilter::new(explicit);
    }
    let deps = match level {
        LogLevel::Error => "error",
        _ => "warn",
    };
    let mut directives = deps.to_owned();
    for target in ours {
        directives.push_str(&format!(",{target}={}", level.as_filter()));
    }
    EnvFilter::new(directives)
}

/// Colours only for a person at a terminal who has not asked for none (`NO_COLOR`, see
/// no-color.org): in a file or a pipe they are noise, or worse, control sequences.
pub fn use_colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber, with `ours` (see [`filter`]) at `level`; a second call is a
/// no-op (tests and subcommands may both try).
pub fn init(ours: &[&str], json: bool, level: LogLevel) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(ours, level))
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_ansi(use_colour(std::io::stderr().is_terminal()))
            .fmt_fields(EscapedFields)
            .try_init()
    };
}

/// Text logs' field formatter: the default one, with every control character in a value
/// escaped. Case ids, names and error texts come from peers; raw, an ESC sequence would drive
/// the operator's terminal and a CR or LF would start a forged log line.
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = Escaping<DefaultVisitor<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        Escaping(DefaultVisitor::new(target, true))
    }
}

/// A visitor that escapes control characters before handing values on.
pub struct Escaping<V>(V);

impl<V: Visit> Visit for Escaping<V> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = escape_controls(&format!("{value:?}"));
        self.0.record_debug(field, &format_args!("{text}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // The message is written as is by the default visitor (other strings are quoted with
        // Rust's escaping, which is safe already).
        if field.name() == "message" {
            let text = escape_controls(value);
            self.0.record_debug(field, &format_args!("{text}"));
        } else {
            self.0.record_str(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let text = escape_controls(&value.to_string());
        self.0.record_debug(field, &format_args!("{text}"));
    }
}

impl<V: VisitOutput<std::fmt::Result>> VisitOutput<std::fmt::Result> for Escaping<V> {
    fn finish(self) -> std::fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for Escaping<V> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        self.0.writer()
    }
}

/// Control characters (C0, DEL, C1) as Rust escapes (`\n`, `\u{1b}`); everything else as is.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connector_s_crates_log_at_its_level_and_the_others_at_warn() {
        if std::env::var("RUST_LOG").is_ok_and(|v| !v.trim().is_empty()) {
            return; // RUST_LOG replaces the filter altogether
        }
        let text = filter(&["a_connector", "its_runtime"], LogLevel::Debug).to_string();
        let mut directives: Vec<&str> = text.split(',').collect();
        directives.sort_unstable();
        assert_eq!(
            directives,
            ["a_connector=debug", "its_runtime=debug", "warn"]
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("a\x1b]0;pwned\x07\r\nINFO forged\0"),
            "a\\u{1b}]0;pwned\\u{7}\\r\\nINFO forged\\u{0}"
        );
        assert_eq!(escape_controls("plain é"), "plain é");
    }
}
