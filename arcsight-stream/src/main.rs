//! Thin entry point: everything lives in the library, so tests exercise the same code.

fn main() -> std::process::ExitCode {
    // Before any other thread exists (see the function).
    connector_runtime::alloc::tune_malloc();
    arcsight_stream::cli::main()
}
