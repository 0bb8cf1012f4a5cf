//! The HTTP side: routing, the shared state, answers in the configured dialect and the running
//! server. Submodules by role: `auth` (login, logout, tokens), `faults` (the fault gate and the
//! answer corrupters), `cases` (the case and event services), `admin` (`/sim-admin/...`),
//! `params` (parameters in every form ESM accepts, the redacted request log) and `pages` (error
//! pages and other bodies).
//!
//! Helpers return `Result<_, Response>`: the error *is* the answer to send (an error page, a
//! 401), so handlers can use `?`. Boxing it would only add an allocation per error answer.
#![allow(clippy::result_large_err)]

mod active_lists;
mod admin;
mod auth;
mod cases;
mod faults;
mod pages;
mod params;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::active_list::ActiveList;
use super::data::{DataSet, Rng, dataset, esm_list};
use super::{ActiveListCall, ActiveListConfig, Dialect, Faults, SimConfig, SimError, tls};
use faults::Gate;
use pages::{page, xml_answer};
use params::{Params, log_line};

/// Prefix of the simulator's own control endpoints (not part of ESM).
pub(super) const ADMIN_PREFIX: &str = "/sim-admin/";
/// Request log lines kept; older ones are dropped so long benchmarks stay bounded.
const LOG_CAPACITY: usize = 100_000;
/// Upper bound on what one admin call may create, so a typo cannot exhaust memory.
const ADMIN_MAX_CREATE: usize = 1_000_000;

const LOGIN_PATH: &str = "/www/core-service/rest/LoginService/";
const CASE_PATH: &str = "/www/manager-service/rest/CaseService/";
const EVENT_PATH: &str = "/www/manager-service/rest/SecurityEventService/";
const ACT_PATH: &str = "/www/manager-service/rest/ActiveListService/";

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
    ActFindAllIds,
    ActGetResourceById,
    ActGetEntries,
    ActAddEntries,
    ActDeleteEntries,
    ActClearEntries,
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
            (ACT_PATH, "findAllIds") => Endpoint::ActFindAllIds,
            (ACT_PATH, "getResourceById") => Endpoint::ActGetResourceById,
            (ACT_PATH, "getEntries") => Endpoint::ActGetEntries,
            (ACT_PATH, "addEntries") => Endpoint::ActAddEntries,
            (ACT_PATH, "deleteEntries") => Endpoint::ActDeleteEntries,
            (ACT_PATH, "clearEntries") => Endpoint::ActClearEntries,
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
            Endpoint::ActFindAllIds => "findAllIds",
            Endpoint::ActGetResourceById => "getResourceById",
            Endpoint::ActGetEntries => "getEntries",
            Endpoint::ActAddEntries => "addEntries",
            Endpoint::ActDeleteEntries => "deleteEntries",
            Endpoint::ActClearEntries => "clearEntries",
        }
    }

    /// The counter name: the operation, under `activeList.` for the ActiveListService (its
    /// `findAllIds` and `getResourceById` are not the case service's).
    fn counter(self) -> String {
        if self.is_active_list() {
            format!("activeList.{}", self.name())
        } else {
            self.name().to_owned()
        }
    }

    fn is_active_list(self) -> bool {
        matches!(
            self,
            Endpoint::ActFindAllIds
                | Endpoint::ActGetResourceById
                | Endpoint::ActGetEntries
                | Endpoint::ActAddEntries
                | Endpoint::ActDeleteEntries
                | Endpoint::ActClearEntries
        )
    }

    /// The calls that change a list (the write fault knobs count these).
    fn is_write(self) -> bool {
        matches!(
            self,
            Endpoint::ActAddEntries | Endpoint::ActDeleteEntries | Endpoint::ActClearEntries
        )
    }

    /// The service namespace of ESM <= 7.8.
    fn prefix(self) -> &'static str {
        match self {
            Endpoint::Login | Endpoint::Logout => "log.",
            Endpoint::GetSecurityEvents => "sev.",
            e if e.is_active_list() => "act.",
            _ => "cas.",
        }
    }
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
    /// Active Lists by resource id.
    lists: Mutex<BTreeMap<String, ActiveList>>,
    /// The Active List calls, with the entries each carried.
    act_calls: Mutex<VecDeque<ActiveListCall>>,
    /// Active List writes so far (for `Faults::write_error_every`).
    act_writes: std::sync::atomic::AtomicU64,
    /// Added to the wall clock for TTLs, so tests move time forward.
    clock_offset_ms: std::sync::atomic::AtomicI64,
    seed: u64,
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
    /// An Active List write carrying one of these values is refused for its content (an
    /// `IllegalArgumentException` page) and changes nothing.
    pub poison_values: std::collections::HashSet<String>,
}

/// How many issued tokens [`Shared::issued_tokens`] remembers.
const MAX_ISSUED_KEPT: usize = 10_000;

/// Locks even after a panic elsewhere: the simulator's state stays usable for the test's asserts.
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
            lists: Mutex::new(
                cfg.active_lists
                    .iter()
                    .map(|l| (l.id.clone(), ActiveList::new(l.clone(), cfg.seed)))
                    .collect(),
            ),
            act_calls: Mutex::new(VecDeque::new()),
            act_writes: std::sync::atomic::AtomicU64::new(0),
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            seed: cfg.seed,
            gate: Mutex::new(Gate::new(cfg.seed)),
        }
    }

    /// The clock TTLs are measured on: the wall clock plus [`Shared::advance_clock`].
    pub(super) fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
            + self
                .clock_offset_ms
                .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn advance_clock(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.clock_offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn with_list<R>(&self, id: &str, f: impl FnOnce(&mut ActiveList) -> R) -> Option<R> {
        let now = self.now_ms();
        let mut lists = lock(&self.lists);
        let list = lists.get_mut(id)?;
        list.expire(now);
        Some(f(list))
    }

    pub(super) fn create_list(&self, cfg: ActiveListConfig) {
        let list = ActiveList::new(cfg, self.seed);
        lock(&self.lists).insert(list.cfg.id.clone(), list);
    }

    pub(super) fn active_list_calls(&self) -> Vec<ActiveListCall> {
        lock(&self.act_calls).iter().cloned().collect()
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
    sh.bump(&ep.counter());
    if method != Method::GET && method != Method::POST {
        return page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let _in_flight = InFlight::enter(&sh);
    let faults = sh.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.outage {
        sh.bump("fault.outage");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service temporarily unavailable",
        );
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
            if ep.is_active_list() {
                return sh.active_list_call(ep, &params, &body, &faults, json).await;
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

impl Shared {
    /// An authenticated Active List call, with the write fault knobs applied.
    async fn active_list_call(
        &self,
        ep: Endpoint,
        params: &Params,
        body: &[u8],
        faults: &Faults,
        json: bool,
    ) -> Response {
        if ep.is_write() {
            let n = self
                .act_writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            if !faults.write_delay.is_zero() {
                // Before applying: a client that gives up has changed nothing.
                tokio::time::sleep(faults.write_delay).await;
            }
            if faults
                .write_error_every
                .is_some_and(|e| e > 0 && n % e == 0)
            {
                self.bump("fault.write_error");
                return pages::server_error(
                    "java.lang.IllegalStateException: Active List write failed",
                );
            }
        }
        match self.active_list_answer(ep, params, body) {
            Err(resp) => resp,
            Ok(None) => StatusCode::NO_CONTENT.into_response(),
            Ok(Some(_)) if !json => xml_answer(ep, ""),
            Ok(Some(answer)) => self.finish_data(faults, answer),
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
