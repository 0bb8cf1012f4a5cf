//! The stream connector's metric families, added to the runtime's registry beside pycti's
//! (`connector_runtime::metrics::Metrics::with_families(prefix, |r| stream_metrics.register(r))`).
//!
//! Every log line of the engine that matters is paired with one of these, so an operator can
//! alert on what the logs say. Label values are fixed names chosen by the engine, never text
//! from the stream (an unknown topic counts as `other`), so the cardinality is bounded.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The engine's counters and gauges; clones share them. `cli` registers them once.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    /// Stream items read, by topic (`create`, `update`, `delete`, `merge`, `heartbeat`,
    /// `connected`, `other`).
    pub events_read: Family<TopicLabel, Counter>,
    /// Events that changed nothing in the list, by reason (`decode_error`, `too_large`,
    /// `not_an_indicator`, `other_topic`, an exclusion: `revoked`, `detection_off`,
    /// `score_below_minimum`, `expired`, `not_stix`, `no_pattern`, or a pattern skip:
    /// `pattern_or`, `pattern_and`, `pattern_unsupported_type`, ...).
    pub events_skipped: Family<ReasonLabel, Counter>,
    /// Entries ESM acknowledged as added / removed.
    pub entries_added: Counter,
    pub entries_removed: Counter,
    /// Write requests sent, by op (`add`, `remove`).
    pub batches: Family<OpLabel, Counter>,
    /// Failed ESM calls (write batches and list reads), each retried or bisected.
    pub esm_errors: Counter,
    /// Entries ESM refused for themselves (not an outage): logged and skipped.
    pub entries_rejected: Counter,
    /// Full resynchronisations, by reason (`gap`, `reset`, `no_snapshot`, `no_position`).
    pub resyncs: Family<ReasonLabel, Counter>,
    /// Reconciliations against `getEntries` that completed.
    pub reconciliations: Counter,
    /// Entries repaired by reconciliation, by kind (`missing`: re-added, `stale`: removed).
    pub repairs: Family<KindLabel, Counter>,
    /// Position saves sent to the platform, and the failed ones.
    pub position_saves: Counter,
    pub position_save_errors: Counter,
    /// Ledger file writes that failed.
    pub snapshot_errors: Counter,
    /// Seconds between now and the time of the last stream item applied.
    pub lag_seconds: Gauge,
    /// Indicators the ledger tracks (those that contribute).
    pub tracked_indicators: Gauge,
    /// Values the connector manages: the list's size as far as we know it.
    pub list_size: Gauge,
    /// Changes waiting to be written.
    pub pending_changes: Gauge,
    /// Unix seconds of the last write ESM acknowledged (0: none yet).
    pub last_write_unix: Gauge,
    /// Unix seconds since which ESM writes fail (0: they do not).
    pub esm_failing_since: Gauge,
    /// Unix seconds since which the stream is disconnected (0: it is connected).
    pub stream_failing_since: Gauge,
}

impl StreamMetrics {
    /// Adds the families to `registry` (the runtime's, already prefixed).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "stream_events_read",
            "Live stream items read, by topic",
            self.events_read.clone(),
        );
        r.register(
            "stream_events_skipped",
            "Stream events that changed nothing in the list, by reason",
            self.events_skipped.clone(),
        );
        r.register(
            "list_entries_added",
            "Active List entries ESM acknowledged as added",
            self.entries_added.clone(),
        );
        r.register(
            "list_entries_removed",
            "Active List entries ESM acknowledged as removed",
            self.entries_removed.clone(),
        );
        r.register(
            "list_write_batches",
            "Active List write requests, by op",
            self.batches.clone(),
        );
        r.register(
            "esm_errors",
            "Failed ESM Active List calls (retried or bisected)",
            self.esm_errors.clone(),
        );
        r.register(
            "list_entries_rejected",
            "Entries ESM refused for themselves, skipped",
            self.entries_rejected.clone(),
        );
        r.register(
            "stream_resyncs",
            "Full resynchronisations from the start of the stream, by reason",
            self.resyncs.clone(),
        );
        r.register(
            "list_reconciliations",
            "Reconciliations of the list against getEntries",
            self.reconciliations.clone(),
        );
        r.register(
            "list_repairs",
            "Entries repaired by reconciliation, by kind",
            self.repairs.clone(),
        );
        r.register(
            "position_saves",
            "Stream positions sent to the platform",
            self.position_saves.clone(),
        );
        r.register(
            "position_save_errors",
            "Stream position saves that failed",
            self.position_save_errors.clone(),
        );
        r.register(
            "ledger_snapshot_errors",
            "Ledger file writes that failed",
            self.snapshot_errors.clone(),
        );
        r.register(
            "stream_lag_seconds",
            "Seconds between now and the last stream item applied",
            self.lag_seconds.clone(),
        );
        r.register(
            "ledger_tracked_indicators",
            "Indicators that contribute values",
            self.tracked_indicators.clone(),
        );
        r.register(
            "list_managed_values",
            "Values the connector keeps in the list",
            self.list_size.clone(),
        );
        r.register(
            "list_pending_changes",
            "List changes waiting to be written",
            self.pending_changes.clone(),
        );
        r.register(
            "list_last_write_timestamp_seconds",
            "Unix time of the last write ESM acknowledged",
            self.last_write_unix.clone(),
        );
        r.register(
            "esm_failing_since_timestamp_seconds",
            "Unix time since which ESM writes fail (0: they do not)",
            self.esm_failing_since.clone(),
        );
        r.register(
            "stream_failing_since_timestamp_seconds",
            "Unix time since which the live stream is disconnected (0: it is connected)",
            self.stream_failing_since.clone(),
        );
    }

    /// For how long ESM writes have been failing, as of `now_unix`; `None` when they are not
    /// (for `/healthz`).
    pub fn esm_failing_for(&self, now_unix: i64) -> Option<Duration> {
        failing_for(&self.esm_failing_since, now_unix)
    }

    /// For how long the stream has been disconnected, as of `now_unix`; `None` when it is not.
    pub fn stream_failing_for(&self, now_unix: i64) -> Option<Duration> {
        failing_for(&self.stream_failing_since, now_unix)
    }

    /// A counter of `events_skipped`.
    pub fn skipped(&self, reason: &'static str) -> u64 {
        self.events_skipped
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    /// A counter of `resyncs`.
    pub fn resyncs_for(&self, reason: &'static str) -> u64 {
        self.resyncs.get_or_create(&ReasonLabel { reason }).get()
    }

    /// A counter of `repairs`.
    pub fn repairs_for(&self, kind: &'static str) -> u64 {
        self.repairs.get_or_create(&KindLabel { kind }).get()
    }

    pub(crate) fn skip(&self, reason: &'static str) {
        self.events_skipped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn read(&self, topic: &'static str) {
        self.events_read.get_or_create(&TopicLabel { topic }).inc();
    }

    /// Marks a failure starting at `now_unix` (the first one is kept).
    pub(crate) fn failing(g: &Gauge, now_unix: i64) {
        if g.get() == 0 {
            g.set(now_unix.max(1));
        }
    }
}

fn failing_for(g: &Gauge, now_unix: i64) -> Option<Duration> {
    let since = g.get();
    (since > 0).then(|| Duration::from_secs(now_unix.saturating_sub(since).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exposed_and_failures_timed() {
        let m = StreamMetrics::default();
        let mut r = Registry::with_prefix("t");
        m.register(&mut r);
        m.skip("decode_error");
        m.read("create");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("t_stream_events_skipped_total{reason=\"decode_error\"} 1"),
            "{out}"
        );
        assert!(out.contains("t_stream_events_read_total{topic=\"create\"} 1"));
        assert_eq!(m.esm_failing_for(100), None);
        StreamMetrics::failing(&m.esm_failing_since, 90);
        StreamMetrics::failing(&m.esm_failing_since, 95);
        assert_eq!(m.esm_failing_for(100), Some(Duration::from_secs(10)));
    }
}
