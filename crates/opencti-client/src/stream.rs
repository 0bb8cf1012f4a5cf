//! The live stream reader: `GET {url}/stream/<id>` as pycti sends it (reference
//! stream-arcsight.md 2.2, 2.7), read incrementally through `stream_core::sse`, with a read
//! timeout, reconnection with capped exponential backoff and jitter from the last id, and
//! every HTTP or transport failure waited out and reported as an item (never a panic, never
//! the end of the stream unless the caller shuts it down).

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use stream_core::sse::{SseItem, SseParser};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// No data and no heartbeat for this long: the connection is dead. The platform sends a
/// heartbeat every 5 s; 15 s is three missed heartbeats (reference 2.8).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest SSE event accepted: the event decoder's own JSON bound.
pub const DEFAULT_MAX_EVENT_BYTES: usize = stream_core::event::MAX_EVENT_JSON;
/// The first wait before a reconnection (pycti waits 3 s every time, without growing).
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// At most this much of an error answer's body is read (it goes, redacted, in the error).
const ERROR_BODY_LIMIT: usize = 4096;

/// How to follow one live stream.
#[derive(Clone)]
pub struct StreamConfig {
    /// The platform's base URL (`OPENCTI_URL`), with or without a trailing slash.
    pub url: url::Url,
    pub token: SecretString,
    /// `CONNECTOR_LIVE_STREAM_ID`.
    pub stream_id: String,
    pub ssl_verify: bool,
    pub ca_files: Vec<std::path::PathBuf>,
    pub custom_headers: Vec<(String, String)>,
    /// `CONNECTOR_LIVE_STREAM_LISTEN_DELETE` (pycti default true).
    pub listen_delete: bool,
    /// `CONNECTOR_LIVE_STREAM_NO_DEPENDENCIES` (pycti default false).
    pub no_dependencies: bool,
    /// `CONNECTOR_LIVE_STREAM_WITH_INFERENCES` (pycti default false).
    pub with_inferences: bool,
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_event_bytes: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Items buffered before the reader stops reading (back-pressure, not memory).
    pub channel_capacity: usize,
    /// The `User-Agent` the platform's logs show: the connector's name and version.
    pub user_agent: String,
}

impl StreamConfig {
    /// pycti's flags and this module's defaults.
    pub fn new(url: url::Url, token: SecretString, stream_id: impl Into<String>) -> Self {
        StreamConfig {
            url,
            token,
            stream_id: stream_id.into(),
            ssl_verify: true,
            ca_files: Vec::new(),
            custom_headers: Vec::new(),
            listen_delete: true,
            no_dependencies: false,
            with_inferences: false,
            read_timeout: DEFAULT_READ_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            channel_capacity: 256,
            user_agent: concat!("opencti-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("url", &self.url.as_str())
            .field("token", &self.token)
            .field("stream_id", &self.stream_id)
            .field("custom_headers", &crate::header_names(&self.custom_headers))
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

/// Where the stream is read from, in pycti's state keys so a Python deployment's state is
/// taken over as is: `start_from` (the last id, exclusive) and `recover_until` (the first
/// run's date, or false).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPosition {
    pub start_from: Option<String>,
    pub recover_until: Option<String>,
}

impl StreamPosition {
    /// A first run as pycti makes it: everything from the start, recovered up to `now`.
    pub fn first_run(now: chrono::DateTime<chrono::Utc>) -> Self {
        StreamPosition {
            start_from: Some("0-0".into()),
            recover_until: Some(now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
        }
    }

    /// Reads the keys from the connector state (pycti's legacy `connectorLastEventId` too).
    /// `None` when the state holds no position (a first run).
    pub fn from_state(state: &Value) -> Option<Self> {
        let s = |k: &str| {
            state
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let start_from = s("start_from").or_else(|| s("connectorLastEventId"))?;
        // pycti omits `recover` for false and these spellings of "no".
        let recover_until = s("recover_until").filter(|v| {
            !matches!(
                v.as_str(),
                "no" | "none" | "No" | "None" | "false" | "False"
            )
        });
        Some(StreamPosition {
            start_from: Some(start_from),
            recover_until,
        })
    }

    /// Writes the keys into the state object, keeping its other keys.
    pub fn write_to(&self, state: &mut Value) {
        if !state.is_object() {
            *state = Value::Object(Map::new());
        }
        let o = state.as_object_mut().expect("an object");
        o.insert(
            "start_from".into(),
            self.start_from.clone().map_or(Value::Null, Value::String),
        );
        o.insert(
            "recover_until".into(),
            self.recover_until
                .clone()
                .map_or(Value::Bool(false), Value::String),
        );
    }
}

/// A stream id `<ms>-<seq>`, for comparisons (the platform compares them so too).
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (a, b) = id.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A position or date as the platform reads `from`/`recover`: an id, or a date -> `<ms>-0`.
fn position_key(v: &str) -> Option<(u64, u64)> {
    parse_id(v).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .and_then(|d| u64::try_from(d.timestamp_millis()).ok())
            .map(|ms| (ms, 0))
    })
}

/// What the stream said, or what happened to it.
#[derive(Debug)]
pub enum StreamItem {
    /// A connection was opened; the platform's stream bounds.
    Connected {
        first_event_id: Option<String>,
        last_event_id: Option<String>,
    },
    /// `connected.firstEventId` is past our position: events were trimmed before we read
    /// them (deletes among them are lost). The caller does a full resync.
    Gap {
        position: String,
        first_event_id: String,
    },
    /// A data event (`create`, `update`, `delete`, `merge`, or another topic).
    ///
    /// Several events can share an id (an object's dependencies come first with the object's
    /// id): an id is complete, and safe to save as a position, only once an item with another
    /// id (or a heartbeat past it) has come. The reader resumes from the last complete id
    /// itself, so the last group may be delivered again after a reconnection.
    Event {
        id: String,
        name: String,
        data: String,
    },
    /// A platform heartbeat; `id` is the platform's idea of our position.
    Heartbeat { id: String },
    /// An event over `max_event_bytes`, skipped.
    TooLarge { id: String, limit: usize },
    /// The connection failed or was refused; the next attempt is after `after`.
    Reconnecting {
        after: Duration,
        reason: StreamError,
    },
}

/// Why a connection ended or was refused. No variant carries the token or the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("cannot build the live stream client: {0}")]
    Config(String),
    /// 401/403: bad token, unknown stream, or access lost.
    #[error("live stream refused access: HTTP {status}{}", detail(.message))]
    Unauthorized { status: u16, message: String },
    /// 410: the stream is stopped in the platform.
    #[error("live stream is stopped: HTTP 410{}", detail(.message))]
    Stopped { message: String },
    #[error("live stream answered HTTP {status}{}", detail(.message))]
    Status { status: u16, message: String },
    #[error("live stream transport error: {0}")]
    Transport(String),
    #[error("live stream read timeout: no data and no heartbeat for {0:?}")]
    ReadTimeout(Duration),
    #[error("live stream connection ended")]
    Ended,
}

fn detail(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(" ({m})")
    }
}

impl StreamError {
    /// Worth waiting out: all but a client that cannot be built. 401 and 410 are included
    /// on purpose: an operator fixes the token or restarts the stream, and we carry on.
    pub fn is_transient(&self) -> bool {
        !matches!(self, StreamError::Config(_))
    }
}

/// A running reader. Dropping it stops the reader too (the stop channel closes); [`LiveStream::shutdown`] waits for it.
pub struct LiveStream {
    rx: mpsc::Receiver<StreamItem>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LiveStream {
    /// Starts following the stream from `position` (`None`: live events only).
    pub fn start(
        cfg: StreamConfig,
        position: Option<StreamPosition>,
    ) -> Result<LiveStream, StreamError> {
        let http = build_http(&cfg)?;
        let (tx, rx) = mpsc::channel(cfg.channel_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let reader = Reader {
            url: stream_url(&cfg.url, &cfg.stream_id),
            parser: SseParser::new(cfg.max_event_bytes),
            recover_until: position.as_ref().and_then(|p| p.recover_until.clone()),
            resume_from: String::new(),
            group: String::new(),
            retry: None,
            http,
            cfg,
            tx,
            stop: stop_rx,
        };
        let mut reader = reader;
        if let Some(from) = position.and_then(|p| p.start_from) {
            reader.parser.set_last_event_id(&from);
            reader.resume_from = from;
        }
        let task = tokio::spawn(reader.run());
        Ok(LiveStream { rx, stop, task })
    }

    /// The next item; `None` once shut down.
    pub async fn recv(&mut self) -> Option<StreamItem> {
        self.rx.recv().await
    }

    /// Stops the reader (an open connection is closed) and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        drop(self.rx);
        let _ = self.task.await;
    }
}

fn build_http(cfg: &StreamConfig) -> Result<reqwest::Client, StreamError> {
    let err = StreamError::Config;
    let mut headers = HeaderMap::new();
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose_secret()))
        .map_err(|_| err("the token is not a valid header value".into()))?;
    auth.set_sensitive(true);
    headers.insert(header::AUTHORIZATION, auth);
    let flag = |b: bool| HeaderValue::from_static(if b { "true" } else { "false" });
    headers.insert("listen-delete", flag(cfg.listen_delete));
    headers.insert("no-dependencies", flag(cfg.no_dependencies));
    headers.insert("with-inferences", flag(cfg.with_inferences));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    for (name, value) in &cfg.custom_headers {
        let n = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| err(format!("custom header name {name:?} is invalid")))?;
        let mut v = HeaderValue::from_str(value.trim())
            .map_err(|_| err(format!("the value of custom header {name:?} is invalid")))?;
        v.set_sensitive(true);
        headers.insert(n, v);
    }
    let extra = crate::tls::certificates_of_files(&cfg.ca_files).map_err(err)?;
    let mut tls = crate::tls::client_config(&extra, cfg.ssl_verify, None).map_err(err)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(cfg.user_agent.as_str())
        .default_headers(headers)
        // No total timeout: the body never ends. The read timeout is ours, per chunk.
        .connect_timeout(cfg.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| err(e.without_url().to_string()))
}

/// `{url}/stream/<id>`, joined segment-wise (a trailing slash on the base gives no `//`, and
/// the id is percent-encoded).
fn stream_url(base: &url::Url, id: &str) -> url::Url {
    let mut u = base.clone();
    if let Ok(mut seg) = u.path_segments_mut() {
        seg.pop_if_empty().push("stream").push(id);
    }
    u.set_query(None);
    u
}

struct Reader {
    cfg: StreamConfig,
    http: reqwest::Client,
    url: url::Url,
    parser: SseParser,
    recover_until: Option<String>,
    /// What a reconnection resumes from: the last id known complete. Not the parser's id
    /// buffer, which the `id:` line of an event cut by a drop has already moved (resuming
    /// from it would skip that event); and not the id of the last event delivered either,
    /// since several messages share an id (dependencies, then the object): an id is complete
    /// once a message with another id (or a heartbeat past it) arrives. The last group is
    /// replayed after a drop, which consumers treat as the idempotent replay it is.
    resume_from: String,
    /// The id of the last message delivered (its group may still be incomplete).
    group: String,
    /// The server's `retry:` (the platform sends none), a floor for the reconnection wait.
    retry: Option<Duration>,
    tx: mpsc::Sender<StreamItem>,
    stop: watch::Receiver<bool>,
}

/// How a connection ended.
enum End {
    Stop,
    Failed {
        reason: StreamError,
        delivered: bool,
    },
}

impl Reader {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut stop = self.stop.clone();
        loop {
            // A closed stop channel (the handle dropped) ends the wait as well.
            let end = tokio::select! {
                end = self.connect_and_read() => end,
                _ = stop.wait_for(|s| *s) => End::Stop,
            };
            let (reason, delivered) = match end {
                End::Stop => return,
                End::Failed { reason, delivered } => (reason, delivered),
            };
            // A connection that delivered something was healthy: start the backoff again.
            failures = if delivered {
                0
            } else {
                failures.saturating_add(1)
            };
            let mut after = backoff(self.cfg.backoff_initial, self.cfg.backoff_max, failures);
            // The server's `retry:`, as an SSE client honours it, bounded by our own cap (a
            // peer cannot make us wait longer than `backoff_max`).
            if let Some(r) = self.retry {
                after = after.max(r.min(self.cfg.backoff_max));
            }
            tracing::warn!(error = %reason, retry_in_ms = after.as_millis() as u64, "live stream: reconnecting");
            if !self.send(StreamItem::Reconnecting { after, reason }).await {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(after) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // A partial event is dropped; the last delivered id is what we resume from.
            self.parser.reset_connection();
            self.parser.set_last_event_id(&self.resume_from);
        }
    }

    /// `false`: the receiver is gone.
    async fn send(&self, item: StreamItem) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// The `recover` parameter for a connection from `from`: only while the position is
    /// before the recovery date (once passed, the platform would do none anyway), and only
    /// with a position (the platform answers 500 to a recovery without a start).
    fn recover_param(&self, from: &str) -> Option<&str> {
        let r = self.recover_until.as_deref()?;
        if from.is_empty() {
            return None;
        }
        match (position_key(from), position_key(r)) {
            (Some(f), Some(rk)) => (f < rk).then_some(r),
            _ => None,
        }
    }

    fn request_url(&self) -> url::Url {
        let mut u = self.url.clone();
        let from = self.parser.last_event_id().to_owned();
        {
            let mut q = u.query_pairs_mut();
            if !from.is_empty() {
                // Explicit `from` as well as Last-Event-ID (a proxy may drop the header).
                q.append_pair("from", &from);
            }
            if let Some(r) = self.recover_param(&from) {
                q.append_pair("recover", r);
            }
        }
        if u.query() == Some("") {
            u.set_query(None);
        }
        u
    }

    async fn connect_and_read(&mut self) -> End {
        let secret = self.cfg.token.expose_secret().to_owned();
        let redact = |t: &str| crate::redact::peer_message(t, &[secret.as_str()]);
        let mut req = self.http.get(self.request_url());
        let from = self.parser.last_event_id().to_owned();
        if !from.is_empty() {
            req = req.header("Last-Event-ID", from.clone());
        }
        let failed = |reason, delivered| End::Failed { reason, delivered };
        let resp = match tokio::time::timeout(self.cfg.read_timeout, req.send()).await {
            Err(_) => return failed(StreamError::ReadTimeout(self.cfg.read_timeout), false),
            Ok(Err(e)) => {
                let text = crate::http::reqwest_error_text(e);
                return failed(StreamError::Transport(redact(&text)), false);
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let message = redact(&read_error_body(resp, self.cfg.read_timeout).await);
            let reason = match status {
                401 | 403 => StreamError::Unauthorized { status, message },
                410 => StreamError::Stopped { message },
                _ => StreamError::Status { status, message },
            };
            return failed(reason, false);
        }
        let mut resp = resp;
        let mut delivered = false;
        loop {
            let chunk = match tokio::time::timeout(self.cfg.read_timeout, resp.chunk()).await {
                Err(_) => {
                    return failed(StreamError::ReadTimeout(self.cfg.read_timeout), delivered);
                }
                Ok(Err(e)) => {
                    let text = crate::http::reqwest_error_text(e);
                    return failed(StreamError::Transport(redact(&text)), delivered);
                }
                Ok(Ok(None)) => return failed(StreamError::Ended, delivered),
                Ok(Ok(Some(c))) => c,
            };
            // Fed line by line, so that a `TooLarge` is reported with the id of the event it
            // is about (the parser's id buffer at that point), not a later one of the chunk.
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let cut = rest
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .map_or(rest.len(), |i| i + 1);
                let (segment, tail) = rest.split_at(cut);
                rest = tail;
                for item in self.parser.feed(segment) {
                    let out = match self.item(item, &from).await {
                        Ok(Some(out)) => out,
                        Ok(None) => continue,
                        Err(()) => return End::Stop,
                    };
                    delivered = true;
                    if !self.send(out).await {
                        return End::Stop;
                    }
                }
            }
        }
    }

    /// Moves the resume position: a new id completes the previous group; a heartbeat names
    /// the platform's position, past every message it sent before it.
    fn delivered_id(&mut self, id: &str, heartbeat: bool) {
        if id.is_empty() || id == self.group {
            return;
        }
        if heartbeat {
            self.resume_from = id.to_owned();
        } else if !self.group.is_empty() {
            self.resume_from = std::mem::take(&mut self.group);
        }
        self.group = id.to_owned();
    }

    /// What one parsed item is for the caller (`None`: nothing to deliver); `Err`: the
    /// receiver is gone.
    async fn item(&mut self, item: SseItem, from: &str) -> Result<Option<StreamItem>, ()> {
        Ok(Some(match item {
            SseItem::Event(ev) => {
                if ev.event != "connected" {
                    self.delivered_id(&ev.id, ev.event == "heartbeat");
                }
                match ev.event.as_str() {
                    "connected" => {
                        let info: Value = serde_json::from_str(&ev.data).unwrap_or_default();
                        let s = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_owned);
                        let first = s("firstEventId");
                        // `connected` comes first: the position is where we resumed from.
                        let position = from_or(&self.resume_from, from);
                        // With a recovery, the snapshot covers (position, recover] and the
                        // live part starts at `recover`: events trimmed before it are no
                        // loss (a first run over a long-trimmed stream, or a reconnection
                        // mid-recovery, is not a gap).
                        let live_start = self
                            .recover_param(&position)
                            .map_or(position.clone(), str::to_owned);
                        if let Some(gap) = gap(&position, &live_start, first.as_deref()) {
                            if !self.send(gap).await {
                                return Err(());
                            }
                        }
                        StreamItem::Connected {
                            first_event_id: first,
                            last_event_id: s("lastEventId"),
                        }
                    }
                    "heartbeat" => StreamItem::Heartbeat { id: ev.id },
                    _ => StreamItem::Event {
                        id: ev.id,
                        name: ev.event,
                        data: ev.data,
                    },
                }
            }
            SseItem::TooLarge { limit } => {
                // Skipped and reported, as an event of its id.
                let id = self.parser.last_event_id().to_owned();
                self.delivered_id(&id, false);
                StreamItem::TooLarge { id, limit }
            }
            // Any line proves the peer alive; the timeout is per chunk already.
            SseItem::Comment(_) => return Ok(None),
            SseItem::Retry(ms) => {
                self.retry = Some(Duration::from_millis(ms));
                return Ok(None);
            }
        }))
    }
}

fn from_or(position: &str, from: &str) -> String {
    if position.is_empty() { from } else { position }.to_owned()
}

/// A gap when the live part starts (our position, or the recovery date when recovering)
/// strictly before the oldest id the platform still holds. `0-0` (from the start) and no
/// position (live only) have none.
fn gap(position: &str, live_start: &str, first_event_id: Option<&str>) -> Option<StreamItem> {
    let first = first_event_id?;
    let start = position_key(live_start)?;
    if start == (0, 0) {
        return None;
    }
    let first_key = parse_id(first)?;
    // The id just before the oldest (same ms, previous sequence): nothing was trimmed after it.
    if first_key.1 > 0 && start == (first_key.0, first_key.1 - 1) {
        return None;
    }
    (start < first_key).then(|| StreamItem::Gap {
        position: position.to_owned(),
        first_event_id: first.to_owned(),
    })
}

/// What an error answer says: its body, bounded in size and time (the platform puts the
/// reason in the status line and sends an empty body; a proxy may send a page).
async fn read_error_body(mut resp: reqwest::Response, wait: Duration) -> String {
    let reason = resp
        .status()
        .canonical_reason()
        .unwrap_or_default()
        .to_owned();
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(c)) = resp.chunk().await {
            body.extend_from_slice(&c);
            if body.len() >= ERROR_BODY_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    body.truncate(ERROR_BODY_LIMIT);
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    if text.is_empty() { reason } else { text }
}

/// Capped exponential backoff with jitter: the n-th consecutive failure waits a random time
/// in [d/2, d], d = initial * 2^(n-1) capped at `max` (n = 0 after a healthy connection waits
/// `initial`). The jitter keeps many connectors from reconnecting in step after an outage.
fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let d = initial.saturating_mul(1u32 << exp).min(max);
    let half = d / 2;
    let span = (d - half).as_nanos() as u64;
    let r = if span == 0 {
        0
    } else {
        random_u64() % (span + 1)
    };
    half + Duration::from_nanos(r)
}

/// A random number without a dependency: std's `RandomState` is seeded randomly per process
/// and its keys advance per instance.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let i = Duration::from_millis(100);
        let m = Duration::from_millis(1000);
        for n in 0..30 {
            let d = backoff(i, m, n);
            let cap = i.saturating_mul(1 << n.saturating_sub(1).min(20)).min(m);
            assert!(d >= cap / 2 && d <= cap, "n={n} d={d:?} cap={cap:?}");
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(i, m, 5)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    #[test]
    fn url_joined_without_double_slash() {
        let u = url::Url::parse("http://h:8080/").unwrap();
        assert_eq!(stream_url(&u, "live").as_str(), "http://h:8080/stream/live");
        let u = url::Url::parse("http://h/opencti").unwrap();
        assert_eq!(
            stream_url(&u, "a b").as_str(),
            "http://h/opencti/stream/a%20b"
        );
    }

    #[test]
    fn position_reads_and_writes_pycti_keys() {
        let mut state = serde_json::json!({"ledger": 1});
        let p = StreamPosition {
            start_from: Some("5-1".into()),
            recover_until: None,
        };
        p.write_to(&mut state);
        assert_eq!(
            state,
            serde_json::json!({"ledger": 1, "start_from": "5-1", "recover_until": false})
        );
        assert_eq!(StreamPosition::from_state(&state), Some(p));
        let py = serde_json::json!({"start_from": "7-0", "recover_until": "2026-01-01T00:00:00Z"});
        assert_eq!(
            StreamPosition::from_state(&py)
                .unwrap()
                .recover_until
                .as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(StreamPosition::from_state(&serde_json::json!({})), None);
        let legacy = serde_json::json!({"connectorLastEventId": "9-0", "recover_until": "False"});
        assert_eq!(
            StreamPosition::from_state(&legacy),
            Some(StreamPosition {
                start_from: Some("9-0".into()),
                recover_until: None
            })
        );
    }

    #[test]
    fn gap_only_when_position_is_before_first_id() {
        assert!(gap("5-0", "5-0", Some("6-0")).is_some());
        assert!(gap("6-0", "6-0", Some("6-0")).is_none());
        assert!(gap("0-0", "0-0", Some("6-0")).is_none());
        assert!(gap("", "", Some("6-0")).is_none());
        let d = "1970-01-01T00:00:00.005Z";
        assert!(gap(d, d, Some("6-0")).is_some());
        assert!(gap("6-0", "6-0", Some("6-1")).is_none(), "adjacent ids");
        assert!(
            gap("5-9", "5-9", Some("6-0")).is_some(),
            "unknown predecessor"
        );
        // Recovering up to a date past the oldest id: no gap.
        assert!(gap("1-0", "1970-01-01T00:00:00.007Z", Some("6-0")).is_none());
    }
}
