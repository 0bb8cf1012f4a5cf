//! The command line: one binary, several subcommands. `main.rs` only calls [`main`].

pub mod check;
pub mod convert;
#[cfg(feature = "demo")]
pub mod demo;

use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::{Settings, SettingsError};
use crate::stix::Tlp;

#[derive(Debug, Parser)]
#[command(name = "arcsight-incidents", version, about = "Imports ArcSight ESM cases into OpenCTI", long_about = None)]
pub(crate) struct Cli {
    /// config.yml to read (environment variables win over it, key by key). Unset: ./config.yml,
    /// else /opt/opencti-connector-arcsight-incidents/config.yml (where the Python connector's
    /// image reads it), else none.
    #[arg(long, global = true, env = "CONNECTOR_CONFIG_FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the connector (the default when no subcommand is given).
    Run,
    #[cfg(feature = "demo")]
    /// Import from an embedded, simulated ESM into a directory and print a summary (no
    /// platform, nothing to configure).
    Demo(demo::DemoArgs),
    /// Convert ESM cases (JSON lines) to STIX bundles, offline.
    Convert {
        /// Input file of `{"case": {...}, "events": [...]}` lines; `-` or nothing for stdin.
        file: Option<PathBuf>,
        /// TLP marking when a line has no "tlp" of its own.
        #[arg(long, default_value = "amber", value_parser = parse_tlp)]
        tlp: Tlp,
        /// Do not turn addresses, host names and user names into observables.
        #[arg(long)]
        no_observables: bool,
    },
    /// Check the settings and print one line per problem.
    CheckSettings,
    /// Check the settings, ESM (login, cases, logout), the platform and the broker: one line
    /// per check; exit 0 only when none failed.
    Check,
    /// Ask the running connector's metrics endpoint for /healthz (for container healthchecks).
    Healthcheck {
        /// Port of the metrics endpoint.
        #[arg(long, env = "CONNECTOR_METRICS_PORT", default_value_t = 9095)]
        port: u16,
    },
    #[cfg(feature = "demo")]
    /// Serve a simulated ArcSight ESM (for tests, demos and benchmarks) until stopped.
    SimulateEsm(esm_simulator::cli::SimulateEsmArgs),
    /// Regenerate `__metadata__/` and `config.yml.sample` from the settings table.
    Metadata {
        /// Repository root to write into.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

fn parse_tlp(s: &str) -> Result<Tlp, String> {
    s.parse::<Tlp>().map_err(|e| e.to_string())
}

/// Exit status for invalid settings, as documented.
pub(crate) const EXIT_SETTINGS: u8 = 2;

/// Why a subcommand could not do its job. Each subcommand returns `Result<ExitCode, CliError>`:
/// `Ok` carries the status of a command that ran (a check that found problems ran, and exits 1
/// having said so), `Err` one that could not; [`main`] maps both to the process's status once.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Invalid settings: one line per problem on stderr, exit 2.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Anything else: `command: message` on stderr, exit 1. Messages are secret-free (they come
    /// from typed errors that never hold a secret).
    #[error("{command}: {message}")]
    Failed {
        command: &'static str,
        message: String,
    },
}

impl CliError {
    fn failed(command: &'static str, message: impl ToString) -> CliError {
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
            CliError::Failed { .. } => {
                eprintln!("{self}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `SUCCESS` when `ok`, else `FAILURE`: for commands that ran and report their own failures.
fn status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    dispatch(cli).unwrap_or_else(|e| e.report())
}

fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Convert {
            file,
            tlp,
            no_observables,
        } => run_convert(file, tlp, !no_observables),
        Command::Metadata { root } => crate::metadata::write_all(&root)
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| CliError::failed("metadata", e)),
        Command::CheckSettings => {
            let settings = load_settings(cli.config.as_deref())?;
            settings.check_directory()?;
            for line in settings.advice() {
                eprintln!("warning: {line}");
            }
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
            settings.check_directory()?;
            run_daemon(settings)
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            crate::telemetry::init(crate::LOG_TARGETS, false, crate::telemetry::LogLevel::Warn);
            let summary = runtime()
                .and_then(|rt| rt.block_on(demo::run(&args)))
                .map_err(|e| CliError::failed("demo", e))?;
            let _ = demo::print(&summary, std::io::stdout().lock());
            Ok(status(summary.report.succeeded()))
        }
        #[cfg(feature = "demo")]
        Command::SimulateEsm(args) => {
            crate::telemetry::init(crate::LOG_TARGETS, false, crate::telemetry::LogLevel::Info);
            runtime()
                .and_then(|rt| {
                    rt.block_on(esm_simulator::cli::run(args))
                        .map_err(|e| e.to_string())
                })
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| CliError::failed("simulate-esm", e))
        }
    }
}

/// Loads and validates the settings, from the config file [`Settings::config_file`] picks.
fn load_settings(config: Option<&std::path::Path>) -> Result<Settings, CliError> {
    let file = Settings::config_file(config)?;
    Ok(Settings::load(file.as_deref())?)
}

fn run_check(config: Option<&std::path::Path>) -> Result<ExitCode, CliError> {
    let settings = match load_settings(config) {
        Ok(s) => s,
        // `check` reports on stdout, one line per check: settings problems are lines too.
        Err(CliError::Settings(e)) => {
            let colour = crate::telemetry::use_colour(std::io::stdout().is_terminal());
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
    crate::telemetry::init(crate::LOG_TARGETS, false, crate::telemetry::LogLevel::Error);
    let checks = runtime()
        .map_err(|e| CliError::failed("check", e))?
        .block_on(check::run(&settings));
    Ok(status(matches!(
        check::print(
            &checks,
            std::io::stdout().lock(),
            crate::telemetry::use_colour(std::io::stdout().is_terminal()),
        ),
        Ok(true)
    )))
}

/// `GET /healthz` on the local metrics endpoint; exit 0 on HTTP 200 (503 once the platform
/// has been unreachable for too long).
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
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", answer.status()))
        }
    };
    runtime()
        .and_then(|rt| rt.block_on(probe))
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| CliError::failed("unhealthy", e))
}

/// A small multi-threaded runtime: the work is I/O bound, two workers are plenty and keep the
/// footprint small beside the platform.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// The daemon: runs on the schedule until SIGTERM/SIGINT, or once (`CONNECTOR_RUN_AND_TERMINATE`
/// or a zero period). Exit 0 when the last run succeeded.
fn run_daemon(settings: Settings) -> Result<ExitCode, CliError> {
    use connector_runtime::schedule::{on_signals, shutdown_pair};
    crate::telemetry::init(
        crate::LOG_TARGETS,
        settings.opencti.json_logging,
        settings.connector.log_level,
    );
    for line in settings.advice() {
        tracing::warn!("{line}");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            return Ok(ExitCode::FAILURE);
        }
    };
    Ok(rt.block_on(async move {
        let (trigger, shutdown) = shutdown_pair();
        on_signals(trigger);
        let metrics = crate::metrics::ImportMetrics::with_prefix(
            settings.connector.metrics.prefix.as_deref(),
        );
        // The daemon serves the metrics (when exposed) and awaits that task at shutdown.
        match crate::import::daemon::run_daemon(settings, metrics, shutdown).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                tracing::error!(error = %e, "the connector could not start");
                ExitCode::FAILURE
            }
        }
    }))
}

fn run_convert(file: Option<PathBuf>, tlp: Tlp, observables: bool) -> Result<ExitCode, CliError> {
    let stdout = std::io::stdout().lock();
    let stderr = std::io::stderr().lock();
    let result = match file.filter(|p| p.as_os_str() != "-") {
        Some(path) => match std::fs::File::open(&path) {
            Ok(f) => convert::convert_lines(BufReader::new(f), stdout, stderr, tlp, observables),
            Err(e) => {
                return Err(CliError::failed(
                    "convert",
                    format!("{}: {e}", path.display()),
                ));
            }
        },
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("reading JSON lines from stdin (give a FILE to read a file)");
            }
            convert::convert_lines(stdin.lock(), stdout, stderr, tlp, observables)
        }
    };
    let summary = result.map_err(|e| CliError::failed("convert", e))?;
    Ok(status(summary.failed == 0))
}
