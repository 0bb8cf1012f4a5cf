//! The security event service: events for many ids, in batches fetched concurrently; an
//! undecodable or oversize batch is split so one broken event fails only the cases that need it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::oversized_string;
use crate::client::{EsmClient, MAX_STRING_LEN};
use crate::decode::Service;
use crate::error::EsmError;
use crate::model::{EventId, as_i64, into_list};

/// Events fetched for many ids.
#[derive(Debug, Default)]
pub struct EventsFetch {
    /// Raw event objects keyed by their `eventId`.
    pub events: HashMap<EventId, Value>,
    /// Ids whose request failed, with the error (shared by all ids of a failed batch). Ids in
    /// neither map were asked for and not returned: ESM does not know them.
    pub failed: HashMap<EventId, Arc<EsmError>>,
}

/// Event ids fetched together and their outcome.
type EventOutcome = (Vec<EventId>, Result<Vec<Value>, EsmError>);

impl EsmClient {
    /// Events for many ids, in batches fetched concurrently.
    pub async fn get_security_events(&self, ids: &[EventId]) -> EventsFetch {
        let mut seen = HashSet::new();
        let unique: Vec<EventId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let size = self.inner.cfg.event_batch_size.max(1);
        let mut set = JoinSet::new();
        let mut pending: HashMap<tokio::task::Id, Vec<EventId>> = HashMap::new();
        for chunk in unique.chunks(size).map(<[EventId]>::to_vec) {
            let client = self.clone();
            let ids = chunk.clone();
            let handle = set.spawn(async move {
                let _permit = client.inner.permits.clone().acquire_owned().await;
                client.event_chunk(ids).await
            });
            pending.insert(handle.id(), chunk);
        }
        let mut out = EventsFetch::default();
        while let Some(joined) = set.join_next_with_id().await {
            let groups = match joined {
                Ok((id, groups)) => {
                    pending.remove(&id);
                    groups
                }
                Err(e) => {
                    tracing::error!(error = %e, "an event fetch task ended abnormally");
                    let chunk = pending.remove(&e.id()).unwrap_or_default();
                    let err = EsmError::Aborted {
                        operation: "getSecurityEvents",
                    };
                    vec![(chunk, Err(err))]
                }
            };
            for (group, result) in groups {
                match result {
                    Ok(events) => {
                        for ev in events {
                            let Some(id) = ev.get("eventId").and_then(as_i64) else {
                                continue;
                            };
                            match oversized_string(&ev) {
                                Some(size) => {
                                    let e = EsmError::Oversized {
                                        operation: "getSecurityEvents",
                                        what: "a text field of the event",
                                        size,
                                        limit: MAX_STRING_LEN,
                                    };
                                    out.failed.insert(id, Arc::new(e));
                                }
                                None => {
                                    out.events.insert(id, ev);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        for id in group {
                            out.failed.insert(id, e.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// The events of one batch. An undecodable batch is split into single-id requests so one
    /// broken event only fails the cases that need it.
    async fn event_chunk(&self, ids: Vec<EventId>) -> Vec<EventOutcome> {
        match self.fetch_events(&ids).await {
            // An oversize batch too: each event alone may well fit.
            Err(e @ (EsmError::Decode { .. } | EsmError::TooLarge { .. })) if ids.len() > 1 => {
                tracing::warn!(error = %e, events = ids.len(), "event batch failed; fetching its events one by one");
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let r = self.fetch_events(&[id]).await;
                    out.push((vec![id], r));
                }
                out
            }
            r => vec![(ids, r)],
        }
    }

    async fn fetch_events(&self, ids: &[EventId]) -> Result<Vec<Value>, EsmError> {
        let ret = self
            .call(
                Service::SecurityEvent,
                "getSecurityEvents",
                vec![
                    ("ids", json!(ids)),
                    // -1/-1: no time bound, the ids alone select.
                    ("startMillis", json!(-1)),
                    ("endMillis", json!(-1)),
                ],
            )
            .await?;
        Ok(into_list(ret)
            .into_iter()
            .filter(|v| v.is_object())
            .collect())
    }
}
