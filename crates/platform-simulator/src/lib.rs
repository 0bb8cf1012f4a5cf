//! A simulated OpenCTI platform: answers the GraphQL calls a connector makes, records them, and
//! validates every document it receives against the platform's real schema; serves live
//! streams on the same port ([`live_stream`]).

pub mod live_stream;

pub use live_stream::{
    ConnectionRecord, Counters, EventId, Faults, IndicatorSpec, Kind, LiveStreams, StreamFilter,
    generate_indicators,
};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// The platform's GraphQL schema (a copy of the reference's), which both connectors' tests
/// validate their documents against.
pub const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/opencti.graphql");

fn schema() -> &'static Valid<Schema> {
    static SCHEMA: OnceLock<Valid<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = SCHEMA_PATH;
        let sdl = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        match Schema::parse_and_validate(sdl.clone(), path) {
            Ok(s) => s,
            // The platform's schema uses directives defined at runtime; the types are what we
            // validate documents against.
            Err(with_errors) => Valid::assume_valid(with_errors.partial),
        }
    })
}

/// Validates one GraphQL document against the platform schema.
pub fn validate_document(query: &str) -> Result<(), String> {
    ExecutableDocument::parse_and_validate(schema(), query, "document.graphql")
        .map(|_| ())
        .map_err(|e| e.errors.to_string())
}

#[derive(Debug, Clone, Default)]
pub struct Work {
    pub id: String,
    /// Expectations added, net of those given back (a negative `addExpectations`).
    pub expectations: u64,
    /// Expectations reported processed by the connector itself (its sentinel).
    pub reports: u64,
    pub processed: Option<(String, bool)>,
    /// Deleted (an operator cleared the connector's works, or the platform purged it):
    /// `work(id)` answers `null` and the worker drops its messages as "work not alive".
    pub deleted: bool,
    /// The work's error list (`{source, message}`), as the platform keeps it: one entry per
    /// `reportExpectation` with an `error` (the worker's, or the connector's) and one per
    /// `toProcessed` with `inError: true` (source `connector`).
    pub errors: Vec<Value>,
}

/// What the platform saw and how it answers.
#[derive(Debug, Default)]
pub struct Recorded {
    pub token: String,
    pub connector_state: Option<String>,
    pub pings: Vec<Option<String>>,
    /// The `connectorInfo` of each ping.
    pub ping_infos: Vec<Value>,
    pub works: Vec<Work>,
    pub pushed_bundles: Vec<String>,
    pub invalid_documents: Vec<String>,
    pub unauthorised: usize,
    pub operations: Vec<String>,
    pub queue_messages_size: u64,
    pub mq: Value,
    /// An operator reset the state in the UI: the next ping answers `""`, as the real one does.
    pub reset_pending: bool,
    /// `connector_state_timestamp`: the platform moves it at each reset (and sets it when it
    /// creates the connector), never at a ping.
    pub state_timestamp: Option<String>,
    resets_done: u32,
    /// Notified at each ping (a permit is kept when nobody waits yet).
    pub ping_signal: Arc<tokio::sync::Notify>,
    /// Notified when a work is closed (`toProcessed`).
    pub processed_signal: Arc<tokio::sync::Notify>,
    /// Notified when the connector reads its queue size (back-pressure).
    pub queue_signal: Arc<tokio::sync::Notify>,
    /// Operation names that answer HTTP 500 (a proxy's or a crashing API's page) while > 0.
    pub fail_http: Vec<(String, usize)>,
    /// Operation names that answer with a GraphQL `errors` array while > 0.
    pub fail: Vec<(String, usize)>,
    /// A `stixBundlePush` whose bundle holds this text is refused with HTTP 413, as a proxy's
    /// or the API's body size limit refuses a bundle too large: a failure tied to content.
    pub refuse_bundles_containing: Option<String>,
    /// Every other `pingConnector` is taken in 20 ms late (several API nodes answering at
    /// different speeds): of two pings sent at once, the later may land first.
    pub ping_jitter: bool,
    pings_seen: u64,
    /// The platform's store of case-incidents (standard ids), fed by the simulated worker.
    pub case_incidents: std::collections::BTreeSet<String>,
    /// The simulated worker: how it treats what it consumes (see [`FakePlatform::consume`]).
    pub worker: Worker,
}

/// How the simulated worker (opencti-worker's push handler) treats the messages it consumes.
#[derive(Debug, Clone, Default)]
pub struct Worker {
    /// The operator clears the connector's works before the worker reaches their messages:
    /// each work is deleted, and the worker acks and discards its messages (work not alive).
    pub works_cleared_before_import: bool,
    /// An object whose JSON holds this text fails its import after the worker's retries: a
    /// work error (and a dead letter), not in the store.
    pub fail_import_containing: Option<String>,
}

#[derive(Clone)]
pub struct FakePlatform {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<Recorded>>,
    /// The live streams (`GET /stream/{id}`), same port and token.
    pub live: LiveStreams,
}

impl FakePlatform {
    /// Starts the platform; `mq` is the `config.connection` + push names `registerConnector`
    /// returns.
    pub async fn start(token: &str, mq: Value) -> FakePlatform {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, token, mq)
    }

    /// Starts the platform on `addr` (a standalone platform, the demo).
    pub async fn start_on(
        addr: SocketAddr,
        token: &str,
        mq: Value,
    ) -> std::io::Result<FakePlatform> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self::serve(listener, token, mq))
    }

    fn serve(listener: tokio::net::TcpListener, token: &str, mq: Value) -> FakePlatform {
        let state = Arc::new(Mutex::new(Recorded {
            token: token.to_owned(),
            mq,
            ..Recorded::default()
        }));
        let live = LiveStreams::new(state.clone());
        let app = Router::new()
            .route("/graphql", post(graphql))
            // The platform's `app:max_payload_body_size` default (axum's own is 2 MB).
            .layer(axum::extract::DefaultBodyLimit::max(50 * 1024 * 1024))
            .with_state(state.clone())
            .merge(
                Router::new()
                    .route(
                        "/stream/{id}",
                        axum::routing::get(live_stream::http::stream),
                    )
                    .with_state(live.clone()),
            );
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePlatform { addr, state, live }
    }

    /// A platform with one live stream `stream_id` (indicators only) whose store holds `n`
    /// generated indicators of every type (updated over the last hour, no events: a first
    /// run recovers them), heartbeats at the platform's 5 s. For the connector's `demo` and
    /// for tests that run the connector as a process.
    pub async fn start_with_stream(
        addr: SocketAddr,
        token: &str,
        stream_id: &str,
        n: usize,
    ) -> std::io::Result<FakePlatform> {
        let p = Self::start_on(addr, token, default_registration_config()).await?;
        p.live.add_stream(stream_id, StreamFilter::Indicators);
        let now = p.live.now_ms() as i64;
        p.live.load_indicators(generate_indicators(n, 1, now));
        Ok(p)
    }

    /// An operator resets the connector's state in the UI (`resetStateConnector`): the state
    /// is `""` at once (a `registerConnector` of a restarted connector reads it), and the next
    /// ping answers it once instead of storing the state it is sent.
    pub fn reset_state_from_ui(&self) {
        self.update(|r| {
            r.connector_state = Some(String::new());
            r.reset_pending = true;
        });
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn recorded<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    /// Resolves at the next ping (or at once if one happened since the last wait).
    pub async fn pinged(&self) {
        let signal = self.state.lock().unwrap().ping_signal.clone();
        signal.notified().await;
    }

    /// Resolves when the connector reads its queue size (or at once if it did since the last
    /// wait).
    pub async fn queue_read(&self) {
        let signal = self.state.lock().unwrap().queue_signal.clone();
        signal.notified().await;
    }

    /// Resolves when a work is closed (or at once if one was since the last wait).
    pub async fn work_closed(&self) {
        let signal = self.state.lock().unwrap().processed_signal.clone();
        signal.notified().await;
    }

    pub fn update(&self, f: impl FnOnce(&mut Recorded)) {
        f(&mut self.state.lock().unwrap())
    }

    /// The worker consumes objects pushed for `work_id` (a queue message each, or a pushed
    /// bundle's), as opencti-worker does: drops them when the work is not alive, records a
    /// work error when the import fails, else imports them (case-incidents into the store).
    pub fn consume<'a>(&self, work_id: Option<&str>, objects: impl IntoIterator<Item = &'a Value>) {
        let mut s = self.state.lock().unwrap();
        s.consume(work_id, objects);
    }

    /// Deletes a case-incident from the store (an analyst deleted it, or a restore lost it).
    pub fn delete_case_incident(&self, id: &str) -> bool {
        self.state.lock().unwrap().case_incidents.remove(id)
    }

    /// How many calls of this operation the connector made.
    pub fn calls(&self, op: &str) -> usize {
        self.recorded(|r| r.operations.iter().filter(|o| *o == op).count())
    }
}

impl Recorded {
    fn consume<'a>(&mut self, work_id: Option<&str>, objects: impl IntoIterator<Item = &'a Value>) {
        let worker = self.worker.clone();
        let mut work = work_id.and_then(|id| self.works.iter_mut().find(|w| w.id == id));
        if worker.works_cleared_before_import {
            if let Some(w) = work.as_mut() {
                w.deleted = true;
            }
        }
        // isWorkAlive: a deleted work's messages are acked and discarded.
        if work.as_ref().is_some_and(|w| w.deleted) {
            return;
        }
        let mut imported = Vec::new();
        for o in objects {
            let text = o.to_string();
            if let Some(needle) = worker
                .fail_import_containing
                .as_deref()
                .filter(|n| text.contains(n))
            {
                if let Some(w) = work.as_mut() {
                    w.errors.push(json!({
                        "source": text,
                        "message": format!("import failed after retries ({needle})"),
                    }));
                }
                continue;
            }
            if o["type"] == "case-incident" {
                imported.push(o["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        self.case_incidents.extend(imported);
    }
}

/// What `registerConnector` answers in `config` for a connector of a platform whose broker
/// is nobody's concern (a stream connector reads the stream, not the queues): the shape the
/// platform gives every connector.
pub fn default_registration_config() -> Value {
    json!({
        "connection": {"host": "127.0.0.1", "port": 5672, "vhost": "/", "use_ssl": false,
                       "user": "guest", "pass": "guest"},
        "listen": "listen_connector", "listen_routing": "listen_routing_connector",
        "listen_exchange": "amqp.connector.exchange",
        "push": "push_connector", "push_routing": "push_routing_connector",
        "push_exchange": "amqp.worker.exchange",
    })
}

/// Does the document name `field` (a whole word)?
pub fn selects(query: &str, field: &str) -> bool {
    query
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == field)
}

/// The platform operation a GraphQL document calls (`"unknown"` for any other).
pub fn operation(query: &str) -> &'static str {
    for (needle, name) in [
        ("registerConnector", "registerConnector"),
        ("pingConnector", "pingConnector"),
        ("workAdd", "workAdd"),
        ("addExpectations", "addExpectations"),
        ("reportExpectation", "reportExpectation"),
        ("toProcessed", "toProcessed"),
        ("toReceived", "toReceived"),
        ("stixBundlePush", "stixBundlePush"),
        ("connector_queue_details", "queueDetails"),
        ("caseIncidents(", "caseIncidents"),
        (" work(id:", "work"),
        ("about", "health"),
    ] {
        if query.contains(needle) {
            return name;
        }
    }
    "unknown"
}

async fn graphql(
    State(state): State<Arc<Mutex<Recorded>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if body["query"]
        .as_str()
        .is_some_and(|q| q.contains("pingConnector"))
    {
        let delay = {
            let mut s = state.lock().unwrap();
            s.pings_seen += 1;
            s.ping_jitter.then_some(20 * (s.pings_seen % 2))
        };
        if let Some(ms) = delay {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
    let mut s = state.lock().unwrap();
    let expected = format!("Bearer {}", s.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        s.unauthorised += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"message": "Unauthorized"}]})),
        );
    }
    let query = body["query"].as_str().unwrap_or_default().to_owned();
    if let Err(e) = validate_document(&query) {
        s.invalid_documents.push(format!("{query}\n{e}"));
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": [{"message": e}]})),
        );
    }
    let op = operation(&query);
    s.operations.push(op.to_owned());
    if let Some(entry) = s
        .fail_http
        .iter_mut()
        .find(|(name, n)| name == op && *n > 0)
    {
        entry.1 -= 1;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"errors": [{"message": "Internal Server Error"}]})),
        );
    }
    if let Some(entry) = s.fail.iter_mut().find(|(name, n)| name == op && *n > 0) {
        entry.1 -= 1;
        return (
            StatusCode::OK,
            Json(
                json!({"data": null, "errors": [{"message": "simulated failure", "name": "INTERNAL_ERROR"}]}),
            ),
        );
    }
    let vars = &body["variables"];
    let data = match op {
        "health" => json!({"about": {"version": "6.9.0"}}),
        "registerConnector" => json!({"registerConnector": {
            "id": vars["input"]["id"],
            "connector_state": s.connector_state,
            "connector_state_timestamp": s.state_timestamp,
            "config": s.mq,
            "connector_user_id": "user--connector-applicant",
        }}),
        "pingConnector" => {
            let sent = vars["state"].as_str().map(str::to_owned);
            s.pings.push(sent.clone());
            s.ping_infos.push(vars["connectorInfo"].clone());
            s.ping_signal.notify_one();
            // As the platform does: it stores the state it is sent, except right after an
            // operator's reset, when it keeps (and answers) the empty state once. The real
            // platform's reset (`resetStateConnector`) writes `""`, not null.
            if s.reset_pending {
                s.reset_pending = false;
                s.connector_state = Some(String::new());
                // The reset's mark, as `resetStateConnector` writes it.
                s.resets_done += 1;
                s.state_timestamp = Some(format!("2026-12-01T00:00:{:02}.000Z", s.resets_done));
            } else {
                s.connector_state = sent;
            }
            // Only the fields asked for, as GraphQL answers: the state is megabytes.
            let mut answer = json!({"id": vars["id"], "connector_info": null,
                "connector_state_timestamp": s.state_timestamp});
            if selects(&query, "connector_state") {
                answer["connector_state"] = json!(s.connector_state);
            }
            json!({"pingConnector": answer})
        }
        "workAdd" => {
            let id = format!("work-{}", s.works.len() + 1);
            s.works.push(Work {
                id: id.clone(),
                ..Work::default()
            });
            json!({"workAdd": {"id": id}})
        }
        "addExpectations" => {
            let id = vars["id"].as_str().unwrap_or_default();
            let n = vars["expectations"].as_i64().unwrap_or_default();
            if let Some(w) = s.works.iter_mut().find(|w| w.id == id) {
                w.expectations = w.expectations.saturating_add_signed(n);
            }
            json!({"workEdit": {"addExpectations": id}})
        }
        "toProcessed" => {
            let id = vars["id"].as_str().unwrap_or_default();
            let msg = vars["message"].as_str().unwrap_or_default().to_owned();
            let err = vars["inError"].as_bool().unwrap_or(false);
            if let Some(w) = s.works.iter_mut().find(|w| w.id == id) {
                if err {
                    w.errors
                        .push(json!({"source": "connector", "message": msg.clone()}));
                }
                w.processed = Some((msg, err));
            }
            s.processed_signal.notify_one();
            json!({"workEdit": {"toProcessed": id}})
        }
        "reportExpectation" => {
            let id = vars["id"].as_str().unwrap_or_default();
            let error = vars["error"]["error"].as_str().map(|e| {
                json!({"source": vars["error"]["source"].as_str().unwrap_or("connector"), "message": e})
            });
            if let Some(w) = s.works.iter_mut().find(|w| w.id == id) {
                w.reports += 1;
                w.errors.extend(error);
            }
            json!({"workEdit": {"reportExpectation": id}})
        }
        "toReceived" => json!({"workEdit": {"toReceived": vars["id"]}}),
        "stixBundlePush" => {
            let bundle = vars["bundle"].as_str().unwrap_or_default();
            if s.refuse_bundles_containing
                .as_deref()
                .is_some_and(|needle| bundle.contains(needle))
            {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Json(json!({"errors": [{"message": "request entity too large"}]})),
                );
            }
            s.pushed_bundles
                .push(vars["bundle"].as_str().unwrap_or_default().to_owned());
            // The api mode's worker splits and imports the pushed bundle.
            let parsed: Value = serde_json::from_str(bundle).unwrap_or_default();
            let objects = parsed["objects"].as_array().cloned().unwrap_or_default();
            let work_id = vars["work_id"].as_str().map(str::to_owned);
            s.consume(work_id.as_deref(), &objects);
            json!({"stixBundlePush": true})
        }
        "work" => {
            let id = vars["id"].as_str().unwrap_or_default();
            let work = s.works.iter().find(|w| w.id == id && !w.deleted).map(|w| {
                // Complete once the connector closed it (the fake worker is done by then).
                let status = if w.processed.is_some() {
                    "complete"
                } else {
                    "progress"
                };
                json!({"id": w.id, "status": status, "errors": w.errors})
            });
            json!({"work": work})
        }
        "caseIncidents" => {
            // Only the filter the connector sends: standard_id among the values.
            let filter = &body["query"];
            assert!(filter.as_str().unwrap_or_default().contains("standard_id"));
            let first = vars["first"].as_u64().unwrap_or(u64::MAX) as usize;
            let nodes: Vec<Value> = vars["ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|id| s.case_incidents.contains(*id))
                .take(first)
                .map(|id| json!({"node": {"standard_id": id}}))
                .collect();
            json!({"caseIncidents": {"edges": nodes}})
        }
        "queueDetails" => {
            s.queue_signal.notify_one();
            json!({"connector": {"id": vars["id"], "connector_queue_details": {
            "messages_number": 0, "messages_size": s.queue_messages_size}}})
        }
        _ => {
            return (
                StatusCode::OK,
                Json(json!({"errors": [{"message": "unknown operation"}]})),
            );
        }
    };
    (StatusCode::OK, Json(json!({"data": data})))
}
