//! The ArcSight ESM Service Layer client.
//!
//! Every call is a POST whose body carries the credentials or the token, so neither ever lands
//! in a URL (and so in a proxy's access log). Transient failures are retried with backoff; a
//! refused token triggers one fresh login; batch calls degrade to per-id calls when the ESM
//! lacks them or when one bad id spoils a batch, so one broken case never costs the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use url::Url;

use super::decode::{self, ApiDialect, Dialect, Service};
use super::error::EsmError;
use super::model::{EventId, as_i64, as_list, as_string, into_list};
use super::retry::{Jitter, RetryPolicy, parse_retry_after};
use peer_http::lock;

const LOGIN_PATH: &str = "/www/core-service/rest/LoginService/login";
const LOGOUT_PATH: &str = "/www/core-service/rest/LoginService/logout";
const CASE_SERVICE: &str = "/www/manager-service/rest/CaseService/";
const EVENTS_PATH: &str = "/www/manager-service/rest/SecurityEventService/getSecurityEvents";

/// Longest case id a run accepts: ESM's are a few dozen characters; anything far longer is not
/// an id but junk that would end up in the state.
pub const MAX_ID_LEN: usize = 1024;
/// Longest string accepted in a case or an event: a description of a megabyte is already far
/// beyond what an analyst writes, and it would be copied into every bundle.
pub(crate) const MAX_STRING_LEN: usize = 1024 * 1024;

/// Everything the client needs (the settings hold one: `EsmSettings::client`).
#[derive(Debug, Clone)]
pub struct EsmConfig {
    pub base_url: Url,
    pub username: String,
    pub password: SecretString,
    pub ssl_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub dialect: ApiDialect,
    pub max_attempts: u32,
    pub retry_min_wait: Duration,
    pub retry_max_wait: Duration,
    pub request_timeout: Duration,
    pub concurrency: usize,
    pub case_batch_size: usize,
    pub event_batch_size: usize,
    /// Largest answer body read, in bytes (`ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB`).
    pub max_response_bytes: u64,
}

impl EsmConfig {
    /// A configuration with the documented defaults of every setting but the three that have
    /// none (the `ARCSIGHT_INCIDENTS_*` defaults of the settings table; a test there checks they
    /// agree). Callers change what they need with struct update syntax, so a new field is added
    /// here once, not at every call site.
    pub fn new(base_url: Url, username: impl Into<String>, password: SecretString) -> EsmConfig {
        EsmConfig {
            base_url,
            username: username.into(),
            password,
            ssl_verify: true,
            ca_file: None,
            dialect: ApiDialect::Auto,
            max_attempts: 4,
            retry_min_wait: Duration::from_secs(1),
            retry_max_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            concurrency: 4,
            case_batch_size: 100,
            event_batch_size: 200,
            max_response_bytes: 64 * peer_http::http::MIB,
        }
    }

    /// The retry policy these settings describe.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            min_wait: self.retry_min_wait,
            max_wait: self.retry_max_wait,
        }
    }
}

/// Request outcomes of one operation. `ok` and `error` count requests (after their retries),
/// `retried` counts failed attempts that were retried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    pub ok: u64,
    pub retried: u64,
    pub error: u64,
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EsmStats {
    /// Keyed by ESM operation (`login`, `findAllIds`, `getResourcesByIds`, ...).
    pub operations: BTreeMap<&'static str, OpStats>,
    /// Logins done because the ESM refused the token.
    pub relogins: u64,
    /// Total time spent (or, while sleeping, about to be spent) waiting between attempts.
    pub retry_wait: Duration,
}

/// Events fetched for many ids.
#[derive(Debug, Default)]
pub struct EventsFetch {
    /// Raw event objects keyed by their `eventId`.
    pub events: HashMap<EventId, Value>,
    /// Ids whose request failed, with the error (shared by all ids of a failed batch). Ids in
    /// neither map were asked for and not returned: ESM does not know them.
    pub failed: HashMap<EventId, Arc<EsmError>>,
}

/// A logged-in session.
#[derive(Clone)]
struct Session {
    token: SecretString,
    dialect: Dialect,
    /// Increases with every login, so concurrent callers that all saw the same token refused
    /// log in again only once.
    generation: u64,
}

struct Inner {
    http: reqwest::Client,
    cfg: EsmConfig,
    policy: RetryPolicy,
    session: tokio::sync::Mutex<Option<Session>>,
    generation: Mutex<u64>,
    /// Set once the ESM showed it lacks `getResourcesByIds`; never tried again afterwards.
    batch_unsupported: AtomicBool,
    /// Shared by every fetch, so concurrent `get_cases` and `get_security_events` together stay
    /// within the configured load on the ESM.
    permits: Arc<Semaphore>,
    jitter: Mutex<Jitter>,
    stats: Mutex<EsmStats>,
}

/// The ESM client. Cheap to clone; clones share the session, the counters and the limits.
#[derive(Clone)]
pub struct EsmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EsmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsmClient")
            .field("host", &self.inner.cfg.base_url.host_str())
            .finish_non_exhaustive()
    }
}

/// One requested case id and its outcome.
type CaseOutcome = (String, Result<Value, EsmError>);
/// Event ids fetched together and their outcome.
type EventOutcome = (Vec<EventId>, Result<Vec<Value>, EsmError>);

/// A request body: form (login, logout) or JSON (everything else).
enum Body {
    Form(Vec<(&'static str, String)>),
    Json(Value),
}

/// One failed attempt, with what the server said about when to come back.
struct Failure {
    error: EsmError,
    retry_after: Option<Duration>,
}

impl From<EsmError> for Failure {
    fn from(error: EsmError) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

impl EsmClient {
    /// Builds the HTTP client (TLS settings, timeout). Does not contact the ESM.
    pub fn new(cfg: EsmConfig) -> Result<Self, EsmError> {
        Self::with_jitter(cfg, Jitter::from_entropy())
    }

    /// As [`EsmClient::new`], with a chosen jitter source (tests fix it to read exact waits).
    pub fn with_jitter(cfg: EsmConfig, jitter: Jitter) -> Result<Self, EsmError> {
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            // A redirect would replay our request elsewhere; ESM never redirects API calls.
            .redirect(reqwest::redirect::Policy::none());
        if !cfg.ssl_verify {
            tracing::warn!(
                host = cfg.base_url.host_str().unwrap_or_default(),
                "TLS certificate verification of ESM is disabled (ARCSIGHT_INCIDENTS_SSL_VERIFY=false)"
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| EsmError::Config {
                message: format!("cannot read CA file {}: {}", path.display(), e.kind()),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| EsmError::Config {
                    message: format!("CA file {} holds no valid PEM certificate", path.display()),
                })?;
            if certs.is_empty() {
                return Err(EsmError::Config {
                    message: format!("CA file {} holds no certificate", path.display()),
                });
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().map_err(|e| EsmError::Config {
            message: format!("cannot build the HTTP client: {}", e.without_url()),
        })?;
        let policy = cfg.retry_policy();
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        Ok(EsmClient {
            inner: Arc::new(Inner {
                http,
                policy,
                cfg,
                session: tokio::sync::Mutex::new(None),
                generation: Mutex::new(0),
                batch_unsupported: AtomicBool::new(false),
                permits,
                jitter: Mutex::new(jitter),
                stats: Mutex::new(EsmStats::default()),
            }),
        })
    }

    /// Logs in (again), replacing any current session.
    pub async fn login(&self) -> Result<(), EsmError> {
        let mut guard = self.inner.session.lock().await;
        let s = self.do_login().await?;
        *guard = Some(s);
        Ok(())
    }

    /// Ends the session; a no-op when not logged in. The session is forgotten even if the ESM
    /// cannot be told, so a later call logs in afresh.
    pub async fn logout(&self) -> Result<(), EsmError> {
        let Some(session) = self.inner.session.lock().await.take() else {
            return Ok(());
        };
        let token = session.token.expose_secret().to_owned();
        let body = Body::Form(vec![("authToken", token.clone()), ("alt", "json".into())]);
        let secrets = [token.as_str(), self.inner.cfg.password.expose_secret()];
        let url = self.url(LOGOUT_PATH);
        self.send("logout", &url, &body, &secrets).await?;
        tracing::debug!("logged out of ESM");
        Ok(())
    }

    /// The dialect in use, once logged in.
    pub async fn dialect(&self) -> Option<Dialect> {
        self.inner.session.lock().await.as_ref().map(|s| s.dialect)
    }

    /// Every case id the ESM knows (ESM has no paging or filter for this).
    pub async fn find_all_ids(&self) -> Result<Vec<String>, EsmError> {
        let ret = self.call(Service::Case, "findAllIds", vec![]).await?;
        Ok(as_list(ret.as_ref())
            .into_iter()
            .filter_map(as_string)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect())
    }

    /// Per requested id, in request order: the raw case object or the error for that id.
    pub async fn get_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, EsmError>)> {
        let size = self.inner.cfg.case_batch_size.max(1);
        let chunks: Vec<Vec<String>> = ids.chunks(size).map(<[String]>::to_vec).collect();
        let mut set = JoinSet::new();
        for (i, chunk) in chunks.iter().cloned().enumerate() {
            let client = self.clone();
            set.spawn(async move {
                let _permit = client.inner.permits.clone().acquire_owned().await;
                (i, client.case_chunk(chunk).await)
            });
        }
        let mut done: Vec<Option<Vec<CaseOutcome>>> = vec![None; chunks.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, results)) => done[i] = Some(results),
                Err(e) => tracing::error!(error = %e, "a case fetch task ended abnormally"),
            }
        }
        done.into_iter()
            .zip(chunks)
            .flat_map(|(res, chunk)| {
                res.unwrap_or_else(|| {
                    let err = EsmError::Aborted {
                        operation: "getResourcesByIds",
                    };
                    chunk.into_iter().map(|id| (id, Err(err.clone()))).collect()
                })
            })
            .map(|(id, r)| {
                let r = r.and_then(|case| match oversized_string(&case) {
                    Some(size) => Err(EsmError::Oversized {
                        operation: "getResourceById",
                        what: "a text field of the case",
                        size,
                        limit: MAX_STRING_LEN,
                    }),
                    None => Ok(case),
                });
                (id, r)
            })
            .collect()
    }

    /// Events for many ids, in batches fetched concurrently.
    pub async fn get_security_events(&self, ids: &[EventId]) -> EventsFetch {
        let mut seen = HashSet::new();
        let unique: Vec<EventId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let size = self.inner.cfg.event_batch_size.max(1);
        let mut set = JoinSet::new();
        let mut pending: HashMap<tokio::task::Id, Vec<EventId>> = HashMap::new();
        for chunk in unique.chunks(size).map(<[EventId]>::to_vec) {
            let client = self.clone();
            let ids = chunk.clone();
            let handle = set.spawn(async move {
                let _permit = client.inner.permits.clone().acquire_owned().await;
                client.event_chunk(ids).await
            });
            pending.insert(handle.id(), chunk);
        }
        let mut out = EventsFetch::default();
        while let Some(joined) = set.join_next_with_id().await {
            let groups = match joined {
                Ok((id, groups)) => {
                    pending.remove(&id);
                    groups
                }
                Err(e) => {
                    tracing::error!(error = %e, "an event fetch task ended abnormally");
                    let chunk = pending.remove(&e.id()).unwrap_or_default();
                    let err = EsmError::Aborted {
                        operation: "getSecurityEvents",
                    };
                    vec![(chunk, Err(err))]
                }
            };
            for (group, result) in groups {
                match result {
                    Ok(events) => {
                        for ev in events {
                            let Some(id) = ev.get("eventId").and_then(as_i64) else {
                                continue;
                            };
                            match oversized_string(&ev) {
                                Some(size) => {
                                    let e = EsmError::Oversized {
                                        operation: "getSecurityEvents",
                                        what: "a text field of the event",
                                        size,
                                        limit: MAX_STRING_LEN,
                                    };
                                    out.failed.insert(id, Arc::new(e));
                                }
                                None => {
                                    out.events.insert(id, ev);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        for id in group {
                            out.failed.insert(id, e.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EsmStats {
        lock(&self.inner.stats).clone()
    }

    // ---- batches -------------------------------------------------------------------------

    async fn case_chunk(&self, ids: Vec<String>) -> Vec<CaseOutcome> {
        if !self.inner.batch_unsupported.load(Ordering::Relaxed) {
            let batch = self
                .call(
                    Service::Case,
                    "getResourcesByIds",
                    vec![("ids", json!(ids))],
                )
                .await;
            match batch {
                Ok(ret) => {
                    let mut by_id: HashMap<String, Value> = HashMap::new();
                    for case in into_list(ret) {
                        if let Some(id) = case_id(&case) {
                            by_id.insert(id, case);
                        }
                    }
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let r = match by_id.remove(&id) {
                            Some(case) => Ok(case),
                            // Ask once more on its own: the single call gives that id's real error.
                            None => self.get_case(&id).await,
                        };
                        out.push((id, r));
                    }
                    return out;
                }
                Err(EsmError::Unsupported { status, .. }) => {
                    if !self.inner.batch_unsupported.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            status,
                            "ESM lacks getResourcesByIds; fetching cases one by one from now on"
                        );
                    }
                }
                Err(
                    e @ (EsmError::ErrorPage { .. }
                    | EsmError::TooLarge { .. }
                    | EsmError::Decode { .. }
                    | EsmError::Status { .. }
                    | EsmError::NotReturned { .. }),
                ) if !e.is_transient() => {
                    // One bad id (deleted case) fails the whole batch on ESM: isolate it.
                    tracing::warn!(error = %e, cases = ids.len(), "case batch failed; fetching its cases one by one");
                }
                Err(e) => return ids.into_iter().map(|id| (id, Err(e.clone()))).collect(),
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = self.get_case(&id).await;
            out.push((id, r));
        }
        out
    }

    async fn get_case(&self, id: &str) -> Result<Value, EsmError> {
        const OP: &str = "getResourceById";
        match self
            .call(Service::Case, OP, vec![("resourceId", json!(id))])
            .await?
        {
            Some(case @ Value::Object(_)) => Ok(case),
            Some(_) => Err(EsmError::Decode {
                operation: OP,
                status: 200,
                message: "the answer is not a case object".into(),
            }),
            None => Err(EsmError::NotReturned { operation: OP }),
        }
    }

    /// The events of one batch. An undecodable batch is split into single-id requests so one
    /// broken event only fails the cases that need it.
    async fn event_chunk(&self, ids: Vec<EventId>) -> Vec<EventOutcome> {
        match self.fetch_events(&ids).await {
            // An oversize batch too: each event alone may well fit.
            Err(e @ (EsmError::Decode { .. } | EsmError::TooLarge { .. })) if ids.len() > 1 => {
                tracing::warn!(error = %e, events = ids.len(), "event batch failed; fetching its events one by one");
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let r = self.fetch_events(&[id]).await;
                    out.push((vec![id], r));
                }
                out
            }
            r => vec![(ids, r)],
        }
    }

    async fn fetch_events(&self, ids: &[EventId]) -> Result<Vec<Value>, EsmError> {
        let ret = self
            .call(
                Service::SecurityEvent,
                "getSecurityEvents",
                vec![
                    ("ids", json!(ids)),
                    // -1/-1: no time bound, the ids alone select.
                    ("startMillis", json!(-1)),
                    ("endMillis", json!(-1)),
                ],
            )
            .await?;
        Ok(into_list(ret)
            .into_iter()
            .filter(|v| v.is_object())
            .collect())
    }

    // ---- sessions ------------------------------------------------------------------------

    /// The current session, logging in first when there is none.
    async fn session(&self) -> Result<Session, EsmError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let s = self.do_login().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Logs in again unless another task already did since `refused` was handed out.
    async fn relogin(&self, refused: u64) -> Result<Session, EsmError> {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref()
            && s.generation != refused
        {
            return Ok(s.clone());
        }
        lock(&self.inner.stats).relogins += 1;
        tracing::info!("ESM refused the session token; logging in again");
        *guard = None;
        let s = self.do_login().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn do_login(&self) -> Result<Session, EsmError> {
        const OP: &str = "login";
        let cfg = &self.inner.cfg;
        let password = cfg.password.expose_secret();
        let body = Body::Form(vec![
            ("login", cfg.username.clone()),
            ("password", password.to_owned()),
            ("alt", "json".into()),
        ]);
        let url = self.url(LOGIN_PATH);
        let (status, answer) = self.send(OP, &url, &body, &[password]).await?;
        // Detected before the answer is taken apart (a login answer is a few bytes).
        let detected = Dialect::detect(&answer);
        let token = match decode::unwrap_answer(OP, answer) {
            Ok(Some(Value::String(t))) if !t.trim().is_empty() => t,
            // Never echo the answer: it would be the token if it were only oddly shaped.
            _ => {
                return Err(EsmError::Decode {
                    operation: OP,
                    status,
                    message: "no token in the login answer".into(),
                });
            }
        };
        let dialect = match cfg.dialect {
            ApiDialect::Prefixed => Dialect::Prefixed,
            ApiDialect::Plain => Dialect::Plain,
            // An answer we could read but not place: the older, prefixed form is the safer bet.
            ApiDialect::Auto => detected.unwrap_or(Dialect::Prefixed),
        };
        let generation = {
            let mut g = lock(&self.inner.generation);
            *g += 1;
            *g
        };
        tracing::info!(dialect = ?dialect, "logged in to ESM");
        Ok(Session {
            token: SecretString::from(token),
            dialect,
            generation,
        })
    }

    // ---- requests ------------------------------------------------------------------------

    /// An authenticated operation: logs in if needed, logs in again once if the token is
    /// refused, and returns the unwrapped `return` value (`None`: ESM returned nothing).
    async fn call(
        &self,
        service: Service,
        op: &'static str,
        fields: Vec<(&'static str, Value)>,
    ) -> Result<Option<Value>, EsmError> {
        let path = match service {
            Service::SecurityEvent => EVENTS_PATH.to_owned(),
            _ => format!("{CASE_SERVICE}{op}"),
        };
        let url = self.url(&path);
        let mut session = self.session().await?;
        let mut relogged = false;
        loop {
            let token = session.token.expose_secret();
            let mut all = vec![("authToken", json!(token))];
            all.extend(fields.iter().cloned());
            let body = Body::Json(session.dialect.request(service, op, all));
            let secrets = [token, self.inner.cfg.password.expose_secret()];
            match self.send(op, &url, &body, &secrets).await {
                Ok((status, answer)) => {
                    return decode::unwrap_answer(op, answer).map_err(|message| EsmError::Decode {
                        operation: op,
                        status,
                        message,
                    });
                }
                Err(EsmError::Unauthorized { .. }) if !relogged => {
                    relogged = true;
                    session = self.relogin(session.generation).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request with retries on transient failures. Returns the status and the decoded
    /// JSON (`Null` for an empty body).
    async fn send(
        &self,
        op: &'static str,
        url: &Url,
        body: &Body,
        secrets: &[&str],
    ) -> Result<(u16, Value), EsmError> {
        let mut attempt = 1u32;
        loop {
            match self.attempt(op, url, body, secrets).await {
                Ok(ok) => {
                    lock(&self.inner.stats).operations.entry(op).or_default().ok += 1;
                    return Ok(ok);
                }
                Err(f)
                    if f.error.is_transient() && self.inner.policy.allows_retry_after(attempt) =>
                {
                    let jitter = lock(&self.inner.jitter).next_unit();
                    let wait = self.inner.policy.delay(attempt, f.retry_after, jitter);
                    {
                        let mut stats = lock(&self.inner.stats);
                        stats.operations.entry(op).or_default().retried += 1;
                        stats.retry_wait += wait;
                    }
                    tracing::warn!(
                        operation = op,
                        attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %f.error,
                        "ESM request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(f) => {
                    lock(&self.inner.stats)
                        .operations
                        .entry(op)
                        .or_default()
                        .error += 1;
                    tracing::debug!(operation = op, attempt, error = %f.error, "ESM request failed");
                    return Err(f.error);
                }
            }
        }
    }

    async fn attempt(
        &self,
        op: &'static str,
        url: &Url,
        body: &Body,
        secrets: &[&str],
    ) -> Result<(u16, Value), Failure> {
        tracing::trace!(operation = op, path = url.path(), "ESM request");
        let req = self
            .inner
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let req = match body {
            Body::Form(fields) => req.form(fields),
            Body::Json(v) => req.json(v),
        };
        let resp = req.send().await.map_err(|e| EsmError::transport(op, e))?;
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let retry_after = header(reqwest::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(&v, chrono::Utc::now()));
        let text = crate::http::read_limited(resp, self.inner.cfg.max_response_bytes)
            .await
            .map_err(|e| match e {
                crate::http::BodyError::TooLarge => EsmError::TooLarge {
                    operation: op,
                    limit_mib: self.inner.cfg.max_response_bytes / crate::http::MIB,
                },
                crate::http::BodyError::Transport(e) => EsmError::transport(op, e),
            })?;
        tracing::trace!(operation = op, status, bytes = text.len(), "ESM answer");
        classify(op, status, content_type.as_deref(), &text, secrets)
            .map_err(|error| Failure { error, retry_after })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.inner.cfg.base_url.clone();
        // Keep a reverse proxy's path prefix, if the base URL has one.
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(Some("alt=json"));
        url.set_fragment(None);
        url
    }
}

/// The id a case object carries (`resourceid`, else its reference's id).
fn case_id(case: &Value) -> Option<String> {
    case.get("resourceid")
        .and_then(as_string)
        .or_else(|| {
            case.get("reference")
                .and_then(|r| r.get("id"))
                .and_then(as_string)
        })
        .map(|s| s.trim().to_owned())
}

/// The size of the first string (value or key) longer than [`MAX_STRING_LEN`], if any. JSON
/// depth is bounded by the parser, so the recursion is too.
fn oversized_string(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => (s.len() > MAX_STRING_LEN).then_some(s.len()),
        Value::Array(items) => items.iter().find_map(oversized_string),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.len() > MAX_STRING_LEN {
                Some(k.len())
            } else {
                oversized_string(v)
            }
        }),
        _ => None,
    }
}

/// Turns an HTTP answer into JSON or a typed error.
fn classify(
    op: &'static str,
    status: u16,
    content_type: Option<&str>,
    text: &str,
    secrets: &[&str],
) -> Result<(u16, Value), EsmError> {
    let authenticated = op != "login";
    if (300..400).contains(&status) {
        return Err(EsmError::Redirect {
            operation: op,
            status,
        });
    }
    if decode::is_html(content_type, text) {
        let exception = decode::java_exception(text).map(|e| crate::redact::redact(&e, secrets));
        if authenticated
            && (status == 401 || decode::says_token_invalid(exception.as_deref().unwrap_or(text)))
        {
            return Err(EsmError::Unauthorized {
                operation: op,
                status,
            });
        }
        if status == 404 || status == 405 || decode::names_missing_operation(text) {
            return Err(EsmError::Unsupported {
                operation: op,
                status,
            });
        }
        return Err(EsmError::ErrorPage {
            operation: op,
            status,
            exception,
        });
    }
    if authenticated && status == 401 {
        return Err(EsmError::Unauthorized {
            operation: op,
            status,
        });
    }
    if status == 404 || status == 405 {
        return Err(EsmError::Unsupported {
            operation: op,
            status,
        });
    }
    if !(200..300).contains(&status) {
        if authenticated && decode::says_token_invalid(text) {
            return Err(EsmError::Unauthorized {
                operation: op,
                status,
            });
        }
        return Err(EsmError::Status {
            operation: op,
            status,
        });
    }
    if text.trim().is_empty() {
        return Ok((status, Value::Null));
    }
    decode::parse_json(text)
        .map(|v| (status, v))
        .map_err(|e| EsmError::Decode {
            operation: op,
            status,
            // serde_json's message names a position, never the input.
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_an_error_whatever_the_status() {
        let page = "<!doctype html><html><body><p><b>Message</b> com.arcsight.x.InvalidResourceIDException: Invalid resource ID: [bogus] for Case</p></body></html>";
        let e = classify("getResourceById", 200, Some("text/html"), page, &[]).unwrap_err();
        assert!(
            matches!(e, EsmError::ErrorPage { status: 200, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("InvalidResourceIDException"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn token_refusal_and_missing_operations_are_recognised() {
        let e = classify("findAllIds", 401, None, "", &[]).unwrap_err();
        assert!(matches!(e, EsmError::Unauthorized { .. }), "{e:?}");
        let page =
            "<html><body><p>java.lang.NoSuchMethodException: getResourcesByIds</p></body></html>";
        let e = classify("getResourcesByIds", 500, None, page, &[]).unwrap_err();
        assert!(matches!(e, EsmError::Unsupported { .. }), "{e:?}");
        // A failed login is not a refused token: logging in again would not help.
        let e = classify("login", 401, None, "", &[]).unwrap_err();
        assert!(matches!(e, EsmError::Status { status: 401, .. }), "{e:?}");
    }
}
