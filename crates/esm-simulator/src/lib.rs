//! A faithful fake ArcSight ESM for tests, the demo and benchmarks (never production paths).
//!
//! It serves the Service Layer REST calls the connector uses, in the prefixed (ESM <= 7.8) or
//! plain (7.9+) dialect, with ESM's quirks (scalar one-element lists, `""` for nothing, 64-bit
//! ids, null sentinels, Tomcat HTML error pages), a deterministic data set from a seed, fault
//! knobs, run-time data changes (library API and `/sim-admin/...`), per-endpoint counters and a
//! request log without secrets.
//!
//! Choices where real ESM behaviour is unknown or impractical to copy:
//! - `getResourcesByIds` with some unknown ids answers the known cases only (an empty answer when
//!   none is known); with [`SimConfig::batch_api`] off it answers a Tomcat 404 page, as an ESM
//!   without that operation does, so clients fall back to `getResourceById`.
//! - An unknown or expired token gets an HTTP 500 Tomcat page naming `AuthenticationException`;
//!   a missing token gets 401.
//! - Without `alt=json` (or an `Accept` asking for JSON) the answer is an XML stub without data,
//!   like a real ESM answering XML to a client that cannot read it.
//! - Active Lists (`ActiveListService`: `findAllIds`, `getResourceById`, `getEntries`,
//!   `addEntries`, `deleteEntries`, `clearEntries`; [`SimConfig::active_lists`],
//!   [`Simulator::create_active_list`] and the `active_list_*` methods): requests are read in
//!   either dialect (POST JSON, or GET with `resourceId`/`authToken` for reads) and answered in
//!   the configured one. Entries travel as `entryList: {columns: [...], entryList: [{entry:
//!   [...]}]}`; request columns may come in any order and map onto the list's fields by name (an
//!   unknown column is a 500 page). The first field is the key: an add of an existing key
//!   replaces the row and restarts its TTL; keys are case-sensitive. A new key at capacity
//!   evicts a random entry (seeded). TTLs run on the wall clock plus
//!   [`Simulator::advance_clock`]. Writes answer 204. An unknown list id is a 500 page naming
//!   `ResourceNotFoundException`. `getResourceById` serves `fieldNames`, `keyFields`,
//!   `entryCount`, `capacity` and `timeToLive` (seconds, 0 = none): only `fieldNames` is
//!   attested by a public client, the others are the simulator's. The Active List fault knobs
//!   are [`Faults::outage`], [`Faults::write_error_every`] and [`Faults::write_delay`]; the
//!   other knobs (latency, 429, 503 ratio, token expiry, HTML 200, truncation, malformed JSON)
//!   apply to Active List calls as to the others. Counters are `activeList.<operation>`.
//! - Admin endpoints (`/sim-admin/touch?id=`, `add-events?id=&n=`, `add-cases?n=`, `delete?id=`,
//!   `counters`) need no token: the simulator listens on loopback by default.

mod active_list;
pub mod cli;
mod data;
mod server;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use active_list::ActiveListConfig;
pub use data::{ABOVE_F64_EXACT, DataSet, EPOCH_MS, dataset, esm_list};
use server::Shared;

/// The JSON key style of the simulated ESM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// ESM <= 7.8: keys prefixed by the service namespace (`log.`, `cas.`, `sev.`).
    #[default]
    Prefixed,
    /// ESM 7.9+: no prefixes.
    Plain,
}

/// Fault injection. `Default` injects nothing; the random 503s are drawn from a generator seeded
/// by [`SimConfig::seed`], so a run with the same requests in the same order fails the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Delay before answering each ESM request.
    pub latency: Duration,
    /// Probability (0..=1) that a request gets a 503 instead of its answer.
    pub error_503_ratio: f64,
    /// Every Nth ESM request (counting all endpoints) gets a 429 with `Retry-After`.
    pub rate_limit_every: Option<u64>,
    /// The `Retry-After` seconds sent with a 429.
    pub retry_after_secs: u64,
    /// A token stops working after this many authenticated calls (login and logout not counted).
    pub token_max_uses: Option<u64>,
    /// Every Nth data answer that contains a backslash is sent with that backslash unescaped
    /// (invalid JSON, as ESM sends Windows paths); answers without one are not counted.
    pub malformed_every: Option<u64>,
    /// Every Nth data answer (findAllIds, getResourceById(s), getCaseEventIDs,
    /// getSecurityEvents) is replaced by a Tomcat error page with HTTP 200.
    pub html_200_every: Option<u64>,
    /// Every Nth data answer is cut in the middle (a proxy or a crashed ESM closing the body
    /// early), still with HTTP 200.
    pub truncate_every: Option<u64>,
    /// Every ESM call answers 503 while set (an outage window: set, then clear, with
    /// [`Simulator::set_faults`]).
    pub outage: bool,
    /// Every Nth Active List write (`addEntries`, `deleteEntries`, `clearEntries`) fails with an
    /// HTTP 500 error page and changes nothing.
    pub write_error_every: Option<u64>,
    /// Active List writes wait this long before being applied (a slow or hanging manager; a
    /// client that times out first has changed nothing).
    pub write_delay: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            error_503_ratio: 0.0,
            rate_limit_every: None,
            retry_after_secs: 1,
            token_max_uses: None,
            malformed_every: None,
            html_200_every: None,
            truncate_every: None,
            outage: false,
            write_error_every: None,
            write_delay: Duration::ZERO,
        }
    }
}

/// What to simulate and where to listen.
#[derive(Clone)]
pub struct SimConfig {
    pub cases: usize,
    /// Events of most cases; see [`dataset`] for the cases with none or one.
    pub events_per_case: usize,
    pub seed: u64,
    pub dialect: Dialect,
    /// Serve HTTPS with a fresh self-signed CA ([`Simulator::ca_pem`]).
    pub tls: bool,
    pub username: String,
    /// The one accepted password (a test credential; never logged, hidden from `Debug`).
    pub password: String,
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    pub faults: Faults,
    /// `false`: `getResourcesByIds` answers like an ESM without it (404 page).
    pub batch_api: bool,
    /// Active Lists served from the start (ActiveListService).
    pub active_lists: Vec<ActiveListConfig>,
}

/// One Active List call as the simulator saw it (after authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveListCall {
    /// `addEntries`, `deleteEntries`, `getEntries`, `getResourceById`, `clearEntries`,
    /// `findAllIds`.
    pub operation: String,
    /// The `resourceId` (empty for `findAllIds`).
    pub list_id: String,
    /// Entries the request carried (writes) or the answer held (`getEntries`).
    pub entries: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            cases: 10,
            events_per_case: 3,
            seed: 42,
            dialect: Dialect::Prefixed,
            tls: false,
            username: "admin".into(),
            password: "password".into(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            faults: Faults::default(),
            batch_api: true,
            active_lists: Vec::new(),
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("cases", &self.cases)
            .field("events_per_case", &self.events_per_case)
            .field("seed", &self.seed)
            .field("dialect", &self.dialect)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("faults", &self.faults)
            .field("batch_api", &self.batch_api)
            .field("active_lists", &self.active_lists)
            .finish()
    }
}

/// Why the simulator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("simulator: cannot build the TLS certificate: {0}")]
    Certificate(String),
    #[error("simulator: invalid setting {name}: {reason}")]
    Setting { name: &'static str, reason: String },
    #[error("simulator: {operation}: {source}")]
    Io {
        operation: &'static str,
        source: std::io::Error,
    },
}

impl SimError {
    /// A busy port may free up; every other failure repeats identically.
    pub fn is_transient(&self) -> bool {
        matches!(self, SimError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// A running simulator. Clones share the same server; [`Simulator::shutdown`] stops it.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    handle: Arc<server::ServerHandle>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("base_url", &self.handle.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Builds the data set, binds the port and serves in the background.
    pub async fn start(cfg: SimConfig) -> Result<Simulator, SimError> {
        if !(0.0..=1.0).contains(&cfg.faults.error_503_ratio) {
            return Err(SimError::Setting {
                name: "error_503_ratio",
                reason: "must be within 0..=1".into(),
            });
        }
        let shared = Arc::new(Shared::new(&cfg));
        let handle = server::spawn(Arc::clone(&shared), &cfg).await?;
        tracing::info!(base_url = %handle.base_url, cases = cfg.cases, dialect = ?cfg.dialect, tls = cfg.tls, "ESM simulator listening");
        Ok(Simulator {
            shared,
            handle: Arc::new(handle),
        })
    }

    /// `http(s)://IP:PORT`, without a trailing path.
    pub fn base_url(&self) -> url::Url {
        self.handle.base_url.clone()
    }

    /// The PEM of the CA that signed the server certificate, when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.handle.ca_pem.clone()
    }

    /// Replaces the fault knobs; requests already waiting keep the old latency.
    pub fn set_faults(&self, f: Faults) {
        self.shared.set_faults(f);
    }

    /// Requests per endpoint (`login`, `logout`, `findAllIds`, `getResourceById`,
    /// `getResourcesByIds`, `getCaseEventIDs`, `getSecurityEvents`, `activeList.<operation>`,
    /// `unknown`, `admin`) and injected faults (`fault.503`, `fault.429`, `fault.malformed`,
    /// `fault.html200`, `fault.truncated`, `fault.token_expired`, `fault.outage`,
    /// `fault.write_error`).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.shared.counters()
    }

    /// One line per request: method, path and query, with `password` and `authToken` values
    /// replaced; bodies are never logged. The oldest lines go past 100,000.
    pub fn request_log(&self) -> Vec<String> {
        self.shared.request_log()
    }

    /// The most ESM requests the simulator was answering at once: a client's real concurrency.
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight()
    }

    /// The tokens handed out so far (the last 10,000), for tests that look for leaks.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.issued_tokens()
    }

    /// Tokens currently valid: logins minus logouts and expired tokens.
    pub fn active_sessions(&self) -> usize {
        self.shared.active_sessions()
    }

    /// Gives a case a new, strictly greater `modifiedTimestamp`; `false` when unknown.
    pub fn touch_case(&self, id: &str) -> bool {
        self.shared.with_data(|d| d.touch_case(id))
    }

    /// Adds `n` events to a case (and touches it); `false` when unknown.
    pub fn add_events(&self, case_id: &str, n: usize) -> bool {
        self.shared.with_data(|d| d.add_events(case_id, n))
    }

    /// Links `n` new events to a case WITHOUT touching it (no `modificationCount` or time
    /// change), as some ESMs do; `false` when unknown.
    pub fn link_events_silently(&self, case_id: &str, n: usize) -> bool {
        self.shared
            .with_data(|d| d.link_events_silently(case_id, n))
    }

    /// Adds `n` cases; returns their ids.
    pub fn add_cases(&self, n: usize) -> Vec<String> {
        self.shared.with_data(|d| d.add_cases(n))
    }

    /// Adds a case with a chosen id and stamps (and one event); `false` when the id exists.
    pub fn add_case_with_id(
        &self,
        id: &str,
        created_ms: i64,
        modified_ms: i64,
        modification_count: u64,
    ) -> bool {
        self.shared
            .with_data(|d| d.add_case_with_id(id, created_ms, modified_ms, modification_count))
    }

    /// Sets a case's `modifiedTimestamp` to `ms` (any time: the future, long ago) as an edit
    /// does (its `modificationCount` goes up); `false` when unknown.
    pub fn set_case_modified(&self, id: &str, ms: i64) -> bool {
        self.shared.with_data(|d| d.set_case_modified(id, ms))
    }

    /// The next `findAllIds` lists only the first `n` ids (0: an empty listing), once.
    pub fn short_listing_once(&self, n: usize) {
        self.shared.knobs(|k| k.listing_limit_once = Some(n));
    }

    /// Creates `n` cases right after the next listing is computed: they miss that listing, as
    /// cases created while a long listing is in progress do.
    pub fn create_cases_after_next_listing(&self, n: usize) {
        self.shared.knobs(|k| k.create_after_listing = n);
    }

    /// Deletes `id` right after the next listing is computed: listed, then gone when read (ESM
    /// answers `InvalidResourceIDException`), as a case deleted while a listing runs.
    pub fn delete_case_after_next_listing(&self, id: &str) {
        self.shared
            .knobs(|k| k.delete_after_listing.push(id.to_owned()));
    }

    /// Every case batch (or single read) holding `id` fails with HTTP 500 until cleared.
    pub fn poison_case(&self, id: &str, on: bool) {
        self.shared.knobs(|k| {
            if on {
                k.poison_cases.insert(id.to_owned());
            } else {
                k.poison_cases.remove(id);
            }
        });
    }

    /// Every event batch holding `id` fails with HTTP 500 until cleared.
    pub fn poison_event(&self, id: i64, on: bool) {
        self.shared.knobs(|k| {
            if on {
                k.poison_events.insert(id);
            } else {
                k.poison_events.remove(&id);
            }
        });
    }

    /// Every Active List write carrying `value` is refused with an `IllegalArgumentException`
    /// page (a value ESM rejects for its content) until cleared; counter `fault.poison_value`.
    pub fn poison_active_list_value(&self, value: &str, on: bool) {
        self.shared.knobs(|k| {
            if on {
                k.poison_values.insert(value.to_owned());
            } else {
                k.poison_values.remove(value);
            }
        });
    }

    /// Leaves `id` out of every event answer (asked for, never returned) until cleared.
    pub fn hide_event(&self, id: i64, on: bool) {
        self.shared.knobs(|k| {
            if on {
                k.hidden_events.insert(id);
            } else {
                k.hidden_events.remove(&id);
            }
        });
    }

    /// Deletes a case; `false` when unknown.
    pub fn delete_case(&self, id: &str) -> bool {
        self.shared.with_data(|d| d.delete_case(id))
    }

    /// Every case id, in `findAllIds` order.
    pub fn case_ids(&self) -> Vec<String> {
        self.shared.read_data(|d| d.case_ids())
    }

    /// The case as `getResourceById` serves it (the object inside `return`).
    pub fn case_json(&self, id: &str) -> Option<serde_json::Value> {
        self.shared.read_data(|d| d.case_json(id))
    }

    /// A case's event ids as `getCaseEventIDs` serves them.
    pub fn case_event_ids(&self, id: &str) -> Option<Vec<i64>> {
        self.shared.read_data(|d| d.case_event_ids(id))
    }

    /// The known events among `ids` as `getSecurityEvents` serves them.
    pub fn events_json(&self, ids: &[i64]) -> Vec<serde_json::Value> {
        self.shared.read_data(|d| d.events_json(ids))
    }

    /// Creates (or replaces, emptied) an Active List.
    pub fn create_active_list(&self, cfg: ActiveListConfig) {
        self.shared.create_list(cfg);
    }

    /// A list's rows (fields in the list's order, sorted), after TTL expiry; `None` when unknown.
    pub fn active_list_entries(&self, id: &str) -> Option<Vec<Vec<String>>> {
        self.shared.with_list(id, |l| l.rows())
    }

    /// Adds rows (fields in the list's order) as an admin or a rule would: same upsert,
    /// eviction and TTL as `addEntries`; `false` when the list is unknown or a row's width is
    /// wrong.
    pub fn add_active_list_entries(&self, id: &str, rows: &[Vec<String>]) -> bool {
        let now = self.shared.now_ms();
        self.shared
            .with_list(id, |l| {
                if rows.iter().any(|r| r.len() != l.cfg.fields.len()) {
                    return false;
                }
                l.add(rows.to_vec(), now);
                true
            })
            .unwrap_or(false)
    }

    /// Removes the rows with these keys (first field); how many existed, `None` when unknown.
    pub fn remove_active_list_entries(&self, id: &str, keys: &[&str]) -> Option<usize> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.shared.with_list(id, |l| l.delete(&keys))
    }

    /// Entries removed at capacity so far; `None` when unknown.
    pub fn active_list_evictions(&self, id: &str) -> Option<u64> {
        self.shared.with_list(id, |l| l.evicted)
    }

    /// Moves the TTL clock forward (entries whose TTL passes expire).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance_clock(by);
    }

    /// Every authenticated Active List call, oldest first (the last 100,000).
    pub fn active_list_calls(&self) -> Vec<ActiveListCall> {
        self.shared.active_list_calls()
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for the server.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}
