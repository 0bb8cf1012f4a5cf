//! Thin entry point: everything lives in the library, so tests exercise the same code.

fn main() -> std::process::ExitCode {
    connector_runtime::alloc::tune_malloc();
    arcsight_incidents::cli::main()
}
