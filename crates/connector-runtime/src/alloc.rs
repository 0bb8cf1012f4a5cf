//! The allocator's tuning both connectors start with.

/// glibc's allocator, tuned for a small peak RSS (benches/e2e.rs of each connector,
/// docs/benchmarks.md); to be called first thing in `main`. Each
/// setting unless its `MALLOC_*` variable says otherwise:
/// - one malloc arena: glibc gives each thread its own, and memory freed in one arena is not
///   reused by another; this process is I/O-bound and two worker threads barely contend
///   (two arenas peaked about 4 MiB higher at 2,000 cases);
/// - a fixed mmap threshold of 128 KiB: by default glibc raises it to the size of each large
///   block freed, so after the first save of a 1.6 MB state every later one, and every large
///   answer, came from the heap and left it fragmented; at 100,000 cases the peak was 58 MiB
///   instead of 46.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_malloc() {
    let unset = |name: &str| std::env::var_os(name).is_none();
    // SAFETY: first thing in `main`, before any other thread exists; `mallopt` only sets
    // tunables of glibc's allocator.
    unsafe {
        if unset("MALLOC_ARENA_MAX") {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
        if unset("MALLOC_MMAP_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_malloc() {}
