//! The sync loop: live stream items -> `stream_core::ledger` -> coalesced, batched Active List
//! writes -> the stream position, saved only once ESM acknowledged every write it covers.
//!
//! INTERFACE CONTRACT (skeleton): the signatures below are what `cli` builds on; the engine's
//! owner may add to them but keeps them compatible.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connector_runtime::platform::{ConnectorState, SharedState};
use connector_runtime::schedule::Shutdown;
use esm_client::active_lists::ActiveLists;
use opencti_client::stream::{StreamItem, StreamPosition};
use stream_core::policy::Policy;

use crate::metrics::StreamMetrics;

/// How the engine writes and when.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `ARCSIGHT_ACTIVE_LIST_ID`.
    pub list_id: String,
    /// `ARCSIGHT_VALUE_COLUMN`.
    pub value_column: String,
    /// Which indicators and values go in the list.
    pub policy: Policy,
    /// Longest a change waits before it is written (the first pending change starts the clock).
    pub flush_delay: Duration,
    /// Most pending changes before a flush starts at once.
    pub max_pending: usize,
    /// Reconciliation against `getEntries` besides the one at start; `None`: at start only.
    pub reconcile_period: Option<Duration>,
    /// Where the ledger snapshot is kept between runs; `None`: every start is a full resync.
    pub ledger_path: Option<PathBuf>,
    /// First and longest wait between two attempts of a failed write.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// What feeds the engine: the live stream in production, a script in tests.
pub trait Source: Send {
    /// The next item; `None` once the source is shut down.
    fn recv(&mut self) -> impl Future<Output = Option<StreamItem>> + Send;
    /// Follows the stream again from `position` (a full resync restarts from the beginning).
    fn restart(&mut self, position: StreamPosition) -> impl Future<Output = ()> + Send;
}

/// Where the position is saved: the platform, through the runtime's one state writer.
pub trait PositionStore: Send + Sync {
    /// Sends the shared state now; `Ok(true)` when the platform reports an operator's reset
    /// (the shared state then already holds the empty state).
    fn save(&self) -> impl Future<Output = Result<bool, String>> + Send;
}

/// The connector's state in the platform: pycti's keys (`start_from`, `recover_until`), so a
/// Python deployment is taken over without a replay, and any other key kept as found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamState {
    pub position: Option<StreamPosition>,
    /// Keys we do not own, written back unchanged.
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ConnectorState for StreamState {
    const RESET_NOTICE: &'static str = "the connector's state was reset in the platform: the list is resynchronised from the start of the stream";

    fn from_platform(text: Option<&str>) -> Self {
        let value = text
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .unwrap_or(serde_json::Value::Null);
        let position = StreamPosition::from_state(&value);
        let mut other = match value {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        for k in ["start_from", "recover_until", "connectorLastEventId"] {
            other.remove(k);
        }
        StreamState { position, other }
    }

    fn to_platform(&self) -> String {
        let mut value = serde_json::Value::Object(self.other.clone());
        if let Some(p) = &self.position {
            p.write_to(&mut value);
        }
        value.to_string()
    }
}

/// Why the engine stopped (anything transient is waited out inside it, never returned).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Fatal(String),
}

/// Runs until `shutdown`: reads `source`, keeps the list exact, saves the position.
pub async fn run<S: Source, P: PositionStore>(
    cfg: EngineConfig,
    source: S,
    lists: ActiveLists,
    state: Arc<SharedState<StreamState>>,
    store: P,
    metrics: StreamMetrics,
    shutdown: Shutdown,
) -> Result<(), EngineError> {
    let _ = (cfg, source, lists, state, store, metrics, shutdown);
    Err(EngineError::Fatal("not built yet".into()))
}
