//! Reading a whole Active List stays within a small heap cost per entry: the `getEntries`
//! answer is decoded from its text into rows, never into a `serde_json::Value` tree (~855 B an
//! entry, measured by arcsight-stream's `entries_decode` bench). A binary of its own: the
//! counting allocator is global, and this is its one test, so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use esm_client::active_lists::decode_entries_answer;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A one-column list's answer, in the prefixed dialect, each entry a one-value array (the
/// rendering that costs a `Value` tree most: an object and an array per entry).
fn answer(n: usize) -> String {
    let mut s = String::from(
        r#"{"act.getEntriesResponse":{"act.return":{"act.columns":["value"],"act.entryList":["#,
    );
    for k in 0..n {
        if k > 0 {
            s.push(',');
        }
        s.push_str(&format!(r#"{{"act.entry":["host{k}.example.org"]}}"#));
    }
    s.push_str("]}}}");
    s
}

#[test]
fn a_large_answer_costs_little_heap_per_entry() {
    const N: usize = 100_000;
    // Rows as kept: the row's Vec (24 B) and its one String (24 B, plus ~20 B of text), with
    // the outer Vec's growth on top. A Value tree costs several times more.
    const MAX_BYTES_PER_ENTRY: usize = 200;
    let text = answer(N);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let entries = decode_entries_answer(&text).expect("the answer decodes");
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert_eq!(entries.rows.len(), N);
    assert_eq!(entries.skipped, 0);
    assert_eq!(entries.rows[N - 1], [format!("host{}.example.org", N - 1)]);
    let per_entry = peak / N;
    assert!(
        per_entry < MAX_BYTES_PER_ENTRY,
        "{per_entry} B an entry at the peak (limit {MAX_BYTES_PER_ENTRY})"
    );
    // The same answer as a Value tree, to show the limit can fail (and why it exists).
    drop(entries);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let tree: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let tree_per_entry = (PEAK.load(Ordering::Relaxed) - base) / N;
    drop(tree);
    assert!(
        tree_per_entry > MAX_BYTES_PER_ENTRY,
        "a Value tree costs {tree_per_entry} B an entry"
    );
}
