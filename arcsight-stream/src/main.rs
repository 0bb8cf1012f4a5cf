//! Thin entry point: everything lives in the library, so tests exercise the same code.

fn main() -> std::process::ExitCode {
    arcsight_stream::cli::main()
}
