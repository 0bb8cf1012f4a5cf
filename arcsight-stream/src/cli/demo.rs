//! `arcsight-stream demo`: the real engine between an embedded simulated live stream and an
//! embedded simulated ESM Active List, nothing to configure, until the list converges.

use std::io::Write;

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The list ended exactly as the stream says it should.
    pub converged: bool,
    pub lines: Vec<String>,
}

/// Runs the demo.
pub async fn run() -> Result<Summary, String> {
    Err("not available in this build yet: the simulated live stream is not wired in".into())
}

/// Prints the summary.
pub fn print(summary: &Summary, mut w: impl Write) -> std::io::Result<()> {
    for line in &summary.lines {
        writeln!(w, "{line}")?;
    }
    Ok(())
}
