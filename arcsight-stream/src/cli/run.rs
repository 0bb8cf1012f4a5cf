//! `arcsight-stream run`: start-up (telemetry, metrics server, ESM and the list check,
//! registration as a STREAM connector, the state), the engine until SIGTERM/SIGINT, then the
//! final state save, the ESM logout and the background tasks joined.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use connector_runtime::metrics::Metrics;
use connector_runtime::platform::{
    Background, ConnectorState, RegisterError, SharedState, StateWriter, ping_loop,
    register_with_backoff,
};
use connector_runtime::schedule::{
    Shutdown, every, on_signals, shutdown_pair, sleep_unless_shutdown,
};
use esm_client::EsmClient;
use esm_client::active_lists::{ActiveListConfig, ActiveListError, ActiveLists};
use opencti_client::{ConnectorInfo, ConnectorRegistration, ConnectorType, OpenCtiClient};
use tracing::{error, info, warn};

use super::source::{EsmWatch, FailingSince, LiveSource, PlatformStore};
use super::{CliError, runtime};
use crate::engine::{self, EngineConfig, StreamState};
use crate::metrics::StreamMetrics;
use crate::settings::Settings;
use crate::settings::defs::{ARCSIGHT_ACTIVE_LIST_ID, ARCSIGHT_VALUE_COLUMN};

/// How often `/healthz`'s marks are brought up to date.
const HEALTH_TICK: Duration = Duration::from_secs(5);
/// Ready (`/readyz`) means healthy within this long.
const READY_WINDOW: Duration = Duration::from_secs(120);
/// The longest wait between two start-up checks of the list while ESM is unreachable.
const MAX_CHECK_WAIT: Duration = Duration::from_secs(60);
/// How long the last save and the logout may take at shutdown: a stop must not hang on an
/// unresponsive peer.
const SHUTDOWN_STEP: Duration = Duration::from_secs(3);

/// Why the connector stopped before or instead of running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The list or its column is not what the settings say (exit 2).
    #[error("{setting}: {error}")]
    List {
        setting: &'static str,
        error: ActiveListError,
    },
    #[error("ESM: {0}")]
    Esm(String),
    #[error("platform: {0}")]
    Platform(String),
    #[error("live stream: {0}")]
    Engine(String),
}

/// Runs the connector; the process's exit status.
pub(crate) fn main(settings: Settings) -> Result<ExitCode, CliError> {
    connector_runtime::telemetry::init(
        crate::LOG_TARGETS,
        settings.platform.json_logging,
        settings.connector.log_level,
    );
    for line in settings.advice() {
        warn!("{line}");
    }
    let rt = runtime().map_err(|e| CliError::failed("run", e))?;
    rt.block_on(async move {
        let (trigger, shutdown) = shutdown_pair();
        on_signals(trigger);
        match run(settings, shutdown).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e @ RunError::List { .. }) => Err(CliError::Config(e.to_string())),
            Err(e) => {
                error!(error = %e, "the connector stopped");
                Err(CliError::failed("run", e))
            }
        }
    })
}

/// The stream connector's metrics: pycti's, then the engine's families, in one registry.
pub(crate) fn metrics(settings: &Settings, stream: &StreamMetrics) -> Metrics {
    Metrics::with_families(settings.connector.metrics.prefix.as_deref(), |r| {
        stream.register(r)
    })
}

/// The engine's configuration from the settings.
pub(crate) fn engine_config(settings: &Settings) -> EngineConfig {
    let s = &settings.sync;
    EngineConfig {
        flush_delay: s.flush_delay,
        max_pending: s.max_pending,
        reconcile_period: s.reconcile_period,
        ledger_path: s.ledger_path.clone(),
        // A failed write waits as the ESM client's retries do, at least a little.
        retry_initial: settings
            .esm
            .client
            .retry_min_wait
            .max(Duration::from_millis(100)),
        retry_max: settings
            .esm
            .client
            .retry_max_wait
            .max(Duration::from_secs(1)),
        stream_id: settings.connector.live_stream.id.clone(),
        ..EngineConfig::new(
            settings.esm.list_id.clone(),
            settings.esm.value_column.clone(),
            s.policy,
        )
    }
}

/// The list's start-up check, as a [`RunError`] naming the setting at fault.
pub(crate) fn list_error(e: ActiveListError) -> RunError {
    let setting = match &e {
        ActiveListError::UnknownColumn { .. } => ARCSIGHT_VALUE_COLUMN.def().env,
        _ => ARCSIGHT_ACTIVE_LIST_ID.def().env,
    };
    RunError::List { setting, error: e }
}

/// Is `e` the list or column being wrong (as opposed to ESM failing)?
fn is_list_mismatch(e: &ActiveListError) -> bool {
    matches!(
        e,
        ActiveListError::NotFound { .. }
            | ActiveListError::NotAList { .. }
            | ActiveListError::UnknownColumn { .. }
    )
}

/// Checks that the list exists and has the value column, waiting out an unreachable ESM (it
/// may start after us) until `shutdown`; `Ok(false)` when stopped first.
async fn check_list(
    lists: &ActiveLists,
    settings: &Settings,
    shutdown: &mut Shutdown,
) -> Result<bool, RunError> {
    let cfg = engine_config(settings);
    let mut wait = Duration::from_secs(1);
    loop {
        let checked =
            connector_runtime::schedule::unless_shutdown(shutdown, engine::check(lists, &cfg))
                .await;
        match checked {
            None => return Ok(false),
            Some(Ok(info)) => {
                info!(
                    list = %settings.esm.list_id,
                    name = info.name.as_deref().unwrap_or(""),
                    column = %settings.esm.value_column,
                    entries = info.entry_count,
                    "the Active List is ready"
                );
                return Ok(true);
            }
            Some(Err(e)) if is_list_mismatch(&e) => return Err(list_error(e)),
            Some(Err(e)) if e.is_transient() => {
                warn!(error = %e, retry_in_s = wait.as_secs(), "ESM is not reachable yet");
                if !sleep_unless_shutdown(shutdown, wait).await {
                    return Ok(false);
                }
                wait = (wait * 2).min(MAX_CHECK_WAIT);
            }
            Some(Err(e)) => return Err(RunError::Esm(e.to_string())),
        }
    }
}

/// Start-up, the engine until `shutdown`, then the stop. `Ok` on a requested stop.
pub(crate) async fn run(settings: Settings, mut shutdown: Shutdown) -> Result<(), RunError> {
    let stream_metrics = StreamMetrics::default();
    let metrics = metrics(&settings, &stream_metrics);
    if let Some(after) = settings.connector.health_timeout {
        metrics.set_stall_timeout(after);
    }
    let mut background = Background::new();
    if settings.connector.metrics.expose {
        let addr = std::net::SocketAddr::new(
            settings.connector.metrics.host,
            settings.connector.metrics.port,
        );
        let (m, mut stop) = (metrics.clone(), background.shutdown());
        background.spawn(async move {
            let served = connector_runtime::metrics::serve(addr, m, READY_WINDOW, async move {
                stop.wait().await
            });
            if let Err(e) = served.await {
                error!(error = %e, %addr, "the metrics endpoint could not start");
            }
        });
    }
    let result = run_started(
        &settings,
        &metrics,
        stream_metrics,
        &mut background,
        &mut shutdown,
    )
    .await;
    background.stop().await;
    result
}

async fn run_started(
    settings: &Settings,
    metrics: &Metrics,
    stream_metrics: StreamMetrics,
    background: &mut Background,
    shutdown: &mut Shutdown,
) -> Result<(), RunError> {
    let esm =
        EsmClient::new(settings.esm.client.clone()).map_err(|e| RunError::Esm(e.to_string()))?;
    let lists = esm.active_lists(ActiveListConfig {
        batch_size: settings.esm.batch_size,
    });
    // ESM's health before the engine runs (the list check waits out an unreachable ESM);
    // the engine's own marks once it does.
    let startup_esm = FailingSince::default();
    background.spawn(health_loop(
        metrics.clone(),
        stream_metrics.clone(),
        EsmWatch::new(esm.clone(), startup_esm.clone()),
        startup_esm,
        settings.connector.health_timeout,
        background.shutdown(),
    ));
    let outcome = async {
        if !check_list(&lists, settings, shutdown).await? {
            return Ok(());
        }
        let client = OpenCtiClient::new(settings.platform.client.clone())
            .map_err(|e| RunError::Platform(e.to_string()))?;
        let identity = &settings.connector.identity;
        let registration = ConnectorRegistration {
            id: identity.id.clone(),
            name: identity.name.clone(),
            connector_type: ConnectorType::Stream,
            scope: identity.scope.clone(),
        };
        let mut registered =
            match register_with_backoff(&client, &registration, None, metrics, shutdown).await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(e @ RegisterError::Refused(_)) => {
                    return Err(RunError::Platform(format!("{e}; check OPENCTI_TOKEN")));
                }
                Err(e) => return Err(RunError::Platform(e.to_string())),
            };
        // The text is freed once decoded, not kept with the registration.
        let mut state = StreamState::from_platform(registered.connector_state.take().as_deref());
        if state.position.is_none() {
            // A first run, as pycti starts one (and, as pycti, the state says so at once).
            state.position = Some(settings.connector.live_stream.first_position(Utc::now()));
        }
        let initial = state.position.clone();
        let state = Arc::new(SharedState::new(state));
        let writer = Arc::new(StateWriter::new(
            client,
            identity.id.clone(),
            ConnectorInfo {
                run_and_terminate: false,
                buffering: false,
                queue_threshold: 0.0,
                queue_messages_size: 0.0,
                next_run_datetime: None,
                last_run_datetime: None,
            },
            registered.state_timestamp.clone(),
        ));
        background.spawn(ping_loop(
            settings.connector.ping_interval,
            writer.clone(),
            state.clone(),
            metrics.clone(),
            background.shutdown(),
        ));
        let source = LiveSource::new(settings.stream_config(), initial);
        let store = PlatformStore {
            writer: writer.clone(),
            state: state.clone(),
        };
        info!(stream = %settings.connector.live_stream.id, list = %settings.esm.list_id, "following the live stream");
        let ran = engine::run(
            engine_config(settings),
            source,
            lists.clone(),
            state.clone(),
            store,
            stream_metrics,
            shutdown.clone(),
        )
        .await;
        // The last save, through the one writer, bounded.
        match tokio::time::timeout(SHUTDOWN_STEP, writer.ping(&state)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "the last state save failed"),
            Err(_) => warn!("the last state save timed out"),
        }
        ran.map_err(|e| RunError::Engine(e.to_string()))
    }
    .await;
    match tokio::time::timeout(SHUTDOWN_STEP, esm.logout()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "ESM logout failed"),
        Err(_) => warn!("ESM logout timed out"),
    }
    outcome
}

/// Brings `/healthz` and `/readyz` up to date every few seconds: progress is marked while
/// neither the live stream nor ESM is failing (the engine's failing-since marks, and before
/// the engine runs ESM's own counters), so `/healthz` turns unhealthy once either has failed
/// for longer than the stall timeout.
async fn health_loop(
    metrics: Metrics,
    engine: StreamMetrics,
    mut esm: EsmWatch,
    startup_esm: FailingSince,
    timeout: Option<Duration>,
    shutdown: Shutdown,
) {
    let mut tick = move || {
        let now = Utc::now().timestamp();
        esm.tick(now);
        let failing = engine.stream_failing_for(now).is_some()
            || engine.esm_failing_for(now).is_some()
            || startup_esm.failing_for(now).is_some();
        if !failing {
            metrics.progress(now);
            metrics.record_success(now);
        }
        async {}
    };
    tick().await;
    every(health_tick(timeout), shutdown, tick).await;
}

/// How often the health marks move: [`HEALTH_TICK`], or a quarter of a shorter timeout, so
/// that a healthy connector is never seen without progress for longer than its timeout.
fn health_tick(timeout: Option<Duration>) -> Duration {
    match timeout {
        Some(t) => HEALTH_TICK.min(t / 4).max(Duration::from_millis(50)),
        None => HEALTH_TICK,
    }
}
