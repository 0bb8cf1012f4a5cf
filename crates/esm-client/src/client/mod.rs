//! The ArcSight ESM Service Layer client.
//!
//! Every call is a POST whose body carries the credentials or the token, so neither ever lands
//! in a URL (and so in a proxy's access log). Transient failures are retried with backoff; a
//! refused token triggers one fresh login; batch calls degrade to per-id calls when the ESM
//! lacks them or when one bad id spoils a batch, so one broken case never costs the others.
//!
//! The client is cut by role, each module an `impl EsmClient` block: `session` (login, re-login,
//! logout, the dialect), `transport` (one call with its retries and the classification of
//! answers) and, in `services`, what the connectors ask of ESM (cases, events, Active Lists),
//! every authenticated call through the transport's one path (`request`).

use crate::setting_names::SettingNames;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Semaphore;
use url::Url;

use super::decode::ApiDialect;
use super::error::EsmError;
use super::retry::{Jitter, RetryPolicy};
use peer_http::lock;

pub(crate) mod services;
mod session;
mod transport;

pub use services::events::EventsFetch;
use session::Session;

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
    /// The connector's names of the settings the client's messages point an operator to.
    pub setting_names: SettingNames,
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
            setting_names: SettingNames::ARCSIGHT_INCIDENTS,
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

pub(crate) struct Inner {
    http: reqwest::Client,
    pub(crate) cfg: EsmConfig,
    policy: RetryPolicy,
    session: tokio::sync::Mutex<Option<Session>>,
    generation: Mutex<u64>,
    /// Set once the ESM showed it lacks `getResourcesByIds`; never tried again afterwards.
    batch_unsupported: AtomicBool,
    /// Shared by every fetch, so concurrent `get_cases` and `get_security_events` together stay
    /// within the configured load on the ESM.
    pub(crate) permits: Arc<Semaphore>,
    jitter: Mutex<Jitter>,
    stats: Mutex<EsmStats>,
}

/// The ESM client. Cheap to clone; clones share the session, the counters and the limits.
#[derive(Clone)]
pub struct EsmClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for EsmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsmClient")
            .field("host", &self.inner.cfg.base_url.host_str())
            .finish_non_exhaustive()
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
                "TLS certificate verification of ESM is disabled ({}=false)",
                cfg.setting_names.ssl_verify
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

    /// A snapshot of the counters.
    pub fn stats(&self) -> EsmStats {
        lock(&self.inner.stats).clone()
    }
}
