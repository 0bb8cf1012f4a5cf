//! The platform lifecycle every connector goes through: registration with backoff, the state
//! shared by the connector's tasks, the one writer that pings with the latest state and adopts
//! an operator's reset, the pinger, and the background tasks joined at shutdown.
//!
//! Generic over the connector's state ([`ConnectorState`]): the import keeps a ledger of
//! delivered cases, the stream connector its stream position.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use opencti_client::{
    ConnectorInfo, ConnectorRegistration, OpenCtiClient, OpenCtiError, Registration,
};
use peer_http::lock;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::schedule::{
    Shutdown, ShutdownTrigger, every, shutdown_pair, sleep_unless_shutdown, unless_shutdown,
};

/// A connector's state as the platform keeps it (`connector_state`, a JSON text).
pub trait ConnectorState: Send + 'static {
    /// Logged (info) when an operator's reset is adopted: what it means for this connector.
    const RESET_NOTICE: &'static str;
    /// The state from the platform's text; `None` (no state, or a reset) is the empty state.
    fn from_platform(text: Option<&str>) -> Self;
    /// The text the platform keeps.
    fn to_platform(&self) -> String;
}

/// What a state save found in the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The platform holds what we sent.
    Kept,
    /// An operator reset the state: it was adopted (see [`SharedState::adopt_reset`]).
    Reset,
}

/// The state shared by the connector's work, the pinger and the final save.
#[derive(Debug, Default)]
pub struct SharedState<S> {
    state: Mutex<S>,
    /// Bumped at each adopted reset: work that started before stops marking.
    resets: AtomicU64,
}

impl<S: ConnectorState> SharedState<S> {
    pub fn new(state: S) -> SharedState<S> {
        SharedState {
            state: Mutex::new(state),
            resets: Default::default(),
        }
    }

    /// A copy of the state now.
    pub fn snapshot(&self) -> S
    where
        S: Clone,
    {
        lock(&self.state).clone()
    }

    /// The state's text now, built under the lock rather than from a copy: at 100,000 cases a
    /// copy of the import's ledger is megabytes more at every save.
    pub fn to_platform(&self) -> String {
        lock(&self.state).to_platform()
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&lock(&self.state))
    }

    /// Changes the state.
    pub fn update<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut lock(&self.state))
    }

    /// Resets adopted so far.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::SeqCst)
    }

    /// Adopts the platform's state after an operator's reset.
    pub fn adopt_reset(&self, state: S) {
        let mut guard = lock(&self.state);
        *guard = state;
        self.resets.fetch_add(1, Ordering::SeqCst);
        info!("{}", S::RESET_NOTICE);
    }

    /// Changes the state unless a reset was adopted since `resets` (then `None`).
    pub fn update_unless_reset<R>(&self, resets: u64, f: impl FnOnce(&mut S) -> R) -> Option<R> {
        let mut guard = lock(&self.state);
        (self.resets() == resets).then(|| f(&mut guard))
    }
}

/// The one writer of the state in the platform: every ping (liveness or save) waits its turn
/// here, then snapshots the state, so the platform never receives an older state after a newer
/// one.
pub struct StateWriter {
    pub client: OpenCtiClient,
    pub connector_id: String,
    /// What a ping reports besides the state.
    pub info: Mutex<ConnectorInfo>,
    /// The platform's reset mark (`connector_state_timestamp`) last seen.
    writer: tokio::sync::Mutex<Option<String>>,
}

impl StateWriter {
    /// `state_timestamp` is the reset mark of the registration, the one that goes with the
    /// state the connector started from.
    pub fn new(
        client: OpenCtiClient,
        connector_id: String,
        info: ConnectorInfo,
        state_timestamp: Option<String>,
    ) -> Self {
        StateWriter {
            client,
            connector_id,
            info: Mutex::new(info),
            writer: tokio::sync::Mutex::new(state_timestamp),
        }
    }

    /// Pings with the latest state; adopts the empty state when the platform's reset mark
    /// moved since the last answer (an operator reset the state meanwhile).
    ///
    /// The platform stores the state of every ping except the first after a reset, which
    /// clears the reset and keeps the empty state the reset wrote; `resetStateConnector` is
    /// what moves the mark, never a ping. So a moved mark means "the platform now holds the
    /// empty state", and the answer needs no echo of the state (16 MB at 1,000,000 cases,
    /// which an answer limit sized for every other call cannot take).
    pub async fn ping<S: ConnectorState>(
        &self,
        state: &SharedState<S>,
    ) -> Result<Saved, OpenCtiError> {
        let mut seen = self.writer.lock().await;
        let resets = state.resets();
        let text = state.to_platform();
        let info = lock(&self.info).clone();
        let answer = self
            .client
            .ping(&self.connector_id, Some(text), &info)
            .await?;
        // No mark (a connector registered before the platform had one, and never reset since)
        // is no news: only a mark that moved is a reset.
        let Some(mark) = answer.state_timestamp else {
            return Ok(Saved::Kept);
        };
        if seen.as_deref() == Some(mark.as_str()) {
            return Ok(Saved::Kept);
        }
        *seen = Some(mark);
        if state.resets() == resets {
            state.adopt_reset(S::from_platform(None));
        }
        Ok(Saved::Reset)
    }
}

/// Pings every `interval` with the latest state, through the one writer, until `shutdown`.
pub async fn ping_loop<S: ConnectorState>(
    interval: Duration,
    writer: Arc<StateWriter>,
    state: Arc<SharedState<S>>,
    metrics: Metrics,
    shutdown: Shutdown,
) {
    every(interval, shutdown, || {
        let (writer, state, metrics) = (writer.clone(), state.clone(), metrics.clone());
        async move {
            metrics.ping_api.inc();
            // The same writer as the connector's saves: it always sends the latest state.
            if let Err(e) = writer.ping(&state).await {
                metrics.ping_api_errors.inc();
                warn!(error = %e, "ping failed");
            }
        }
    })
    .await;
}

/// Longest wait between two attempts to reach the platform at start-up.
const MAX_STARTUP_WAIT: Duration = Duration::from_secs(60);

/// After this long without the platform, "not ready" is said at error level: the default log
/// level is `error`, and an operator must see a deployment that cannot start.
const NOT_READY_IS_AN_ERROR_AFTER: Duration = Duration::from_secs(60);

/// Why registration gave up.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The platform refused the token: no retry can fix that, an operator must.
    #[error("the platform refused the connector's token or rights ({0})")]
    Refused(OpenCtiError),
    /// The wait allowed (`give_up_after`) ran out.
    #[error("the platform could not be reached within {waited_s} s; last error: {last}")]
    Unreachable { waited_s: u64, last: OpenCtiError },
}

/// Waits for the platform to answer and registers; retries with backoff (a platform that
/// starts after us is normal under docker-compose). `None` when stopped first. A refused token
/// ends the wait at once; so does `give_up_after` when set (a run-once job that never ends is
/// worse than one that fails).
pub async fn register_with_backoff(
    client: &OpenCtiClient,
    registration: &ConnectorRegistration,
    give_up_after: Option<Duration>,
    metrics: &Metrics,
    shutdown: &mut Shutdown,
) -> Result<Option<Registration>, RegisterError> {
    let deadline = give_up_after.map(|after| tokio::time::Instant::now() + after);
    let mut wait = Duration::from_secs(1);
    // Tokio's clock, as the deadline and the waits use: one clock for all three.
    let started = tokio::time::Instant::now();
    loop {
        let attempt = async {
            let version = client.health().await?;
            let r = client.register(registration).await?;
            Ok::<_, OpenCtiError>((version, r))
        };
        let Some(outcome) = unless_shutdown(shutdown, attempt).await else {
            return Ok(None);
        };
        match outcome {
            Ok((version, r)) => {
                metrics.platform_up();
                info!(platform_version = %version, "registered with the platform");
                return Ok(Some(r));
            }
            Err(e) if e.is_auth() => return Err(RegisterError::Refused(e)),
            Err(e) => {
                let mut sleep = wait;
                if let (Some(deadline), Some(after)) = (deadline, give_up_after) {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(RegisterError::Unreachable {
                            waited_s: after.as_secs(),
                            last: e,
                        });
                    }
                    sleep = sleep.min(left);
                }
                metrics.platform_down(Utc::now().timestamp());
                let for_s = started.elapsed().as_secs();
                if started.elapsed() >= NOT_READY_IS_AN_ERROR_AFTER {
                    error!(error = %e, for_s, retry_in_s = sleep.as_secs(), "the platform is not ready");
                } else {
                    warn!(error = %e, retry_in_s = sleep.as_secs(), "the platform is not ready");
                }
                if !sleep_unless_shutdown(shutdown, sleep).await {
                    return Ok(None);
                }
                wait = (wait * 2).min(MAX_STARTUP_WAIT);
            }
        }
    }
}

/// How long the background tasks get to finish at shutdown (a ping in flight).
const BACKGROUND_GRACE: Duration = Duration::from_secs(3);

/// The connector's background tasks (pinger, metrics server): stopped and joined when the
/// connector ends, whether or not a stop was requested (a run-and-terminate run ends on its
/// own).
#[derive(Debug)]
pub struct Background {
    stop: ShutdownTrigger,
    stopped: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for Background {
    fn default() -> Self {
        Background::new()
    }
}

impl Background {
    pub fn new() -> Background {
        let (stop, stopped) = shutdown_pair();
        Background {
            stop,
            stopped,
            tasks: Vec::new(),
        }
    }

    /// What a background task waits on to stop.
    pub fn shutdown(&self) -> Shutdown {
        self.stopped.clone()
    }

    /// Spawns `task` (which should end on [`Background::shutdown`]).
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Adopts a task already spawned.
    pub fn push(&mut self, task: tokio::task::JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Asks every task to stop and joins each, aborting one that takes longer than its grace.
    pub async fn stop(mut self) {
        self.stop.trigger();
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(BACKGROUND_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connector state as small as they come: a position.
    #[derive(Debug, Clone, Default, PartialEq)]
    struct Position(u64);

    impl ConnectorState for Position {
        const RESET_NOTICE: &'static str = "the position was reset";
        fn from_platform(text: Option<&str>) -> Self {
            Position(text.and_then(|t| t.parse().ok()).unwrap_or_default())
        }
        fn to_platform(&self) -> String {
            self.0.to_string()
        }
    }

    #[test]
    fn an_adopted_reset_stops_work_started_before_it() {
        let state = SharedState::new(Position::from_platform(Some("41")));
        let started = state.resets();
        assert_eq!(state.update_unless_reset(started, |p| p.0 += 1), Some(()));
        assert_eq!(state.to_platform(), "42");
        state.adopt_reset(Position::from_platform(None));
        assert_eq!(state.update_unless_reset(started, |p| p.0 += 1), None);
        assert_eq!(state.snapshot(), Position(0));
        let now = state.resets();
        assert_eq!(state.update_unless_reset(now, |p| p.0 += 1), Some(()));
        assert_eq!(state.read(|p| p.0), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn background_tasks_are_stopped_and_one_that_ignores_the_stop_is_aborted() {
        let mut background = Background::new();
        let mut stop = background.shutdown();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        background.spawn(async move {
            stop.wait().await;
            let _ = done_tx.send(());
        });
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        background.spawn(async move {
            let _held = dropped_tx;
            std::future::pending::<()>().await;
        });
        let t0 = tokio::time::Instant::now();
        background.stop().await;
        assert!(done_rx.await.is_ok(), "the well-behaved task did not end");
        assert!(dropped_rx.await.is_err(), "the stuck task was not aborted");
        assert_eq!(t0.elapsed(), BACKGROUND_GRACE);
    }
}
