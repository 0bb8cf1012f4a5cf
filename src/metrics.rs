//! The import connector's own metrics, registered beside pycti's in the runtime's registry
//! (`connector_runtime::metrics`), so one `/metrics` shows both.

use std::ops::Deref;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use connector_runtime::metrics::{
    Metrics, PLATFORM_DOWN_UNHEALTHY_AFTER, RunState, peak_rss_bytes, serve, serve_on,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EsmRequestLabels {
    pub(crate) endpoint: String,
    pub(crate) outcome: String,
}

/// Why delivered cases were sent again (`import::verify`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResentLabels {
    /// `work_dead`, `work_error` or `missing`.
    pub(crate) reason: &'static str,
}

/// Every metric the import connector exposes: the runtime's (pycti's families and the
/// health, reached through `Deref`) and its own. Clones share everything.
#[derive(Clone, Debug)]
pub struct ImportMetrics {
    shared: Metrics,
    pub(crate) esm_requests: Family<EsmRequestLabels, Gauge>,
    pub(crate) cases_delivered: Counter,
    pub(crate) cases_failed: Counter,
    pub(crate) cases_events_failed: Counter,
    pub(crate) runs_skipped: Counter,
    pub(crate) cases_resent: Family<ResentLabels, Counter>,
    pub(crate) verify_failures: Counter,
    pub(crate) run_duration: Histogram,
    last_success_gauge: Gauge,
    pub(crate) peak_rss_bytes: Gauge,
    pub(crate) broker_blocked_total: Counter,
    pub(crate) broker_blocked: Gauge,
}

impl Default for ImportMetrics {
    fn default() -> Self {
        ImportMetrics::new()
    }
}

impl Deref for ImportMetrics {
    type Target = Metrics;

    fn deref(&self) -> &Metrics {
        &self.shared
    }
}

impl From<ImportMetrics> for Metrics {
    fn from(m: ImportMetrics) -> Metrics {
        m.shared
    }
}

impl ImportMetrics {
    pub fn new() -> ImportMetrics {
        ImportMetrics::with_prefix(None)
    }

    /// With every metric name prefixed by `prefix_` (`CONNECTOR_METRICS_NAMESPACE` and
    /// `_SUBSYSTEM`, as pycti prefixes its own).
    pub fn with_prefix(prefix: Option<&str>) -> ImportMetrics {
        let esm_requests = Family::<EsmRequestLabels, Gauge>::default();
        let cases_delivered = Counter::default();
        let cases_failed = Counter::default();
        let cases_events_failed = Counter::default();
        let runs_skipped = Counter::default();
        let cases_resent = Family::<ResentLabels, Counter>::default();
        let verify_failures = Counter::default();
        let run_duration =
            Histogram::new([0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0]);
        let last_success_gauge = Gauge::default();
        let peak_rss_bytes = Gauge::default();
        let broker_blocked_total = Counter::default();
        let broker_blocked = Gauge::default();
        let shared = Metrics::with_families(prefix, |registry: &mut Registry| {
            registry.register(
                "arcsight_esm_requests",
                "ESM requests by endpoint and outcome (ok, retried, error), as counted by the client",
                esm_requests.clone(),
            );
            registry.register(
                "arcsight_cases_delivered",
                "Cases delivered to the platform",
                cases_delivered.clone(),
            );
            registry.register(
                "arcsight_cases_failed",
                "Cases that failed and will be retried",
                cases_failed.clone(),
            );
            registry.register(
                "arcsight_cases_events_failed",
                "Cases not delivered because reading some of their events failed (of cases_failed)",
                cases_events_failed.clone(),
            );
            registry.register(
                "arcsight_runs_skipped",
                "Runs skipped because the platform's queue was over the threshold",
                runs_skipped.clone(),
            );
            registry.register(
                "arcsight_cases_resent",
                "Delivered cases put back to be sent again, by reason: their work was deleted before its messages were imported (work_dead), reported import errors (work_error), or the case is missing in the platform (missing)",
                cases_resent.clone(),
            );
            registry.register(
                "arcsight_verify_failures",
                "Read-backs of works and verifications of the delivered cases that failed or timed out (retried next run)",
                verify_failures.clone(),
            );
            registry.register(
                "arcsight_run_duration_seconds",
                "Duration of runs",
                run_duration.clone(),
            );
            registry.register(
                "arcsight_last_success_timestamp_seconds",
                "Unix time of the last successful run",
                last_success_gauge.clone(),
            );
            registry.register(
                "arcsight_peak_resident_memory_bytes",
                "Peak resident memory of the process, read at the end of each run (Linux)",
                peak_rss_bytes.clone(),
            );
            // Not `arcsight_broker_blocked` (+ `_total`): one family name per metric, and the
            // gauge below has it.
            registry.register(
                "arcsight_broker_blocked_episodes",
                "Times RabbitMQ blocked the connection (connection.blocked: a memory or disk alarm)",
                broker_blocked_total.clone(),
            );
            registry.register(
                "arcsight_broker_blocked",
                "1 while RabbitMQ blocks the run's connection, 0 otherwise",
                broker_blocked.clone(),
            );
        });
        ImportMetrics {
            shared,
            esm_requests,
            cases_delivered,
            cases_failed,
            cases_events_failed,
            runs_skipped,
            cases_resent,
            verify_failures,
            run_duration,
            last_success_gauge,
            peak_rss_bytes,
            broker_blocked_total,
            broker_blocked,
        }
    }

    /// The runtime's part, for what takes it alone (the endpoints, the platform lifecycle).
    pub fn shared(&self) -> &Metrics {
        &self.shared
    }

    /// Mirrors the ESM client's cumulative request count for one endpoint and outcome.
    pub(crate) fn set_esm_requests(&self, endpoint: &str, outcome: &str, total: u64) {
        self.esm_requests
            .get_or_create(&EsmRequestLabels {
                endpoint: endpoint.to_owned(),
                outcome: outcome.to_owned(),
            })
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }

    /// Records a successful run ending at `unix` seconds: `/readyz` and the gauge.
    pub(crate) fn record_success(&self, unix: i64) {
        self.shared.record_success(unix);
        self.last_success_gauge.set(unix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pycti's families are the runtime's (and its tests'); here: every family of the import's
    /// own, and one of pycti's beside them, which shows both share one registry.
    #[test]
    fn exposes_ours_beside_pycti_s() {
        let m = ImportMetrics::new();
        m.runs.inc();
        // A family shows once it has a child.
        let request = EsmRequestLabels {
            endpoint: "login".into(),
            outcome: "ok".into(),
        };
        m.esm_requests.get_or_create(&request).set(1);
        m.cases_resent
            .get_or_create(&ResentLabels { reason: "missing" })
            .inc();
        let text = m.encode();
        for (name, kind) in [
            ("arcsight_esm_requests", "gauge"),
            ("arcsight_cases_delivered", "counter"),
            ("arcsight_cases_failed", "counter"),
            ("arcsight_cases_events_failed", "counter"),
            ("arcsight_runs_skipped", "counter"),
            ("arcsight_cases_resent", "counter"),
            ("arcsight_verify_failures", "counter"),
            ("arcsight_run_duration_seconds", "histogram"),
            ("arcsight_last_success_timestamp_seconds", "gauge"),
            ("arcsight_peak_resident_memory_bytes", "gauge"),
            ("arcsight_broker_blocked_episodes", "counter"),
            ("arcsight_broker_blocked", "gauge"),
        ] {
            let line = format!("# TYPE {name} {kind}\n");
            assert!(text.contains(&line), "{line:?} missing from:\n{text}");
        }
        assert!(
            text.contains("\nruns_total 1\n"),
            "pycti's runs missing:\n{text}"
        );
    }

    #[test]
    fn a_success_sets_the_gauge_and_readiness() {
        let m = ImportMetrics::new();
        m.record_success(1000);
        assert!(m.is_ready(1050, std::time::Duration::from_secs(60)));
        assert!(
            m.encode()
                .contains("arcsight_last_success_timestamp_seconds 1000\n"),
            "{}",
            m.encode()
        );
    }
}
