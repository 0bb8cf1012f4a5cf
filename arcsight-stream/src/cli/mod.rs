//! The command line: `run` (default), `demo`, `check`, `check-settings`, `healthcheck`,
//! `metadata`. `main.rs` only calls [`main`].
//!
//! Exit statuses: 0 success; 1 a failure at run time (said on stderr, one line); 2 invalid
//! settings (one line per problem, naming the setting) or a list that is not what the settings
//! say (missing, not an Active List, no such column).

pub mod check;
#[cfg(feature = "demo")]
pub mod demo;
pub mod run;
pub mod source;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use connector_runtime::telemetry::{self, LogLevel};

use crate::settings::{Settings, SettingsError};

#[derive(Debug, Parser)]
#[command(
    name = "arcsight-stream",
    version,
    about = "Keeps an ArcSight ESM Active List in sync with an OpenCTI live stream",
    long_about = None
)]
pub(crate) struct Cli {
    /// config.yml to read (environment variables win over it, key by key). Unset: ./config.yml,
    /// else /opt/opencti-connector-arcsight/config.yml (where the Python connector's image
    /// reads it), else none.
    #[arg(long, global = true, env = "CONNECTOR_CONFIG_FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the connector until SIGTERM/SIGINT (the default when no subcommand is given).
    Run,
    #[cfg(feature = "demo")]
    /// Sync a simulated live stream into a simulated ESM Active List, both embedded, and print
    /// a summary (nothing to configure).
    Demo,
    /// Check the settings, ESM (login, the list and its column, logout), the platform and the
    /// live stream: one line per check; exit 0 only when none failed.
    Check,
    /// Check the settings and print one line per problem (exit 2 when there is one).
    CheckSettings,
    /// Ask the running connector's metrics endpoint for /healthz (for container healthchecks).
    Healthcheck {
        /// Port of the metrics endpoint (when the settings cannot be read; else theirs).
        #[arg(long, env = "CONNECTOR_METRICS_PORT", default_value_t = 9096)]
        port: u16,
    },
    /// Regenerate `__metadata__/`, `config.yml.sample` and the README's settings table from the
    /// settings table.
    Metadata {
        /// The crate's directory. Unset: `arcsight-stream` when run from the repository root,
        /// else the working directory.
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

/// Exit status for invalid settings, and for a list that is not what they say.
pub(crate) const EXIT_SETTINGS: u8 = 2;

/// Why a subcommand could not do its job; [`main`] maps it to the process's status once.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Invalid settings: one line per problem on stderr, exit 2.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The settings are valid but name something ESM does not have: one line, exit 2.
    #[error("{0}")]
    Config(String),
    /// Anything else: `command: message` on stderr, exit 1. Messages are secret-free (they come
    /// from typed errors that never hold a secret).
    #[error("{command}: {message}")]
    Failed {
        command: &'static str,
        message: String,
    },
}

impl CliError {
    pub(crate) fn failed(command: &'static str, message: impl ToString) -> CliError {
        CliError::Failed {
            command,
            message: message.to_string(),
        }
    }

    /// Prints the error for an operator and returns the process's exit status.
    fn report(&self) -> ExitCode {
        match self {
            CliError::Settings(e) => {
                for line in e.lines() {
                    eprintln!("{line}");
                }
                ExitCode::from(EXIT_SETTINGS)
            }
            CliError::Config(_) => {
                eprintln!("{self}");
                ExitCode::from(EXIT_SETTINGS)
            }
            CliError::Failed { .. } => {
                eprintln!("{self}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    dispatch(cli).unwrap_or_else(|e| e.report())
}

fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Metadata { root } => {
            let root = root.unwrap_or_else(default_metadata_root);
            // The README is the repository's, one level up from the crate.
            let readme = root.join("..").join("README.md");
            crate::metadata::write_all(&root, Some(&readme))
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| CliError::failed("metadata", e))
        }
        Command::CheckSettings => {
            let settings = load_settings(cli.config.as_deref())?;
            settings.check_ledger_dir()?;
            for line in settings.advice() {
                eprintln!("warning: {line}");
            }
            println!("settings: OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => run_check(cli.config.as_deref()),
        Command::Healthcheck { port } => {
            // The image's HEALTHCHECK runs whatever the settings: with metrics off there is
            // nothing to ask, and a connector that is not serving them is not unhealthy.
            match load_settings(cli.config.as_deref()) {
                Ok(s) if !s.connector.metrics.expose => {
                    println!("metrics are off (CONNECTOR_EXPOSE_METRICS): nothing to check");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(s) => healthcheck(s.connector.metrics.port),
                Err(_) => healthcheck(port),
            }
        }
        Command::Run => {
            let settings = load_settings(cli.config.as_deref())?;
            settings.check_ledger_dir()?;
            run::main(settings)
        }
        #[cfg(feature = "demo")]
        Command::Demo => {
            telemetry::init(crate::LOG_TARGETS, false, LogLevel::Warn);
            let rt = runtime().map_err(|e| CliError::failed("demo", e))?;
            let summary = rt
                .block_on(demo::run())
                .map_err(|e| CliError::failed("demo", e))?;
            let _ = demo::print(&summary, std::io::stdout().lock());
            Ok(if summary.converged {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `arcsight-stream` when it is below the working directory (run from the repository root,
/// as `cargo run -p arcsight-stream -- metadata` is), else the working directory.
fn default_metadata_root() -> PathBuf {
    let crate_dir = PathBuf::from("arcsight-stream");
    if crate_dir.join("Cargo.toml").is_file() {
        crate_dir
    } else {
        PathBuf::from(".")
    }
}

/// Loads and validates the settings, from the config file [`Settings::config_file`] picks.
fn load_settings(config: Option<&Path>) -> Result<Settings, CliError> {
    let file = Settings::config_file(config)?;
    Ok(Settings::load(file.as_deref())?)
}

fn run_check(config: Option<&Path>) -> Result<ExitCode, CliError> {
    let colour = telemetry::use_colour(std::io::stdout().is_terminal());
    let settings = match load_settings(config) {
        Ok(s) => s,
        // `check` reports on stdout, one line per check: settings problems are lines too.
        Err(CliError::Settings(e)) => {
            let mut out = std::io::stdout().lock();
            for line in e.lines() {
                let word = check::status_word("FAILED", colour);
                let _ = writeln!(out, "{:<12} {word} {line}", "settings");
            }
            return Ok(ExitCode::from(EXIT_SETTINGS));
        }
        Err(e) => return Err(e),
    };
    // Only warnings and errors on stderr: the checks' lines are the output.
    telemetry::init(crate::LOG_TARGETS, false, LogLevel::Error);
    let checks = runtime()
        .map_err(|e| CliError::failed("check", e))?
        .block_on(check::run(&settings));
    let all_ok = check::print(&checks, std::io::stdout().lock(), colour).unwrap_or(false);
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `GET /healthz` on the local metrics endpoint; exit 0 on HTTP 200 (503 once the stream or
/// ESM has been failing for longer than `CONNECTOR_HEALTH_STALL_TIMEOUT`).
fn healthcheck(port: u16) -> Result<ExitCode, CliError> {
    let probe = async move {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let answer = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = answer.status();
        // The reason, bounded: it is our own server's text, but a stranger may hold the port
        // (and answer without end).
        let body = peer_http::http::read_limited(answer, 4096)
            .await
            .unwrap_or_default();
        let reason: String = body.chars().take(200).collect();
        if status.is_success() {
            println!("healthy: {reason}");
            Ok(())
        } else {
            Err(format!("HTTP {status}: {reason}"))
        }
    };
    runtime()
        .and_then(|rt| rt.block_on(probe))
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| CliError::failed("unhealthy", e))
}

/// A small multi-threaded runtime: the work is I/O bound, two workers are plenty and keep the
/// footprint small beside the platform.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
