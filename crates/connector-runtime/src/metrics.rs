//! Prometheus metrics, `/metrics`, `/healthz` and `/readyz`.
//!
//! pycti's metric names are kept (dashboards built for the Python connector keep working); each
//! connector registers its own families beside them in the same registry
//! ([`Metrics::with_families`]), so one `/metrics` shows both. Every log line that matters is
//! paired with one of these counters, so an operator can alert on what the logs say.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// pycti's `state` enum.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RunState {
    idle,
    running,
    stopped,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: RunState,
}

/// pycti's metrics, the registry that also holds the connector's own, and the health the
/// endpoints report. Clones share everything.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub bundles_sent: Counter,
    pub records_sent: Counter,
    pub runs: Counter,
    pub ping_api: Counter,
    pub ping_api_errors: Counter,
    pub errors: Counter,
    pub client_errors: Counter,
    state: Family<StateLabel, Gauge>,
    last_success_unix: Arc<AtomicI64>,
    /// Unix seconds since which the platform has not answered at start-up; 0 when it has.
    platform_down_since: Arc<AtomicI64>,
    /// Unix seconds of the running run's last progress (its start, a page committed); 0
    /// between runs, when waiting for the next one is what the connector should do.
    progress_at: Arc<AtomicI64>,
    /// `CONNECTOR_HEALTH_STALL_TIMEOUT` in seconds; 0 leaves stalls out of `/healthz`.
    stall_after_secs: Arc<AtomicI64>,
}

/// How long the platform may stay unreachable at start-up before `/healthz` (and so the
/// container's healthcheck) reports unhealthy: long enough for a platform started beside us
/// to come up, short enough that a broken deployment shows.
pub const PLATFORM_DOWN_UNHEALTHY_AFTER: Duration = Duration::from_secs(300);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_prefix(None)
    }

    /// With every metric name prefixed by `prefix_` (`CONNECTOR_METRICS_NAMESPACE` and
    /// `_SUBSYSTEM`, as pycti prefixes its own).
    pub fn with_prefix(prefix: Option<&str>) -> Metrics {
        Metrics::with_families(prefix, |_| {})
    }

    /// pycti's families, then the connector's: `register` adds them to the same (prefixed)
    /// registry, so they are exposed after pycti's, under the same prefix.
    pub fn with_families(prefix: Option<&str>, register: impl FnOnce(&mut Registry)) -> Metrics {
        let mut registry = match prefix {
            Some(p) => Registry::with_prefix(p),
            None => Registry::default(),
        };
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            bundles_sent: Counter::default(),
            records_sent: Counter::default(),
            runs: Counter::default(),
            ping_api: Counter::default(),
            ping_api_errors: Counter::default(),
            errors: Counter::default(),
            client_errors: Counter::default(),
            state: Family::default(),
            last_success_unix: Arc::new(AtomicI64::new(0)),
            platform_down_since: Arc::new(AtomicI64::new(0)),
            progress_at: Arc::new(AtomicI64::new(0)),
            stall_after_secs: Arc::new(AtomicI64::new(0)),
        };
        // pycti's names.
        registry.register(
            "bundles_sent",
            "Number of bundles sent",
            m.bundles_sent.clone(),
        );
        registry.register(
            "records_sent",
            "Number of STIX objects sent",
            m.records_sent.clone(),
        );
        registry.register("runs", "Number of runs", m.runs.clone());
        registry.register("ping_api", "Number of pings to the API", m.ping_api.clone());
        registry.register(
            "ping_api_errors",
            "Number of failed pings to the API",
            m.ping_api_errors.clone(),
        );
        registry.register("errors", "Number of errors", m.errors.clone());
        registry.register(
            "client_errors",
            "ESM calls that failed after their retries",
            m.client_errors.clone(),
        );
        registry.register("state", "State of the connector", m.state.clone());
        register(&mut registry);
        m.set_state(RunState::idle);
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// Brings `client_errors` (peer calls that failed for good) up to the client's cumulative
    /// count; the counter never goes down.
    pub fn set_client_errors_total(&self, total: u64) {
        let seen = self.client_errors.get();
        if total > seen {
            self.client_errors.inc_by(total - seen);
        }
    }

    pub fn set_state(&self, s: RunState) {
        for each in [RunState::idle, RunState::running, RunState::stopped] {
            self.state
                .get_or_create(&StateLabel { state: each })
                .set(i64::from(each == s));
        }
    }

    /// Records a successful run ending at `unix` seconds (what `/readyz` looks at).
    pub fn record_success(&self, unix: i64) {
        self.last_success_unix.store(unix, Ordering::Relaxed);
    }

    /// The platform did not answer at `now_unix` (the first such time is kept).
    pub fn platform_down(&self, now_unix: i64) {
        let _ = self.platform_down_since.compare_exchange(
            0,
            now_unix.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The platform answered.
    pub fn platform_up(&self) {
        self.platform_down_since.store(0, Ordering::Relaxed);
    }

    /// For how long the platform has not answered, as of `now_unix`; `None` when it has.
    pub fn platform_down_for(&self, now_unix: i64) -> Option<Duration> {
        let since = self.platform_down_since.load(Ordering::Relaxed);
        (since > 0).then(|| Duration::from_secs(now_unix.saturating_sub(since).max(0) as u64))
    }

    /// `/healthz` reports unhealthy when a run has made no progress for `after`.
    pub fn set_stall_timeout(&self, after: Duration) {
        self.stall_after_secs.store(
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The running run made progress at `now_unix` (it started, or committed a page).
    pub fn progress(&self, now_unix: i64) {
        self.progress_at.store(now_unix.max(1), Ordering::Relaxed);
    }

    /// No run is running: waiting for the next one is healthy.
    pub fn idle(&self) {
        self.progress_at.store(0, Ordering::Relaxed);
    }

    /// For how long the running run has made no progress, as of `now_unix`, when that is
    /// longer than the stall timeout.
    pub fn stalled_for(&self, now_unix: i64) -> Option<Duration> {
        let (at, after) = (
            self.progress_at.load(Ordering::Relaxed),
            self.stall_after_secs.load(Ordering::Relaxed),
        );
        let stalled = now_unix.saturating_sub(at);
        (at > 0 && after > 0 && stalled > after).then(|| Duration::from_secs(stalled as u64))
    }

    /// Ready when the last run succeeded within `window` of `now_unix`.
    pub fn is_ready(&self, now_unix: i64, window: Duration) -> bool {
        let last = self.last_success_unix.load(Ordering::Relaxed);
        last > 0 && now_unix.saturating_sub(last) <= window.as_secs() as i64
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Metrics,
    ready_window: Duration,
}

/// The router for `/metrics`, `/healthz`, `/readyz`. `ready_window` is twice the run period.
pub fn router(metrics: Metrics, ready_window: Duration) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .route("/readyz", get(ready_handler))
        .with_state(ServerState {
            metrics,
            ready_window,
        })
}

async fn metrics_handler(State(s): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Alive, unless the platform has been unreachable for longer than
/// [`PLATFORM_DOWN_UNHEALTHY_AFTER`] (a connector that cannot start must not look healthy),
/// or a run has made no progress for longer than the stall timeout (one stuck on a peer must
/// not look healthy either; waiting between runs is healthy).
async fn health_handler(State(s): State<ServerState>) -> impl IntoResponse {
    let now = chrono::Utc::now().timestamp();
    match s.metrics.platform_down_for(now) {
        Some(d) if d > PLATFORM_DOWN_UNHEALTHY_AFTER => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the platform has not answered for {} s", d.as_secs()),
            );
        }
        _ => {}
    }
    match s.metrics.stalled_for(now) {
        Some(d) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the run has made no progress for {} s", d.as_secs()),
        ),
        None => (StatusCode::OK, "ok".to_owned()),
    }
}

async fn ready_handler(State(s): State<ServerState>) -> impl IntoResponse {
    if s.metrics
        .is_ready(chrono::Utc::now().timestamp(), s.ready_window)
    {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no successful run recently",
        )
    }
}

/// The process's peak resident set size (`VmHWM`), on Linux; `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Serves the router on `addr` until `shutdown` resolves (`metrics`: these, or a connector's
/// that holds them).
pub async fn serve(
    addr: SocketAddr,
    metrics: impl Into<Metrics>,
    ready_window: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, metrics.into(), ready_window, shutdown).await
}

/// Serves the router on a bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: impl Into<Metrics>,
    ready_window: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics.into(), ready_window))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_pycti_names() {
        let m = Metrics::new();
        m.runs.inc();
        m.set_state(RunState::running);
        let text = m.encode();
        for name in [
            "bundles_sent_total",
            "records_sent_total",
            "runs_total 1",
            "ping_api_total",
            "ping_api_errors_total",
            "errors_total",
            "client_errors_total",
            "state{state=\"running\"} 1",
            "state{state=\"idle\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn the_connectors_families_follow_pycti_s_under_the_same_prefix() {
        let own = Counter::<u64>::default();
        let m = Metrics::with_families(Some("ns_sub"), |r| {
            r.register("mine", "Its own counter", own.clone());
        });
        own.inc();
        let text = m.encode();
        let (pycti, mine) = (
            text.find("ns_sub_runs_total").expect(&text),
            text.find("ns_sub_mine_total 1\n").expect(&text),
        );
        assert!(pycti < mine, "{text}");
    }

    #[test]
    fn client_errors_follow_the_cumulative_total_and_never_go_down() {
        let m = Metrics::new();
        m.set_client_errors_total(3);
        m.set_client_errors_total(2);
        m.set_client_errors_total(5);
        assert!(
            m.encode().contains("client_errors_total 5\n"),
            "{}",
            m.encode()
        );
    }

    #[test]
    fn a_run_without_progress_past_the_stall_timeout_is_unhealthy() {
        let m = Metrics::new();
        m.set_stall_timeout(Duration::from_secs(60));
        m.progress(1000);
        assert_eq!(m.stalled_for(1060), None);
        assert_eq!(m.stalled_for(1061), Some(Duration::from_secs(61)));
        m.progress(1061);
        assert_eq!(m.stalled_for(1100), None);
        m.idle();
        assert_eq!(
            m.stalled_for(100_000),
            None,
            "waiting between runs is healthy"
        );
    }

    #[test]
    fn readiness_needs_a_recent_success() {
        let m = Metrics::new();
        assert!(!m.is_ready(1000, Duration::from_secs(60)));
        m.record_success(1000);
        assert!(m.is_ready(1050, Duration::from_secs(60)));
        assert!(!m.is_ready(1061, Duration::from_secs(60)));
    }
}
