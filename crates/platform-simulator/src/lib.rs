//! A simulated OpenCTI platform: answers the GraphQL calls a connector makes, records them, and
//! validates every document it receives against the platform's real schema.

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
    /// An operator reset the state in the UI: the next ping answers with no state.
    pub reset_pending: bool,
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
}

#[derive(Clone)]
pub struct FakePlatform {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<Recorded>>,
}

impl FakePlatform {
    /// Starts the platform; `mq` is the `config.connection` + push names `registerConnector`
    /// returns.
    pub async fn start(token: &str, mq: Value) -> FakePlatform {
        let state = Arc::new(Mutex::new(Recorded {
            token: token.to_owned(),
            mq,
            ..Recorded::default()
        }));
        let app = Router::new()
            .route("/graphql", post(graphql))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePlatform { addr, state }
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
}

fn operation(query: &str) -> &'static str {
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
            "config": s.mq,
            "connector_user_id": "user--connector-applicant",
        }}),
        "pingConnector" => {
            let sent = vars["state"].as_str().map(str::to_owned);
            s.pings.push(sent.clone());
            s.ping_infos.push(vars["connectorInfo"].clone());
            s.ping_signal.notify_one();
            // As the platform does: it stores the state it is sent, except right after an
            // operator's reset, when it keeps (and answers) the empty state once.
            if s.reset_pending {
                s.reset_pending = false;
                s.connector_state = None;
            } else {
                s.connector_state = sent;
            }
            let answer = s.connector_state.clone();
            json!({"pingConnector": {"id": vars["id"], "connector_state": answer, "connector_info": null}})
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
                w.processed = Some((msg, err));
            }
            s.processed_signal.notify_one();
            json!({"workEdit": {"toProcessed": id}})
        }
        "reportExpectation" => {
            let id = vars["id"].as_str().unwrap_or_default();
            if let Some(w) = s.works.iter_mut().find(|w| w.id == id) {
                w.reports += 1;
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
            json!({"stixBundlePush": true})
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
