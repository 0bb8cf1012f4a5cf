//! The run's ports wired to the real parts: the ESM client, the platform, the deliveries.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use serde_json::Value;
use tracing::warn;

use super::run::{CaseSource, Sink, Tracker};
use super::state::State;
use crate::delivery::{AmqpDelivery, AmqpOptions, Delivery};
use crate::esm::EsmClient;
use crate::esm::model::EventId;
use crate::opencti::{ConnectorInfo, MqConnection, OpenCtiClient};
use crate::stix::Bundle;
use crate::util::lock;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl CaseSource for EsmClient {
    async fn login(&self) -> Result<(), String> {
        EsmClient::login(self).await.map_err(|e| e.to_string())
    }

    async fn logout(&self) {
        if let Err(e) = EsmClient::logout(self).await {
            warn!(error = %e, "ESM logout failed");
        }
    }

    async fn find_all_ids(&self) -> Result<Vec<String>, String> {
        EsmClient::find_all_ids(self)
            .await
            .map_err(|e| e.to_string())
    }

    async fn get_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, String>)> {
        EsmClient::get_cases(self, ids)
            .await
            .into_iter()
            .map(|(id, r)| (id, r.map_err(|e| e.to_string())))
            .collect()
    }

    async fn get_events(
        &self,
        ids: &[EventId],
    ) -> (HashMap<EventId, Value>, HashMap<EventId, String>) {
        let fetched = EsmClient::get_security_events(self, ids).await;
        let failed = fetched
            .failed
            .into_iter()
            .map(|(id, e)| (id, e.to_string()))
            .collect();
        (fetched.events, failed)
    }
}

/// Works and state in the platform.
pub struct PlatformTracker {
    pub client: OpenCtiClient,
    pub connector_id: String,
    /// What a ping reports besides the state.
    pub info: Mutex<ConnectorInfo>,
}

impl PlatformTracker {
    /// Pings with `state`; returns the platform's state when it differs from what we sent (an
    /// operator reset it), so the caller adopts it.
    pub async fn ping(&self, state: &State) -> Result<Option<State>, String> {
        let text = state.to_platform();
        let info = lock(&self.info).clone();
        let answer = self
            .client
            .ping(&self.connector_id, Some(&text), &info)
            .await
            .map_err(|e| e.to_string())?;
        let platform = answer.connector_state.unwrap_or_default();
        if platform.trim() == text.trim() {
            Ok(None)
        } else {
            Ok(Some(State::from_platform(Some(&platform))))
        }
    }
}

impl Tracker for PlatformTracker {
    async fn work_add(&self, friendly_name: &str) -> Result<Option<String>, String> {
        self.client
            .work_add(&self.connector_id, friendly_name)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }

    async fn add_expectations(&self, work_id: &str, n: u64) -> Result<(), String> {
        self.client
            .work_add_expectations(work_id, n)
            .await
            .map_err(|e| e.to_string())
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

    async fn save_state(&self, state: &State) -> Result<Option<State>, String> {
        self.ping(state).await
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
    async fn work_add(&self, _friendly_name: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    async fn add_expectations(&self, _work_id: &str, _n: u64) -> Result<(), String> {
        Ok(())
    }
    async fn work_done(&self, _work_id: &str, _message: &str, _in_error: bool) {}
    async fn save_state(&self, state: &State) -> Result<Option<State>, String> {
        let Some(path) = self.path.clone() else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        let text = state.to_platform();
        tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{shown}: {e}"))?;
        Ok(None)
    }
}

/// AMQP: a fresh connection per run, opened before the first page and closed at the end.
pub struct AmqpSink {
    pub mq: MqConnection,
    pub applicant_id: String,
    pub options: AmqpOptions,
    conn: Option<AmqpDelivery>,
}

impl AmqpSink {
    pub fn new(mq: MqConnection, applicant_id: String, options: AmqpOptions) -> AmqpSink {
        AmqpSink {
            mq,
            applicant_id,
            options,
            conn: None,
        }
    }
}

impl Sink for AmqpSink {
    fn open_dyn(&mut self) -> BoxFut<'_, Result<(), String>> {
        Box::pin(async move {
            let conn = AmqpDelivery::connect(&self.mq, &self.applicant_id, self.options.clone())
                .await
                .map_err(|e| e.to_string())?;
            self.conn = Some(conn);
            Ok(())
        })
    }

    fn expectations_dyn(&self, bundle: &Bundle) -> u64 {
        crate::delivery::split_count(bundle)
    }

    fn deliver_dyn<'a>(
        &'a mut self,
        bundle: &'a Bundle,
        work_id: Option<&'a str>,
    ) -> BoxFut<'a, Result<u64, String>> {
        Box::pin(async move {
            let conn = self.conn.as_ref().ok_or("AMQP connection not open")?;
            conn.deliver(bundle, work_id)
                .await
                .map(|r| r.messages)
                .map_err(|e| e.to_string())
        })
    }

    fn close_dyn(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(conn) = self.conn.take()
                && let Err(e) = conn.close().await
            {
                warn!(error = %e, "closing the AMQP connection failed");
            }
        })
    }
}

/// A delivery that needs no connection of its own: `stixBundlePush` (api) or one file per page
/// (directory). Both report no expectations: nothing goes through the queue.
pub struct DeliverySink<D>(pub D);

impl<D: Delivery + Send + Sync> Sink for DeliverySink<D> {
    fn open_dyn(&mut self) -> BoxFut<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn expectations_dyn(&self, bundle: &Bundle) -> u64 {
        self.0.expectations(bundle)
    }
    fn deliver_dyn<'a>(
        &'a mut self,
        bundle: &'a Bundle,
        work_id: Option<&'a str>,
    ) -> BoxFut<'a, Result<u64, String>> {
        Box::pin(async move {
            self.0
                .deliver(bundle, work_id)
                .await
                .map(|r| r.messages)
                .map_err(|e| e.to_string())
        })
    }
    fn close_dyn(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}
