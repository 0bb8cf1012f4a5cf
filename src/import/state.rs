//! The connector's state, kept in the platform, and the selection of cases to send.
//!
//! ESM has no "changed since" query, and its `modifiedTimestamp` is not a clock we can trust
//! (cases imported from another ESM keep their stamps, clocks step back, a case stamped in
//! 2100 exists). So the state does not say "how far we got in time"; it says "which version
//! of which case was delivered":
//! - `ledger`: one entry per delivered case, a 48-bit hash of its id and a 48-bit hash of the
//!   version delivered (the id, `modifiedTimestamp`, `modificationCount` and the event ids),
//!   packed in 12 bytes and
//!   sent as base64 (16 characters a case: 100,000 cases fit in 1.6 MB);
//! - `retry`: cases that failed, by id, with their attempts and the run before which they are
//!   not tried again (a backoff counted in runs);
//! - `absent`: ledger or retry entries missing from the last whole listings, and how many in a
//!   row: a case is forgotten after `FORGET_AFTER` of them, or when ESM says it is gone.
//!
//! A case is sent when it is new (not in the ledger) or changed (its version differs from the
//! ledger's), whatever its timestamp relative to other cases.
//!
//! Hash collisions: two ids with one id hash share one ledger entry; as the version hash mixes
//! in the id, each one's delivery overwrites the other's version, so both look changed every
//! run (sent again each run, never lost); a version hash collision (1 in 2^48 per edit) would
//! hide one edit.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::esm::model::EventId;

/// State format version we write.
pub(crate) const STATE_VERSION: u32 = 2;

/// Consecutive whole listings without a case before it is forgotten.
pub(crate) const FORGET_AFTER: u8 = 3;

/// Runs a case whose events come back incomplete is held back before it is delivered anyway.
pub(crate) const MAX_INCOMPLETE_RUNS: u32 = 3;

/// Recent works whose fate (imported, errors, deleted) is not read yet, each with the cases
/// delivered in it: the oldest is dropped beyond this (the periodic verification still
/// catches its cases).
pub(crate) const MAX_TRACKED_WORKS: usize = 8;

/// Case id hashes kept across the tracked works (8 base64 characters each: 800 KB at the
/// bound). A run delivering more tracks only this many; the verification covers the rest.
pub(crate) const MAX_TRACKED_CASES: usize = 100_000;

const WORK_CASE_BYTES: usize = 6;

/// The longest backoff of a failing case, in runs.
const MAX_BACKOFF_RUNS: u64 = 32;

const HASH_MASK: u64 = (1 << 48) - 1;
const ENTRY_BYTES: usize = 12;
const ABSENT_BYTES: usize = 7;

/// A stable 48-bit hash (SHA-1 through UUIDv5: the same in every build and process).
fn hash48(kind: &[u8], text: &[u8]) -> u64 {
    // Any fixed namespace does; this one is ours only.
    const NS: uuid::Uuid = uuid::Uuid::from_u128(0x5f3c_1a8e_2b4d_4c6f_9e7a_0d1b_3c5e_7f90);
    let mut input = Vec::with_capacity(kind.len() + 1 + text.len());
    input.extend_from_slice(kind);
    input.push(0);
    input.extend_from_slice(text);
    let b = uuid::Uuid::new_v5(&NS, &input).into_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0]) & HASH_MASK
}

/// The ledger key of a case id.
pub(crate) fn id_hash(id: &str) -> u64 {
    hash48(b"id", id.as_bytes())
}

/// The ledger version of a case as ESM answered it: its id, its `modifiedTimestamp` (or
/// `modifiedTime`), its `modificationCount` (as sent; either may be missing) and its event ids.
/// The id is mixed in so two ids whose 48-bit id hashes collide never share a version (the
/// second is not hidden as "current" behind the first); the event ids (sorted and deduplicated:
/// their order changes nothing we deliver) so an event linked to a case without a
/// `modificationCount` bump still makes the case changed.
pub(crate) fn version_hash(id: &str, case: &Value, event_ids: &[EventId]) -> u64 {
    let field = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| case.get(*k).filter(|v| !v.is_null()))
            .map(Value::to_string)
            .unwrap_or_default()
    };
    let mut events: Vec<EventId> = event_ids.to_vec();
    events.sort_unstable();
    events.dedup();
    let events: Vec<String> = events.iter().map(EventId::to_string).collect();
    let text = format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        id,
        field(&["modifiedTimestamp", "modifiedTime"]),
        field(&["modificationCount"]),
        events.join(",")
    );
    hash48(b"version", text.as_bytes())
}

/// A failing case: how often it failed, and when it may be tried again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Retry {
    /// Failed attempts (read, events, conversion or delivery) in a row.
    #[serde(default, rename = "n", skip_serializing_if = "is_zero32")]
    pub(crate) attempts: u32,
    /// Not tried before this run number.
    #[serde(default, rename = "at", skip_serializing_if = "is_zero64")]
    pub(crate) not_before: u64,
    /// Runs in a row its events came back incomplete.
    #[serde(default, rename = "inc", skip_serializing_if = "is_zero32")]
    pub(crate) incomplete: u32,
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}
fn is_zero64(n: &u64) -> bool {
    *n == 0
}

/// A version-1 watermark, kept until the first listing after the upgrade applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct V1Watermark {
    pub(crate) modified_ms: i64,
    #[serde(default)]
    pub(crate) ids: std::collections::BTreeSet<String>,
}

impl V1Watermark {
    fn covers(&self, modified_ms: i64, id: &str) -> bool {
        modified_ms < self.modified_ms || (modified_ms == self.modified_ms && self.ids.contains(id))
    }
}

/// What we persist through `pingConnector`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// When the last successful run ended, in unix seconds (the Python connector's only
    /// field). The platform's UI shows "last run" only when the state's `last_run` is a number.
    pub(crate) last_run: Option<i64>,
    /// id hash -> version hash of every delivered case.
    ledger: BTreeMap<u64, u64>,
    /// Failing cases by id.
    pub(crate) retry: BTreeMap<String, Retry>,
    /// id hash -> whole listings in a row without it.
    absent: BTreeMap<u64, u8>,
    /// Runs started: the clock of the retry backoff.
    pub(crate) runs: u64,
    /// A version-1 state's watermark, applied at the next listing.
    upgrade: Option<V1Watermark>,
    /// Recent works and the cases delivered in them, until the platform says what became of
    /// them (see `sync::verify`). Oldest first.
    works: Vec<TrackedWork>,
    /// Unix seconds of the last complete verification that delivered cases exist in the
    /// platform (0: never).
    pub(crate) verified_at: u64,
}

/// A work whose fate is not read yet, and the id hashes of the cases delivered in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrackedWork {
    pub(crate) id: String,
    cases: Vec<u64>,
}

#[derive(Default, Serialize, Deserialize)]
struct WireWork {
    id: String,
    /// 6 bytes (an id hash) a case, base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cases: String,
}

/// The JSON shape, for every version we read.
#[derive(Default, Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(default)]
    version: u32,
    /// Written as unix seconds; read as seconds or as the RFC 3339 text written before.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_last_run"
    )]
    last_run: Option<i64>,
    /// Borrowed from the text when read (base64 has nothing to unescape): 16 MB less at
    /// start with 1,000,000 cases.
    #[serde(borrow, default, skip_serializing_if = "str::is_empty")]
    ledger: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "str::is_empty")]
    absent: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "is_zero64")]
    runs: u64,
    /// Version 1: a list of ids; version 2: id -> [`Retry`].
    #[serde(default, skip_serializing_if = "Value::is_null")]
    retry: Value,
    /// Version 1 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watermark: Option<V1Watermark>,
    /// Added in version 2 without a bump: older builds ignore both fields (they only lose
    /// the follow-up of recent works, which the verification makes up for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    works: Vec<WireWork>,
    #[serde(default, skip_serializing_if = "is_zero64")]
    verified: u64,
}

/// `last_run` as unix seconds: a number (what we write, and what the UI shows), or the RFC 3339
/// text earlier versions wrote. Anything else is "unknown", never a reason to drop the state
/// (the ledger beside it is what matters).
fn de_last_run<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(t) => chrono::DateTime::parse_from_rfc3339(t.trim())
            .ok()
            .map(|t| t.timestamp()),
        _ => None,
    })
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

fn le48(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&bytes[..6]);
    u64::from_le_bytes(b)
}

/// The ledger is the import's platform state: the runtime's writer pings it, adopts its reset.
impl connector_runtime::platform::ConnectorState for State {
    const RESET_NOTICE: &'static str =
        "the state was reset in the platform: the next run imports everything again";

    fn from_platform(text: Option<&str>) -> State {
        State::from_platform(text)
    }

    fn to_platform(&self) -> String {
        State::to_platform(self)
    }
}

impl State {
    /// Reads the platform's `connector_state`. Empty, `null`, unreadable or foreign states (the
    /// Python connector's `{"last_run": ...}`) mean "nothing delivered": everything is imported
    /// once, and since the ids are the same nothing is duplicated. A version-1 state (a
    /// watermark) keeps its meaning: see [`State::take_upgrade`].
    pub(crate) fn from_platform(text: Option<&str>) -> State {
        let Some(text) = text
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "null")
        else {
            return State::default();
        };
        let Ok(wire) = serde_json::from_str::<Wire>(text) else {
            return State::default();
        };
        if wire.version > STATE_VERSION {
            return State::default();
        }
        let mut s = State {
            last_run: wire.last_run,
            runs: wire.runs,
            upgrade: wire.watermark,
            verified_at: wire.verified,
            ..State::default()
        };
        for w in wire.works.into_iter().take(MAX_TRACKED_WORKS) {
            let cases = B64
                .decode(w.cases.as_bytes())
                .map(|b| b.chunks_exact(WORK_CASE_BYTES).map(le48).collect())
                .unwrap_or_default();
            s.works.push(TrackedWork { id: w.id, cases });
        }
        // Decoded a slice at a time (16 characters are one entry), not into one buffer of the
        // whole ledger (12 MB at 1,000,000 cases); a ledger invalid anywhere counts as none,
        // as when it was decoded whole.
        for part in wire.ledger.as_bytes().chunks(16 * 4096) {
            let Ok(bytes) = B64.decode(part) else {
                s.ledger.clear();
                break;
            };
            for e in bytes.chunks_exact(ENTRY_BYTES) {
                s.ledger.insert(le48(&e[..6]), le48(&e[6..]));
            }
        }
        if let Ok(bytes) = B64.decode(wire.absent.as_bytes()) {
            for e in bytes.chunks_exact(ABSENT_BYTES) {
                s.absent.insert(le48(&e[..6]), e[6]);
            }
        }
        match wire.retry {
            Value::Array(ids) => {
                for id in ids.iter().filter_map(Value::as_str) {
                    s.retry.insert(id.to_owned(), Retry::default());
                }
            }
            v @ Value::Object(_) => {
                s.retry = serde_json::from_value(v).unwrap_or_default();
            }
            _ => {}
        }
        s
    }

    /// The JSON text sent with `pingConnector`.
    pub(crate) fn to_platform(&self) -> String {
        let mut ledger = Vec::with_capacity(self.ledger.len() * ENTRY_BYTES);
        for (id, version) in &self.ledger {
            ledger.extend_from_slice(&id.to_le_bytes()[..6]);
            ledger.extend_from_slice(&version.to_le_bytes()[..6]);
        }
        let mut absent = Vec::with_capacity(self.absent.len() * ABSENT_BYTES);
        for (id, n) in &self.absent {
            absent.extend_from_slice(&id.to_le_bytes()[..6]);
            absent.push(*n);
        }
        // Encoded, then the raw bytes freed, before the JSON text is built: one copy fewer
        // at the save's peak.
        let ledger = B64.encode(ledger);
        let wire = Wire {
            version: STATE_VERSION,
            last_run: self.last_run,
            ledger: Cow::Owned(ledger),
            absent: Cow::Owned(B64.encode(absent)),
            runs: self.runs,
            retry: if self.retry.is_empty() {
                Value::Null
            } else {
                serde_json::to_value(&self.retry).unwrap_or_default()
            },
            watermark: self.upgrade.clone(),
            works: self
                .works
                .iter()
                .map(|w| {
                    let mut b = Vec::with_capacity(w.cases.len() * WORK_CASE_BYTES);
                    for h in &w.cases {
                        b.extend_from_slice(&h.to_le_bytes()[..WORK_CASE_BYTES]);
                    }
                    WireWork {
                        id: w.id.clone(),
                        cases: B64.encode(b),
                    }
                })
                .collect(),
            verified: self.verified_at,
        };
        // Written into a buffer of its exact size: a growing one would take up to twice the
        // text (3.2 MB at 100,000 cases) at every save.
        crate::http::json_body(&wire)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_else(|| "null".into())
    }

    /// Cases the ledger holds.
    pub(crate) fn delivered_count(&self) -> usize {
        self.ledger.len()
    }

    /// Was this version of this case delivered?
    pub(crate) fn is_current(&self, id: &str, version: u64) -> bool {
        self.ledger.get(&id_hash(id)) == Some(&version)
    }

    /// Starts a run: returns its number (the backoff clock).
    pub(crate) fn start_run(&mut self) -> u64 {
        self.runs += 1;
        self.runs
    }

    /// A version-1 state's watermark, once: the cases it covers (and that are not in `retry`)
    /// count as delivered in the version listed now, so an upgrade re-imports nothing.
    pub(crate) fn apply_upgrade(&mut self, seen: &[Seen]) {
        let Some(w) = self.upgrade.take() else {
            return;
        };
        let mut n = 0usize;
        for c in seen {
            if !self.retry.contains_key(&c.id) && w.covers(c.modified_ms.unwrap_or(i64::MIN), &c.id)
            {
                self.ledger.insert(id_hash(&c.id), c.version);
                n += 1;
            }
        }
        tracing::info!(
            cases = n,
            "state upgraded from version 1: cases below the old watermark count as delivered"
        );
    }

    /// Records a case as delivered in `version`.
    pub(crate) fn mark_delivered(&mut self, id: &str, version: u64) {
        self.retry.remove(id);
        let h = id_hash(id);
        self.absent.remove(&h);
        self.ledger.insert(h, version);
    }

    /// Notes that case `id` was delivered in work `work_id`, so the work's fate can send it
    /// again. Returns false when the case is not tracked (the bound is reached). A new work
    /// beyond [`MAX_TRACKED_WORKS`] drops the oldest: returned in the error side as its id.
    pub(crate) fn track_delivery(&mut self, work_id: &str, id: &str) -> Result<bool, String> {
        let mut dropped = Ok(());
        if self.works.last().is_none_or(|w| w.id != work_id) {
            if self.works.len() >= MAX_TRACKED_WORKS {
                dropped = Err(self.works.remove(0).id);
            }
            self.works.push(TrackedWork {
                id: work_id.to_owned(),
                cases: Vec::new(),
            });
        }
        let total: usize = self.works.iter().map(|w| w.cases.len()).sum();
        let tracked = total < MAX_TRACKED_CASES;
        if let Some(w) = self.works.last_mut().filter(|_| tracked) {
            w.cases.push(id_hash(id));
        }
        dropped.map(|()| tracked)
    }

    /// The ids of the works whose fate is not read yet, oldest first.
    pub(crate) fn tracked_works(&self) -> Vec<String> {
        self.works.iter().map(|w| w.id.clone()).collect()
    }

    /// The id hashes of every case delivered in a tracked work.
    pub(crate) fn tracked_cases(&self) -> HashSet<u64> {
        self.works
            .iter()
            .flat_map(|w| w.cases.iter().copied())
            .collect()
    }

    /// Stops tracking a work; with `resend`, its cases leave the ledger so the next
    /// selection sends them again (same ids: the platform merges them). Returns how many
    /// cases the ledger forgot.
    pub(crate) fn settle_work(&mut self, work_id: &str, resend: bool) -> usize {
        let Some(at) = self.works.iter().position(|w| w.id == work_id) else {
            return 0;
        };
        let work = self.works.remove(at);
        if !resend {
            return 0;
        }
        work.cases
            .iter()
            .filter(|h| self.ledger.remove(h).is_some())
            .count()
    }

    /// Forgets a delivered case by its id hash (the platform does not hold it): it is new
    /// again at the next selection. Returns whether the ledger held it.
    pub(crate) fn forget_delivered(&mut self, id_hash: u64) -> bool {
        self.ledger.remove(&id_hash).is_some()
    }

    /// Records a failure of a case in run `run`: it is tried again after a backoff that doubles
    /// with each failure in a row (1, 2, 4 ... runs, at most [`MAX_BACKOFF_RUNS`]).
    pub(crate) fn mark_failed(&mut self, id: &str, run: u64) {
        let r = self.retry.entry(id.to_owned()).or_default();
        r.attempts = r.attempts.saturating_add(1);
        let backoff = 1u64 << (r.attempts - 1).min(5);
        r.not_before = run + backoff.min(MAX_BACKOFF_RUNS);
    }

    /// Records that a case's events came back incomplete in run `run`; returns how many runs
    /// in a row that happened (the case is tried again next run).
    pub(crate) fn mark_incomplete(&mut self, id: &str, run: u64) -> u32 {
        let r = self.retry.entry(id.to_owned()).or_default();
        r.incomplete = r.incomplete.saturating_add(1);
        r.not_before = run + 1;
        r.incomplete
    }

    /// How many runs in a row a case's events came back incomplete.
    pub(crate) fn incomplete_runs(&self, id: &str) -> u32 {
        self.retry.get(id).map_or(0, |r| r.incomplete)
    }

    /// Forgets a case ESM says is gone.
    pub(crate) fn forget(&mut self, id: &str) {
        self.retry.remove(id);
        let h = id_hash(id);
        self.ledger.remove(&h);
        self.absent.remove(&h);
    }

    /// Does a listing of `listed` ids look whole? An empty listing, or one with fewer than half
    /// the ids the ledger holds, is a glitch (proxy, ESM restart, ACL change) until proven
    /// otherwise.
    pub(crate) fn listing_looks_whole(&self, listed: usize) -> bool {
        let known = self.ledger.len().max(self.retry.len());
        known == 0 || (listed > 0 && listed * 2 >= known)
    }

    /// After a whole listing: entries missing from it count one more absence, and are forgotten
    /// after [`FORGET_AFTER`] in a row; entries listed again lose their count. Returns how many
    /// cases were forgotten.
    pub(crate) fn note_listing(&mut self, listed: &HashSet<u64>) -> usize {
        let retry_hashes: HashMap<u64, String> = self
            .retry
            .keys()
            .map(|id| (id_hash(id), id.clone()))
            .collect();
        let missing: Vec<u64> = self
            .ledger
            .keys()
            .chain(retry_hashes.keys())
            .filter(|h| !listed.contains(h))
            .copied()
            .collect::<HashSet<u64>>()
            .into_iter()
            .collect();
        self.absent.retain(|h, _| !listed.contains(h));
        let mut forgotten = 0;
        for h in missing {
            let n = self.absent.entry(h).or_insert(0);
            *n = n.saturating_add(1);
            if *n >= FORGET_AFTER {
                self.absent.remove(&h);
                self.ledger.remove(&h);
                if let Some(id) = retry_hashes.get(&h) {
                    self.retry.remove(id);
                }
                forgotten += 1;
            }
        }
        forgotten
    }
}

/// A case as seen in the listing: its id, modification time (ms; only to order the sends) and
/// version hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) id: String,
    pub(crate) modified_ms: Option<i64>,
    pub(crate) version: u64,
}

/// What a run sends.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    pub(crate) cases: Vec<Seen>,
    /// New or changed cases, and failing cases due now (the run's figure).
    pub(crate) changed: usize,
}

/// The cases to send in run `run`: failing cases due now (at most half of `max_cases` when
/// others wait, so a case that keeps failing never starves the rest), then new and changed
/// cases, oldest modification first (ties by id); at most `max_cases`.
#[cfg(test)]
pub(crate) fn select(state: &State, seen: &[Seen], max_cases: usize, run: u64) -> Selection {
    let (picked, changed) = pick(state, seen, max_cases, run);
    Selection {
        cases: picked.into_iter().map(|i| seen[i].clone()).collect(),
        changed,
    }
}

/// [`select`], moving the chosen cases out of `seen` rather than copying them: at 100,000
/// listed cases a copy of every id is megabytes at the run's peak.
pub(crate) fn select_owned(
    state: &State,
    seen: Vec<Seen>,
    max_cases: usize,
    run: u64,
) -> Selection {
    let (picked, changed) = pick(state, &seen, max_cases, run);
    let mut slots: Vec<Option<Seen>> = seen.into_iter().map(Some).collect();
    // Sized exactly: the selection lives for the whole run (100,000 cases is 4 MB; collected
    // through an iterator it grew to 6 MB).
    let mut cases = Vec::with_capacity(picked.len());
    cases.extend(picked.into_iter().filter_map(|i| slots[i].take()));
    Selection { cases, changed }
}

/// The indexes into `seen` of the cases a run sends, in the order it sends them, and the
/// number of new, changed or due cases.
fn pick(state: &State, seen: &[Seen], max_cases: usize, run: u64) -> (Vec<usize>, usize) {
    let mut due: Vec<usize> = Vec::new();
    let mut fresh: Vec<usize> = Vec::new();
    for (i, c) in seen.iter().enumerate() {
        match state.retry.get(&c.id) {
            Some(r) if r.not_before <= run => due.push(i),
            Some(_) => {}
            None if !state.is_current(&c.id, c.version) => fresh.push(i),
            None => {}
        }
    }
    let order = |a: &Seen, b: &Seen| {
        (a.modified_ms.unwrap_or(i64::MIN), &a.id).cmp(&(b.modified_ms.unwrap_or(i64::MIN), &b.id))
    };
    due.sort_by(|&a, &b| {
        let (a, b) = (&seen[a], &seen[b]);
        let (ra, rb) = (&state.retry[&a.id], &state.retry[&b.id]);
        (ra.attempts, ra.not_before)
            .cmp(&(rb.attempts, rb.not_before))
            .then_with(|| order(a, b))
    });
    fresh.sort_by(|&a, &b| order(&seen[a], &seen[b]));
    let changed = due.len() + fresh.len();
    let retry_quota = if fresh.is_empty() {
        max_cases
    } else {
        max_cases.div_ceil(2)
    };
    due.truncate(retry_quota);
    let room = max_cases.saturating_sub(due.len());
    due.extend(fresh.into_iter().take(room));
    (due, changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The platform answers `""` after an operator's reset (`resetStateConnector`), as it
    /// does `null` for a connector that never saved: both are "nothing delivered".
    #[test]
    fn an_empty_string_from_the_platform_is_the_empty_state() {
        for text in [Some(""), Some("  "), Some("null"), None] {
            let s = State::from_platform(text);
            assert_eq!(s, State::default(), "{text:?}");
        }
    }

    fn seen(id: &str, m: i64) -> Seen {
        Seen {
            id: id.into(),
            modified_ms: Some(m),
            version: version_hash(id, &json!({"modifiedTimestamp": m}), &[]),
        }
    }

    fn ids(sel: &Selection) -> Vec<&str> {
        sel.cases.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn python_empty_and_foreign_states_mean_full_import() {
        for text in [
            None,
            Some(""),
            Some("null"),
            Some(r#"{"last_run": "2024-01-01T00:00:00+00:00"}"#),
            Some("{not json"),
            Some(r#"{"version": 99, "ledger": "AAAA"}"#),
        ] {
            let s = State::from_platform(text);
            assert_eq!(s.delivered_count(), 0, "{text:?}");
            assert_eq!(select(&s, &[seen("a", 1)], 10, 1).cases.len(), 1);
        }
    }

    #[test]
    fn last_run_is_written_as_unix_seconds_and_the_old_text_still_loads() {
        let s = State {
            last_run: Some(1_765_000_000),
            ..State::default()
        };
        let wire: Value = serde_json::from_str(&s.to_platform()).unwrap();
        assert_eq!(wire["last_run"], json!(1_765_000_000));
        // 2026-11-29T22:00:00Z is 1,795,989,600 s after the epoch.
        let old = r#"{"version":2,"last_run":"2026-11-29T23:00:00+01:00","runs":3}"#;
        let back = State::from_platform(Some(old));
        assert_eq!((back.last_run, back.runs), (Some(1_795_989_600), 3));
        // A last_run of no known form costs the field, not the state.
        let odd = r#"{"version":2,"last_run":[1],"runs":3}"#;
        let back = State::from_platform(Some(odd));
        assert_eq!((back.last_run, back.runs), (None, 3));
    }

    #[test]
    fn state_round_trips_through_the_platform() {
        let mut s = State::default();
        let run = s.start_run();
        s.mark_delivered("a", 5);
        s.mark_delivered("b", 6);
        s.mark_failed("c", run);
        s.mark_incomplete("d", run);
        s.note_listing(&[id_hash("a"), id_hash("c"), id_hash("d")].into());
        let back = State::from_platform(Some(&s.to_platform()));
        assert_eq!(back, s);
    }

    #[test]
    fn tracked_works_round_trip_and_an_older_state_reads_as_none() {
        let mut s = State::default();
        s.mark_delivered("a", 5);
        s.mark_delivered("b", 6);
        assert_eq!(s.track_delivery("work-1", "a"), Ok(true));
        assert_eq!(s.track_delivery("work-2", "b"), Ok(true));
        s.verified_at = 1_700_000_000;
        let back = State::from_platform(Some(&s.to_platform()));
        assert_eq!(back, s);
        // A state written before these fields reads with nothing tracked.
        let old = State::from_platform(Some(r#"{"version":2,"runs":3}"#));
        assert!(old.tracked_works().is_empty() && old.verified_at == 0);
        // A deleted or errored work's cases leave the ledger; a settled one's stay.
        let mut s = back;
        assert_eq!(s.settle_work("work-2", false), 0);
        assert!(s.is_current("b", 6));
        assert_eq!(s.settle_work("work-1", true), 1);
        assert!(!s.is_current("a", 5));
        assert!(s.tracked_works().is_empty());
    }

    #[test]
    fn tracked_works_are_bounded() {
        let mut s = State::default();
        for i in 0..MAX_TRACKED_WORKS {
            assert_eq!(s.track_delivery(&format!("w{i}"), "a"), Ok(true));
        }
        assert_eq!(s.track_delivery("new", "a"), Err("w0".to_owned()));
        assert_eq!(s.tracked_works().len(), MAX_TRACKED_WORKS);
        let mut s = State::default();
        s.works.push(TrackedWork {
            id: "w".into(),
            cases: (0..MAX_TRACKED_CASES as u64).collect(),
        });
        assert_eq!(s.track_delivery("w", "over"), Ok(false));
        assert_eq!(s.tracked_cases().len(), MAX_TRACKED_CASES);
    }

    #[test]
    fn the_ledger_costs_16_characters_a_case() {
        let mut s = State::default();
        for i in 0..1000 {
            s.mark_delivered(&format!("case-{i}"), i);
        }
        let text = s.to_platform();
        let ledger = serde_json::from_str::<Value>(&text).unwrap()["ledger"]
            .as_str()
            .unwrap()
            .len();
        assert_eq!(ledger, 16_000);
    }

    #[test]
    fn a_case_is_sent_when_new_or_changed_whatever_its_timestamp() {
        let mut s = State::default();
        // One case stamped in 2100, delivered.
        s.mark_delivered("future", seen("future", 4_102_444_800_000).version);
        // A case stamped long before it: new, so sent.
        let all = [seen("future", 4_102_444_800_000), seen("old", 1)];
        assert_eq!(ids(&select(&s, &all, 10, 1)), ["old"]);
        s.mark_delivered("old", all[1].version);
        assert!(select(&s, &all, 10, 2).cases.is_empty());
        // Edited with an older stamp: changed, so sent.
        let edited = [seen("future", 4_102_444_800_000), seen("old", 0)];
        assert_eq!(ids(&select(&s, &edited, 10, 3)), ["old"]);
        // The same stamp and a new modificationCount is a change too.
        let v2 = version_hash(
            "old",
            &json!({"modifiedTimestamp": 1, "modificationCount": 2}),
            &[],
        );
        assert_ne!(v2, all[1].version);
    }

    #[test]
    fn the_version_mixes_in_the_id_and_the_event_ids() {
        let v = json!({"modifiedTimestamp": 1, "modificationCount": 2});
        assert_ne!(version_hash("a", &v, &[1]), version_hash("b", &v, &[1]));
        assert_ne!(version_hash("a", &v, &[1]), version_hash("a", &v, &[1, 2]));
        // Order and repeats of the listed events change nothing we deliver.
        assert_eq!(
            version_hash("a", &v, &[2, 1, 2]),
            version_hash("a", &v, &[1, 2])
        );
    }

    #[test]
    fn two_colliding_ids_are_both_delivered() {
        // A real 48-bit collision of the id hash.
        let (a, b) = ("case-0016331425", "case-0053236029");
        assert_eq!(id_hash(a), id_hash(b));
        let all = [seen(a, 7), seen(b, 7)];
        let mut s = State::default();
        let mut delivered = HashSet::new();
        for run in 1..=4 {
            for c in select(&s, &all, 1, run).cases {
                s.mark_delivered(&c.id, c.version);
                delivered.insert(c.id);
            }
        }
        assert_eq!(delivered, [a.to_owned(), b.to_owned()].into());
    }

    #[test]
    fn a_version_1_state_upgrades_without_a_reimport() {
        let v1 = r#"{"version":1,"watermark":{"modified_ms":10,"ids":["t"]},"retry":["r"]}"#;
        let mut s = State::from_platform(Some(v1));
        let all = [
            seen("a", 5),
            seen("t", 10),
            seen("u", 10),
            seen("r", 3),
            seen("b", 11),
        ];
        s.apply_upgrade(&all);
        let run = s.start_run();
        let sel = select(&s, &all, 10, run);
        // Covered by the watermark: a, t. Above it or tied and not listed: u, b. In retry: r.
        assert_eq!(ids(&sel), ["r", "u", "b"]);
        // Applied once: a later run does not mark more.
        let back = State::from_platform(Some(&s.to_platform()));
        assert_eq!(back.upgrade, None);
    }

    #[test]
    fn failing_cases_back_off_and_take_at_most_half_of_max_cases() {
        let mut s = State::default();
        let all: Vec<Seen> = (0..10).map(|i| seen(&format!("c{i}"), i)).collect();
        let run = s.start_run();
        for c in &all[..6] {
            s.mark_failed(&c.id, run);
        }
        // Run 2: six failing cases are due, four fresh: failing ones take at most 2 of 4.
        let run = s.start_run();
        let sel = select(&s, &all, 4, run);
        assert_eq!(ids(&sel), ["c0", "c1", "c6", "c7"]);
        assert_eq!(sel.changed, 10);
        // A second failure in a row: not due at run 3, due at run 4.
        s.mark_failed("c0", run);
        assert!(!ids(&select(&s, &all, 20, run + 1)).contains(&"c0"));
        assert!(ids(&select(&s, &all, 20, run + 2)).contains(&"c0"));
        // Only failing cases left: they may take all of max_cases.
        for c in &all[6..] {
            s.mark_delivered(&c.id, c.version);
        }
        assert_eq!(select(&s, &all, 4, run + 2).cases.len(), 4);
    }

    #[test]
    fn a_shrunken_listing_is_not_trusted() {
        let mut s = State::default();
        for i in 0..10 {
            s.mark_delivered(&format!("c{i}"), 1);
        }
        assert!(!s.listing_looks_whole(0));
        assert!(!s.listing_looks_whole(4));
        assert!(s.listing_looks_whole(5));
        assert!(State::default().listing_looks_whole(0));
    }

    #[test]
    fn a_case_is_forgotten_after_several_whole_listings_without_it() {
        let mut s = State::default();
        s.mark_delivered("a", 1);
        s.mark_delivered("gone", 1);
        s.mark_failed("gone-too", 1);
        let listed: HashSet<u64> = [id_hash("a")].into();
        for _ in 1..FORGET_AFTER {
            assert_eq!(s.note_listing(&listed), 0);
        }
        assert_eq!(s.note_listing(&listed), 2);
        assert_eq!(s.delivered_count(), 1);
        assert!(s.retry.is_empty());
        // Listed again before the count runs out: the count starts over.
        s.mark_delivered("b", 1);
        s.note_listing(&listed);
        s.note_listing(&[id_hash("a"), id_hash("b")].into());
        s.note_listing(&listed);
        s.note_listing(&listed);
        assert!(s.is_current("b", 1));
    }

    proptest! {
        /// Whatever the timestamps (ties, stamps in any order), delivering what `select`
        /// returns, run after run, delivers every case within ceil(n / max_cases) runs and then
        /// selects nothing.
        #[test]
        fn every_case_is_delivered_within_ceil_n_over_max_runs(
            times in proptest::collection::vec(-5i64..5, 1..40),
            max_cases in 1usize..7,
        ) {
            let all: Vec<Seen> = times.iter().enumerate().map(|(i, m)| seen(&format!("c{i:02}"), *m)).collect();
            let mut s = State::default();
            let mut delivered = HashSet::new();
            let runs = all.len().div_ceil(max_cases);
            for _ in 0..runs {
                let run = s.start_run();
                for c in select(&s, &all, max_cases, run).cases {
                    prop_assert!(delivered.insert(c.id.clone()), "{} delivered twice", c.id);
                    s.mark_delivered(&c.id, c.version);
                }
            }
            prop_assert_eq!(delivered.len(), all.len());
            prop_assert!(select(&s, &all, max_cases, s.runs + 1).cases.is_empty());
        }
    }
}
