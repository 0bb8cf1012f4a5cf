//! The case service: every case id, and cases in batches fetched concurrently, degrading to
//! one call per id when the ESM lacks the batch call or one bad id spoils a batch.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::oversized_string;
use crate::client::{EsmClient, MAX_STRING_LEN};
use crate::decode::Service;
use crate::error::EsmError;
use crate::model::{as_list, as_string, into_list};

/// One requested case id and its outcome.
type CaseOutcome = (String, Result<Value, EsmError>);

impl EsmClient {
    /// Every case id the ESM knows (ESM has no paging or filter for this).
    pub async fn find_all_ids(&self) -> Result<Vec<String>, EsmError> {
        let ret = self.call(Service::Case, "findAllIds", vec![]).await?;
        Ok(as_list(ret.as_ref())
            .into_iter()
            .filter_map(as_string)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect())
    }

    /// Per requested id, in request order: the raw case object or the error for that id.
    pub async fn get_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, EsmError>)> {
        let size = self.inner.cfg.case_batch_size.max(1);
        let chunks: Vec<Vec<String>> = ids.chunks(size).map(<[String]>::to_vec).collect();
        let mut set = JoinSet::new();
        for (i, chunk) in chunks.iter().cloned().enumerate() {
            let client = self.clone();
            set.spawn(async move {
                let _permit = client.inner.permits.clone().acquire_owned().await;
                (i, client.case_chunk(chunk).await)
            });
        }
        let mut done: Vec<Option<Vec<CaseOutcome>>> = vec![None; chunks.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, results)) => done[i] = Some(results),
                Err(e) => tracing::error!(error = %e, "a case fetch task ended abnormally"),
            }
        }
        done.into_iter()
            .zip(chunks)
            .flat_map(|(res, chunk)| {
                res.unwrap_or_else(|| {
                    let err = EsmError::Aborted {
                        operation: "getResourcesByIds",
                    };
                    chunk.into_iter().map(|id| (id, Err(err.clone()))).collect()
                })
            })
            .map(|(id, r)| {
                let r = r.and_then(|case| match oversized_string(&case) {
                    Some(size) => Err(EsmError::Oversized {
                        operation: "getResourceById",
                        what: "a text field of the case",
                        size,
                        limit: MAX_STRING_LEN,
                    }),
                    None => Ok(case),
                });
                (id, r)
            })
            .collect()
    }

    async fn case_chunk(&self, ids: Vec<String>) -> Vec<CaseOutcome> {
        if !self.inner.batch_unsupported.load(Ordering::Relaxed) {
            let batch = self
                .call(
                    Service::Case,
                    "getResourcesByIds",
                    vec![("ids", json!(ids))],
                )
                .await;
            match batch {
                Ok(ret) => {
                    let mut by_id: HashMap<String, Value> = HashMap::new();
                    for case in into_list(ret) {
                        if let Some(id) = case_id(&case) {
                            by_id.insert(id, case);
                        }
                    }
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let r = match by_id.remove(&id) {
                            Some(case) => Ok(case),
                            // Ask once more on its own: the single call gives that id's real error.
                            None => self.get_case(&id).await,
                        };
                        out.push((id, r));
                    }
                    return out;
                }
                Err(EsmError::Unsupported { status, .. }) => {
                    if !self.inner.batch_unsupported.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            status,
                            "ESM lacks getResourcesByIds; fetching cases one by one from now on"
                        );
                    }
                }
                Err(
                    e @ (EsmError::ErrorPage { .. }
                    | EsmError::TooLarge { .. }
                    | EsmError::Decode { .. }
                    | EsmError::Status { .. }
                    | EsmError::NotReturned { .. }),
                ) if !e.is_transient() => {
                    // One bad id (deleted case) fails the whole batch on ESM: isolate it.
                    tracing::warn!(error = %e, cases = ids.len(), "case batch failed; fetching its cases one by one");
                }
                Err(e) => return ids.into_iter().map(|id| (id, Err(e.clone()))).collect(),
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = self.get_case(&id).await;
            out.push((id, r));
        }
        out
    }

    async fn get_case(&self, id: &str) -> Result<Value, EsmError> {
        const OP: &str = "getResourceById";
        match self
            .call(Service::Case, OP, vec![("resourceId", json!(id))])
            .await?
        {
            Some(case @ Value::Object(_)) => Ok(case),
            Some(_) => Err(EsmError::Decode {
                operation: OP,
                status: 200,
                message: "the answer is not a case object".into(),
            }),
            None => Err(EsmError::NotReturned { operation: OP }),
        }
    }
}

/// The id a case object carries (`resourceid`, else its reference's id).
fn case_id(case: &Value) -> Option<String> {
    case.get("resourceid")
        .and_then(as_string)
        .or_else(|| {
            case.get("reference")
                .and_then(|r| r.get("id"))
                .and_then(as_string)
        })
        .map(|s| s.trim().to_owned())
}
