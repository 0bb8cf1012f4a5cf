//! What the ledger really holds at N single-value indicators with a `valid_until` (issue 21's
//! budget: 100 bytes per indicator at 1,000,000), as the allocator and the kernel see it, next
//! to the ledger's own capacity count (`Ledger::allocated_bytes`). Hash tables' load factor,
//! vectors' slack and the allocator's per-block overhead are real memory; this shows them.
//!
//! `cargo bench -p stream-core --bench ledger_memory` (N from `LEDGER_MEMORY_N`, default
//! 1,000,000). Each phase runs in a fresh child process so that one phase's freed memory
//! does not hide in the next one's RSS:
//! - `build`: N `create` events applied one by one, then a snapshot written to a temp file,
//!   then `shrink_to_fit` (figures still counted from before the build);
//! - `restore`: that snapshot read back and restored, then `desired()` iterated.
//!
//! Figures per indicator: `capacity` is `allocated_bytes()`; `requested` is what the ledger
//! asked the allocator for (live bytes after minus before); `malloc` adds what glibc really
//! reserves for each block (`malloc_usable_size` plus its 8-byte chunk header); `rss` is the
//! growth of the resident set; `peak` is the growth of the resident high-water mark (the
//! transient copies made while hash tables and vectors grow).

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use stream_core::event::{Object, StreamEvent, Topic};
use stream_core::ledger::Ledger;
use stream_core::policy::{Indicator, Policy};

struct Counting;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static FOOTPRINT: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);
static PEAK_REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// glibc's in-use chunk carries one 8-byte size word before the usable bytes.
const CHUNK_HEADER: usize = 8;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn usable(p: *mut u8) -> usize {
    // SAFETY: `p` is a live block returned by the system allocator (glibc malloc).
    unsafe { libc::malloc_usable_size(p.cast()) }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn usable(_: *mut u8) -> usize {
    0
}

fn counted_in(p: *mut u8, size: usize) {
    if !p.is_null() {
        let now = REQUESTED.fetch_add(size, Relaxed) + size;
        PEAK_REQUESTED.fetch_max(now, Relaxed);
        FOOTPRINT.fetch_add(usable(p) + CHUNK_HEADER, Relaxed);
        BLOCKS.fetch_add(1, Relaxed);
    }
}

fn counted_out(p: *mut u8, size: usize) {
    REQUESTED.fetch_sub(size, Relaxed);
    FOOTPRINT.fetch_sub(usable(p) + CHUNK_HEADER, Relaxed);
    BLOCKS.fetch_sub(1, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        counted_in(p, layout.size());
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        counted_in(p, layout.size());
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        counted_out(p, layout.size());
        unsafe { System.dealloc(p, layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_usable = usable(p);
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            let now = REQUESTED.fetch_add(new_size, Relaxed) + new_size;
            REQUESTED.fetch_sub(layout.size(), Relaxed);
            PEAK_REQUESTED.fetch_max(now, Relaxed);
            FOOTPRINT.fetch_add(usable(q), Relaxed);
            FOOTPRINT.fetch_sub(old_usable, Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn vm(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[derive(Clone, Copy)]
struct Mark {
    requested: usize,
    footprint: usize,
    blocks: usize,
    rss: usize,
    hwm: usize,
}

fn mark() -> Mark {
    Mark {
        requested: REQUESTED.load(Relaxed),
        footprint: FOOTPRINT.load(Relaxed),
        blocks: BLOCKS.load(Relaxed),
        rss: vm("VmRSS:"),
        hwm: vm("VmHWM:"),
    }
}

fn report(phase: &str, n: usize, l: &Ledger, before: Mark, secs: f64) {
    let after = mark();
    let per = |b: usize| b as f64 / n as f64;
    let (ind, val) = l.allocated_bytes();
    println!(
        "ledger {phase} at {n} indicators ({secs:.2} s): capacity {:.1} B/indicator, \
         requested {:.1}, malloc {:.1} ({} blocks), rss {:.1}, peak {:.1}",
        per(ind + val),
        per(after.requested - before.requested),
        per(after.footprint - before.footprint),
        after.blocks - before.blocks,
        per(after.rss.saturating_sub(before.rss)),
        per(after.hwm.saturating_sub(before.rss)),
    );
}

fn event(i: usize) -> StreamEvent {
    let i = i as u32;
    let v = format!(
        "{}.{}.{}.{}",
        10 + (i >> 24),
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    );
    StreamEvent {
        topic: Topic::Create,
        inner_type: None,
        object: Object::Indicator(Indicator {
            id: format!("indicator--{i:08x}-0000-4000-8000-000000000000"),
            pattern: Some(format!("[ipv4-addr:value = '{v}']")),
            pattern_type: Some("stix".into()),
            valid_until: Some(4_000_000_000_000),
            ..Default::default()
        }),
        previous_ids: vec![],
        merged_sources: vec![],
    }
}

fn build(n: usize, snapshot: &str) {
    let before = mark();
    let started = Instant::now();
    let mut l = Ledger::new(Policy::default());
    for i in 0..n {
        l.apply(&event(i), 0);
    }
    report("build", n, &l, before, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let bytes = l.snapshot();
    println!(
        "ledger snapshot: {:.1} MB ({:.1} B/indicator) in {:.2} s",
        bytes.len() as f64 / 1e6,
        bytes.len() as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );
    std::fs::write(snapshot, &bytes).expect("write the snapshot");
    drop(bytes);
    let started = Instant::now();
    l.shrink_to_fit();
    report(
        "shrink_to_fit",
        n,
        &l,
        before,
        started.elapsed().as_secs_f64(),
    );
}

fn restore(n: usize, snapshot: &str) {
    let bytes = std::fs::read(snapshot).expect("read the snapshot");
    let before = mark();
    let started = Instant::now();
    let l = Ledger::restore(Policy::default(), &bytes).expect("restore");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(l.tracked(), n);
    report("restore", n, &l, before, secs);
    let blocks = BLOCKS.load(Relaxed);
    let started = Instant::now();
    let (count, bytes) = l
        .desired()
        .fold((0usize, 0usize), |(c, b), v| (c + 1, b + v.len()));
    println!(
        "ledger desired(): {count} values ({:.1} MB) in {:.3} s, {} allocations",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        BLOCKS.load(Relaxed) - blocks
    );
}

fn main() {
    let n: usize = std::env::var("LEDGER_MEMORY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    match std::env::var("LEDGER_MEMORY_PHASE").as_deref() {
        Ok("build") => build(n, &std::env::var("LEDGER_MEMORY_SNAPSHOT").unwrap()),
        Ok("restore") => restore(n, &std::env::var("LEDGER_MEMORY_SNAPSHOT").unwrap()),
        _ => {
            let snapshot = std::env::temp_dir().join(format!(
                "stream-core-ledger-memory-{}.snap",
                std::process::id()
            ));
            let exe = std::env::current_exe().expect("own executable");
            for phase in ["build", "restore"] {
                let ok = Command::new(&exe)
                    .env("LEDGER_MEMORY_N", n.to_string())
                    .env("LEDGER_MEMORY_PHASE", phase)
                    .env("LEDGER_MEMORY_SNAPSHOT", &snapshot)
                    .status()
                    .expect("run a phase")
                    .success();
                if !ok {
                    let _ = std::fs::remove_file(&snapshot);
                    panic!("phase {phase} failed");
                }
            }
            let _ = std::fs::remove_file(&snapshot);
        }
    }
}
