//! "Delivered" means "in the platform": what the broker confirmed is read back.
//!
//! A confirm only says the broker has the message. The platform's worker acks and discards a
//! message whose work is no longer alive (an operator cleared the connector's works, a work
//! was deleted, completed works are purged after 7 days), and an import that fails after
//! pycti's retries only becomes an error on the work. The ledger would call such a case
//! delivered for good. Two checks close that gap, both read-only, bounded and never fatal:
//!
//! - the works: the state keeps, per recent work, the id hashes of the cases delivered in it
//!   (bounded: [`super::state::MAX_TRACKED_WORKS`], [`super::state::MAX_TRACKED_CASES`]). At
//!   the start of each run, while ESM lists its cases, each one is read back (`work(id)`, one
//!   call a work): deleted means its messages may have been dropped, errors mean some imports
//!   failed; either way its cases leave the ledger and this very run sends them again, with
//!   the same ids (the platform merges them). A work still in progress is asked again next
//!   run: a run never waits for the workers.
//! - the ledger: on a schedule (`CONNECTOR_VERIFY_PERIOD`), after the pages, every case the
//!   ledger calls delivered (and no tracked work still covers) is looked up by its
//!   case-incident standard id, [`VERIFY_BATCH`] ids a call; the missing ones leave the
//!   ledger and the next run sends them again. The ids are computed while listing, which
//!   reads every case anyway.

use std::collections::HashSet;
use std::time::Duration;

use tracing::{info, warn};

use super::ports::{SharedState, Tracker};
use crate::opencti::WorkFate;

/// Case-incident ids per verification call: 100,000 delivered cases cost 200 calls.
pub const VERIFY_BATCH: usize = 500;

/// The longest the works are read back at the start of a run (it runs while ESM lists).
const CHECK_TIME_LIMIT: Duration = Duration::from_secs(30);

/// The longest one verification of the ledger takes; cut short, it is taken up again at the
/// next run (it is not recorded as done).
const VERIFY_TIME_LIMIT: Duration = Duration::from_secs(300);

/// What the read-back of the works did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WorksChecked {
    /// Cases sent again because their work was deleted before its messages were imported.
    pub(crate) work_dead: usize,
    /// Cases sent again because their work reported import errors.
    pub(crate) work_error: usize,
    /// Works that could not be read (kept for the next run).
    pub(crate) failures: usize,
}

/// Reads back every tracked work; a settled one stops being tracked, and the cases of a
/// deleted or errored one leave the ledger. Bounded by [`CHECK_TIME_LIMIT`]; a reset adopted
/// since `resets` changes nothing.
pub(crate) async fn check_works(
    tracker: &impl Tracker,
    state: &SharedState,
    resets: u64,
) -> WorksChecked {
    let works = state.update(|st| st.tracked_works());
    let mut out = WorksChecked::default();
    if works.is_empty() {
        return out;
    }
    let mut fates = Vec::with_capacity(works.len());
    let read = async {
        for id in &works {
            match tracker.work_fate(id).await {
                Ok(Some(fate)) => fates.push((id.clone(), fate)),
                // No platform: nothing will ever tell; stop tracking.
                Ok(None) => fates.push((id.clone(), WorkFate::Settled { errors: vec![] })),
                Err(e) => {
                    warn!(work = %id, error = %e, "reading back a work failed; asking again next run");
                    out.failures += 1;
                }
            }
        }
    };
    if tokio::time::timeout(CHECK_TIME_LIMIT, read).await.is_err() {
        warn!(
            timeout_s = CHECK_TIME_LIMIT.as_secs(),
            "reading back the works timed out; asking again next run"
        );
        out.failures += 1;
    }
    state.update_unless_reset(resets, |st| {
        for (id, fate) in &fates {
            match fate {
                WorkFate::Pending => {}
                WorkFate::Deleted => {
                    let n = st.settle_work(id, true);
                    if n > 0 {
                        warn!(work = %id, cases = n, "the work was deleted in the platform, so its workers drop its messages (work not alive): its cases are sent again");
                    }
                    out.work_dead += n;
                }
                WorkFate::Settled { errors } if !errors.is_empty() => {
                    let n = st.settle_work(id, true);
                    warn!(work = %id, errors = errors.len(), cases = n, first_error = %errors[0], "the platform's workers failed to import part of the work: its cases are sent again");
                    out.work_error += n;
                }
                WorkFate::Settled { .. } => {
                    st.settle_work(id, false);
                }
            }
        }
    });
    out
}

/// Notes a case delivered in a work, for [`check_works`].
pub(crate) fn track(st: &mut super::state::State, work_id: &str, case_id: &str) {
    match st.track_delivery(work_id, case_id) {
        Ok(true) => {}
        // Beyond the bound the verification of the ledger still covers the case.
        Ok(false) => {
            tracing::debug!(case = %case_id, "too many recent cases to follow their work; the verification covers this one")
        }
        Err(dropped) => {
            warn!(work = %dropped, "more recent works than are followed: the oldest is no longer read back (the verification still covers its cases)")
        }
    }
}

/// A case the ledger calls delivered, by its id hash and its case-incident id's UUID (16
/// bytes rather than a 52-character string: 24 bytes a case, 2.4 MB at 100,000 while
/// listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) id_hash: u64,
    pub(crate) uuid: [u8; 16],
}

impl Delivered {
    /// From a case-incident id (`case-incident--<uuid>`); `None` for anything else.
    pub(crate) fn new(id_hash: u64, case_incident_id: &str) -> Option<Delivered> {
        let uuid = case_incident_id.strip_prefix("case-incident--")?;
        Some(Delivered {
            id_hash,
            uuid: uuid::Uuid::parse_str(uuid).ok()?.into_bytes(),
        })
    }

    fn standard_id(&self) -> String {
        format!("case-incident--{}", uuid::Uuid::from_bytes(self.uuid))
    }
}

/// What a verification of the ledger did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// Delivered cases missing in the platform: forgotten, sent again next run.
    pub(crate) missing: usize,
    /// Cases looked up.
    pub(crate) checked: usize,
    /// GraphQL calls made.
    pub(crate) calls: usize,
    /// Cut short (an error, the time limit) or not available: not recorded as done.
    pub(crate) failed: bool,
}

/// Looks every case of `cases` up in the platform, `batch` a call, except those a tracked
/// work still covers (their messages may still be queued); the missing ones leave the
/// ledger. Bounded by [`VERIFY_TIME_LIMIT`]; records `now_unix` as the time of the last
/// verification when it went through.
pub(crate) async fn verify_delivered(
    tracker: &impl Tracker,
    state: &SharedState,
    resets: u64,
    cases: Vec<Delivered>,
    batch: usize,
    now_unix: u64,
) -> Verified {
    let in_flight: HashSet<u64> = state.update(|st| st.tracked_cases());
    let cases: Vec<Delivered> = cases
        .into_iter()
        .filter(|c| !in_flight.contains(&c.id_hash))
        .collect();
    let mut out = Verified::default();
    let work = async {
        for chunk in cases.chunks(batch.max(1)) {
            let ids: Vec<String> = chunk.iter().map(Delivered::standard_id).collect();
            out.calls += 1;
            let found = match tracker.existing_case_incidents(&ids).await {
                Ok(Some(found)) => found,
                Ok(None) => return Err(None),
                Err(e) => return Err(Some(e.to_string())),
            };
            out.checked += chunk.len();
            let missing: Vec<u64> = chunk
                .iter()
                .zip(&ids)
                .filter(|(_, id)| !found.contains(*id))
                .map(|(c, _)| c.id_hash)
                .collect();
            if !missing.is_empty() {
                let forgotten = state
                    .update_unless_reset(resets, |st| {
                        missing.iter().filter(|h| st.forget_delivered(**h)).count()
                    })
                    .ok_or(Some(
                        "the state was reset in the platform meanwhile".to_owned(),
                    ))?;
                out.missing += forgotten;
            }
        }
        Ok(())
    };
    match tokio::time::timeout(VERIFY_TIME_LIMIT, work).await {
        Ok(Ok(())) => {
            state.update_unless_reset(resets, |st| st.verified_at = now_unix);
            if out.missing > 0 {
                warn!(
                    checked = out.checked,
                    missing = out.missing,
                    calls = out.calls,
                    "delivered cases are missing in the platform: they are sent again next run"
                );
            } else {
                info!(
                    checked = out.checked,
                    calls = out.calls,
                    "every delivered case is in the platform"
                );
            }
        }
        // No platform to ask (offline, directory only): nothing to verify.
        Ok(Err(None)) => {}
        Ok(Err(Some(e))) => {
            warn!(error = %e, checked = out.checked, calls = out.calls, "verifying the delivered cases in the platform failed; trying again next run");
            out.failed = true;
        }
        Err(_) => {
            warn!(
                timeout_s = VERIFY_TIME_LIMIT.as_secs(),
                checked = out.checked,
                calls = out.calls,
                "verifying the delivered cases in the platform timed out; trying again next run"
            );
            out.failed = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_case_keeps_its_case_incident_id() {
        let id = "case-incident--8c2f5b1e-3d4a-5b6c-9d7e-0f1a2b3c4d5e";
        assert_eq!(Delivered::new(7, id).unwrap().standard_id(), id);
        assert_eq!(
            Delivered::new(7, "incident--8c2f5b1e-3d4a-5b6c-9d7e-0f1a2b3c4d5e"),
            None
        );
        // What the docs promise of the listing's extra memory when the verification is due.
        assert_eq!(std::mem::size_of::<Delivered>(), 24);
    }
}
