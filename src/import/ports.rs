//! The run's ports: where cases come from ([`CaseSource`]), where works and the state go
//! ([`Tracker`]), and the state the run, the pinger and the final save share. The run and the
//! verification both use them; `adapters` wires them to the real parts.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::Value;

use super::state::State;
use crate::esm::model::EventId;
use crate::esm::{EsmError, EventsFetch};
use crate::opencti::{OpenCtiError, WorkFate};

/// Where the ESM data comes from: the real client, or anything shaped like it.
#[allow(async_fn_in_trait)]
pub(crate) trait CaseSource {
    async fn login(&self) -> Result<(), EsmError>;
    async fn logout(&self);
    async fn find_all_ids(&self) -> Result<Vec<String>, EsmError>;
    /// Per id, the raw case or why it could not be read.
    async fn get_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, EsmError>)>;
    /// Events found, and the ids whose fetch failed (with why).
    async fn get_events(&self, ids: &[EventId]) -> EventsFetch;
}

pub(crate) use connector_runtime::platform::Saved;

/// The platform's work tracking and state persistence.
#[allow(async_fn_in_trait)]
pub(crate) trait Tracker {
    async fn work_add(&self, friendly_name: &str) -> Result<Option<String>, TrackerError>;
    /// Adds `n` expectations to the work; a negative `n` gives back expectations of messages
    /// that were never confirmed.
    async fn add_expectations(&self, work_id: &str, n: i64) -> Result<(), TrackerError>;
    /// Reports one expectation processed (the run's sentinel), in error when `error` is set.
    async fn report_expectation(&self, work_id: &str, error: Option<&str>);
    async fn work_done(&self, work_id: &str, message: &str, in_error: bool);
    /// Persists the latest state. The one writer: the snapshot is taken once it is this
    /// save's turn, so no save or ping ever lands an older state after a newer one.
    async fn save_state(&self, state: &SharedState) -> Result<Saved, TrackerError>;
    /// What the platform made of a work; `None` when this tracker cannot tell (no platform).
    async fn work_fate(&self, _work_id: &str) -> Result<Option<WorkFate>, TrackerError> {
        Ok(None)
    }
    /// Which of these case-incident standard ids the platform holds; `None` when this
    /// tracker cannot tell (no platform, or bundles do not go to it).
    async fn existing_case_incidents(
        &self,
        _standard_ids: &[String],
    ) -> Result<Option<HashSet<String>>, TrackerError> {
        Ok(None)
    }
}

/// The state shared by the run, the pinger and the final save: the runtime's, over the ledger.
pub(crate) type SharedState = connector_runtime::platform::SharedState<State>;

/// Why a tracker did not take a work or a state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrackerError {
    #[error(transparent)]
    Platform(#[from] OpenCtiError),
    /// The offline state file could not be written.
    #[error("{}: {source}", path.display())]
    StateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
