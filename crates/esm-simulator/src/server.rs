//! The HTTP side: routing, parameter parsing in every form ESM accepts, answers in the configured
//! dialect, error pages, fault injection, counters and the redacted request log.
//!
//! Helpers return `Result<_, Response>`: the error *is* the answer to send (an error page, a
//! 401), so handlers can use `?`. Boxing it would only add an allocation per error answer.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::data::{DataSet, Rng, dataset, esm_list};
use super::{Dialect, Faults, SimConfig, SimError, tls};

/// Prefix of the simulator's own control endpoints (not part of ESM).
pub(super) const ADMIN_PREFIX: &str = "/sim-admin/";
/// Request log lines kept; older ones are dropped so long benchmarks stay bounded.
const LOG_CAPACITY: usize = 100_000;
/// Upper bound on what one admin call may create, so a typo cannot exhaust memory.
const ADMIN_MAX_CREATE: usize = 1_000_000;

const LOGIN_PATH: &str = "/www/core-service/rest/LoginService/";
const CASE_PATH: &str = "/www/manager-service/rest/CaseService/";
const EVENT_PATH: &str = "/www/manager-service/rest/SecurityEventService/";

const INVALID_RESOURCE: &str =
    "com.arcsight.product.manager.resource.service.v1.axis2.jaxws.InvalidResourceIDException";
const AUTH_EXCEPTION: &str = "com.arcsight.coma.client.authentication.AuthenticationException";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Login,
    Logout,
    FindAllIds,
    GetResourceById,
    GetResourcesByIds,
    GetCaseEventIds,
    GetSecurityEvents,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        let (base, op) = path.rsplit_once('/')?;
        let base = &path[..base.len() + 1];
        Some(match (base, op) {
            (LOGIN_PATH, "login") => Endpoint::Login,
            (LOGIN_PATH, "logout") => Endpoint::Logout,
            (CASE_PATH, "findAllIds") => Endpoint::FindAllIds,
            (CASE_PATH, "getResourceById") => Endpoint::GetResourceById,
            (CASE_PATH, "getResourcesByIds") => Endpoint::GetResourcesByIds,
            (CASE_PATH, "getCaseEventIDs") => Endpoint::GetCaseEventIds,
            (EVENT_PATH, "getSecurityEvents") => Endpoint::GetSecurityEvents,
            _ => return None,
        })
    }

    /// The operation name, also the counter name.
    fn name(self) -> &'static str {
        match self {
            Endpoint::Login => "login",
            Endpoint::Logout => "logout",
            Endpoint::FindAllIds => "findAllIds",
            Endpoint::GetResourceById => "getResourceById",
            Endpoint::GetResourcesByIds => "getResourcesByIds",
            Endpoint::GetCaseEventIds => "getCaseEventIDs",
            Endpoint::GetSecurityEvents => "getSecurityEvents",
        }
    }

    /// The service namespace of ESM <= 7.8.
    fn prefix(self) -> &'static str {
        match self {
            Endpoint::Login | Endpoint::Logout => "log.",
            Endpoint::GetSecurityEvents => "sev.",
            _ => "cas.",
        }
    }
}

/// Fault bookkeeping; one lock so the sequence numbers and the 503 draws stay consistent.
struct Gate {
    rng: Rng,
    requests: u64,
    data_answers: u64,
    corruptible_answers: u64,
}

/// Everything the handlers share.
pub(super) struct Shared {
    dialect: Dialect,
    username: String,
    password: String,
    batch_api: bool,
    faults: RwLock<Faults>,
    data: RwLock<DataSet>,
    /// Token -> authenticated calls made with it.
    sessions: Mutex<HashMap<String, u64>>,
    token_rng: Mutex<Rng>,
    /// The last tokens handed out, so security tests can look for them in logs.
    issued: Mutex<VecDeque<String>>,
    /// ESM requests being answered now, and the most seen at once (a client's concurrency).
    in_flight: std::sync::atomic::AtomicU64,
    max_in_flight: std::sync::atomic::AtomicU64,
    counters: Mutex<BTreeMap<String, u64>>,
    log: Mutex<VecDeque<String>>,
    gate: Mutex<Gate>,
    knobs: Mutex<Knobs>,
}

/// Runtime knobs for the sync tests: what a real ESM does now and then.
#[derive(Debug, Default)]
pub(super) struct Knobs {
    /// The next `findAllIds` lists only this many ids (0: an empty listing), once.
    pub listing_limit_once: Option<usize>,
    /// Cases created right after the next listing was computed (they miss it).
    pub create_after_listing: usize,
    /// Cases deleted right after the next listing was computed (listed, then gone when read).
    pub delete_after_listing: Vec<String>,
    /// A case batch (or single read) holding one of these ids fails with an error page.
    pub poison_cases: std::collections::HashSet<String>,
    /// An event batch holding one of these ids fails with an error page.
    pub poison_events: std::collections::HashSet<i64>,
    /// Events left out of every answer (asked for, never returned).
    pub hidden_events: std::collections::HashSet<i64>,
}

/// The page ESM sends when a resource breaks its serializer: HTTP 500, a Java exception.
fn poison_page() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        tomcat_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "java.lang.NullPointerException: cannot serialize resource",
        ),
    )
}

/// Locks even after a panic elsewhere: the simulator's state stays usable for the test's asserts.
/// How many issued tokens [`Shared::issued_tokens`] remembers.
const MAX_ISSUED_KEPT: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(super) fn new(cfg: &SimConfig) -> Self {
        Shared {
            dialect: cfg.dialect,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            batch_api: cfg.batch_api,
            faults: RwLock::new(cfg.faults.clone()),
            data: RwLock::new(dataset(cfg.seed, cfg.cases, cfg.events_per_case)),
            sessions: Mutex::new(HashMap::new()),
            token_rng: Mutex::new(Rng::new(cfg.seed ^ 0x70CE_4000)),
            issued: Mutex::new(VecDeque::new()),
            in_flight: std::sync::atomic::AtomicU64::new(0),
            max_in_flight: std::sync::atomic::AtomicU64::new(0),
            counters: Mutex::new(BTreeMap::new()),
            log: Mutex::new(VecDeque::new()),
            knobs: Mutex::new(Knobs::default()),
            gate: Mutex::new(Gate {
                rng: Rng::new(cfg.seed ^ 0xFA17_5EED),
                requests: 0,
                data_answers: 0,
                corruptible_answers: 0,
            }),
        }
    }

    pub(super) fn knobs<R>(&self, f: impl FnOnce(&mut Knobs) -> R) -> R {
        f(&mut lock(&self.knobs))
    }

    pub(super) fn set_faults(&self, f: Faults) {
        *self.faults.write().unwrap_or_else(PoisonError::into_inner) = f;
    }

    fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn with_data<R>(&self, f: impl FnOnce(&mut DataSet) -> R) -> R {
        f(&mut self.data.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn read_data<R>(&self, f: impl FnOnce(&DataSet) -> R) -> R {
        f(&self.data.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn counters(&self) -> BTreeMap<String, u64> {
        lock(&self.counters).clone()
    }

    pub(super) fn request_log(&self) -> Vec<String> {
        lock(&self.log).iter().cloned().collect()
    }

    pub(super) fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn issued_tokens(&self) -> Vec<String> {
        lock(&self.issued).iter().cloned().collect()
    }

    pub(super) fn active_sessions(&self) -> usize {
        lock(&self.sessions).len()
    }

    fn bump(&self, name: &str) {
        *lock(&self.counters).entry(name.to_string()).or_insert(0) += 1;
    }

    fn log_request(&self, method: &Method, path: &str, query: &[(String, String)]) {
        let line = log_line(method, path, query);
        let mut log = lock(&self.log);
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// Rate limiting and random unavailability, as a proxy or a loaded manager produces them.
    fn gate(&self, f: &Faults) -> Option<Response> {
        let mut g = lock(&self.gate);
        g.requests += 1;
        if let Some(n) = f.rate_limit_every.filter(|n| *n > 0) {
            if g.requests % n == 0 {
                drop(g);
                self.bump("fault.429");
                let mut resp = page(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
                if let Ok(v) = HeaderValue::from_str(&f.retry_after_secs.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return Some(resp);
            }
        }
        if f.error_503_ratio > 0.0 && g.rng.unit() < f.error_503_ratio {
            drop(g);
            self.bump("fault.503");
            return Some(page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable",
            ));
        }
        None
    }

    fn new_token(&self) -> String {
        let mut rng = lock(&self.token_rng);
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
        }
        // Same look as ESM's tokens: 43 base64url characters and a trailing dot.
        format!(
            "{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    fn login(&self, p: &Params, json: bool) -> Response {
        let ok = p.first("login") == Some(self.username.as_str())
            && p.first("password") == Some(self.password.as_str());
        if !ok {
            tracing::debug!("simulator: login refused");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                short_page(&format!("{AUTH_EXCEPTION}: Login failed")),
            );
        }
        let token = self.new_token();
        lock(&self.sessions).insert(token.clone(), 0);
        {
            let mut issued = lock(&self.issued);
            if issued.len() >= MAX_ISSUED_KEPT {
                issued.pop_front();
            }
            issued.push_back(token.clone());
        }
        if !json {
            return xml_answer(
                Endpoint::Login,
                &format!("<ns3:return>{token}</ns3:return>"),
            );
        }
        json_ok(
            wrap(self.dialect, Endpoint::Login, Some(Value::String(token)))
                .to_string()
                .into_bytes(),
        )
    }

    fn logout(&self, p: &Params) -> Response {
        let Some(token) = p.first("authToken").filter(|t| !t.is_empty()) else {
            return page(StatusCode::UNAUTHORIZED, "Missing authentication token");
        };
        if lock(&self.sessions).remove(token).is_none() {
            return bad_token_page();
        }
        StatusCode::NO_CONTENT.into_response()
    }

    /// Counts one use of the token and refuses unknown, expired or missing ones.
    fn authenticate(&self, p: &Params, f: &Faults) -> Result<(), Response> {
        let Some(token) = p.first("authToken").filter(|t| !t.is_empty()) else {
            return Err(page(
                StatusCode::UNAUTHORIZED,
                "Missing authentication token",
            ));
        };
        let mut sessions = lock(&self.sessions);
        let Some(uses) = sessions.get_mut(token) else {
            return Err(bad_token_page());
        };
        *uses += 1;
        if f.token_max_uses.is_some_and(|max| *uses > max) {
            sessions.remove(token);
            drop(sessions);
            self.bump("fault.token_expired");
            return Err(bad_token_page());
        }
        Ok(())
    }

    /// The JSON answer of a data call, or the error page ESM would send.
    fn data_answer(&self, ep: Endpoint, p: &Params) -> Result<Vec<u8>, Response> {
        let value = match ep {
            Endpoint::FindAllIds => {
                let mut ids = self.read_data(|d| d.case_ids());
                let (limit, create, delete) = self.knobs(|k| {
                    (
                        k.listing_limit_once.take(),
                        std::mem::take(&mut k.create_after_listing),
                        std::mem::take(&mut k.delete_after_listing),
                    )
                });
                if let Some(n) = limit {
                    ids.truncate(n);
                }
                if create > 0 {
                    self.with_data(|d| d.add_cases(create));
                }
                for id in &delete {
                    self.with_data(|d| d.delete_case(id));
                }
                esm_list(ids.into_iter().map(Value::String).collect())
            }
            Endpoint::GetResourceById => {
                let id = p.required("resourceId")?;
                if self.knobs(|k| k.poison_cases.contains(id)) {
                    return Err(poison_page());
                }
                Some(
                    self.read_data(|d| d.case_json(id))
                        .ok_or_else(|| invalid_resource(id))?,
                )
            }
            Endpoint::GetResourcesByIds => {
                if !self.batch_api {
                    return Err(page(
                        StatusCode::NOT_FOUND,
                        "The requested resource is not available",
                    ));
                }
                let ids = p.all("ids");
                if self.knobs(|k| ids.iter().any(|id| k.poison_cases.contains(id))) {
                    return Err(poison_page());
                }
                // Unknown ids are skipped: the caller gets every case that exists.
                self.read_data(|d| esm_list(ids.iter().filter_map(|id| d.case_json(id)).collect()))
            }
            Endpoint::GetCaseEventIds => {
                let id = match p.first("caseId") {
                    Some(id) => id,
                    None => p.required("resourceId")?,
                };
                let ids = self
                    .read_data(|d| d.case_event_ids(id))
                    .ok_or_else(|| invalid_resource(id))?;
                esm_list(ids.into_iter().map(Value::from).collect())
            }
            Endpoint::GetSecurityEvents => {
                let ids = p
                    .all("ids")
                    .iter()
                    .map(|s| parse_long(s))
                    .collect::<Result<Vec<i64>, _>>()?;
                let (poisoned, hidden) = self.knobs(|k| {
                    (
                        ids.iter().any(|id| k.poison_events.contains(id)),
                        k.hidden_events.clone(),
                    )
                });
                if poisoned {
                    return Err(poison_page());
                }
                let ids: Vec<i64> = ids.into_iter().filter(|id| !hidden.contains(id)).collect();
                let start = p
                    .first("startMillis")
                    .map(parse_long)
                    .transpose()?
                    .unwrap_or(-1);
                let end = p
                    .first("endMillis")
                    .map(parse_long)
                    .transpose()?
                    .unwrap_or(-1);
                esm_list(self.read_data(|d| d.events_json_between(&ids, start, end)))
            }
            Endpoint::Login | Endpoint::Logout => None,
        };
        Ok(wrap(self.dialect, ep, value).to_string().into_bytes())
    }

    /// Sends a data answer, unless a fault knob replaces it.
    fn finish_data(&self, f: &Faults, body: Vec<u8>) -> Response {
        let mut g = lock(&self.gate);
        g.data_answers += 1;
        if let Some(n) = f.html_200_every.filter(|n| *n > 0) {
            if g.data_answers % n == 0 {
                drop(g);
                self.bump("fault.html200");
                let body = tomcat_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "java.lang.IllegalStateException: Service temporarily unavailable",
                );
                return html(StatusCode::OK, body);
            }
        }
        if let Some(n) = f.truncate_every.filter(|n| *n > 0)
            && g.data_answers % n == 0
        {
            drop(g);
            self.bump("fault.truncated");
            let mut cut = body;
            cut.truncate(cut.len() / 2);
            return json_ok(cut);
        }
        if let Some(n) = f.malformed_every.filter(|n| *n > 0) {
            if let Some(bad) = unescape_backslashes(&body) {
                g.corruptible_answers += 1;
                if g.corruptible_answers % n == 0 {
                    drop(g);
                    self.bump("fault.malformed");
                    return json_ok(bad);
                }
            }
        }
        json_ok(body)
    }

    fn admin(&self, action: &str, q: &[(String, String)]) -> Response {
        let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let count = || {
            get("n")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(1)
                .min(ADMIN_MAX_CREATE)
        };
        let body = match action {
            "touch" => {
                json!({"ok": get("id").is_some_and(|id| self.with_data(|d| d.touch_case(id)))})
            }
            "add-events" => {
                json!({"ok": get("id").is_some_and(|id| self.with_data(|d| d.add_events(id, count())))})
            }
            "add-cases" => json!({"ids": self.with_data(|d| d.add_cases(count()))}),
            "delete" => {
                json!({"ok": get("id").is_some_and(|id| self.with_data(|d| d.delete_case(id)))})
            }
            "counters" => json!(self.counters()),
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": "unknown admin action"})),
                )
                    .into_response();
            }
        };
        axum::Json(body).into_response()
    }
}

/// Request parameters from the query, a form body or a JSON body, with the namespace prefixes
/// (`cas.`, `log.`, `sev.`) removed so both dialects read the same.
#[derive(Debug, Default)]
struct Params(HashMap<String, Vec<String>>);

impl Params {
    fn parse(
        query: &[(String, String)],
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, Response> {
        let mut p = Params::default();
        for (k, v) in query {
            p.push(k, v.clone());
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let trimmed = body.trim_ascii_start();
        if trimmed.is_empty() {
            return Ok(p);
        }
        if content_type.contains("json") || trimmed.starts_with(b"{") {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                server_error(&format!(
                    "com.fasterxml.jackson.core.JsonParseException: {}",
                    json_error_kind(&e)
                ))
            })?;
            p.collect_json(&value);
        } else {
            for (k, v) in url::form_urlencoded::parse(body) {
                p.push(&k, v.into_owned());
            }
        }
        Ok(p)
    }

    fn push(&mut self, key: &str, value: String) {
        let key = key.rsplit('.').next().unwrap_or(key);
        self.0.entry(key.to_string()).or_default().push(value);
    }

    /// Flattens the request object: the wrapper (`{"cas.getResourceById": {...}}`) and the
    /// parameters inside it land in one map; lists become repeated values.
    fn collect_json(&mut self, v: &Value) {
        if let Value::Object(map) = v {
            for (k, v) in map {
                match v {
                    Value::Object(_) => self.collect_json(v),
                    Value::Array(items) => items
                        .iter()
                        .filter_map(scalar)
                        .for_each(|s| self.push(k, s)),
                    other => {
                        if let Some(s) = scalar(other) {
                            self.push(k, s);
                        }
                    }
                }
            }
        }
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    fn required(&self, key: &str) -> Result<&str, Response> {
        self.first(key).ok_or_else(|| {
            server_error(&format!(
                "java.lang.IllegalArgumentException: {key} is required"
            ))
        })
    }

    fn wants_json(&self, headers: &HeaderMap) -> bool {
        self.first("alt") == Some("json")
            || headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json"))
    }
}

/// Names a JSON error without echoing the body (which may hold a password).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "Unexpected end-of-input",
        _ => "Unexpected character",
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_long(s: &str) -> Result<i64, Response> {
    s.trim().parse().map_err(|_| {
        server_error(&format!(
            "java.lang.NumberFormatException: For input string: \"{}\"",
            escape_html(s)
        ))
    })
}

fn is_secret_key(key: &str) -> bool {
    let key = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    key == "password" || key == "authtoken"
}

fn log_line(method: &Method, path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return format!("{method} {path}");
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        q.append_pair(
            k,
            if is_secret_key(k) {
                "REDACTED"
            } else {
                v.as_str()
            },
        );
    }
    format!("{method} {path}?{}", q.finish())
}

/// `{"cas.xResponse":{"cas.return":v}}` (or unprefixed), `{"cas.xResponse":""}` for nothing.
fn wrap(dialect: Dialect, ep: Endpoint, value: Option<Value>) -> Value {
    let prefix = match dialect {
        Dialect::Prefixed => ep.prefix(),
        Dialect::Plain => "",
    };
    let inner = match value {
        Some(v) => {
            let mut m = Map::new();
            m.insert(format!("{prefix}return"), v);
            Value::Object(m)
        }
        None => Value::String(String::new()),
    };
    let mut outer = Map::new();
    outer.insert(format!("{prefix}{}Response", ep.name()), inner);
    Value::Object(outer)
}

/// Un-escapes each escaped backslash whose next character would not start a JSON escape, as ESM
/// does with Windows paths; `None` when there is none. Escaping every `\` that does not start a
/// valid escape restores the input exactly.
pub(super) fn unescape_backslashes(json: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut changed = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string && b == b'\\' && i + 1 < json.len() {
            let next = json[i + 1];
            let after = json.get(i + 2).copied();
            if next == b'\\' && after.is_some_and(|a| !b"\"\\/bfnrtu".contains(&a)) {
                out.push(b'\\');
                changed = true;
            } else {
                out.extend_from_slice(&[b, next]);
            }
            i += 2;
            continue;
        }
        if b == b'"' {
            in_string = !in_string;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

fn json_ok(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        body,
    )
        .into_response()
}

fn xml_answer(ep: Endpoint, inner: &str) -> Response {
    let name = ep.name();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><ns3:{name}Response xmlns:ns3=\"http://ws.v1.service.resource.manager.product.arcsight.com/\">{inner}</ns3:{name}Response>"
    );
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tomcat's error report page (the shape of error-invalid-resource.html).
fn tomcat_page(status: StatusCode, message: &str) -> String {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let (kind, description) = match code {
        500 => (
            "Exception Report",
            "The server encountered an unexpected condition that prevented it from fulfilling the request.",
        ),
        401 => (
            "Status Report",
            "The request has not been applied because it lacks valid authentication credentials for the target resource.",
        ),
        404 => (
            "Status Report",
            "The origin server did not find a current representation for the target resource or is not willing to disclose that one exists.",
        ),
        405 => (
            "Status Report",
            "The method received in the request-line is known by the origin server but not supported by the target resource.",
        ),
        503 => (
            "Status Report",
            "The server is currently unable to handle the request due to a temporary overload or scheduled maintenance, which will likely be alleviated after some delay.",
        ),
        _ => ("Status Report", "The request could not be served."),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><title>HTTP Status {code} – {reason}</title></head><body><h1>HTTP Status {code} – {reason}</h1><hr class=\"line\" /><p><b>Type</b> {kind}</p><p><b>Message</b> {message}</p><p><b>Description</b> {description}</p><hr class=\"line\" /><h3>Apache Tomcat</h3></body></html>"
    )
}

/// The shorter page ESM sends for authentication failures (the shape of error-login.html).
fn short_page(message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><title>HTTP Status 500 – Internal Server Error</title></head><body><h1>HTTP Status 500 – Internal Server Error</h1><p><b>Message</b> {message}</p><h3>Apache Tomcat</h3></body></html>"
    )
}

fn page(status: StatusCode, message: &str) -> Response {
    html(status, tomcat_page(status, &escape_html(message)))
}

fn server_error(message: &str) -> Response {
    page(StatusCode::INTERNAL_SERVER_ERROR, message)
}

fn invalid_resource(id: &str) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        tomcat_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "{INVALID_RESOURCE}: Invalid resource ID: [{}] for Case",
                escape_html(id)
            ),
        ),
    )
}

fn bad_token_page() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        short_page(&format!(
            "{AUTH_EXCEPTION}: Invalid or expired authentication token"
        )),
    )
}

async fn handle(
    State(sh): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    sh.log_request(&method, path, &query);
    tracing::debug!(%method, path, "simulator: request");
    if let Some(action) = path.strip_prefix(ADMIN_PREFIX) {
        sh.bump("admin");
        return sh.admin(action, &query);
    }
    let Some(ep) = Endpoint::from_path(path) else {
        sh.bump("unknown");
        return page(
            StatusCode::NOT_FOUND,
            "The requested resource is not available",
        );
    };
    sh.bump(ep.name());
    if method != Method::GET && method != Method::POST {
        return page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let _in_flight = InFlight::enter(&sh);
    let faults = sh.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(resp) = sh.gate(&faults) {
        return resp;
    }
    let params = match Params::parse(&query, &headers, &body) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let json = params.wants_json(&headers);
    match ep {
        Endpoint::Login => sh.login(&params, json),
        Endpoint::Logout => sh.logout(&params),
        _ => {
            if let Err(resp) = sh.authenticate(&params, &faults) {
                return resp;
            }
            let answer = match sh.data_answer(ep, &params) {
                Ok(a) => a,
                Err(resp) => return resp,
            };
            if !json {
                // A client that forgets alt=json gets XML it cannot decode, as with a real ESM.
                return xml_answer(ep, "");
            }
            sh.finish_data(&faults, answer)
        }
    }
}

/// Counts a request as in flight until dropped (also when the client goes away mid-answer).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(sh: &'a Shared) -> InFlight<'a> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = sh.in_flight.fetch_add(1, SeqCst) + 1;
        sh.max_in_flight.fetch_max(now, SeqCst);
        InFlight(sh)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The running server: its address, its CA, and how to stop it.
pub(super) struct ServerHandle {
    pub(super) base_url: url::Url,
    pub(super) ca_pem: Option<String>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    server: Mutex<Option<JoinHandle<()>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub(super) async fn shutdown(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
        if let Some(a) = &self.acceptor {
            a.abort();
        }
        let server = lock(&self.server).take();
        if let Some(task) = server {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "simulator: server task ended abnormally");
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
        if let Some(a) = &self.acceptor {
            a.abort();
        }
    }
}

pub(super) async fn spawn(shared: Arc<Shared>, cfg: &SimConfig) -> Result<ServerHandle, SimError> {
    let addr = SocketAddr::new(cfg.bind, cfg.port);
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let local = tcp.local_addr().map_err(|source| SimError::Io {
        operation: "read the bound address",
        source,
    })?;
    let app = Router::new().fallback(handle).with_state(shared);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let signal = async move {
        let _ = stop_rx.await;
    };
    let (scheme, ca_pem, server, acceptor) = if cfg.tls {
        let (config, ca_pem) = tls::server_config(cfg.bind)?;
        let (listener, acceptor) =
            tls::TlsListener::new(tcp, config).map_err(|source| SimError::Io {
                operation: "start the TLS listener",
                source,
            })?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(error = %e, "simulator: server stopped with an error");
            }
        });
        ("https", Some(ca_pem), server, Some(acceptor))
    } else {
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(tcp, app).with_graceful_shutdown(signal).await {
                tracing::warn!(error = %e, "simulator: server stopped with an error");
            }
        });
        ("http", None, server, None)
    };
    // A wildcard bind is reachable through loopback; clients cannot connect to 0.0.0.0 everywhere.
    let shown = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), local.port())
        }
        _ => local,
    };
    let base_url =
        url::Url::parse(&format!("{scheme}://{shown}")).map_err(|e| SimError::Setting {
            name: "bind",
            reason: e.to_string(),
        })?;
    Ok(ServerHandle {
        base_url,
        ca_pem,
        stop: Mutex::new(Some(stop_tx)),
        server: Mutex::new(Some(server)),
        acceptor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repair every ESM integration applies (reference: "escape a `\` that does not start a
    /// valid JSON escape"), written here independently of the corrupter.
    fn repair(bad: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bad.len() {
            if bad[i] == b'\\' {
                match bad.get(i + 1) {
                    Some(c) if b"\"\\/bfnrtu".contains(c) => {
                        out.extend_from_slice(&[b'\\', *c]);
                        i += 2;
                        continue;
                    }
                    _ => out.extend_from_slice(b"\\\\"),
                }
            } else {
                out.push(bad[i]);
            }
            i += 1;
        }
        out
    }

    #[test]
    fn corrupted_json_is_invalid_and_repairs_to_the_original() {
        let original = json!({"m": "copy C:\\Users\\bob\\x.txt \\\\fileserver\\share \\\\\\Q end\\", "n": "\\\"q\\u0041"}).to_string();
        let bad = unescape_backslashes(original.as_bytes()).unwrap_or_default();
        assert!(serde_json::from_slice::<Value>(&bad).is_err());
        assert_eq!(String::from_utf8_lossy(&repair(&bad)), original);
    }

    #[test]
    fn nothing_to_corrupt_without_backslashes() {
        assert_eq!(unescape_backslashes(br#"{"a":"b","c":[1,2]}"#), None);
    }

    #[test]
    fn log_lines_redact_secrets_in_any_dialect() {
        let q = vec![
            ("login".to_string(), "admin".to_string()),
            ("password".to_string(), "hunter2".to_string()),
            ("cas.authToken".to_string(), "tok".to_string()),
        ];
        let line = log_line(&Method::GET, "/p", &q);
        assert!(
            !line.contains("hunter2") && !line.contains("tok&") && !line.ends_with("tok"),
            "{line}"
        );
        assert!(line.contains("login=admin"), "{line}");
    }

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(
            Endpoint::from_path("/www/core-service/rest/LoginService/login"),
            Some(Endpoint::Login)
        );
        assert_eq!(
            Endpoint::from_path("/www/manager-service/rest/CaseService/getCaseEventIDs/"),
            Some(Endpoint::GetCaseEventIds)
        );
        assert_eq!(
            Endpoint::from_path("/www/manager-service/rest/CaseService/login"),
            None
        );
        assert_eq!(Endpoint::from_path("/"), None);
    }
}
