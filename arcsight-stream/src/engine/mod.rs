//! The sync loop: live stream items -> `stream_core::ledger` -> coalesced, batched Active List
//! writes -> the stream position, saved only once ESM acknowledged every write it covers.
//!
//! INTERFACE CONTRACT: the signatures below are what `cli` builds on; they grow compatibly.
//!
//! One task, one loop, nothing shared but the position and the metrics. Each turn waits for
//! the first of: shutdown, the flush delay (it runs from the first pending change; a flush
//! starts at once when `max_pending` changes wait), the next `valid_until` of a tracked
//! indicator (its values leave the list at that instant, with no event), the reconciliation
//! period, and the next stream item. A flush is awaited in the loop: while ESM is down and a
//! write is retried, the source is not read, so the live stream's bounded channel pauses the
//! stream instead of it being buffered without bound.
//!
//! Positions ([`position`]): only the acked position (every write up to it acknowledged) is
//! put in the shared state and saved. Start and resynchronisation:
//! - the ledger file ([`snapshot`]) matches this stream, list, column and policy, and the
//!   platform holds a position: resume from the file's position (replaying from there is
//!   idempotent, even if the platform's is newer);
//! - otherwise (first run, no or another file, an operator's reset), and on a retention gap:
//!   a full resync: the stream from `0-0` with `recover=now`, a fresh ledger built from the
//!   recovered objects, adds written as they come; once an item at or past the recovery date
//!   arrives, the list is reconciled, which removes the values managed before and no longer
//!   wanted (ownership: [`reconcile`]).
//!
//! The ledger file is rewritten at quiet points only; every add sent in between is first
//! appended to its journal (`<file>.owned`, emptied at each rewrite), whose values are ours at
//! the next start however it starts, so a kill never leaves a value of ours unowned.

pub mod clock;
mod position;
mod reconcile;
pub mod snapshot;
mod writer;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connector_runtime::platform::{ConnectorState, SharedState};
use connector_runtime::schedule::{Shutdown, shutdown_pair};
use esm_client::active_lists::{ActiveListError, ActiveListInfo, ActiveLists};
use opencti_client::stream::{StreamItem, StreamPosition, parse_id};
use stream_core::event::{self, Object};
use stream_core::ledger::{Change, Ledger};
use stream_core::pattern::Skip;
use stream_core::policy::{Exclusion, Policy};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

pub use clock::Clock;

use crate::metrics::StreamMetrics;
use position::Saver;
use writer::{Pending, Writer};

/// How the engine writes and when.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `ARCSIGHT_ACTIVE_LIST_ID`.
    pub list_id: String,
    /// `ARCSIGHT_VALUE_COLUMN`.
    pub value_column: String,
    /// Which indicators and values go in the list.
    pub policy: Policy,
    /// Longest a change waits before it is written (the first pending change starts the clock).
    pub flush_delay: Duration,
    /// Most pending changes before a flush starts at once.
    pub max_pending: usize,
    /// Reconciliation against `getEntries` besides the one at start; `None`: at start only.
    pub reconcile_period: Option<Duration>,
    /// Where the ledger snapshot is kept between runs; `None`: every start is a full resync.
    pub ledger_path: Option<PathBuf>,
    /// First and longest wait between two attempts of a failed write.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `CONNECTOR_LIVE_STREAM_ID`: the ledger file is for this stream only.
    pub stream_id: String,
    /// Least time between two ledger file writes while the ledger changes.
    pub snapshot_interval: Duration,
}

impl EngineConfig {
    /// The defaults for everything but what has none.
    pub fn new(
        list_id: impl Into<String>,
        value_column: impl Into<String>,
        policy: Policy,
    ) -> Self {
        EngineConfig {
            list_id: list_id.into(),
            value_column: value_column.into(),
            policy,
            flush_delay: Duration::from_millis(250),
            max_pending: 5_000,
            reconcile_period: Some(Duration::from_secs(3600)),
            ledger_path: None,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            stream_id: String::new(),
            snapshot_interval: Duration::from_secs(30),
        }
    }
}

/// What feeds the engine: the live stream in production, a script in tests.
///
/// The engine calls [`Source::restart`] before its first `recv` (it decides where to start:
/// the ledger file's position, or a full resync), so a source delivers nothing before it.
/// `recv` must be cancel-safe (it is one branch of the loop's `select!`), as
/// `LiveStream::recv` is.
pub trait Source: Send {
    /// The next item; `None` once the source is shut down.
    fn recv(&mut self) -> impl Future<Output = Option<StreamItem>> + Send;
    /// Follows the stream again from `position` (a full resync restarts from the beginning).
    fn restart(&mut self, position: StreamPosition) -> impl Future<Output = ()> + Send;
}

/// Where the position is saved: the platform, through the runtime's one state writer.
pub trait PositionStore: Send + Sync {
    /// Sends the shared state now; `Ok(true)` when the platform reports an operator's reset
    /// (the shared state then already holds the empty state).
    fn save(&self) -> impl Future<Output = Result<bool, String>> + Send;
}

/// The connector's state in the platform: pycti's keys (`start_from`, `recover_until`), so a
/// Python deployment is taken over without a replay, and any other key kept as found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamState {
    pub position: Option<StreamPosition>,
    /// Keys we do not own, written back unchanged.
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ConnectorState for StreamState {
    const RESET_NOTICE: &'static str = "the connector's state was reset in the platform: the list is resynchronised from the start of the stream";

    fn from_platform(text: Option<&str>) -> Self {
        let value = text
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .unwrap_or(serde_json::Value::Null);
        let position = StreamPosition::from_state(&value);
        let mut other = match value {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        for k in ["start_from", "recover_until", "connectorLastEventId"] {
            other.remove(k);
        }
        StreamState { position, other }
    }

    fn to_platform(&self) -> String {
        let mut value = serde_json::Value::Object(self.other.clone());
        if let Some(p) = &self.position {
            p.write_to(&mut value);
        }
        value.to_string()
    }
}

/// Why the engine stopped (anything transient is waited out inside it, never returned).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Fatal(String),
}

/// The start-up check: the list exists, is an Active List, and has the value column.
pub async fn check(
    lists: &ActiveLists,
    cfg: &EngineConfig,
) -> Result<ActiveListInfo, ActiveListError> {
    let info = lists.check_list(&cfg.list_id, &cfg.value_column).await?;
    if info.key_fields.len() > 1
        || info
            .key_fields
            .first()
            .is_some_and(|k| *k != cfg.value_column)
    {
        warn!(list = %cfg.list_id, column = %cfg.value_column, key_fields = ?info.key_fields,
            "the value column is not the list's only key field: ESM may keep duplicates or match deletes differently");
    }
    Ok(info)
}

/// Runs until `shutdown`: reads `source`, keeps the list exact, saves the position.
pub async fn run<S: Source, P: PositionStore + 'static>(
    cfg: EngineConfig,
    source: S,
    lists: ActiveLists,
    state: Arc<SharedState<StreamState>>,
    store: P,
    metrics: StreamMetrics,
    shutdown: Shutdown,
) -> Result<(), EngineError> {
    run_with_clock(
        cfg,
        source,
        lists,
        state,
        store,
        metrics,
        shutdown,
        Clock::system(),
    )
    .await
}

/// [`run`] with the clock that decides `valid_until` (tests move it by hand).
#[allow(clippy::too_many_arguments)]
pub async fn run_with_clock<S: Source, P: PositionStore + 'static>(
    cfg: EngineConfig,
    source: S,
    lists: ActiveLists,
    state: Arc<SharedState<StreamState>>,
    store: P,
    metrics: StreamMetrics,
    shutdown: Shutdown,
    clock: Clock,
) -> Result<(), EngineError> {
    let store = Arc::new(store);
    let reset = Arc::new(Notify::new());
    let saver = Saver::spawn(store.clone(), reset.clone(), metrics.clone());
    let writer = Writer {
        lists,
        list_id: cfg.list_id.clone(),
        columns: [cfg.value_column.clone()],
        retry_initial: cfg.retry_initial,
        retry_max: cfg.retry_max,
        metrics: metrics.clone(),
        clock: clock.clone(),
    };
    let id = snapshot::Identity {
        stream_id: cfg.stream_id.clone(),
        list_id: cfg.list_id.clone(),
        value_column: cfg.value_column.clone(),
        policy: snapshot::policy_text(&cfg.policy),
    };
    let mut engine = Engine {
        ledger: Ledger::new(cfg.policy),
        resets_seen: state.resets(),
        cfg,
        id,
        source,
        writer,
        state,
        saver: Some(saver),
        reset,
        metrics,
        shutdown,
        clock,
        managed: 0,
        prior: HashSet::new(),
        pending: Pending::default(),
        applied: None,
        group: None,
        acked: None,
        recover_until: None,
        recovery: None,
        start_reconcile_due: false,
        next_reconcile: None,
        snapshot_dirty: false,
        position_dirty: false,
        last_snapshot: None,
    };
    let outcome = engine.run().await;
    engine.finish(&*store).await;
    outcome
}

/// The loop was stopped (shutdown, or the source ended).
struct Stop;

enum Wake {
    Stop,
    Check,
    Flush,
    Expire,
    Reconcile,
    Item(StreamItem),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Start,
    Periodic,
    Resync,
}

/// A ready-made `sleep_until` that never fires for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Items handled in a row when they are already waiting.
const DRAIN: usize = 256;

/// A ledger file whose ledger did not change is rewritten (for its position) this many
/// `snapshot_interval`s apart at most.
const POSITION_ONLY_SNAPSHOT_FACTOR: u32 = 10;

/// At shutdown, what is pending gets this long to be written (an outage is not waited out).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Engine<S> {
    cfg: EngineConfig,
    id: snapshot::Identity,
    source: S,
    writer: Writer,
    state: Arc<SharedState<StreamState>>,
    /// Resets of the shared state already handled.
    resets_seen: u64,
    saver: Option<Saver>,
    /// A save found an operator's reset.
    reset: Arc<Notify>,
    metrics: StreamMetrics,
    shutdown: Shutdown,
    clock: Clock,
    ledger: Ledger,
    /// Distinct values the ledger wants (its changes say exactly when one comes and goes).
    managed: usize,
    /// Values managed before a full resync in progress (ownership: `reconcile`).
    prior: HashSet<String>,
    pending: Pending,
    /// Id of the last complete group applied, and of the last acked. Several events share an
    /// id (an object's dependencies come first with the object's id, reference 2.5), so an id
    /// is a safe position only once an item with another id, or a heartbeat, has come: saving
    /// it earlier would resume past the object after a restart, and lose it.
    applied: Option<String>,
    /// Id of the latest event group, maybe incomplete (not a position yet).
    group: Option<String>,
    acked: Option<String>,
    /// pycti's `recover_until`, kept as found (or a resync's date).
    recover_until: Option<String>,
    /// While a full resync's recovery runs: the first id past it.
    recovery: Option<(u64, u64)>,
    /// The start reconciliation waits for the first heartbeat (the stream caught up).
    start_reconcile_due: bool,
    next_reconcile: Option<Instant>,
    /// The ledger changed since the ledger file was written.
    snapshot_dirty: bool,
    /// Only the acked position moved since then (heartbeats): rewritten less often, since a
    /// stale position in the file only lengthens the replay at the next start.
    position_dirty: bool,
    last_snapshot: Option<Instant>,
}

impl<S: Source> Engine<S> {
    async fn run(&mut self) -> Result<(), EngineError> {
        if self.start().await.is_err() {
            return Ok(());
        }
        loop {
            match self.turn().await {
                Ok(()) => {}
                Err(Stop) => return Ok(()),
            }
        }
    }

    /// Where to start: the ledger file, or a full resync.
    async fn start(&mut self) -> Result<(), Stop> {
        let platform = self.state.read(|s| s.position.clone());
        let loaded = match &self.cfg.ledger_path {
            None => None,
            Some(p) => match snapshot::load(p, self.cfg.policy).await {
                Ok(l) => l,
                Err(e) => {
                    self.metrics.snapshot_errors.inc();
                    warn!(error = %e, "the ledger file cannot be used: full resynchronisation");
                    None
                }
            },
        };
        // Values sent since the file was written: ours, whichever way the run starts.
        if let Some(p) = &self.cfg.ledger_path {
            match snapshot::journal_load(p).await {
                Ok(values) => self.prior.extend(values),
                Err(e) => {
                    self.metrics.snapshot_errors.inc();
                    warn!(error = %e, "the ledger file's journal cannot be read");
                }
            }
        }
        match (loaded, platform) {
            (Some(l), Some(p)) if l.resumable(&self.id) => {
                let from = l.position().and_then(|f| f.start_from);
                info!(position = ?from, platform_position = ?p.start_from, tracked = l.ledger.tracked(),
                    "resuming from the ledger file");
                // Values ours but not the ledger's (a journal's, not yet reconciled) stay ours.
                self.prior.extend(l.prior);
                self.ledger = l.ledger;
                self.managed = self.ledger.desired().count();
                self.recover_until = p.recover_until;
                self.applied = from.clone();
                self.group = None;
                self.acked = from.clone();
                self.start_reconcile_due = true;
                self.gauges();
                self.source
                    .restart(StreamPosition {
                        start_from: from,
                        recover_until: self.recover_until.clone(),
                    })
                    .await;
                Ok(())
            }
            (loaded, platform) => {
                if let Some(l) = loaded.filter(|l| l.same_list(&self.id)) {
                    // The file's values were ours in this list: a resync removes those no
                    // longer wanted.
                    self.prior.extend(l.prior);
                    self.prior.extend(l.ledger.desired().map(str::to_owned));
                }
                let reason = if platform.is_none() {
                    "no_position"
                } else {
                    "no_snapshot"
                };
                self.resync(reason).await
            }
        }
    }

    async fn turn(&mut self) -> Result<(), Stop> {
        if self.state.resets() != self.resets_seen {
            self.resets_seen = self.state.resets();
            return self.resync("reset").await;
        }
        if self.pending.len() >= self.cfg.max_pending.max(1) {
            return self.flush().await;
        }
        // During a resync the file holds what is ours so far (not the ledger): a kill then
        // restarts the resync without forgetting what it wrote.
        let quiet = self.pending.is_empty();
        let interval = if self.snapshot_dirty {
            Some(self.cfg.snapshot_interval)
        } else if self.position_dirty {
            Some(self.cfg.snapshot_interval * POSITION_ONLY_SNAPSHOT_FACTOR)
        } else {
            None
        };
        let snapshot_at = match (&self.cfg.ledger_path, interval) {
            (Some(_), Some(every)) if quiet => {
                Some(self.last_snapshot.map_or_else(Instant::now, |t| t + every))
            }
            _ => None,
        };
        if snapshot_at.is_some_and(|t| t <= Instant::now()) {
            self.write_snapshot().await;
            return Ok(());
        }
        let flush_at = self.pending.since.map(|t| t + self.cfg.flush_delay);
        let expiry = self.ledger.next_expiry();
        let reconcile_at = if self.recovery.is_none() {
            self.next_reconcile
        } else {
            None
        };
        let clock = self.clock.clone();
        let wake = tokio::select! {
            biased;
            _ = self.shutdown.wait() => Wake::Stop,
            _ = self.reset.notified() => Wake::Check,
            _ = sleep_until(flush_at) => Wake::Flush,
            _ = async {
                match expiry {
                    Some(ms) => clock.sleep_until(ms).await,
                    None => std::future::pending().await,
                }
            } => Wake::Expire,
            _ = sleep_until(reconcile_at) => Wake::Reconcile,
            _ = sleep_until(snapshot_at) => Wake::Check,
            item = self.source.recv() => match item {
                Some(item) => Wake::Item(item),
                None => Wake::Stop,
            },
        };
        match wake {
            Wake::Stop => Err(Stop),
            Wake::Check => Ok(()),
            Wake::Flush => self.flush().await,
            Wake::Expire => {
                let changes = self.ledger.expire(self.clock.now_ms());
                if !changes.is_empty() {
                    info!(
                        changes = changes.len(),
                        "indicators reached their valid_until"
                    );
                }
                self.push(changes);
                self.settle();
                Ok(())
            }
            Wake::Reconcile => self.reconcile(Why::Periodic).await,
            Wake::Item(item) => {
                self.item(item).await?;
                self.drain().await
            }
        }
    }

    /// Handles the items already waiting, without a turn of the loop each (its timers are
    /// looked at again within `DRAIN` items).
    async fn drain(&mut self) -> Result<(), Stop> {
        for _ in 0..DRAIN {
            if self.pending.len() >= self.cfg.max_pending.max(1)
                || self.state.resets() != self.resets_seen
                || self.shutdown.is_triggered()
            {
                break;
            }
            // Polled once: an item that is not there yet is left to the loop's select.
            let next = tokio::select! {
                biased;
                item = self.source.recv() => Some(item),
                () = std::future::ready(()) => None,
            };
            match next {
                Some(Some(item)) => self.item(item).await?,
                Some(None) => return Err(Stop),
                None => break,
            }
        }
        Ok(())
    }

    async fn item(&mut self, item: StreamItem) -> Result<(), Stop> {
        let heartbeat = matches!(item, StreamItem::Heartbeat { .. });
        let id = match item {
            StreamItem::Connected { .. } => {
                self.metrics.read("connected");
                self.metrics.stream_failing_since.set(0);
                debug!("live stream connected");
                return Ok(());
            }
            StreamItem::Reconnecting { after, reason } => {
                StreamMetrics::failing(&self.metrics.stream_failing_since, self.clock.now_unix());
                warn!(error = %reason, retry_in = ?after, "live stream disconnected: reconnecting");
                return Ok(());
            }
            StreamItem::Gap {
                position,
                first_event_id,
            } => {
                warn!(%position, %first_event_id,
                    "the stream no longer holds events after our position (retention): full resynchronisation");
                return self.resync("gap").await;
            }
            StreamItem::TooLarge { id, limit } => {
                self.metrics.read("other");
                self.metrics.skip("too_large");
                warn!(event_id = %id, limit, "stream event over the size limit skipped");
                id
            }
            StreamItem::Heartbeat { id } => {
                self.metrics.read("heartbeat");
                self.metrics.stream_failing_since.set(0);
                id
            }
            StreamItem::Event { id, name, data } => {
                self.metrics.stream_failing_since.set(0);
                self.event(&id, &name, &data);
                id
            }
        };
        let key = parse_id(&id);
        self.advance(id, heartbeat);
        self.settle();
        if let Some(bound) = self.recovery {
            if key.is_some_and(|k| k >= bound) {
                return self.complete_resync().await;
            }
        } else if self.start_reconcile_due && heartbeat {
            // The first heartbeat: the backlog since our position has been read.
            self.start_reconcile_due = false;
            return self.reconcile(Why::Start).await;
        }
        Ok(())
    }

    /// Decodes and applies one data event (never fatal).
    fn event(&mut self, id: &str, name: &str, data: &str) {
        let topic = match name {
            "create" => "create",
            "update" => "update",
            "delete" => "delete",
            "merge" => "merge",
            _ => "other",
        };
        self.metrics.read(topic);
        let ev = match event::decode(name, data) {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                self.metrics.skip("other_topic");
                debug!(event_id = %id, "stream event of another topic ignored");
                return;
            }
            Err(e) => {
                self.metrics.skip("decode_error");
                // The error names the field, never its value.
                warn!(event_id = %id, topic, error = %e, "unparsable stream event skipped");
                return;
            }
        };
        if matches!(ev.object, Object::Other { .. }) {
            self.metrics.skip("not_an_indicator");
        }
        let applied = self.ledger.apply(&ev, self.clock.now_ms());
        // Even without a change (a second carrier of a value) the ledger moved.
        self.snapshot_dirty = true;
        if let Some(why) = applied.excluded {
            self.metrics.skip(exclusion_label(why));
            debug!(event_id = %id, reason = exclusion_label(why), "indicator contributes no value");
        }
        self.push(applied.changes);
    }

    fn push(&mut self, changes: Vec<Change>) {
        for c in changes {
            match &c {
                Change::Add(_) => self.managed += 1,
                Change::Remove(_) => self.managed = self.managed.saturating_sub(1),
            }
            self.pending.push(c);
            self.snapshot_dirty = true;
        }
        self.gauges();
    }

    fn gauges(&self) {
        let m = &self.metrics;
        m.tracked_indicators.set(self.ledger.tracked() as i64);
        m.list_size.set(self.managed as i64);
        m.pending_changes.set(self.pending.len() as i64);
    }

    fn advance(&mut self, id: String, heartbeat: bool) {
        if let Some((ms, _)) = parse_id(&id) {
            let lag = self.clock.now_ms().saturating_sub(ms as i64).max(0) / 1000;
            self.metrics.lag_seconds.set(lag);
        }
        if heartbeat {
            // A heartbeat names the last id the platform sent: every group up to it is whole.
            self.group = None;
            self.applied = Some(id);
        } else if self.group.as_ref() != Some(&id) {
            // A new id completes the previous group.
            if let Some(done) = self.group.replace(id) {
                self.applied = Some(done);
            }
        }
    }

    /// Nothing pending: everything applied so far is acknowledged.
    fn settle(&mut self) {
        if self.pending.is_empty() {
            self.ack();
        }
    }

    /// The applied position becomes the acked one (the caller knows every write up to it
    /// was acknowledged).
    fn ack(&mut self) {
        if self.applied == self.acked || self.applied.is_none() {
            return;
        }
        let pos = StreamPosition {
            start_from: self.applied.clone(),
            recover_until: self.recover_until.clone(),
        };
        // A reset adopted meanwhile wins: the loop resyncs before anything else.
        if self
            .state
            .update_unless_reset(self.resets_seen, |s| s.position = Some(pos))
            .is_some()
        {
            self.acked = self.applied.clone();
            self.position_dirty = true;
            if let Some(s) = &self.saver {
                s.mark();
            }
        }
    }

    /// Writes everything pending, waiting out failures; acks on success.
    async fn flush(&mut self) -> Result<(), Stop> {
        if !self.pending.is_empty() {
            let (removes, adds) = self.pending.take();
            self.own_before_write(&adds).await;
            self.gauges();
            debug!(
                removes = removes.len(),
                adds = adds.len(),
                "writing pending changes"
            );
            self.writer
                .write(removes, adds, &mut self.shutdown)
                .await
                .map_err(|_| Stop)?;
        }
        self.ack();
        Ok(())
    }

    /// Starts a full resynchronisation: the current values become "managed before", a fresh
    /// ledger follows the stream from its start.
    async fn resync(&mut self, reason: &'static str) -> Result<(), Stop> {
        self.flush().await?;
        self.metrics
            .resyncs
            .get_or_create(&crate::metrics::ReasonLabel { reason })
            .inc();
        let old = std::mem::replace(&mut self.ledger, Ledger::new(self.cfg.policy));
        self.prior.extend(old.desired().map(str::to_owned));
        drop(old);
        self.managed = 0;
        let now = chrono::DateTime::from_timestamp_millis(self.clock.now_ms()).unwrap_or_default();
        let pos = StreamPosition::first_run(now);
        self.recovery = Some((u64::try_from(now.timestamp_millis()).unwrap_or(0), 0));
        self.recover_until = pos.recover_until.clone();
        self.applied = None;
        self.group = None;
        self.acked = None;
        self.start_reconcile_due = false;
        self.resets_seen = self.state.resets();
        self.state.update(|s| s.position = Some(pos.clone()));
        if let Some(s) = &self.saver {
            s.mark();
        }
        info!(reason, managed_before = self.prior.len(), recover_until = ?pos.recover_until,
            "full resynchronisation from the start of the stream");
        // A crash from here restarts the resync, with the values managed before kept ours.
        self.write_snapshot().await;
        self.gauges();
        self.source.restart(pos).await;
        Ok(())
    }

    /// The recovery is over: the list is reconciled (removing what was managed before and is
    /// no longer wanted), then the ledger is the only owner again.
    async fn complete_resync(&mut self) -> Result<(), Stop> {
        self.recovery = None;
        info!(
            tracked = self.ledger.tracked(),
            values = self.managed,
            "recovery complete: reconciling the list"
        );
        self.reconcile(Why::Resync).await?;
        self.prior.clear();
        self.snapshot_dirty = true;
        self.last_snapshot = None;
        Ok(())
    }

    /// Reads the list and repairs it (ownership: `reconcile`).
    async fn reconcile(&mut self, why: Why) -> Result<(), Stop> {
        self.flush().await?;
        let period = self.cfg.reconcile_period;
        let present = self
            .writer
            .read_values(why == Why::Resync, &mut self.shutdown)
            .await
            .map_err(|_| Stop)?;
        let Some(present) = present else {
            // Tried again later: the period, or soon when there is none.
            self.next_reconcile = Some(Instant::now() + period.unwrap_or(self.cfg.retry_max));
            return Ok(());
        };
        let r = reconcile::diff(&self.ledger, &present, &self.prior);
        let (missing, stale, foreign) = (r.missing.len(), r.stale.len(), r.foreign);
        self.own_before_write(&r.missing).await;
        self.writer
            .write(r.stale, r.missing, &mut self.shutdown)
            .await
            .map_err(|_| Stop)?;
        // What was managed before and is not wanted has just been removed; what is wanted is
        // the ledger's: nothing else is ours any more (a resync clears it itself once done).
        if self.recovery.is_none() && !self.prior.is_empty() {
            self.prior.clear();
            self.snapshot_dirty = true;
        }
        let m = &self.metrics;
        m.reconciliations.inc();
        m.repairs
            .get_or_create(&crate::metrics::KindLabel { kind: "missing" })
            .inc_by(missing as u64);
        m.repairs
            .get_or_create(&crate::metrics::KindLabel { kind: "stale" })
            .inc_by(stale as u64);
        let when = match why {
            Why::Start => "start",
            Why::Periodic => "periodic",
            Why::Resync => "resync",
        };
        if missing + stale > 0 {
            warn!(
                when,
                missing,
                stale,
                foreign,
                entries = present.len(),
                "reconciliation repaired the Active List (missing values re-added, values no longer wanted removed; foreign entries left)"
            );
        } else {
            info!(
                when,
                foreign,
                entries = present.len(),
                "reconciliation: the Active List is exact"
            );
        }
        self.next_reconcile = period.map(|p| Instant::now() + p);
        Ok(())
    }

    /// Writes the ledger file (a quiet point: nothing pending; during a resync, only the
    /// values managed before and those the resync wrote so far).
    async fn write_snapshot(&mut self) {
        let Some(path) = self.cfg.ledger_path.clone() else {
            return;
        };
        let resyncing = self.recovery.is_some();
        let position = self.acked.as_ref().map(|a| StreamPosition {
            start_from: Some(a.clone()),
            recover_until: self.recover_until.clone(),
        });
        let mut prior: Vec<&str> = self.prior.iter().map(String::as_str).collect();
        if resyncing {
            // What the interrupted recovery already wrote is ours too.
            prior.extend(self.ledger.desired().filter(|v| !self.prior.contains(*v)));
        }
        prior.sort_unstable();
        let ledger = if resyncing {
            Ledger::new(self.cfg.policy).snapshot()
        } else {
            self.ledger.snapshot()
        };
        let bytes = snapshot::encode(
            &self.id,
            position.filter(|_| !resyncing).as_ref(),
            resyncing,
            &prior,
            &ledger,
        );
        drop(ledger);
        self.last_snapshot = Some(Instant::now());
        match snapshot::store(&path, bytes).await {
            Ok(()) => {
                self.snapshot_dirty = false;
                self.position_dirty = false;
                // The file now holds what the journal did (or ESM acknowledged its removal:
                // nothing is pending at a quiet point).
                if let Err(e) = snapshot::journal_clear(&path).await {
                    self.metrics.snapshot_errors.inc();
                    warn!(error = %e, "cannot empty the ledger file's journal");
                }
                debug!(resyncing, "ledger file written");
            }
            Err(e) => {
                self.metrics.snapshot_errors.inc();
                error!(error = %e, "cannot write the ledger file: a restart will resynchronise the list");
            }
        }
    }

    /// The ledger file is written at quiet points only, so a value is journaled as ours
    /// before it is sent: after a kill, a restart that cannot resume from the file (a resync's
    /// file, or a retention gap past its position) still knows it as ours, and removes it if
    /// it is no longer wanted instead of taking it for a foreign entry. Appends only: linear
    /// in what is written, also over a first run's recovery.
    async fn own_before_write(&mut self, adds: &[String]) {
        let Some(path) = self.cfg.ledger_path.clone() else {
            return;
        };
        if let Err(e) = snapshot::journal_append(&path, adds).await {
            self.metrics.snapshot_errors.inc();
            error!(error = %e, "cannot journal the values written: after a restart that cannot resume, some may be taken for foreign entries");
        }
    }

    /// After the loop: what is pending gets a short chance, then the position and the ledger
    /// file are saved.
    async fn finish<P: PositionStore>(&mut self, store: &P) {
        if !self.pending.is_empty() {
            let (trigger, mut grace) = shutdown_pair();
            let timer = tokio::spawn(async move {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                trigger.trigger();
            });
            let (removes, adds) = self.pending.take();
            if self.writer.write(removes, adds, &mut grace).await.is_ok() {
                self.ack();
            } else {
                warn!(
                    "stopping with changes ESM has not acknowledged: they are replayed at the next start"
                );
            }
            timer.abort();
        }
        if let Some(s) = self.saver.take() {
            s.stop();
        }
        self.metrics.position_saves.inc();
        if let Err(e) = store.save().await {
            self.metrics.position_save_errors.inc();
            warn!(error = %e, "cannot save the stream position at shutdown");
        }
        if self.pending.is_empty() && (self.snapshot_dirty || self.position_dirty) {
            self.write_snapshot().await;
        }
        info!(position = ?self.acked, "engine stopped");
    }
}

fn exclusion_label(e: Exclusion) -> &'static str {
    match e {
        Exclusion::NotStix => "not_stix",
        Exclusion::NoPattern => "no_pattern",
        Exclusion::Revoked => "revoked",
        Exclusion::DetectionOff => "detection_off",
        Exclusion::ScoreBelowMinimum => "score_below_minimum",
        Exclusion::Expired => "expired",
        Exclusion::Pattern(s) => match s {
            Skip::Unparsable => "pattern_unparsable",
            Skip::Or => "pattern_or",
            Skip::And => "pattern_and",
            Skip::FollowedBy => "pattern_followed_by",
            Skip::Qualifier => "pattern_qualifier",
            Skip::Operator => "pattern_operator",
            Skip::UnsupportedType => "pattern_unsupported_type",
            Skip::NotAString => "pattern_not_a_string",
            Skip::EmptyValue => "pattern_empty_value",
        },
    }
}
