//! The daemon: start-up (health, register, state), the schedule, pings, back-pressure, stop.
//!
//! Two ways to keep state and track works:
//! - with a platform (the normal case): state and works live in OpenCTI, bundles go to its
//!   queue (or `stixBundlePush`) and/or a directory;
//! - offline (`CONNECTOR_SEND_TO_QUEUE=false` and no `OPENCTI_URL`): bundles go to the
//!   directory only and the state is a file beside them, so an operator can preview an import
//!   with no platform at all, and a restart still sends only what changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tracing::{error, info, warn};

use super::adapters::{LocalTracker, PlatformTracker};
use super::run::{RunConfig, RunReport, Tracker, run_once};
use super::schedule::{Shutdown, every, repeat, sleep_unless_shutdown, unless_shutdown};
use super::state::State;
use crate::convert::{ConvertOptions, Converter};
use crate::delivery::{
    AmqpDelivery, AmqpOptions, AnySink, ApiDelivery, DirectoryDelivery, DirectoryIdentity,
};
use crate::esm::EsmClient;
use crate::metrics::{Metrics, RunState};
use crate::opencti::{
    ConnectorInfo, ConnectorRegistration, OpenCtiClient, OpenCtiError, Registration,
};
use crate::settings::{QueueProtocol, Settings};
use crate::util::lock;

/// pycti pings every 40 s.
pub const PING_INTERVAL: Duration = Duration::from_secs(40);

/// Longest wait between two attempts to reach the platform at start-up.
const MAX_STARTUP_WAIT: Duration = Duration::from_secs(60);

/// After this long without the platform, "not ready" is said at error level: the default log
/// level is `error`, and an operator must see a deployment that cannot start.
const NOT_READY_IS_AN_ERROR_AFTER: Duration = Duration::from_secs(60);

/// Why the daemon could not start (a failed run is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("platform client: {0}")]
    Platform(#[from] OpenCtiError),
    #[error("ESM client: {0}")]
    Esm(#[from] crate::esm::EsmError),
    #[error("offline mode needs CONNECTOR_SEND_TO_DIRECTORY_PATH")]
    NoDirectory,
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
    async fn save_final(&self, state: &State) {
        // Bounded: a stop must not hang on an unresponsive platform.
        let timeout = Duration::from_secs(3);
        match self {
            Backend::Platform { tracker, .. } => {
                let _ = tokio::time::timeout(timeout, tracker.ping(state)).await;
            }
            Backend::Offline(t) => {
                let _ = tokio::time::timeout(timeout, t.save_state(state)).await;
            }
        }
    }

    fn update_info(&self, f: impl FnOnce(&mut ConnectorInfo)) {
        if let Backend::Platform { tracker, .. } = self {
            f(&mut lock(&tracker.info));
        }
    }
}

/// Runs until shutdown (or once, per the settings). Returns whether the last run succeeded.
pub async fn run_daemon(
    settings: Settings,
    metrics: Metrics,
    mut shutdown: Shutdown,
) -> Result<bool, DaemonError> {
    let connector_id = settings.connector.id.to_string();
    let esm = EsmClient::new(settings.esm.client.clone())?;
    // (The client itself warns once when ESM's certificate is not verified.)
    let converter = Converter::new(ConvertOptions {
        tlp: settings.esm.tlp,
        import_observables: settings.esm.import_observables,
    });

    // 1. Start-up: the platform (state, broker, applicant) or the offline state file.
    let (backend, state, applicant_id, primary) = match settings.opencti.client_config() {
        Some(cfg) => {
            let client = OpenCtiClient::new(cfg)?;
            let Some(registration) = connect(&client, &settings, &metrics, &mut shutdown).await
            else {
                // Stopped before the platform answered: nothing was done, nothing failed.
                return Ok(true);
            };
            let state = State::from_platform(registration.connector_state.as_deref());
            let primary = queue_sink(&settings, &client, &registration);
            let tracker = Arc::new(PlatformTracker {
                client: client.clone(),
                connector_id: connector_id.clone(),
                // pycti creates works only for what it sends to the platform's queue.
                works: settings.connector.send_to_queue,
                info: Mutex::new(ConnectorInfo {
                    run_and_terminate: settings.connector.run_once(),
                    buffering: false,
                    queue_threshold: settings.connector.queue_threshold_mb,
                    queue_messages_size: 0.0,
                    next_run_datetime: None,
                    last_run_datetime: None,
                }),
            });
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
    let state = Arc::new(Mutex::new(state));

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
    let mut sinks: Vec<AnySink> = primary.into_iter().chain(directory).collect();

    // 2. Liveness: ping every 40 s with the state; adopt an operator's reset.
    let pinger = match &backend {
        Backend::Platform { tracker, .. } => Some(tokio::spawn(ping_loop(
            tracker.clone(),
            state.clone(),
            metrics.clone(),
            shutdown.clone(),
        ))),
        Backend::Offline(_) => None,
    };

    let cfg = RunConfig {
        max_cases: settings.esm.max_cases,
        page_size: settings.esm.page_size,
        fetch_chunk: settings.esm.client.case_batch_size * settings.esm.client.concurrency,
        friendly_name: String::new(),
    };
    let period = if settings.connector.run_once() {
        None
    } else {
        settings.connector.duration_period
    };
    let run_shutdown = shutdown.clone();
    let mut first = true;
    let last_ok = repeat(period, &mut shutdown, async || {
        // Back-pressure as pycti applies it: before every run but the first after start-up,
        // and before a run-and-terminate run.
        if (!std::mem::replace(&mut first, false) || period.is_none())
            && over_threshold(&backend, &settings, &connector_id).await
        {
            metrics.runs_skipped.inc();
            return true;
        }
        metrics.set_state(RunState::running);
        metrics.runs.inc();
        let cfg = RunConfig {
            friendly_name: format!("ArcSight run @ {}", Utc::now().format("%Y-%m-%d %H:%M:%S")),
            ..cfg.clone()
        };
        let stop = Some(&run_shutdown);
        let report = match &backend {
            Backend::Platform { tracker, .. } => {
                run_once(
                    &esm,
                    &mut sinks,
                    tracker.as_ref(),
                    &converter,
                    &state,
                    &cfg,
                    stop,
                )
                .await
            }
            Backend::Offline(t) => {
                run_once(&esm, &mut sinks, t, &converter, &state, &cfg, stop).await
            }
        };
        record(&metrics, &esm, &report);
        let now = Utc::now();
        if report.succeeded() {
            metrics.record_success(now.timestamp());
            lock(&state).last_run = Some(now.to_rfc3339());
        }
        metrics.set_state(RunState::idle);
        backend.update_info(|i| {
            i.last_run_datetime = Some(now);
            i.next_run_datetime =
                period.map(|p| now + chrono::Duration::from_std(p).unwrap_or_default());
        });
        report.succeeded()
    })
    .await;

    metrics.set_state(RunState::stopped);
    // Persist the final state (it holds `last_run`).
    let snapshot = lock(&state).clone();
    backend.save_final(&snapshot).await;
    if let Some(p) = pinger {
        p.abort();
    }
    Ok(last_ok)
}

/// The offline state file, hidden among the bundles (retention only touches bundle files).
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join(".arcsight-incidents-state.json")
}

/// Waits for the platform to answer and registers; retries with backoff (a platform that
/// starts after us is normal under docker-compose). `None` when stopped first.
async fn connect(
    client: &OpenCtiClient,
    settings: &Settings,
    metrics: &Metrics,
    shutdown: &mut Shutdown,
) -> Option<Registration> {
    let registration = ConnectorRegistration {
        id: settings.connector.id.to_string(),
        name: settings.connector.name.clone(),
        scope: settings.connector.scope.clone(),
    };
    let mut wait = Duration::from_secs(1);
    let started = std::time::Instant::now();
    loop {
        let attempt = async {
            let version = client.health().await?;
            let r = client.register(&registration).await?;
            Ok::<_, OpenCtiError>((version, r))
        };
        match unless_shutdown(shutdown, attempt).await? {
            Ok((version, mut r)) => {
                metrics.platform_up();
                info!(platform_version = %version, "registered with the platform");
                r.mq.apply_overrides(&settings.mq);
                return Some(r);
            }
            Err(e) => {
                metrics.platform_down(Utc::now().timestamp());
                let for_s = started.elapsed().as_secs();
                if started.elapsed() >= NOT_READY_IS_AN_ERROR_AFTER {
                    error!(error = %e, for_s, retry_in_s = wait.as_secs(), "the platform is not ready");
                } else {
                    warn!(error = %e, retry_in_s = wait.as_secs(), "the platform is not ready");
                }
                if !sleep_unless_shutdown(shutdown, wait).await {
                    return None;
                }
                wait = (wait * 2).min(MAX_STARTUP_WAIT);
            }
        }
    }
}

/// The sink for the platform's queue, when `CONNECTOR_SEND_TO_QUEUE` is on.
fn queue_sink(
    settings: &Settings,
    client: &OpenCtiClient,
    registration: &Registration,
) -> Option<AnySink> {
    if !settings.connector.send_to_queue {
        return None;
    }
    Some(match settings.connector.queue_protocol {
        QueueProtocol::Amqp => AnySink::Amqp(AmqpDelivery::new(
            registration.mq.clone(),
            registration.connector_user_id.clone(),
            AmqpOptions {
                tls: settings.mq_tls.clone(),
                ..AmqpOptions::default()
            },
        )),
        QueueProtocol::Api => AnySink::Api(ApiDelivery::new(
            client.clone(),
            settings.connector.id.to_string(),
        )),
    })
}

/// Back-pressure: is the connector's queue in the platform over `CONNECTOR_QUEUE_THRESHOLD`?
/// An unreadable size does not block the run.
async fn over_threshold(backend: &Backend, settings: &Settings, connector_id: &str) -> bool {
    let Backend::Platform { client, tracker } = backend else {
        return false;
    };
    if !settings.connector.send_to_queue {
        return false;
    }
    match client.queue_details(connector_id).await {
        Ok(q) => {
            // pycti: MB of 10^6 bytes, and a queue at the threshold already buffers.
            let size_mb = q.messages_size as f64 / 1_000_000.0;
            let over = size_mb >= settings.connector.queue_threshold_mb;
            {
                let mut info = lock(&tracker.info);
                info.queue_messages_size = size_mb;
                info.buffering = over;
            }
            if over {
                info!(
                    queue_bytes = q.messages_size,
                    threshold_mb = settings.connector.queue_threshold_mb,
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

async fn ping_loop(
    tracker: Arc<PlatformTracker>,
    state: Arc<Mutex<State>>,
    metrics: Metrics,
    shutdown: Shutdown,
) {
    every(PING_INTERVAL, shutdown, || {
        let (tracker, state, metrics) = (tracker.clone(), state.clone(), metrics.clone());
        async move {
            let snapshot = lock(&state).clone();
            metrics.ping_api.inc();
            match tracker.ping(&snapshot).await {
                Ok(None) => {}
                Ok(Some(reset)) => {
                    info!(
                        "the state was reset in the platform: the next run imports everything again"
                    );
                    *lock(&state) = reset;
                }
                Err(e) => {
                    metrics.ping_api_errors.inc();
                    warn!(error = %e, "ping failed");
                }
            }
        }
    })
    .await;
}

/// One info line per run, with its figures, and the matching metrics.
pub fn record(metrics: &Metrics, esm: &EsmClient, report: &RunReport) {
    metrics
        .cases_delivered
        .inc_by(report.cases_delivered as u64);
    metrics.cases_failed.inc_by(report.cases_failed as u64);
    metrics.records_sent.inc_by(report.objects as u64);
    metrics.bundles_sent.inc_by(report.pages as u64);
    metrics.run_duration.observe(report.seconds);
    if report.error.is_some() {
        metrics.errors.inc();
    }
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
