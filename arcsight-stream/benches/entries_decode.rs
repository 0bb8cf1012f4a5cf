//! What reading a whole Active List costs in memory, per entry: the reconciliation's
//! `getEntries` answer decoded as a `serde_json::Value` tree then into rows (what
//! `esm_client::active_lists::ActiveLists::get_entries` does today, and the engine's copy of
//! the value column after it), against typed serde structs decoding the same text straight
//! into the value column (the fix proposed in docs/benchmarks.md), and against what
//! `esm_client` ships now (its visitors, the value column moved out by `into_values`).
//!
//! `cargo bench -p arcsight-stream --bench entries_decode` (`ENTRIES=n`, default 900,000).
//! Heap bytes are counted by a global allocator wrapper (peak above what was live before).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use serde_json::Value;

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

/// Runs `f` and returns the heap's peak above what was live before, and what it returns.
fn peak_of<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (PEAK.load(Ordering::Relaxed) - base, out)
}

/// The answer as the ESM simulator sends it for a one-column list (prefixed dialect; one
/// value per entry is a scalar, ESM's quirk).
fn answer(n: usize) -> String {
    let mut s =
        String::from(r#"{"act.getEntriesResponse":{"act.return":{"columns":"value","entryList":["#);
    for k in 0..n {
        if k > 0 {
            s.push(',');
        }
        // Values of the lengths the generated mix has (IPs, domains, URLs, hashes).
        match k % 4 {
            0 => s.push_str(&format!(
                r#"{{"entry":"10.{}.{}.{}"}}"#,
                k >> 16,
                (k >> 8) & 255,
                k & 255
            )),
            1 => s.push_str(&format!(r#"{{"entry":"host{k}.example.org"}}"#)),
            2 => s.push_str(&format!(
                r#"{{"entry":"http://site{k}.example.net/path?q={k}"}}"#
            )),
            _ => s.push_str(&format!(
                r#"{{"entry":"{:064x}"}}"#,
                k as u128 * 0x9e37_79b9_7f4a
            )),
        }
    }
    s.push_str("]}}}");
    s
}

/// Today's path: the text to a `Value`, rows built from it while it lives, then the value
/// column copied out of the rows (the engine's `read_values`).
fn as_value_tree(text: &str) -> usize {
    let v: Value = serde_json::from_str(text).expect("JSON");
    let ret = &v["act.getEntriesResponse"]["act.return"];
    let rows: Vec<Vec<String>> = ret["entryList"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| match &e["entry"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let values: Vec<String> = rows.iter().filter_map(|r| r.first().cloned()).collect();
    drop(v);
    values.len()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Entry {
    entry: OneOrMany,
}

#[derive(Deserialize)]
struct Return {
    #[serde(rename = "entryList")]
    entry_list: Vec<Entry>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(rename = "act.return")]
    ret: Return,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "act.getEntriesResponse")]
    response: Response,
}

/// The proposal: typed structs straight from the text, the value column moved out.
fn typed(text: &str) -> usize {
    let a: Answer = serde_json::from_str(text).expect("JSON");
    let values: Vec<String> = a
        .response
        .ret
        .entry_list
        .into_iter()
        .filter_map(|e| match e.entry {
            OneOrMany::One(s) => Some(s),
            OneOrMany::Many(v) => v.into_iter().next(),
        })
        .collect();
    values.len()
}

/// The client's own path (`esm_client::active_lists`): the text decoded into rows by its
/// visitors, the value column moved out as the engine's `read_values` does.
fn esm_client_path(text: &str) -> usize {
    let entries = esm_client::active_lists::decode_entries_answer(text).expect("entries");
    let values: Vec<String> = entries.into_values("value").collect();
    values.len()
}

fn main() {
    let n: usize = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(900_000);
    let text = answer(n);
    let per = |b: usize| b as f64 / n as f64;
    println!(
        "getEntries answer of {n} entries: {:.1} MB of text ({:.1} B an entry), not counted below",
        text.len() as f64 / 1e6,
        per(text.len())
    );
    let started = std::time::Instant::now();
    let (tree, got) = peak_of(|| as_value_tree(&text));
    let tree_s = started.elapsed().as_secs_f64();
    assert_eq!(got, n);
    let started = std::time::Instant::now();
    let (typed_peak, got) = peak_of(|| typed(&text));
    let typed_s = started.elapsed().as_secs_f64();
    assert_eq!(got, n);
    let started = std::time::Instant::now();
    let (client_peak, got) = peak_of(|| esm_client_path(&text));
    let client_s = started.elapsed().as_secs_f64();
    assert_eq!(got, n);
    println!("| decoding | heap peak MB | B an entry | s |");
    println!(
        "| Value tree, rows, value column copied (today) | {:.1} | {:.0} | {:.2} |",
        tree as f64 / 1e6,
        per(tree),
        tree_s
    );
    println!(
        "| typed structs, value column moved out (proposed) | {:.1} | {:.0} | {:.2} |",
        typed_peak as f64 / 1e6,
        per(typed_peak),
        typed_s
    );
    println!(
        "| esm-client get_entries decoding, values moved out (shipped) | {:.1} | {:.0} | {:.2} |",
        client_peak as f64 / 1e6,
        per(client_peak),
        client_s
    );
}
