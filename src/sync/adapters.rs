//! The run's ports wired to the real parts: the ESM client, the platform, the deliveries.

use std::sync::Mutex;

use serde_json::Value;
use tracing::warn;

use super::run::{CaseSource, Tracker, TrackerError};
use super::state::State;
use crate::esm::model::EventId;
use crate::esm::{EsmClient, EsmError, EventsFetch};
use crate::opencti::{ConnectorInfo, OpenCtiClient, OpenCtiError};
use crate::util::lock;

impl CaseSource for EsmClient {
    async fn login(&self) -> Result<(), EsmError> {
        EsmClient::login(self).await
    }

    async fn logout(&self) {
        if let Err(e) = EsmClient::logout(self).await {
            warn!(error = %e, "ESM logout failed");
        }
    }

    async fn find_all_ids(&self) -> Result<Vec<String>, EsmError> {
        EsmClient::find_all_ids(self).await
    }

    async fn get_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, EsmError>)> {
        EsmClient::get_cases(self, ids).await
    }

    async fn get_events(&self, ids: &[EventId]) -> EventsFetch {
        EsmClient::get_security_events(self, ids).await
    }
}

/// Works and state in the platform.
pub struct PlatformTracker {
    pub client: OpenCtiClient,
    pub connector_id: String,
    /// Whether runs are tracked as works: only when bundles go to the platform's queue
    /// (`CONNECTOR_SEND_TO_QUEUE`), as pycti does.
    pub works: bool,
    /// What a ping reports besides the state.
    pub info: Mutex<ConnectorInfo>,
}

impl PlatformTracker {
    /// Pings with `state`; returns the platform's state when it differs from what we sent (an
    /// operator reset it), so the caller adopts it.
    pub async fn ping(&self, state: &State) -> Result<Option<State>, OpenCtiError> {
        let text = state.to_platform();
        let info = lock(&self.info).clone();
        let answer = self
            .client
            .ping(&self.connector_id, Some(&text), &info)
            .await?;
        let platform = answer.connector_state.unwrap_or_default();
        if platform.trim() == text.trim() {
            Ok(None)
        } else {
            Ok(Some(State::from_platform(Some(&platform))))
        }
    }
}

impl Tracker for PlatformTracker {
    async fn work_add(&self, friendly_name: &str) -> Result<Option<String>, TrackerError> {
        if !self.works {
            return Ok(None);
        }
        Ok(Some(
            self.client
                .work_add(&self.connector_id, friendly_name)
                .await?,
        ))
    }

    async fn add_expectations(&self, work_id: &str, n: u64) -> Result<(), TrackerError> {
        Ok(self.client.work_add_expectations(work_id, n).await?)
    }

    async fn work_done(&self, work_id: &str, message: &str, in_error: bool) {
        if let Err(e) = self
            .client
            .work_to_processed(work_id, message, in_error)
            .await
        {
            warn!(error = %e, "closing the work failed");
        }
    }

    async fn save_state(&self, state: &State) -> Result<Option<State>, TrackerError> {
        Ok(self.ping(state).await?)
    }
}

/// No platform (offline mode, the demo): no works; the state is kept in a JSON file (written to
/// a temporary name then renamed, so a crash never leaves half a state) or only in memory.
pub struct LocalTracker {
    path: Option<std::path::PathBuf>,
}

impl LocalTracker {
    /// State saved in `path`.
    pub fn file(path: std::path::PathBuf) -> LocalTracker {
        LocalTracker { path: Some(path) }
    }

    /// State kept only in memory (the demo).
    pub fn in_memory() -> LocalTracker {
        LocalTracker { path: None }
    }

    /// The saved state; a missing or unreadable file means "import everything" (ids are
    /// deterministic, so nothing is duplicated downstream).
    pub fn load(&self) -> State {
        let Some(path) = &self.path else {
            return State::default();
        };
        match std::fs::read_to_string(path) {
            Ok(text) => State::from_platform(Some(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "the state file is unreadable; importing everything");
                State::default()
            }
        }
    }
}

impl Tracker for LocalTracker {
    async fn work_add(&self, _friendly_name: &str) -> Result<Option<String>, TrackerError> {
        Ok(None)
    }
    async fn add_expectations(&self, _work_id: &str, _n: u64) -> Result<(), TrackerError> {
        Ok(())
    }
    async fn work_done(&self, _work_id: &str, _message: &str, _in_error: bool) {}
    async fn save_state(&self, state: &State) -> Result<Option<State>, TrackerError> {
        let Some(path) = self.path.clone() else {
            return Ok(None);
        };
        let text = state.to_platform();
        let target = path.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = target.with_extension("json.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &target)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|source| TrackerError::StateFile { path, source })?;
        Ok(None)
    }
}
