//! The run's ports wired to the real parts: the ESM client, the platform, the deliveries.

use serde_json::Value;
use tracing::warn;

use super::ports::{CaseSource, Saved, SharedState, Tracker, TrackerError};
use super::state::State;
use crate::esm::model::EventId;
use crate::esm::{EsmClient, EsmError, EventsFetch};
use crate::opencti::{ConnectorInfo, OpenCtiClient, WorkFate};
use connector_runtime::platform::StateWriter;

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
pub(crate) struct PlatformTracker {
    /// The platform's client, the connector's id, what a ping reports, and the one writer of
    /// the state (the runtime's).
    pub(crate) platform: std::sync::Arc<StateWriter>,
    /// Whether runs are tracked as works: only when bundles go to the platform's queue
    /// (`CONNECTOR_SEND_TO_QUEUE`), as pycti does.
    pub(crate) works: bool,
}

/// Attempts at `toProcessed`: it is what completes a multi-part work.
const TO_PROCESSED_ATTEMPTS: u32 = 3;

impl PlatformTracker {
    /// `state_timestamp` is the reset mark of the registration, the one that goes with the
    /// state the connector started from.
    pub(crate) fn new(
        client: OpenCtiClient,
        connector_id: String,
        works: bool,
        info: ConnectorInfo,
        state_timestamp: Option<String>,
    ) -> Self {
        PlatformTracker {
            platform: std::sync::Arc::new(StateWriter::new(
                client,
                connector_id,
                info,
                state_timestamp,
            )),
            works,
        }
    }
}

impl Tracker for PlatformTracker {
    async fn work_add(&self, friendly_name: &str) -> Result<Option<String>, TrackerError> {
        if !self.works {
            return Ok(None);
        }
        Ok(Some(
            self.platform
                .client
                .work_add(&self.platform.connector_id, friendly_name)
                .await?,
        ))
    }

    async fn add_expectations(&self, work_id: &str, n: i64) -> Result<(), TrackerError> {
        Ok(self
            .platform
            .client
            .work_add_expectations(work_id, n)
            .await?)
    }

    async fn report_expectation(&self, work_id: &str, error: Option<&str>) {
        if let Err(e) = self
            .platform
            .client
            .work_report_expectation(work_id, error)
            .await
        {
            warn!(error = %e, "reporting the run's sentinel expectation failed");
        }
    }

    async fn work_done(&self, work_id: &str, message: &str, in_error: bool) {
        let mut wait = std::time::Duration::from_millis(500);
        for attempt in 1..=TO_PROCESSED_ATTEMPTS {
            match self
                .platform
                .client
                .work_to_processed(work_id, message, in_error)
                .await
            {
                Ok(()) => return,
                Err(e) if attempt < TO_PROCESSED_ATTEMPTS => {
                    warn!(error = %e, attempt, "closing the work failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => warn!(error = %e, "closing the work failed"),
            }
        }
    }

    async fn save_state(&self, state: &SharedState) -> Result<Saved, TrackerError> {
        Ok(self.platform.ping(state).await?)
    }

    async fn work_fate(&self, work_id: &str) -> Result<Option<WorkFate>, TrackerError> {
        Ok(Some(self.platform.client.work_fate(work_id).await?))
    }

    async fn existing_case_incidents(
        &self,
        standard_ids: &[String],
    ) -> Result<Option<std::collections::HashSet<String>>, TrackerError> {
        // Without works the bundles do not go to the platform (directory only): nothing
        // there to verify.
        if !self.works {
            return Ok(None);
        }
        Ok(Some(
            self.platform
                .client
                .existing_case_incidents(standard_ids)
                .await?,
        ))
    }
}

/// No platform (offline mode, the demo): no works; the state is kept in a JSON file (written to
/// a temporary name then renamed, so a crash never leaves half a state) or only in memory.
pub(crate) struct LocalTracker {
    path: Option<std::path::PathBuf>,
    writer: tokio::sync::Mutex<()>,
}

impl LocalTracker {
    /// State saved in `path`.
    pub(crate) fn file(path: std::path::PathBuf) -> LocalTracker {
        LocalTracker {
            path: Some(path),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// State kept only in memory (the demo).
    #[cfg(feature = "demo")]
    pub(crate) fn in_memory() -> LocalTracker {
        LocalTracker {
            path: None,
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// The saved state; a missing or unreadable file means "import everything" (ids are
    /// deterministic, so nothing is duplicated downstream).
    pub(crate) fn load(&self) -> State {
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
    async fn add_expectations(&self, _work_id: &str, _n: i64) -> Result<(), TrackerError> {
        Ok(())
    }
    async fn report_expectation(&self, _work_id: &str, _error: Option<&str>) {}
    async fn work_done(&self, _work_id: &str, _message: &str, _in_error: bool) {}
    async fn save_state(&self, state: &SharedState) -> Result<Saved, TrackerError> {
        let Some(path) = self.path.clone() else {
            return Ok(Saved::Kept);
        };
        // One writer: the file is written in turn, each time with the latest state.
        let _turn = self.writer.lock().await;
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
        Ok(Saved::Kept)
    }
}
