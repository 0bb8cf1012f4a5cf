//! The OpenCTI platform's GraphQL API: health, registration, ping (state), works, bundle push
//! and the queue size used for back-pressure.
//!
//! Shared by the connectors of the workspace. Knows nothing of ESM or of how bundles travel:
//! the import connector's delivery uses the
//! [`MqConnection`] returned by [`OpenCtiClient::register`].

mod client;
pub mod documents;
mod error;
pub mod stream;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

pub use client::OpenCtiClient;
pub use documents::DOCUMENTS;
pub use error::{GraphQlError, OpenCtiError, TransportKind};

// The shared peer helpers, at the paths the modules use.
use peer_http::{http, redact, tls};

/// The platform request timeout when the settings give none: long enough for a big
/// `stixBundlePush`, short enough that a dead platform does not hang a run forever.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How often a connector pings the platform (pycti pings every 40 s; the platform shows a
/// connector inactive when its pings stop).
pub const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(40);

/// How to reach the platform.
#[derive(Clone)]
pub struct OpenCtiConfig {
    pub url: url::Url,
    pub token: SecretString,
    pub ssl_verify: bool,
    /// PEM bundles of CA certificates trusted besides the bundled roots and the OS store.
    pub ca_files: Vec<std::path::PathBuf>,
    pub custom_headers: Vec<(String, String)>,
    pub timeout: std::time::Duration,
    /// Largest answer body read, in bytes (`OPENCTI_MAX_RESPONSE_MB`).
    pub max_response_bytes: u64,
}

impl std::fmt::Debug for OpenCtiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCtiConfig")
            .field("url", &self.url.as_str())
            .field("token", &self.token)
            .field("ssl_verify", &self.ssl_verify)
            .field("ca_files", &self.ca_files)
            .field("custom_headers", &header_names(&self.custom_headers))
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// `name: [hidden]` for each header: what a Debug rendering may show of custom headers (they
/// may carry credentials, such as an access proxy's client secret).
pub fn header_names(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .map(|(name, _)| format!("{name}: [hidden]"))
        .collect()
}

/// What `registerConnector` declares. `auto`, `only_contextual` and `playbook_compatible` are
/// always false (neither connector of the workspace is enrichment nor playbook-driven).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorRegistration {
    pub id: String,
    pub name: String,
    pub connector_type: ConnectorType,
    pub scope: Vec<String>,
}

/// The platform's `ConnectorType` of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorType {
    /// Pulls data from a source into the platform (the import connector).
    ExternalImport,
    /// Follows a live stream of the platform (the stream connector).
    Stream,
}

impl ConnectorType {
    /// The schema's enum value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorType::ExternalImport => "EXTERNAL_IMPORT",
            ConnectorType::Stream => "STREAM",
        }
    }
}

/// What the connector keeps from `registerConnector`.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The applicant id put in every AMQP message.
    pub connector_user_id: String,
    /// The persisted state (JSON text), `None` when the platform has none.
    pub connector_state: Option<String>,
    /// The platform's mark of the state's last reset (`connector_state_timestamp`): a ping
    /// that answers another one saw a reset.
    pub state_timestamp: Option<String>,
    pub mq: MqConnection,
}

/// Where to publish bundles: `config.connection` and `config.push_*` of the registration.
#[derive(Debug, Clone)]
pub struct MqConnection {
    pub host: String,
    pub port: u16,
    pub vhost: String,
    pub use_ssl: bool,
    pub user: String,
    pub pass: SecretString,
    pub push_exchange: String,
    pub push_routing: String,
}

/// What the operator says of the broker (`MQ_*`), field by field; each overrides the matching
/// field of what `registerConnector` returns.
#[derive(Debug, Clone, Default)]
pub struct MqOverrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub vhost: Option<String>,
    pub use_ssl: Option<bool>,
    pub user: Option<String>,
    pub pass: Option<SecretString>,
}

impl MqConnection {
    /// `MQ_*` settings win over what the platform announced (deployments behind NAT).
    pub fn apply_overrides(&mut self, o: &MqOverrides) {
        if let Some(h) = &o.host {
            self.host.clone_from(h);
        }
        if let Some(p) = o.port {
            self.port = p;
        }
        if let Some(v) = &o.vhost {
            self.vhost.clone_from(v);
        }
        if let Some(s) = o.use_ssl {
            self.use_ssl = s;
        }
        if let Some(u) = &o.user {
            self.user.clone_from(u);
        }
        if let Some(p) = &o.pass {
            self.pass = p.clone();
        }
    }
}

/// `connectorInfo` of a ping, as pycti reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorInfo {
    pub run_and_terminate: bool,
    pub buffering: bool,
    /// MB.
    pub queue_threshold: f64,
    pub queue_messages_size: f64,
    #[serde(serialize_with = "ser_datetime")]
    pub next_run_datetime: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser_datetime")]
    pub last_run_datetime: Option<DateTime<Utc>>,
}

/// `%Y-%m-%dT%H:%M:%SZ`, the format pycti sends.
fn ser_datetime<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        None => s.serialize_none(),
    }
}

/// What a ping answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingAnswer {
    /// The platform's mark of the state's last reset (`connector_state_timestamp`): it
    /// differs from the one seen before when an operator reset the state meanwhile.
    pub state_timestamp: Option<String>,
}

/// What the answer of `registerConnector`, the one answer that carries the state, may hold
/// beyond `OPENCTI_MAX_RESPONSE_MB`: 64 MiB, a state of 4 million delivered cases (16
/// characters a case). The platform takes no request larger than its
/// `app:max_payload_body_size`, 50 MiB by default, so no ping can store a state that does not
/// fit: every state a platform with default limits holds is read back at start. It is the
/// platform's own echo of what we stored, but still a peer's answer: the bound is finite.
pub(crate) const STATE_ANSWER_ALLOWANCE: u64 = 64 * 1024 * 1024;

/// The platform's view of the connector's queue, for back-pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDetails {
    pub messages_number: u64,
    /// Bytes.
    pub messages_size: u64,
}

/// What the platform made of a work so far (`work(id)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkFate {
    /// The work is gone: its workers dropped (acked and discarded) whatever of it was still
    /// queued, as "work not alive".
    Deleted,
    /// Still waiting or in progress: ask again later.
    Pending,
    /// Complete (or timed out), with the errors the workers reported (imports that failed
    /// after their retries); the connector's own reports (source `connector`) are left out.
    Settled { errors: Vec<String> },
}
