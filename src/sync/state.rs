//! The connector's state, kept in the platform, and the selection of cases to send.
//!
//! ESM has no "changed since" query: each run lists every case and reads its
//! `modifiedTimestamp`. The state records how far we got in `(modifiedTimestamp, case id)`
//! order:
//! - `watermark`: the last modification time fully handled, plus the ids handled at exactly that
//!   millisecond (ties are common: ESM stamps bulk edits with one time);
//! - `retry`: cases that failed (fetch, events or conversion). They are selected again next run
//!   whatever their timestamp, so a failure never makes the watermark skip a case, and a case that
//!   keeps failing never blocks the cases behind it.
//!
//! The state is small: its size is the number of ties plus the number of failing cases, never
//! one entry per case.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

/// State format version we write.
pub(crate) const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Watermark {
    pub(crate) modified_ms: i64,
    /// Case ids already handled whose modification time is exactly `modified_ms`.
    #[serde(default)]
    pub(crate) ids: BTreeSet<String>,
}

impl Watermark {
    /// Has `(modified_ms, id)` already been handled?
    pub(crate) fn covers(&self, modified_ms: i64, id: &str) -> bool {
        modified_ms < self.modified_ms || (modified_ms == self.modified_ms && self.ids.contains(id))
    }

    /// Moves past `(modified_ms, id)`; never moves backwards.
    pub(crate) fn advance(&mut self, modified_ms: i64, id: &str) {
        if modified_ms > self.modified_ms {
            self.modified_ms = modified_ms;
            self.ids.clear();
            self.ids.insert(id.to_owned());
        } else if modified_ms == self.modified_ms {
            self.ids.insert(id.to_owned());
        }
    }
}

/// What we persist through `pingConnector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    #[serde(default)]
    pub(crate) version: u32,
    /// ISO-8601 time of the last successful run (the Python connector's only field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) watermark: Option<Watermark>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) retry: BTreeSet<String>,
}

impl State {
    /// Reads the platform's `connector_state`. Empty, `null`, unreadable or foreign states (the
    /// Python connector's `{"last_run": ...}`) mean "no watermark": everything is imported once,
    /// and since the ids are the same nothing is duplicated.
    pub(crate) fn from_platform(text: Option<&str>) -> State {
        let Some(text) = text
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "null")
        else {
            return State::default();
        };
        match serde_json::from_str::<State>(text) {
            Ok(mut s) if s.version <= STATE_VERSION => {
                s.version = STATE_VERSION;
                s
            }
            _ => State::default(),
        }
    }

    /// The JSON text sent with `pingConnector`.
    pub(crate) fn to_platform(&self) -> String {
        let mut s = self.clone();
        s.version = STATE_VERSION;
        serde_json::to_string(&s).unwrap_or_else(|_| "null".into())
    }

    fn covers(&self, modified_ms: i64, id: &str) -> bool {
        !self.retry.contains(id)
            && self
                .watermark
                .as_ref()
                .is_some_and(|w| w.covers(modified_ms, id))
    }

    /// Records a case as delivered in its version `modified_ms`.
    pub(crate) fn mark_delivered(&mut self, modified_ms: i64, id: &str) {
        self.retry.remove(id);
        self.watermark
            .get_or_insert_with(|| Watermark {
                modified_ms: i64::MIN,
                ids: BTreeSet::new(),
            })
            .advance(modified_ms, id);
    }

    /// Records a case as failed: retried next run whatever its timestamp. When its version is
    /// known the watermark may move past it, since `retry` now guarantees it is not skipped.
    pub(crate) fn mark_failed(&mut self, modified_ms: Option<i64>, id: &str) {
        self.retry.insert(id.to_owned());
        if let Some(m) = modified_ms {
            self.watermark
                .get_or_insert_with(|| Watermark {
                    modified_ms: i64::MIN,
                    ids: BTreeSet::new(),
                })
                .advance(m, id);
        }
    }

    /// Forgets retry entries for cases that no longer exist in ESM.
    pub(crate) fn forget_missing(&mut self, existing: &HashSet<&str>) {
        self.retry.retain(|id| existing.contains(id.as_str()));
    }
}

/// A case as seen in the listing: its id and modification time (ms; `None` when ESM gave none,
/// in which case it is treated as older than anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) id: String,
    pub(crate) modified_ms: Option<i64>,
}

/// The cases to send this run: new, modified, or to retry; oldest modification first (ties by
/// id); at most `max_cases`.
pub(crate) fn select(state: &State, seen: &[Seen], max_cases: usize) -> Vec<Seen> {
    let mut changed: Vec<&Seen> = seen
        .iter()
        .filter(|c| !state.covers(c.modified_ms.unwrap_or(i64::MIN), &c.id))
        .collect();
    changed.sort_by(|a, b| {
        (a.modified_ms.unwrap_or(i64::MIN), &a.id).cmp(&(b.modified_ms.unwrap_or(i64::MIN), &b.id))
    });
    changed.into_iter().take(max_cases).cloned().collect()
}

/// How many cases [`select`] would consider changed (for the run's figures).
pub(crate) fn count_changed(state: &State, seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|c| !state.covers(c.modified_ms.unwrap_or(i64::MIN), &c.id))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen(id: &str, m: i64) -> Seen {
        Seen {
            id: id.into(),
            modified_ms: Some(m),
        }
    }

    #[test]
    fn python_and_empty_states_mean_full_import() {
        for text in [
            None,
            Some(""),
            Some("null"),
            Some(r#"{"last_run": "2024-01-01T00:00:00+00:00"}"#),
            Some("{not json"),
        ] {
            let s = State::from_platform(text);
            assert_eq!(s.watermark, None, "{text:?}");
            assert_eq!(select(&s, &[seen("a", 1)], 10).len(), 1);
        }
    }

    #[test]
    fn state_round_trips_through_the_platform() {
        let mut s = State::default();
        s.mark_delivered(5, "a");
        s.mark_delivered(5, "b");
        s.mark_failed(Some(3), "c");
        s.mark_failed(None, "d");
        let back = State::from_platform(Some(&s.to_platform()));
        assert_eq!(back.watermark, s.watermark);
        assert_eq!(back.retry, s.retry);
        assert_eq!(back.version, STATE_VERSION);
    }

    #[test]
    fn ties_on_one_millisecond_are_not_skipped() {
        let mut s = State::default();
        let all = [seen("a", 7), seen("b", 7), seen("c", 7)];
        let first = select(&s, &all, 2);
        assert_eq!(
            first.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        for c in &first {
            s.mark_delivered(7, &c.id);
        }
        let second = select(&s, &all, 2);
        assert_eq!(
            second.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn a_failed_case_is_retried_and_does_not_block_others() {
        let mut s = State::default();
        let all = [seen("a", 1), seen("b", 2), seen("c", 3)];
        s.mark_failed(Some(1), "a");
        s.mark_delivered(2, "b");
        let next = select(&s, &all, 10);
        assert_eq!(
            next.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        s.mark_delivered(1, "a");
        assert!(s.retry.is_empty());
    }

    #[test]
    fn a_modified_case_is_selected_again() {
        let mut s = State::default();
        s.mark_delivered(10, "a");
        assert!(select(&s, &[seen("a", 10)], 10).is_empty());
        assert_eq!(select(&s, &[seen("a", 11)], 10).len(), 1);
    }

    proptest! {
        /// Whatever the timestamps (ties included), delivering what `select` returns, run after
        /// run, delivers every case within ceil(n / max_cases) runs and then selects nothing.
        #[test]
        fn every_case_is_delivered_within_ceil_n_over_max_runs(
            times in proptest::collection::vec(0i64..5, 1..40),
            max_cases in 1usize..7,
        ) {
            let all: Vec<Seen> = times.iter().enumerate().map(|(i, m)| seen(&format!("c{i:02}"), *m)).collect();
            let mut s = State::default();
            let mut delivered = HashSet::new();
            let runs = all.len().div_ceil(max_cases);
            for _ in 0..runs {
                for c in select(&s, &all, max_cases) {
                    prop_assert!(delivered.insert(c.id.clone()), "{} delivered twice", c.id);
                    s.mark_delivered(c.modified_ms.unwrap(), &c.id);
                }
            }
            prop_assert_eq!(delivered.len(), all.len());
            prop_assert!(select(&s, &all, max_cases).is_empty());
        }
    }
}
