//! The command line: `run` (default), `demo`, `check`, `check-settings`, `healthcheck`,
//! `metadata`. `main.rs` only calls [`main`].

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("arcsight-stream: not built yet");
    ExitCode::from(1)
}
