//! Test helpers for the engine's black-box tests: a model of the platform's live stream (an
//! event log with ids, retention, recovery and heartbeats) behind a scripted `Source`, a
//! position store standing for the platform's connector state, the real ESM simulator with an
//! Active List, and STIX event builders.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcsight_stream::engine::{
    self, Clock, EngineConfig, EngineError, PositionStore, Source, StreamState,
};
use arcsight_stream::metrics::StreamMetrics;
use connector_runtime::platform::{ConnectorState, SharedState};
use connector_runtime::schedule::{ShutdownTrigger, shutdown_pair};
use esm_client::active_lists::{ActiveListConfig, ActiveLists};
use esm_client::{EsmClient, EsmConfig};
use esm_simulator::{ActiveListConfig as SimList, Dialect, Faults, SimConfig, Simulator};
use opencti_client::stream::{StreamItem, StreamPosition, parse_id};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub const LIST: &str = "HL+gxUvkwBABCRvFGFq5Z/g==";
pub const PASSWORD: &str = "pw-engine-test";
pub const EXT: &str = stream_core::event::OPENCTI_EXT;
/// 2026-01-01T00:00:00Z: the manual clock's start.
pub const T0: i64 = 1_767_225_600_000;

// ------------------------------------------------------------------ platform model

#[derive(Debug, Clone)]
struct Rec {
    id: String,
    key: (u64, u64),
    name: String,
    data: String,
}

#[derive(Default)]
struct Inner {
    /// Every event ever published (the model keeps the trimmed ones to compute recoveries).
    log: Vec<Rec>,
    /// Index of the oldest event the stream still serves (retention).
    first_kept: usize,
    last_ms: u64,
    heartbeats: bool,
    /// A recovery never ends (nothing is sent after its last object): a first run that a
    /// kill interrupts.
    endless_recovery: bool,
}

/// The platform's live stream as the engine sees it through `LiveStream`.
pub struct Platform {
    inner: Mutex<Inner>,
    new_event: Notify,
    clock: Clock,
    /// Items handed to the engine's channel so far.
    pub sent: AtomicUsize,
    /// Every position the engine restarted the stream from.
    pub restarts: Mutex<Vec<StreamPosition>>,
}

/// The object key the model tracks for recoveries (the internal id, as the platform).
fn object_key(obj: &Value) -> String {
    obj["extensions"][EXT]["id"]
        .as_str()
        .or(obj["id"].as_str())
        .unwrap_or_default()
        .to_owned()
}

impl Platform {
    pub fn new(clock: Clock) -> Arc<Platform> {
        Arc::new(Platform {
            inner: Mutex::new(Inner {
                heartbeats: true,
                ..Inner::default()
            }),
            new_event: Notify::new(),
            clock,
            sent: AtomicUsize::new(0),
            restarts: Mutex::new(Vec::new()),
        })
    }

    /// Publishes an event (`name` is the SSE event name); returns its id.
    pub fn push(&self, name: &str, event: Value) -> String {
        let mut g = self.inner.lock().unwrap();
        let ms = (self.clock.now_ms() as u64 + 1).max(g.last_ms + 1);
        g.last_ms = ms;
        let id = format!("{ms}-0");
        g.log.push(Rec {
            id: id.clone(),
            key: (ms, 0),
            name: name.to_owned(),
            data: event.to_string(),
        });
        drop(g);
        self.new_event.notify_waiters();
        id
    }

    /// Publishes raw `data:` text (an unparsable event).
    pub fn push_raw(&self, name: &str, data: &str) -> String {
        let mut g = self.inner.lock().unwrap();
        let ms = (self.clock.now_ms() as u64 + 1).max(g.last_ms + 1);
        g.last_ms = ms;
        let id = format!("{ms}-0");
        g.log.push(Rec {
            id: id.clone(),
            key: (ms, 0),
            name: name.to_owned(),
            data: data.to_owned(),
        });
        drop(g);
        self.new_event.notify_waiters();
        id
    }

    /// Retention: the stream forgets every event published so far.
    pub fn trim_all(&self) {
        let mut g = self.inner.lock().unwrap();
        g.first_kept = g.log.len();
    }

    pub fn set_endless_recovery(&self, on: bool) {
        self.inner.lock().unwrap().endless_recovery = on;
    }

    pub fn set_heartbeats(&self, on: bool) {
        self.inner.lock().unwrap().heartbeats = on;
        self.new_event.notify_waiters();
    }

    pub fn last_id(&self) -> Option<String> {
        self.inner.lock().unwrap().log.last().map(|r| r.id.clone())
    }

    pub fn source(self: &Arc<Self>, capacity: usize) -> ScriptSource {
        ScriptSource {
            platform: self.clone(),
            capacity,
            rx: None,
            feeder: None,
        }
    }

    /// The objects matching at `until` (inclusive), as a recovery lists them.
    fn objects_until(&self, until: (u64, u64)) -> Vec<Value> {
        let g = self.inner.lock().unwrap();
        let mut objects: BTreeMap<String, Value> = BTreeMap::new();
        for r in g.log.iter().filter(|r| r.key <= until) {
            let Ok(ev) = serde_json::from_str::<Value>(&r.data) else {
                continue;
            };
            let obj = &ev["data"];
            if r.name == "delete" {
                objects.remove(&object_key(obj));
                continue;
            }
            if r.name == "merge" {
                for s in ev["context"]["sources"].as_array().into_iter().flatten() {
                    objects.remove(&object_key(s));
                }
            }
            if matches!(r.name.as_str(), "create" | "update" | "merge") {
                objects.insert(object_key(obj), obj.clone());
            }
        }
        objects.into_values().collect()
    }

    async fn feed(self: Arc<Self>, pos: StreamPosition, tx: mpsc::Sender<StreamItem>) {
        let send = |item: StreamItem| {
            let tx = tx.clone();
            let me = self.clone();
            async move {
                let ok = tx.send(item).await.is_ok();
                if ok {
                    me.sent.fetch_add(1, Ordering::SeqCst);
                }
                ok
            }
        };
        let (first_kept, last) = {
            let g = self.inner.lock().unwrap();
            (
                g.log.get(g.first_kept).map(|r| r.id.clone()),
                g.log.last().map(|r| r.id.clone()),
            )
        };
        if !send(StreamItem::Connected {
            first_event_id: first_kept.clone(),
            last_event_id: last,
        })
        .await
        {
            return;
        }
        let from = pos.start_from.clone().unwrap_or_else(|| "0-0".into());
        let mut cursor = parse_id(&from).unwrap_or((0, 0));
        let recover = pos
            .recover_until
            .as_deref()
            .and_then(|r| chrono::DateTime::parse_from_rfc3339(r).ok())
            .map(|d| (d.timestamp_millis() as u64, 0u64))
            .filter(|r| *r > cursor);
        if let Some(r) = recover {
            // Recovery: the objects as they are now, as creates with ids before the recover
            // date; the live part follows. (The model's ids may run ahead of the manual clock,
            // so "now" is the end of the log rather than the recover date.)
            let end = {
                let g = self.inner.lock().unwrap();
                g.log.last().map_or((0, 0), |r| r.key)
            };
            for (n, obj) in self.objects_until(end).into_iter().enumerate() {
                let data = json!({"version": "4", "type": "create", "scope": "external",
                    "origin": {"referer": "init-create"}, "message": "recovers", "data": obj});
                let id = format!("{}-{}", r.0.saturating_sub(1), n);
                if !send(StreamItem::Event {
                    id,
                    name: "create".into(),
                    data: data.to_string(),
                })
                .await
                {
                    return;
                }
            }
            cursor = r.max(end);
            if self.inner.lock().unwrap().endless_recovery {
                return std::future::pending().await;
            }
            // The live part starts at the recover date: the platform's heartbeat says so.
            if !send(StreamItem::Heartbeat {
                id: format!("{}-{}", cursor.0, cursor.1),
            })
            .await
            {
                return;
            }
        } else if cursor != (0, 0) {
            // Retention: events after our position were trimmed before we read them.
            let trimmed_past = {
                let g = self.inner.lock().unwrap();
                g.log[..g.first_kept].iter().any(|r| r.key > cursor)
            };
            if trimmed_past {
                let first = first_kept.clone().unwrap_or_else(|| from.clone());
                if !send(StreamItem::Gap {
                    position: from.clone(),
                    first_event_id: first,
                })
                .await
                {
                    return;
                }
            }
        }
        loop {
            let notified = self.new_event.notified();
            let batch: Vec<Rec> = {
                let g = self.inner.lock().unwrap();
                g.log[g.first_kept..]
                    .iter()
                    .filter(|r| r.key > cursor)
                    .take(256)
                    .cloned()
                    .collect()
            };
            if batch.is_empty() {
                let heartbeats = self.inner.lock().unwrap().heartbeats;
                if heartbeats {
                    let now = (self.clock.now_ms().max(0) as u64, 0);
                    let key = cursor.max(now);
                    if !send(StreamItem::Heartbeat {
                        id: format!("{}-{}", key.0, key.1),
                    })
                    .await
                    {
                        return;
                    }
                    cursor = key;
                    let _ = tokio::time::timeout(Duration::from_millis(25), notified).await;
                } else {
                    notified.await;
                }
                continue;
            }
            for r in batch {
                cursor = r.key;
                if !send(StreamItem::Event {
                    id: r.id,
                    name: r.name,
                    data: r.data,
                })
                .await
                {
                    return;
                }
            }
        }
    }
}

/// The engine's `Source` over the model: a bounded channel (the back-pressure), restarted
/// from whatever position the engine asks.
pub struct ScriptSource {
    platform: Arc<Platform>,
    capacity: usize,
    rx: Option<mpsc::Receiver<StreamItem>>,
    feeder: Option<JoinHandle<()>>,
}

impl Drop for ScriptSource {
    fn drop(&mut self) {
        if let Some(f) = self.feeder.take() {
            f.abort();
        }
    }
}

impl Source for ScriptSource {
    async fn recv(&mut self) -> Option<StreamItem> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    async fn restart(&mut self, position: StreamPosition) {
        if let Some(f) = self.feeder.take() {
            f.abort();
        }
        self.platform
            .restarts
            .lock()
            .unwrap()
            .push(position.clone());
        let (tx, rx) = mpsc::channel(self.capacity.max(1));
        self.rx = Some(rx);
        self.feeder = Some(tokio::spawn(self.platform.clone().feed(position, tx)));
    }
}

// ------------------------------------------------------------------ position store

/// The platform's copy of the connector state, saved through the engine's store.
#[derive(Clone)]
pub struct Store {
    pub state: Arc<SharedState<StreamState>>,
    pub saved: Arc<Mutex<Option<String>>>,
    reset_next: Arc<AtomicBool>,
    pub saves: Arc<AtomicUsize>,
}

impl Store {
    pub fn new(saved: Option<String>) -> Store {
        Store {
            state: Arc::new(SharedState::new(StreamState::from_platform(
                saved.as_deref(),
            ))),
            saved: Arc::new(Mutex::new(saved)),
            reset_next: Arc::new(AtomicBool::new(false)),
            saves: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A new run's view of the same platform (after a restart).
    pub fn reopen(&self) -> Store {
        Store::new(self.saved.lock().unwrap().clone())
    }

    /// An operator resets the state: the next save finds it.
    pub fn reset(&self) {
        *self.saved.lock().unwrap() = None;
        self.reset_next.store(true, Ordering::SeqCst);
    }

    /// The position the platform holds.
    pub fn platform_position(&self) -> Option<String> {
        let text = self.saved.lock().unwrap().clone();
        StreamState::from_platform(text.as_deref())
            .position
            .and_then(|p| p.start_from)
    }
}

impl PositionStore for Store {
    async fn save(&self) -> Result<bool, String> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        if self.reset_next.swap(false, Ordering::SeqCst) {
            self.state.adopt_reset(StreamState::from_platform(None));
            return Ok(true);
        }
        *self.saved.lock().unwrap() = Some(self.state.to_platform());
        Ok(false)
    }
}

// ------------------------------------------------------------------ ESM

pub struct Esm {
    pub sim: Simulator,
    pub client: EsmClient,
    pub lists: ActiveLists,
}

pub fn sim_list(fields: &[&str]) -> SimList {
    SimList::new(LIST, fields)
}

impl Esm {
    pub async fn start(dialect: Dialect, list: SimList) -> Esm {
        let sim = Simulator::start(SimConfig {
            dialect,
            password: PASSWORD.into(),
            active_lists: vec![list],
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let client = EsmClient::new(EsmConfig {
            max_attempts: 2,
            retry_min_wait: Duration::from_millis(1),
            retry_max_wait: Duration::from_millis(5),
            request_timeout: Duration::from_secs(10),
            concurrency: 4,
            ..EsmConfig::new(sim.base_url(), "admin", SecretString::from(PASSWORD))
        })
        .expect("client");
        let lists = client.active_lists(ActiveListConfig::default());
        Esm { sim, client, lists }
    }

    /// The list's key column (its first field), sorted.
    pub fn values(&self) -> BTreeSet<String> {
        self.sim
            .active_list_entries(LIST)
            .expect("list")
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    }

    pub fn faults(&self, f: Faults) {
        self.sim.set_faults(f);
    }

    /// Calls of one Active List operation, with their entry counts.
    pub fn calls(&self, op: &str) -> Vec<usize> {
        self.sim
            .active_list_calls()
            .into_iter()
            .filter(|c| c.operation == op)
            .map(|c| c.entries)
            .collect()
    }
}

// ------------------------------------------------------------------ engine

pub fn temp_ledger(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "arcsight-stream-engine-{}-{}-{}",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("ledger.bin")
}

/// Quick timers, so a test runs in milliseconds (the engine's timers, not the tests').
pub fn config(ledger: Option<PathBuf>) -> EngineConfig {
    EngineConfig {
        flush_delay: Duration::from_millis(20),
        max_pending: 1_000,
        reconcile_period: None,
        ledger_path: ledger,
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(100),
        stream_id: "live".into(),
        snapshot_interval: Duration::from_millis(50),
        ..EngineConfig::new(LIST, "value", Default::default())
    }
}

pub struct Running {
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<(), EngineError>>,
}

impl Running {
    /// A clean stop (shutdown).
    pub async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the engine stops")
            .expect("no panic")
            .expect("no error");
    }

    /// A kill: the engine's future is dropped wherever it is.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

pub fn spawn<S: Source + 'static>(
    cfg: EngineConfig,
    source: S,
    esm: &Esm,
    store: &Store,
    metrics: &StreamMetrics,
    clock: &Clock,
) -> Running {
    let (trigger, shutdown) = shutdown_pair();
    let task = tokio::spawn(engine::run_with_clock(
        cfg,
        source,
        esm.lists.clone(),
        store.state.clone(),
        store.clone(),
        metrics.clone(),
        shutdown,
        clock.clone(),
    ));
    Running { trigger, task }
}

/// Waits for `cond` (polled), failing the test after a bounded time.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the platform holds a position at or past `id`: every write up to it is done.
pub async fn settled(store: &Store, id: &str) {
    let want = parse_id(id).expect("an id");
    wait_for(&format!("the position to reach {id}"), || {
        store
            .platform_position()
            .and_then(|p| parse_id(&p))
            .is_some_and(|p| p >= want)
    })
    .await;
}

pub fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

// ------------------------------------------------------------------ STIX events

/// An indicator as the platform sends it (STIX 2.1 with OpenCTI's extension).
pub fn indicator(internal: &str, pattern: &str) -> Value {
    json!({
        "id": format!("indicator--{}", uuid_like(&format!("{internal}{pattern}"))),
        "spec_version": "2.1",
        "type": "indicator",
        "name": pattern,
        "pattern": pattern,
        "pattern_type": "stix",
        "revoked": false,
        "confidence": 75,
        "lang": "en",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "valid_from": "2026-01-01T00:00:00.000Z",
        "x_opencti_detection": true,
        "x_opencti_score": 80,
        "extensions": {EXT: {
            "extension_type": "property-extension",
            "id": internal,
            "type": "Indicator",
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:00.000Z",
            "is_inferred": false,
            "detection": true,
            "score": 80,
            "main_observable_type": "IPv4-Addr"
        }}
    })
}

/// A deterministic uuid-shaped suffix (the STIX id changes with the pattern, as OpenCTI's).
fn uuid_like(s: &str) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in s.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let x = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

pub fn create(obj: &Value) -> Value {
    json!({"version": "4", "type": "create", "scope": "external",
        "message": format!("creates a Indicator `{}`", obj["name"].as_str().unwrap_or("")),
        "origin": {"user_id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f"}, "data": obj})
}

/// An update from `before` to `after` with the reverse patch the platform computes for the
/// fields that differ (`/id` and `/pattern` among them when the pattern changed).
pub fn update(before: &Value, after: &Value) -> Value {
    let mut reverse = Vec::new();
    let mut patch = Vec::new();
    for k in [
        "id",
        "pattern",
        "name",
        "revoked",
        "valid_until",
        "x_opencti_detection",
        "x_opencti_score",
    ] {
        if before.get(k) != after.get(k) {
            let path = format!("/{k}");
            match before.get(k) {
                Some(v) => reverse.push(json!({"op": "replace", "path": path, "value": v})),
                None => reverse.push(json!({"op": "remove", "path": path})),
            }
            patch.push(json!({"op": "replace", "path": path, "value": after.get(k)}));
        }
    }
    json!({"version": "4", "type": "update", "scope": "external",
        "message": "updates a Indicator", "origin": {"user_id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f"},
        "data": after, "context": {"patch": patch, "reverse_patch": reverse}})
}

pub fn delete(obj: &Value) -> Value {
    json!({"version": "4", "type": "delete", "scope": "external",
        "message": "deletes a Indicator", "origin": {"user_id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f"},
        "data": obj, "context": {"deletions": [obj]}})
}

/// `target` absorbs `sources`.
pub fn merge(target: &Value, sources: &[&Value]) -> Value {
    json!({"version": "4", "type": "merge", "scope": "external",
        "message": "merges Indicators", "origin": {"user_id": "88ec0c6a-13ce-5e39-b486-354fe4a7084f"},
        "data": target, "context": {"sources": sources, "patch": [], "reverse_patch": []}})
}

/// `obj` with fields changed.
pub fn with(obj: &Value, changes: Value) -> Value {
    let mut o = obj.clone();
    for (k, v) in changes.as_object().expect("an object") {
        o[k] = v.clone();
    }
    o
}

/// `obj` with a new pattern (and so a new STIX id, as OpenCTI derives it from the pattern).
pub fn repattern(obj: &Value, pattern: &str) -> Value {
    let internal = obj["extensions"][EXT]["id"].as_str().unwrap_or_default();
    let mut o = obj.clone();
    o["pattern"] = json!(pattern);
    o["name"] = json!(pattern);
    o["id"] = json!(format!(
        "indicator--{}",
        uuid_like(&format!("{internal}{pattern}"))
    ));
    o
}

pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub fn ipv4(id: &str, ip: &str) -> Value {
    indicator(id, &format!("[ipv4-addr:value = '{ip}']"))
}

// ------------------------------------------------------------------ a world

/// One engine on a fresh simulator and stream.
pub struct World {
    pub esm: Esm,
    pub platform: Arc<Platform>,
    pub store: Store,
    pub metrics: StreamMetrics,
    pub clock: Clock,
}

impl World {
    pub async fn new(dialect: Dialect) -> World {
        World::with_list(dialect, sim_list(&["value"])).await
    }

    pub async fn with_list(dialect: Dialect, list: SimList) -> World {
        let clock = Clock::manual(T0);
        World {
            esm: Esm::start(dialect, list).await,
            platform: Platform::new(clock.clone()),
            store: Store::new(None),
            metrics: StreamMetrics::default(),
            clock,
        }
    }

    pub fn run(&self, cfg: EngineConfig) -> Running {
        spawn(
            cfg,
            self.platform.source(16),
            &self.esm,
            &self.store,
            &self.metrics,
            &self.clock,
        )
    }

    /// A restart: the same platform and ESM, the platform's saved state, fresh metrics.
    pub fn rerun(&self, cfg: EngineConfig, from: &Store) -> (Running, Store, StreamMetrics) {
        let store = from.reopen();
        let metrics = StreamMetrics::default();
        let r = spawn(
            cfg,
            self.platform.source(16),
            &self.esm,
            &store,
            &metrics,
            &self.clock,
        );
        (r, store, metrics)
    }

    pub async fn settle(&self) {
        let last = self.platform.last_id().expect("an event");
        settled(&self.store, &last).await;
    }
}
