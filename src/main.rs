//! Thin entry point: everything lives in the library, so tests exercise the same code.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    arcsight_incidents::cli::main()
}

/// glibc gives each thread its own malloc arena; two are plenty for this I/O-bound process and
/// keep its peak RSS low (benches/e2e.rs). The image sets `MALLOC_ARENA_MAX=2`; this does the
/// same for the bare binary, unless the variable says otherwise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: first thing in `main`, before any other thread exists; `mallopt` only sets a
        // tunable of glibc's allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
