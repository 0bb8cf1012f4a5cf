//! `esm-simulator`: serves a simulated ArcSight ESM until Ctrl-C or SIGTERM (the connector's
//! `arcsight-incidents simulate-esm` runs the same code).

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "esm-simulator", version, about = "Serves a simulated ArcSight ESM", long_about = None)]
struct Cli {
    #[command(flatten)]
    args: esm_simulator::cli::SimulateEsmArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match esm_simulator::cli::run(cli.args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esm-simulator: {e}");
            ExitCode::FAILURE
        }
    }
}
