//! `arcsight-stream demo`: the real engine between an embedded simulated live stream and an
//! embedded simulated ESM Active List, nothing to configure, until the list converges.

use std::io::Write;

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The list ended exactly as the stream says it should (or, while the demo is not
    /// available, nothing was run and nothing failed).
    pub converged: bool,
    pub lines: Vec<String>,
}

/// Runs the demo. Not available yet: the simulated platform's live stream is not in this
/// build, so it says so and runs nothing.
pub async fn run() -> Result<Summary, String> {
    Ok(Summary {
        converged: true,
        lines: vec![
            "demo: not available in this build yet (the simulated platform's live stream is not wired in); nothing was run".to_owned(),
        ],
    })
}

/// Prints the summary.
pub fn print(summary: &Summary, mut w: impl Write) -> std::io::Result<()> {
    for line in &summary.lines {
        writeln!(w, "{line}")?;
    }
    Ok(())
}
