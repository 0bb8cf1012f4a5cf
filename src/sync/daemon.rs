//! The daemon: start-up (health, register, state), the schedule, pings, back-pressure, stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tracing::{error, info, warn};

use super::adapters::{AmqpSink, DeliverySink, PlatformTracker};
use super::run::{RunConfig, RunReport, Sink, run_once};
use super::schedule::{Shutdown, sleep_unless_shutdown, unless_shutdown};
use super::state::State;
use crate::convert::{ConvertOptions, Converter};
use crate::delivery::{AmqpOptions, ApiDelivery, DirectoryDelivery, DirectoryIdentity};
use crate::esm::{EsmClient, EsmConfig};
use crate::metrics::{Metrics, RunState};
use crate::opencti::{ConnectorInfo, ConnectorRegistration, OpenCtiClient, OpenCtiConfig};
use crate::settings::{QueueProtocol, Settings};

/// pycti pings every 40 s.
pub const PING_INTERVAL: Duration = Duration::from_secs(40);

/// Why the daemon could not start (a failed run is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("platform client: {0}")]
    Platform(#[from] crate::opencti::OpenCtiError),
    #[error("ESM client: {0}")]
    Esm(#[from] crate::esm::EsmError),
}

/// Runs until shutdown (or once, per the settings). Returns whether the last run succeeded.
pub async fn run_daemon(
    settings: Settings,
    metrics: Metrics,
    mut shutdown: Shutdown,
) -> Result<bool, DaemonError> {
    let connector_id = settings.connector.id.to_string();
    let opencti = OpenCtiClient::new(OpenCtiConfig::from_settings(&settings.opencti))?;

    // 1. The platform must answer before anything else; retry with backoff, never crash.
    let mut wait = Duration::from_secs(1);
    loop {
        match unless_shutdown(&mut shutdown, opencti.health()).await {
            None => return Ok(true),
            Some(Ok(version)) => {
                info!(platform_version = %version, "platform reachable");
                break;
            }
            Some(Err(e)) => {
                warn!(error = %e, retry_in_s = wait.as_secs(), "platform unreachable");
                if !sleep_unless_shutdown(&mut shutdown, wait).await {
                    return Ok(true);
                }
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
    }

    // 2. Register: the state and the broker come from the platform.
    let registration = opencti
        .register(&ConnectorRegistration {
            id: connector_id.clone(),
            name: settings.connector.name.clone(),
            scope: settings.connector.scope.clone(),
        })
        .await?;
    let state = Arc::new(Mutex::new(State::from_platform(
        registration.connector_state.as_deref(),
    )));
    let mut mq = registration.mq.clone();
    mq.apply_overrides(&settings.mq);

    let esm = EsmClient::new(EsmConfig::from_settings(&settings.esm))?;
    if !settings.esm.ssl_verify {
        warn!("ARCSIGHT_INCIDENTS_SSL_VERIFY is false: ESM's certificate is not verified");
    }
    let converter = Converter::new(ConvertOptions {
        tlp: settings.esm.tlp,
        import_observables: settings.esm.import_observables,
    });

    let mut primary: Option<Box<dyn Sink>> = None;
    if settings.connector.send_to_queue {
        primary = Some(match settings.connector.queue_protocol {
            QueueProtocol::Amqp => Box::new(AmqpSink::new(
                mq,
                registration.connector_user_id.clone(),
                AmqpOptions::default(),
            )),
            QueueProtocol::Api => Box::new(DeliverySink(ApiDelivery::new(
                opencti.clone(),
                connector_id.clone(),
            ))),
        });
    }
    let mut directory: Option<Box<dyn Sink>> =
        settings.connector.send_to_directory.as_ref().map(|dir| {
            Box::new(DeliverySink(DirectoryDelivery::new(
                dir.clone(),
                settings.connector.send_to_directory_retention_days,
                DirectoryIdentity {
                    applicant_id: Some(registration.connector_user_id.clone()),
                    connector_id: connector_id.clone(),
                    name: settings.connector.name.clone(),
                    scope: settings.connector.scope.clone(),
                    validate_before_import: false,
                },
            ))) as Box<dyn Sink>
        });

    let tracker = Arc::new(PlatformTracker {
        client: opencti.clone(),
        connector_id: connector_id.clone(),
        info: Mutex::new(ConnectorInfo {
            run_and_terminate: settings.connector.run_once(),
            buffering: false,
            queue_threshold: settings.connector.queue_threshold_mb as f64,
            queue_messages_size: 0.0,
            next_run_datetime: None,
            last_run_datetime: None,
        }),
        last_sent: Mutex::new(None),
    });

    // 3. Liveness: ping every 40 s with the state; adopt an operator's reset.
    let pinger = {
        let tracker = tracker.clone();
        let state = state.clone();
        let metrics = metrics.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            while sleep_unless_shutdown(&mut shutdown, PING_INTERVAL).await {
                let snapshot = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
                metrics.ping_api.inc();
                match tracker.ping(&snapshot).await {
                    Ok(None) => {}
                    Ok(Some(reset)) => {
                        info!(
                            "the state was reset in the platform: the next run imports everything again"
                        );
                        *state.lock().unwrap_or_else(|p| p.into_inner()) = reset;
                    }
                    Err(e) => {
                        metrics.ping_api_errors.inc();
                        warn!(error = %e, "ping failed");
                    }
                }
            }
        })
    };

    let cfg = RunConfig {
        max_cases: settings.esm.max_cases,
        page_size: settings.esm.page_size,
        fetch_chunk: settings.esm.case_batch_size * settings.esm.concurrency,
        friendly_name: String::new(),
    };
    let threshold_bytes = settings
        .connector
        .queue_threshold_mb
        .saturating_mul(1024 * 1024);
    let mut first = true;
    let mut last_ok = true;
    loop {
        // Back-pressure: skip while the platform's workers are behind (not before the first run).
        let mut skip = false;
        if !first && settings.connector.send_to_queue {
            match opencti.queue_details(&connector_id).await {
                Ok(q) if q.messages_size > threshold_bytes => {
                    info!(
                        queue_bytes = q.messages_size,
                        threshold_mb = settings.connector.queue_threshold_mb,
                        "queue over threshold: run skipped"
                    );
                    metrics.runs_skipped.inc();
                    skip = true;
                }
                Ok(q) => {
                    tracker
                        .info
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .queue_messages_size = q.messages_size as f64 / 1_048_576.0;
                }
                Err(e) => warn!(error = %e, "reading the queue size failed; running anyway"),
            }
        }
        first = false;
        if !skip {
            metrics.set_state(RunState::running);
            metrics.runs.inc();
            let friendly = format!("ArcSight run @ {}", Utc::now().format("%Y-%m-%d %H:%M:%S"));
            let cfg = RunConfig {
                friendly_name: friendly,
                ..cfg.clone()
            };
            let mut sinks: Vec<&mut dyn Sink> = Vec::new();
            if let Some(p) = primary.as_deref_mut() {
                sinks.push(p);
            }
            if let Some(d) = directory.as_deref_mut() {
                sinks.push(d);
            }
            let report = run_once(
                &esm,
                &mut sinks,
                tracker.as_ref(),
                &converter,
                &state,
                &cfg,
                Some(&shutdown),
            )
            .await;
            record(&metrics, &esm, &report);
            last_ok = report.succeeded();
            if last_ok {
                let now = Utc::now();
                metrics.record_success(now.timestamp());
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.last_run = Some(now.to_rfc3339());
            }
            tracker
                .info
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_run_datetime = Some(Utc::now());
            metrics.set_state(RunState::idle);
        }
        if shutdown.is_triggered() || settings.connector.run_once() {
            break;
        }
        let period = settings
            .connector
            .duration_period
            .unwrap_or(Duration::from_secs(900));
        tracker
            .info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_run_datetime =
            Some(Utc::now() + chrono::Duration::from_std(period).unwrap_or_default());
        if !sleep_unless_shutdown(&mut shutdown, period).await {
            break;
        }
    }

    metrics.set_state(RunState::stopped);
    // Persist the final state (it holds `last_run`), bounded in time.
    let snapshot = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let _ = tokio::time::timeout(Duration::from_secs(3), tracker.ping(&snapshot)).await;
    pinger.abort();
    Ok(last_ok)
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
    for (op, s) in esm.stats().operations {
        for (outcome, n) in [("ok", s.ok), ("retried", s.retried), ("error", s.error)] {
            metrics.set_esm_requests(op, outcome, n);
        }
    }
    // The process's peak resident memory so far (Linux): what an operator sizes the container by.
    let peak = crate::metrics::peak_rss_bytes();
    if let Some(bytes) = peak {
        metrics
            .peak_rss_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    let peak_rss_mb = peak.map(|b| (b as f64 / 104_857.6).round() / 10.0);
    if let Some(e) = &report.error {
        error!(
            cases_seen = report.cases_seen, changed = report.cases_changed, delivered = report.cases_delivered,
            failed = report.cases_failed, messages = report.messages, seconds = report.seconds,
            peak_rss_mb, error = %e,
            "run failed"
        );
    } else {
        info!(
            cases_seen = report.cases_seen,
            changed = report.cases_changed,
            delivered = report.cases_delivered,
            failed = report.cases_failed,
            messages = report.messages,
            seconds = report.seconds,
            peak_rss_mb,
            "run finished"
        );
    }
}
