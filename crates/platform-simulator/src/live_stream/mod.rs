//! The simulated live stream (`GET /stream/{id}`), faithful to the platform's
//! `sseMiddleware.js` / `redis-stream.ts` as the reference describes them
//! (stream-arcsight.md 2 and 5.1): an event log with `<ms>-<seq>` ids and retention, a store
//! of current indicators (for recovery), per-stream filters with the visibility rules,
//! dependencies, heartbeats, and fault knobs.
//!
//! Roles: [`log`] the Redis stream, [`objects`] the STIX objects and event JSON, [`recovery`]
//! the snapshot listing, [`http`] the handler and the per-connection writer, [`faults`] the
//! knobs and the framing.

pub(crate) mod faults;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod objects;
pub(crate) mod recovery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

pub use faults::Faults;
pub use log::{EventId, Kind};
pub use objects::{
    DEFAULT_AUTHOR, IndicatorSpec, OPENCTI_EXT, TLP_AMBER, TLP_CLEAR, TLP_GREEN, TLP_RED, iso,
};

use log::{EventLog, Payload};

/// The platform's default `app:live_stream:heartbeat_period`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Which objects a stream (a live stream collection) shows.
#[derive(Clone)]
pub enum StreamFilter {
    /// Everything.
    All,
    /// `entity_type = Indicator`.
    Indicators,
    /// Indicators carrying this label (the documented "Label = detection" example).
    Label(String),
    /// Any predicate on the STIX object.
    Predicate(Arc<dyn Fn(&Value) -> bool + Send + Sync>),
}

impl std::fmt::Debug for StreamFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFilter::All => f.write_str("All"),
            StreamFilter::Indicators => f.write_str("Indicators"),
            StreamFilter::Label(l) => write!(f, "Label({l:?})"),
            StreamFilter::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

impl StreamFilter {
    pub fn predicate(f: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        StreamFilter::Predicate(Arc::new(f))
    }

    pub fn matches(&self, stix: &Value) -> bool {
        match self {
            StreamFilter::All => true,
            StreamFilter::Indicators => stix["type"] == "indicator",
            StreamFilter::Label(l) => {
                stix["type"] == "indicator"
                    && stix["labels"]
                        .as_array()
                        .is_some_and(|ls| ls.iter().any(|x| x == l.as_str()))
            }
            StreamFilter::Predicate(p) => p(stix),
        }
    }

    /// Without building the STIX object when the filter does not need it (recovery over a
    /// million indicators).
    pub fn matches_spec(&self, s: &IndicatorSpec) -> bool {
        match self {
            StreamFilter::All | StreamFilter::Indicators => true,
            StreamFilter::Label(l) => s.labels.iter().any(|x| x == l),
            StreamFilter::Predicate(p) => p(&s.to_stix()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StreamDef {
    pub filter: StreamFilter,
    pub stopped: bool,
    /// `stream_public`: no token needed.
    pub public: bool,
}

/// One connection attempt, as the platform saw it.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// `connectionId` of `connected` (empty when refused).
    pub connection_id: String,
    pub stream_id: String,
    /// Path and query as requested.
    pub uri: String,
    pub query: Vec<(String, String)>,
    /// Request headers, names lower-case; `authorization` is kept out (see `bearer_ok`).
    pub headers: Vec<(String, String)>,
    /// An `authorization: Bearer <the platform's token>` header was sent.
    pub bearer_ok: bool,
    /// The answer's status.
    pub status: u16,
    /// The start position as the platform understood it (`None`: live only).
    pub from: Option<EventId>,
    /// The recovery date (ms) when a recovery was done.
    pub recover_ms: Option<u64>,
    pub listen_delete: bool,
    pub no_dependencies: bool,
    pub with_inferences: bool,
}

impl ConnectionRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the stream did, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub connections: u64,
    pub refused: u64,
    pub open: u64,
    /// Data events written whole (recovery and dependencies included).
    pub events_sent: u64,
    pub recovered_sent: u64,
    pub dependencies_sent: u64,
    pub heartbeats_sent: u64,
    /// Events cut halfway with the connection dropped.
    pub cut: u64,
    /// Connections that went silent (stall).
    pub stalled: u64,
}

#[derive(Debug, Clone, Copy)]
enum Clock {
    System,
    Manual(u64),
}

pub(crate) struct Inner {
    pub log: EventLog,
    pub store: HashMap<String, IndicatorSpec>,
    pub streams: HashMap<String, StreamDef>,
    pub faults: Faults,
    pub heartbeat: Option<Duration>,
    clock: Clock,
    pub connections: Vec<ConnectionRecord>,
    pub counters: Counters,
    pub next_connection: u64,
    /// Bumped by `drop_connections`: open connections whose generation is older end abruptly.
    pub drop_generation: u64,
}

impl Inner {
    pub fn now_ms(&self) -> u64 {
        match self.clock {
            Clock::Manual(ms) => ms,
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    fn append_object(
        &mut self,
        kind: Kind,
        after: Value,
        before: Option<Value>,
        context: Option<Value>,
        deps: Vec<String>,
    ) -> EventId {
        let json = objects::event_json(kind, objects::message(kind, &after), None, &after, context);
        let now = self.now_ms();
        self.log.append(
            now,
            Payload::Object {
                kind,
                json: json.into(),
                after: Arc::new(after),
                before: before.map(Arc::new),
                deps: deps.into(),
            },
        )
    }

    fn stamp(&self, spec: &mut IndicatorSpec) {
        let now = self.now_ms() as i64;
        if spec.created_ms == 0 {
            spec.created_ms = now;
        }
        if spec.updated_ms == 0 {
            spec.updated_ms = now;
        }
        if spec.valid_from_ms == 0 {
            spec.valid_from_ms = spec.created_ms;
        }
    }

    fn create(&mut self, mut spec: IndicatorSpec) -> EventId {
        self.stamp(&mut spec);
        let stix = spec.to_stix();
        let deps = spec.dependencies();
        self.store.insert(spec.internal_id.clone(), spec);
        self.append_object(Kind::Create, stix, None, None, deps)
    }
}

/// The live streams of one simulated platform. Cheap to clone (shared state).
#[derive(Clone)]
pub struct LiveStreams {
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// Bumped at every change (event, fault, stream state, connection): writers and tests
    /// wait on it.
    pub(crate) changed: Arc<watch::Sender<u64>>,
    pub(crate) platform: Arc<Mutex<crate::Recorded>>,
}

impl LiveStreams {
    pub(crate) fn new(platform: Arc<Mutex<crate::Recorded>>) -> Self {
        LiveStreams {
            inner: Arc::new(Mutex::new(Inner {
                log: EventLog::default(),
                store: HashMap::new(),
                streams: HashMap::new(),
                faults: Faults::default(),
                heartbeat: Some(DEFAULT_HEARTBEAT),
                clock: Clock::System,
                connections: Vec::new(),
                counters: Counters::default(),
                next_connection: 0,
                drop_generation: 0,
            })),
            changed: Arc::new(watch::channel(0).0),
            platform,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let out = f(&mut self.inner.lock().unwrap());
        self.changed.send_modify(|g| *g += 1);
        out
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.inner.lock().unwrap())
    }

    // ----- streams -----

    /// Adds (or replaces) the live stream collection `id` with its filter.
    pub fn add_stream(&self, id: &str, filter: StreamFilter) {
        self.with(|i| {
            i.streams.insert(
                id.to_owned(),
                StreamDef {
                    filter,
                    stopped: false,
                    public: false,
                },
            )
        });
    }

    /// Changes a stream's filter (open connections apply it from their next batch).
    pub fn set_filter(&self, id: &str, filter: StreamFilter) {
        self.with(|i| i.streams.get_mut(id).map(|s| s.filter = filter));
    }

    /// `stream_public`: connections need no token.
    pub fn set_public(&self, id: &str, public: bool) {
        self.with(|i| i.streams.get_mut(id).map(|s| s.public = public));
    }

    /// Stops the stream: open connections end, new ones get 410.
    pub fn stop_stream(&self, id: &str) {
        self.with(|i| i.streams.get_mut(id).map(|s| s.stopped = true));
    }

    /// Starts a stopped stream again.
    pub fn start_stream(&self, id: &str) {
        self.with(|i| i.streams.get_mut(id).map(|s| s.stopped = false));
    }

    /// Deletes the collection: open connections end, new ones get 401 (unknown id).
    pub fn remove_stream(&self, id: &str) {
        self.with(|i| i.streams.remove(id));
    }

    // ----- events -----

    /// Creates an indicator (store + `create` event). Created/updated dates default to now.
    pub fn create_indicator(&self, spec: IndicatorSpec) -> EventId {
        self.with(|i| i.create(spec))
    }

    /// Many creates under one lock (20k events in a few hundred ms); ids in order.
    pub fn create_indicators(
        &self,
        specs: impl IntoIterator<Item = IndicatorSpec>,
    ) -> Vec<EventId> {
        self.with(|i| specs.into_iter().map(|s| i.create(s)).collect())
    }

    /// Updates an indicator: `change` edits it, `updated_at` moves to now, and the event
    /// carries `context.patch` / `context.reverse_patch` (with `/pattern` and `/id` ops when
    /// the pattern changed). `None` when the indicator is unknown.
    pub fn update_indicator(
        &self,
        internal_id: &str,
        change: impl FnOnce(&mut IndicatorSpec),
    ) -> Option<EventId> {
        self.with(|i| {
            let now = i.now_ms() as i64;
            let spec = i.store.get_mut(internal_id)?;
            let before = spec.to_stix();
            change(spec);
            spec.updated_ms = now.max(spec.updated_ms);
            let after = spec.to_stix();
            let deps = spec.dependencies();
            let context = json!({
                "patch": objects::diff(&before, &after),
                "reverse_patch": objects::diff(&after, &before),
                "related_restrictions": {"markings": []},
                "pir_ids": [],
            });
            Some(i.append_object(Kind::Update, after, Some(before), Some(context), deps))
        })
    }

    /// Deletes an indicator: the event's `data` is the full object as it was.
    pub fn delete_indicator(&self, internal_id: &str) -> Option<EventId> {
        self.with(|i| {
            let spec = i.store.remove(internal_id)?;
            Some(i.append_object(Kind::Delete, spec.to_stix(), None, None, Vec::new()))
        })
    }

    /// Merges `sources` into `target`: the sources leave the store (no event of their own),
    /// the target's `updated_at` moves, and one `merge` event carries `context.sources`.
    pub fn merge_indicators(&self, target: &str, sources: &[&str]) -> Option<EventId> {
        self.with(|i| {
            let now = i.now_ms() as i64;
            let absorbed: Vec<Value> = sources
                .iter()
                .filter_map(|s| i.store.remove(*s))
                .map(|s| s.to_stix())
                .collect();
            let spec = i.store.get_mut(target)?;
            let before = spec.to_stix();
            spec.updated_ms = now.max(spec.updated_ms);
            let after = spec.to_stix();
            let deps = spec.dependencies();
            let context = json!({
                "patch": objects::diff(&before, &after),
                "reverse_patch": objects::diff(&after, &before),
                "sources": absorbed,
            });
            Some(i.append_object(Kind::Merge, after, None, Some(context), deps))
        })
    }

    /// An event about any STIX object (an identity, a report...), not kept in the store.
    pub fn push_stix(&self, kind: Kind, stix: Value) -> EventId {
        self.with(|i| i.append_object(kind, stix, None, None, Vec::new()))
    }

    /// A message sent as is to every connection, unfiltered: an unknown topic, an invalid
    /// JSON `data`, text with newlines (several `data:` lines), an oversized event.
    pub fn push_raw(&self, topic: &str, data: &str) -> EventId {
        self.with(|i| {
            let now = i.now_ms();
            i.log.append(
                now,
                Payload::Raw {
                    topic: topic.to_owned(),
                    data: data.into(),
                },
            )
        })
    }

    /// Puts indicators in the store without events (data that existed before the stream's
    /// retention window: only a recovery sends them). Dates default to now.
    pub fn load_indicators(&self, specs: impl IntoIterator<Item = IndicatorSpec>) -> usize {
        self.with(|i| {
            let mut n = 0;
            for mut s in specs {
                i.stamp(&mut s);
                i.store.insert(s.internal_id.clone(), s);
                n += 1;
            }
            n
        })
    }

    // ----- retention -----

    /// `redis:trimming`: keep at most this many events (`None`: unlimited); applied now and
    /// at every new event.
    pub fn set_retention(&self, max_len: Option<usize>) {
        self.with(|i| {
            i.log.max_len = max_len;
            if let Some(m) = max_len {
                i.log.trim_to(m);
            }
        });
    }

    /// Drops every event at or before `id` (the oldest id advances past it).
    pub fn trim_through(&self, id: EventId) {
        self.with(|i| i.log.trim_through(id));
    }

    pub fn first_event_id(&self) -> Option<EventId> {
        self.read(|i| i.log.first_id())
    }

    pub fn last_event_id(&self) -> Option<EventId> {
        self.read(|i| i.log.last_id())
    }

    pub fn log_len(&self) -> usize {
        self.read(|i| i.log.len())
    }

    // ----- the store -----

    pub fn indicator(&self, internal_id: &str) -> Option<IndicatorSpec> {
        self.read(|i| i.store.get(internal_id).cloned())
    }

    /// Every current indicator (the truth a connector's list is compared with).
    pub fn indicators(&self) -> Vec<IndicatorSpec> {
        self.read(|i| i.store.values().cloned().collect())
    }

    pub fn indicator_count(&self) -> usize {
        self.read(|i| i.store.len())
    }

    // ----- knobs -----

    /// Changes the fault knobs (applies to open connections at their next message).
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        self.with(|i| f(&mut i.faults));
    }

    /// The next `n` connections are answered `status` (401, 410, 500...).
    pub fn refuse_next(&self, status: u16, n: usize) {
        self.faults(|f| f.refuse_next = Some((status, n)));
    }

    /// Drops every open TCP connection now (between messages).
    pub fn drop_connections(&self) {
        self.with(|i| i.drop_generation += 1);
    }

    /// Heartbeat period (`None`: no heartbeats at all).
    pub fn set_heartbeat(&self, period: Option<Duration>) {
        self.with(|i| i.heartbeat = period);
    }

    /// Ids and dates from a fixed clock (`Some(ms)`) or the system clock (`None`).
    pub fn set_clock_ms(&self, ms: Option<u64>) {
        self.with(|i| i.clock = ms.map_or(Clock::System, Clock::Manual));
    }

    pub fn now_ms(&self) -> u64 {
        self.read(Inner::now_ms)
    }

    // ----- what happened -----

    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.read(|i| i.connections.clone())
    }

    pub fn counters(&self) -> Counters {
        self.read(|i| i.counters.clone())
    }

    /// Waits until `cond` holds (re-checked at every change of the stream), at most
    /// `timeout`; `false` when it did not.
    pub async fn wait_until(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if cond() {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return cond();
            }
        }
    }
}

/// `n` indicators of every supported type (and a few the Python connector skips: e-mail,
/// YARA, an AND), deterministic in `seed`, with `updated_at` spread over the hour before
/// `now_ms` (existing data for a first run's recovery).
pub fn generate_indicators(n: usize, seed: u64, now_ms: i64) -> Vec<IndicatorSpec> {
    (0..n)
        .map(|k| {
            let x = (k as u64).wrapping_add(seed.wrapping_mul(1_000_003));
            let mut s = match k % 10 {
                0..=2 => IndicatorSpec::ipv4(&format!(
                    "{}.{}.{}.{}",
                    10 + (x >> 24) % 200,
                    (x >> 16) % 256,
                    (x >> 8) % 256,
                    x % 256
                )),
                3 => IndicatorSpec::ipv6(&format!(
                    "2001:db8::{:x}:{:x}",
                    (x >> 16) & 0xffff,
                    x & 0xffff
                )),
                4 => IndicatorSpec::domain(&format!("host{x}.example.org")),
                5 => IndicatorSpec::url(&format!("http://site{x}.example.net/path?q={k}")),
                6 => IndicatorSpec::md5(&format!("{:032x}", u128::from(x) * 0x9e37_79b9)),
                7 => IndicatorSpec::sha256(&format!("{:064x}", u128::from(x) * 0x9e37_79b9_7f4a)),
                8 => IndicatorSpec::sha1(&format!("{:040x}", u128::from(x) * 0x85eb_ca6b)),
                _ => match x % 3 {
                    0 => IndicatorSpec::equality("email-addr:value", &format!("u{x}@example.com")),
                    1 => {
                        let mut y = IndicatorSpec::new(format!("rule r{x} {{ condition: true }}"));
                        y.pattern_type = "yara".into();
                        y
                    }
                    _ => IndicatorSpec::new(format!(
                        "[ipv4-addr:value = '192.0.2.{}'] AND [domain-name:value = 'a{x}.example']",
                        x % 256
                    )),
                },
            };
            s.internal_id = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("sim-{seed}-{k}").as_bytes(),
            )
            .to_string();
            let t = now_ms - 3_600_000 + (k as i64 * 3_600_000 / n.max(1) as i64);
            s.created_ms = t;
            s.updated_ms = t;
            s.valid_from_ms = t;
            s.score = 30 + (x % 70) as i64;
            s
        })
        .collect()
}
