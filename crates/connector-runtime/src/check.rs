//! What both connectors' `check` subcommands print: one line per check, `OK`, `FAILED` or
//! `SKIPPED` with the reason; never a secret.

use std::io::Write;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Failed(String),
    /// Not checkable with these settings (and not a failure).
    Skipped(String),
}

/// One named check and its outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

impl Check {
    pub fn new(name: &'static str, outcome: Outcome) -> Check {
        Check { name, outcome }
    }
}

/// `host[:port]` of a URL: enough to say which server, nothing that could carry a secret.
pub fn host_of(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => "?".into(),
    }
}

/// Prints one line per check; `true` when none failed. `colour` (a person at a terminal, see
/// [`crate::telemetry::use_colour`]) colours the status word.
pub fn print(checks: &[Check], mut w: impl Write, colour: bool) -> std::io::Result<bool> {
    let mut all_ok = true;
    for c in checks {
        let (word, reason) = match &c.outcome {
            Outcome::Ok(r) => ("OK", r),
            Outcome::Failed(r) => {
                all_ok = false;
                ("FAILED", r)
            }
            Outcome::Skipped(r) => ("SKIPPED", r),
        };
        writeln!(w, "{:<12} {} {reason}", c.name, status_word(word, colour))?;
    }
    Ok(all_ok)
}

/// The status word padded to its column, in green, red or yellow when `colour`.
pub fn status_word(word: &str, colour: bool) -> String {
    let padded = format!("{word:<7}");
    if !colour {
        return padded;
    }
    let code = match word {
        "OK" => "32",
        "FAILED" => "31",
        _ => "33",
    };
    // Only the word is coloured; the padding stays outside so columns line up.
    format!("\x1b[{code}m{word}\x1b[0m{}", &padded[word.len()..])
}
