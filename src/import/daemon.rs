//! The daemon: start-up (health, register, state), the schedule, pings, back-pressure, stop.
//!
//! Two ways to keep state and track works:
//! - with a platform (the normal case): state and works live in OpenCTI, bundles go to its
//!   queue (or `stixBundlePush`) and/or a directory;
//! - offline (`CONNECTOR_SEND_TO_QUEUE=false` and no `OPENCTI_URL`): bundles go to the
//!   directory only and the state is a file beside them, so an operator can preview an import
//!   with no platform at all, and a restart still sends only what changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{error, info, warn};

use super::adapters::{LocalTracker, PlatformTracker};
use super::ports::{SharedState, Tracker};
use super::run::{RunConfig, RunReport, run_once};
use super::state::State;
use crate::convert::{ConvertOptions, Converter};
use crate::delivery::{
    AmqpDelivery, AmqpOptions, AnySink, ApiDelivery, DirectoryDelivery, DirectoryIdentity, MqTls,
};
use crate::esm::EsmClient;
use crate::metrics::{ImportMetrics as Metrics, RunState};
use crate::opencti::{
    ConnectorInfo, ConnectorRegistration, ConnectorType, MqOverrides, OpenCtiClient, OpenCtiError,
    Registration,
};
use crate::settings::{ConnectorSettings, QueueProtocol, Settings};
use connector_runtime::platform::{Background, RegisterError, ping_loop, register_with_backoff};
use connector_runtime::schedule::{Shutdown, repeat};
use connector_runtime::settings::common::MetricsSettings;
use peer_http::lock;

/// Why the daemon could not start (a failed run is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("platform client: {0}")]
    Platform(#[from] OpenCtiError),
    #[error("ESM client: {0}")]
    Esm(#[from] crate::esm::EsmError),
    #[error("offline mode needs CONNECTOR_SEND_TO_DIRECTORY_PATH")]
    NoDirectory,
    /// The platform refused the token: no retry can fix that, an operator must.
    #[error("the platform refused the connector's token or rights; check OPENCTI_TOKEN ({0})")]
    Refused(OpenCtiError),
    /// A run-once start gave up waiting for the platform.
    #[error(
        "the platform could not be reached within {waited_s} s (OPENCTI_UNREACHABLE_TIMEOUT); last error: {last}"
    )]
    Unreachable { waited_s: u64, last: OpenCtiError },
}

/// Where state and works go.
enum Backend {
    Platform {
        client: OpenCtiClient,
        tracker: Arc<PlatformTracker>,
    },
    Offline(LocalTracker),
}

impl Backend {
    /// The last save, through the one writer. Bounded: a stop must not hang on an
    /// unresponsive platform.
    async fn save_final(&self, state: &SharedState) {
        let timeout = Duration::from_secs(3);
        match self {
            Backend::Platform { tracker, .. } => {
                let _ = tokio::time::timeout(timeout, tracker.save_state(state)).await;
            }
            Backend::Offline(t) => {
                let _ = tokio::time::timeout(timeout, t.save_state(state)).await;
            }
        }
    }

    fn update_info(&self, f: impl FnOnce(&mut ConnectorInfo)) {
        if let Backend::Platform { tracker, .. } = self {
            f(&mut lock(&tracker.platform.info));
        }
    }
}

/// Runs until shutdown (or once, per the settings). Returns whether the connector ends well:
/// the last run succeeded, or a stop was requested.
pub async fn run_daemon(
    settings: Settings,
    metrics: Metrics,
    mut shutdown: Shutdown,
) -> Result<bool, DaemonError> {
    match Daemon::start(settings, metrics, &mut shutdown).await? {
        Some(daemon) => Ok(daemon.run_until_stopped(shutdown).await),
        // Stopped before the platform answered: nothing was done, nothing failed.
        None => Ok(true),
    }
}

/// A started connector: its clients, its state, its sinks and its background tasks.
pub(crate) struct Daemon {
    settings: Settings,
    metrics: Metrics,
    connector_id: String,
    esm: EsmClient,
    converter: Converter,
    backend: Backend,
    state: Arc<SharedState>,
    sinks: Vec<AnySink>,
    /// The pinger and the metrics server, stopped when the daemon ends.
    background: Background,
}

impl Daemon {
    /// Start-up: the platform (state, broker, applicant) or the offline state file, the sinks,
    /// the pinger and the metrics server. `None` when stopped before the platform answered.
    pub(crate) async fn start(
        settings: Settings,
        metrics: Metrics,
        shutdown: &mut Shutdown,
    ) -> Result<Option<Daemon>, DaemonError> {
        let connector_id = settings.connector.id.to_string();
        let esm = EsmClient::new(settings.esm.client.clone())?;
        // (The client itself warns once when ESM's certificate is not verified.)
        let converter = Converter::new(ConvertOptions {
            tlp: settings.esm.tlp,
            import_observables: settings.esm.import_observables,
        });
        let (backend, state, applicant_id, primary) = match settings.opencti.client_config() {
            Some(cfg) => {
                let client = OpenCtiClient::new(cfg)?;
                let Some(mut registration) = connect(
                    &client,
                    &settings.connector,
                    &settings.mq,
                    &metrics,
                    shutdown,
                )
                .await?
                else {
                    return Ok(None);
                };
                // The text is freed once decoded, not kept with the registration: 16 MB at
                // 1,000,000 cases.
                let state = State::from_platform(registration.connector_state.take().as_deref());
                let primary = queue_sink(
                    &settings.connector,
                    &settings.mq_tls,
                    &client,
                    &registration,
                    &metrics,
                );
                let tracker = Arc::new(PlatformTracker::new(
                    client.clone(),
                    connector_id.clone(),
                    // pycti creates works only for what it sends to the platform's queue.
                    settings.connector.send_to_queue,
                    ConnectorInfo {
                        run_and_terminate: settings.connector.run_once(),
                        buffering: false,
                        queue_threshold: settings.connector.queue_threshold_mb,
                        queue_messages_size: 0.0,
                        next_run_datetime: None,
                        last_run_datetime: None,
                    },
                    registration.state_timestamp.clone(),
                ));
                let applicant = Some(registration.connector_user_id);
                (
                    Backend::Platform { client, tracker },
                    state,
                    applicant,
                    primary,
                )
            }
            None => {
                let dir = settings
                    .connector
                    .send_to_directory
                    .as_deref()
                    .ok_or(DaemonError::NoDirectory)?;
                let tracker = LocalTracker::file(state_file(dir));
                let state = tracker.load();
                info!(
                    directory = %dir.display(),
                    "no platform configured: bundles go to the directory only and the state is kept beside them"
                );
                (Backend::Offline(tracker), state, None, None)
            }
        };
        let state = Arc::new(SharedState::new(state));
        let directory = settings.connector.send_to_directory.as_ref().map(|dir| {
            AnySink::Directory(DirectoryDelivery::new(
                dir.clone(),
                settings.connector.send_to_directory_retention_days,
                DirectoryIdentity {
                    applicant_id: applicant_id.clone(),
                    connector_id: connector_id.clone(),
                    name: settings.connector.name.clone(),
                    scope: settings.connector.scope.clone(),
                    validate_before_import: false,
                },
            ))
        });
        let sinks: Vec<AnySink> = primary.into_iter().chain(directory).collect();

        if let Some(after) = settings.connector.health_stall_timeout {
            metrics.set_stall_timeout(after);
        }
        let mut background = Background::new();
        // Liveness: ping every 40 s with the latest state; adopt an operator's reset.
        if let Backend::Platform { tracker, .. } = &backend {
            background.spawn(ping_loop(
                settings.connector.ping_interval,
                tracker.platform.clone(),
                state.clone(),
                metrics.shared().clone(),
                background.shutdown(),
            ));
        }
        if settings.connector.metrics.expose {
            background.push(metrics_server(
                &settings.connector.metrics,
                settings.connector.duration_period,
                &metrics,
                background.shutdown(),
            ));
        }
        Ok(Some(Daemon {
            settings,
            metrics,
            connector_id,
            esm,
            converter,
            backend,
            state,
            sinks,
            background,
        }))
    }

    /// Runs on the schedule until `shutdown` (or once), then stops the background tasks and
    /// saves the state. Returns whether the connector ends well: a stop was requested, or the
    /// last run succeeded.
    pub(crate) async fn run_until_stopped(mut self, mut shutdown: Shutdown) -> bool {
        let period = if self.settings.connector.run_once() {
            None
        } else {
            self.settings.connector.duration_period
        };
        let run_shutdown = shutdown.clone();
        let mut first = true;
        let last_ok = repeat(period, &mut shutdown, async || {
            // Back-pressure as pycti applies it: before every run but the first after start-up,
            // and before a run-and-terminate run.
            if (!std::mem::replace(&mut first, false) || period.is_none())
                && over_threshold(&self.backend, &self.settings.connector, &self.connector_id).await
            {
                self.metrics.runs_skipped.inc();
                return true;
            }
            self.run(&run_shutdown, period).await
        })
        .await;
        self.metrics.set_state(RunState::stopped);
        // Persist the final state (it holds `last_run`).
        self.backend.save_final(&self.state).await;
        self.background.stop().await;
        last_ok || shutdown.is_triggered()
    }

    /// One run, its figures and its metrics.
    async fn run(&mut self, shutdown: &Shutdown, period: Option<Duration>) -> bool {
        self.metrics.progress(Utc::now().timestamp());
        self.metrics.set_state(RunState::running);
        self.metrics.runs.inc();
        let cfg = RunConfig {
            max_cases: self.settings.esm.max_cases,
            page_size: self.settings.esm.page_size,
            fetch_chunk: self.settings.esm.client.case_batch_size
                * self.settings.esm.client.concurrency,
            friendly_name: format!("ArcSight run @ {}", Utc::now().format("%Y-%m-%d %H:%M:%S")),
            verify_period: self.settings.connector.verify_period,
            verify_batch: self.settings.connector.verify_batch,
            progress: Some(self.metrics.clone()),
        };
        let stop = Some(shutdown);
        let (esm, converter, state) = (&self.esm, &self.converter, self.state.as_ref());
        let report = match &self.backend {
            Backend::Platform { tracker, .. } => {
                run_once(
                    esm,
                    &mut self.sinks,
                    tracker.as_ref(),
                    converter,
                    state,
                    &cfg,
                    stop,
                )
                .await
            }
            Backend::Offline(t) => {
                run_once(esm, &mut self.sinks, t, converter, state, &cfg, stop).await
            }
        };
        record(&self.metrics, &self.esm, &report);
        let now = Utc::now();
        if report.succeeded() {
            self.metrics.record_success(now.timestamp());
            self.state.update(|s| s.last_run = Some(now.timestamp()));
        }
        self.metrics.set_state(RunState::idle);
        self.metrics.idle();
        self.backend.update_info(|i| {
            i.last_run_datetime = Some(now);
            i.next_run_datetime =
                period.map(|p| now + chrono::Duration::from_std(p).unwrap_or_default());
        });
        report.succeeded()
    }
}

/// The Prometheus endpoint, until `stop`. `duration_period` is `CONNECTOR_DURATION_PERIOD`
/// (`None`: running once), which decides when the connector stops being ready.
fn metrics_server(
    settings: &MetricsSettings,
    duration_period: Option<Duration>,
    metrics: &Metrics,
    mut stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let addr = std::net::SocketAddr::new(settings.host, settings.port);
    let metrics = metrics.clone();
    // Ready means a run succeeded within two periods (or an hour when running once).
    let window = duration_period
        .map(|p| p * 2)
        .unwrap_or(Duration::from_secs(3600))
        .max(Duration::from_secs(120));
    tokio::spawn(async move {
        if let Err(e) =
            crate::metrics::serve(addr, metrics, window, async move { stop.wait().await }).await
        {
            error!(error = %e, %addr, "the metrics endpoint could not start");
        }
    })
}

/// The offline state file, hidden among the bundles (retention only touches bundle files).
pub(crate) fn state_file(dir: &Path) -> PathBuf {
    dir.join(".arcsight-incidents-state.json")
}

/// Registers with the platform, waiting for it with backoff (`None` when stopped first); when
/// running once, for at most `OPENCTI_UNREACHABLE_TIMEOUT`.
async fn connect(
    client: &OpenCtiClient,
    settings: &ConnectorSettings,
    mq: &MqOverrides,
    metrics: &Metrics,
    shutdown: &mut Shutdown,
) -> Result<Option<Registration>, DaemonError> {
    let registration = ConnectorRegistration {
        id: settings.id.to_string(),
        name: settings.name.clone(),
        connector_type: ConnectorType::ExternalImport,
        scope: settings.scope.clone(),
    };
    let give_up_after = settings.run_once().then_some(settings.unreachable_timeout);
    match register_with_backoff(
        client,
        &registration,
        give_up_after,
        metrics.shared(),
        shutdown,
    )
    .await
    {
        Ok(Some(mut r)) => {
            r.mq.apply_overrides(mq);
            Ok(Some(r))
        }
        Ok(None) => Ok(None),
        Err(RegisterError::Refused(e)) => Err(DaemonError::Refused(e)),
        Err(RegisterError::Unreachable { waited_s, last }) => {
            Err(DaemonError::Unreachable { waited_s, last })
        }
    }
}

/// The sink for the platform's queue, when `CONNECTOR_SEND_TO_QUEUE` is on.
fn queue_sink(
    settings: &ConnectorSettings,
    tls: &MqTls,
    client: &OpenCtiClient,
    registration: &Registration,
    metrics: &Metrics,
) -> Option<AnySink> {
    if !settings.send_to_queue {
        return None;
    }
    Some(match settings.queue_protocol {
        QueueProtocol::Amqp => AnySink::Amqp(
            AmqpDelivery::new(
                registration.mq.clone(),
                registration.connector_user_id.clone(),
                AmqpOptions {
                    tls: tls.clone(),
                    publish_timeout: settings.amqp_publish_timeout,
                    blocked_timeout: settings.amqp_publish_timeout * 2,
                    ..AmqpOptions::default()
                },
            )
            .with_metrics(metrics.clone()),
        ),
        QueueProtocol::Api => {
            AnySink::Api(ApiDelivery::new(client.clone(), settings.id.to_string()))
        }
    })
}

/// Back-pressure: is the connector's queue in the platform over `CONNECTOR_QUEUE_THRESHOLD`?
/// An unreadable size does not block the run.
async fn over_threshold(
    backend: &Backend,
    settings: &ConnectorSettings,
    connector_id: &str,
) -> bool {
    let Backend::Platform { client, tracker } = backend else {
        return false;
    };
    if !settings.send_to_queue {
        return false;
    }
    match client.queue_details(connector_id).await {
        Ok(q) => {
            // pycti: MB of 10^6 bytes, and a queue at the threshold already buffers.
            let size_mb = q.messages_size as f64 / 1_000_000.0;
            let over = size_mb >= settings.queue_threshold_mb;
            {
                let mut info = lock(&tracker.platform.info);
                info.queue_messages_size = size_mb;
                info.buffering = over;
            }
            if over {
                info!(
                    queue_bytes = q.messages_size,
                    threshold_mb = settings.queue_threshold_mb,
                    "the platform's queue is at or over the threshold: run skipped (buffering)"
                );
            }
            over
        }
        Err(e) => {
            warn!(error = %e, "reading the queue size failed; running anyway");
            false
        }
    }
}

/// One info line per run, with its figures, and the matching metrics.
pub(crate) fn record(metrics: &Metrics, esm: &EsmClient, report: &RunReport) {
    metrics
        .cases_delivered
        .inc_by(report.cases_delivered as u64);
    metrics.cases_failed.inc_by(report.cases_failed as u64);
    metrics
        .cases_events_failed
        .inc_by(report.cases_events_failed as u64);
    metrics.records_sent.inc_by(report.objects as u64);
    metrics.bundles_sent.inc_by(report.pages as u64);
    metrics.run_duration.observe(report.seconds);
    if report.error.is_some() {
        metrics.errors.inc();
    }
    let checked = &report.works_checked;
    let missing = report.verified.as_ref().map_or(0, |v| v.missing);
    for (reason, n) in [
        ("work_dead", checked.work_dead),
        ("work_error", checked.work_error),
        ("missing", missing),
    ] {
        if n > 0 {
            metrics
                .cases_resent
                .get_or_create(&crate::metrics::ResentLabels { reason })
                .inc_by(n as u64);
        }
    }
    let verify_failed = report.verified.as_ref().is_some_and(|v| v.failed);
    metrics
        .verify_failures
        .inc_by(checked.failures as u64 + u64::from(verify_failed));
    let mut esm_errors = 0;
    for (op, s) in esm.stats().operations {
        esm_errors += s.error;
        for (outcome, n) in [("ok", s.ok), ("retried", s.retried), ("error", s.error)] {
            metrics.set_esm_requests(op, outcome, n);
        }
    }
    metrics.set_client_errors_total(esm_errors);
    // The process's peak resident memory so far (Linux): what an operator sizes the container by.
    let peak = crate::metrics::peak_rss_bytes();
    if let Some(bytes) = peak {
        metrics
            .peak_rss_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    let peak_rss_mb = peak.map(|b| (b as f64 / 104_857.6).round() / 10.0);
    // One line, three levels: the same figures on each.
    macro_rules! summary {
        ($level:ident, $($extra:tt)+) => {
            $level!(
                cases_seen = report.cases_seen,
                changed = report.cases_changed,
                delivered = report.cases_delivered,
                failed = report.cases_failed,
                events_failed = report.cases_events_failed,
                messages = report.messages,
                seconds = report.seconds,
                peak_rss_mb,
                $($extra)+
            )
        };
    }
    match &report.error {
        Some(e) => summary!(error, error = %e, "run failed"),
        // An error, not a warning: the reference's default level is `error`, and an operator
        // must see that cases are waiting for the next run (each one's reason was logged at
        // `warn` as it failed).
        None if report.cases_failed > 0 => summary!(
            error,
            "run finished with failed cases; they are retried next run"
        ),
        None => summary!(info, "run finished"),
    }
}
