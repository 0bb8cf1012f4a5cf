//! The acked position and its saving.
//!
//! The position the platform keeps (pycti's `start_from`) is the *acked* one: the id of the last
//! stream item applied when ESM had acknowledged every write of every item up to it. A replay
//! from there is idempotent (adding an existing entry updates it, deleting a missing one does
//! nothing), so a crash at any point loses nothing.
//!
//! Each ack goes into the shared state and wakes the saver, which sends it through the
//! [`PositionStore`] at most once per [`SAVE_INTERVAL`] (pycti only sends it with the 40 s
//! ping); the final save at shutdown is the engine's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::PositionStore;
use crate::metrics::StreamMetrics;

/// Debounce of the saves (and the wait before retrying a failed one).
pub(crate) const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The background saver. Dropping it stops it.
pub(crate) struct Saver {
    dirty: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Saver {
    /// `reset` is notified when a save finds that an operator reset the state.
    pub(crate) fn spawn<P: PositionStore + 'static>(
        store: Arc<P>,
        reset: Arc<Notify>,
        metrics: StreamMetrics,
    ) -> Saver {
        let dirty = Arc::new(Notify::new());
        let d = dirty.clone();
        let task = tokio::spawn(async move {
            loop {
                d.notified().await;
                metrics.position_saves.inc();
                match store.save().await {
                    Ok(true) => reset.notify_one(),
                    Ok(false) => debug!("stream position saved"),
                    Err(e) => {
                        metrics.position_save_errors.inc();
                        warn!(error = %e, "cannot save the stream position: retrying");
                        d.notify_one();
                    }
                }
                tokio::time::sleep(SAVE_INTERVAL).await;
            }
        });
        Saver { dirty, task }
    }

    /// The state changed: save it soon.
    pub(crate) fn mark(&self) {
        self.dirty.notify_one();
    }

    /// Stops the saver (a save in flight is abandoned: the final save follows).
    pub(crate) fn stop(self) {}
}
