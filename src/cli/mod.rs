//! The command line: one binary, several subcommands. `main.rs` only calls [`main`].

pub mod convert;

use std::io::{BufReader, IsTerminal};
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
        Command::CheckSettings | Command::Run => match load_settings(&cli.config) {
            Ok(_) => ExitCode::SUCCESS,
            Err(code) => code,
        },
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
