//! The command line: one binary, several subcommands. `main.rs` only calls [`main`].

pub mod check;
pub mod convert;
pub mod demo;

use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::Settings;
use crate::stix::Tlp;

#[derive(Debug, Parser)]
#[command(name = "arcsight-incidents", version, about = "Imports ArcSight ESM cases into OpenCTI", long_about = None)]
pub struct Cli {
    /// config.yml to read (environment variables win over it, key by key).
    #[arg(
        long,
        global = true,
        env = "CONNECTOR_CONFIG_FILE",
        default_value = "config.yml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the connector (the default when no subcommand is given).
    Run,
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
    /// Serve a simulated ArcSight ESM (for tests, demos and benchmarks) until stopped.
    SimulateEsm(crate::simulator::cli::SimulateEsmArgs),
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
pub const EXIT_SETTINGS: u8 = 2;

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Convert {
            file,
            tlp,
            no_observables,
        } => run_convert(file, tlp, !no_observables),
        Command::Metadata { root } => match crate::metadata::write_all(&root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("metadata: {e}");
                ExitCode::FAILURE
            }
        },
        Command::CheckSettings => match load_settings(&cli.config) {
            Ok(_) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Command::Check => run_check(&cli.config),
        Command::Healthcheck { port } => healthcheck(port),
        Command::Run => match load_settings(&cli.config) {
            Ok(settings) => run_daemon(settings),
            Err(code) => code,
        },
        Command::Demo(args) => {
            crate::telemetry::init(false, crate::settings::LogLevel::Warn);
            let summary = runtime().and_then(|rt| rt.block_on(demo::run(&args)));
            match summary {
                Ok(summary) => {
                    let _ = demo::print(&summary, std::io::stdout().lock());
                    if summary.report.succeeded() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::SimulateEsm(args) => {
            crate::telemetry::init(false, crate::settings::LogLevel::Info);
            match runtime().and_then(|rt| {
                rt.block_on(crate::simulator::cli::run(args))
                    .map_err(|e| e.to_string())
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("simulate-esm: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Loads settings, printing one line per problem to stderr; exit status 2 on failure.
pub fn load_settings(config: &std::path::Path) -> Result<Settings, ExitCode> {
    let file = config.is_file().then_some(config);
    Settings::load(file).map_err(|e| {
        for line in e.lines() {
            eprintln!("{line}");
        }
        ExitCode::from(EXIT_SETTINGS)
    })
}

fn run_check(config: &std::path::Path) -> ExitCode {
    let file = config.is_file().then_some(config);
    let settings = match Settings::load(file) {
        Ok(s) => s,
        Err(e) => {
            let mut out = std::io::stdout().lock();
            for line in e.lines() {
                let _ = writeln!(out, "{:<12} {:<7} {line}", "settings", "FAILED");
            }
            return ExitCode::from(EXIT_SETTINGS);
        }
    };
    // Only warnings and errors on stderr: the checks' lines are the output.
    crate::telemetry::init(false, crate::settings::LogLevel::Error);
    let checks = match runtime() {
        Ok(rt) => rt.block_on(check::run(&settings)),
        Err(e) => {
            eprintln!("check: {e}");
            return ExitCode::FAILURE;
        }
    };
    match check::print(&checks, std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// `GET /healthz` on the local metrics endpoint; exit 0 on HTTP 200.
fn healthcheck(port: u16) -> ExitCode {
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
    match runtime().and_then(|rt| rt.block_on(probe)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
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
fn run_daemon(settings: Settings) -> ExitCode {
    use crate::sync::schedule::{on_signals, shutdown_pair};
    crate::telemetry::init(settings.opencti.json_logging, settings.connector.log_level);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let (trigger, shutdown) = shutdown_pair();
        on_signals(trigger);
        let metrics = crate::metrics::Metrics::new();
        if settings.connector.expose_metrics {
            let addr = std::net::SocketAddr::new(
                settings.connector.metrics_host,
                settings.connector.metrics_port,
            );
            let mut stop = shutdown.clone();
            let metrics = metrics.clone();
            // Ready means a run succeeded within two periods (or an hour when running once).
            let window = settings
                .connector
                .duration_period
                .map(|p| p * 2)
                .unwrap_or(std::time::Duration::from_secs(3600))
                .max(std::time::Duration::from_secs(120));
            tokio::spawn(async move {
                if let Err(e) =
                    crate::metrics::serve(addr, metrics, window, async move { stop.wait().await })
                        .await
                {
                    tracing::error!(error = %e, %addr, "the metrics endpoint could not start");
                }
            });
        }
        match crate::sync::daemon::run_daemon(settings, metrics, shutdown).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                tracing::error!(error = %e, "the connector could not start");
                ExitCode::FAILURE
            }
        }
    })
}

fn run_convert(file: Option<PathBuf>, tlp: Tlp, observables: bool) -> ExitCode {
    let stdout = std::io::stdout().lock();
    let stderr = std::io::stderr().lock();
    let result = match file.filter(|p| p.as_os_str() != "-") {
        Some(path) => match std::fs::File::open(&path) {
            Ok(f) => convert::convert_lines(BufReader::new(f), stdout, stderr, tlp, observables),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
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
    match result {
        Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("convert: {e}");
            ExitCode::FAILURE
        }
    }
}
