//! Pending changes and their writes: a map value -> last operation (a burst of one
//! indicator's create/update/delete coalesces into one write), flushed as batched
//! `deleteEntries` / `addEntries` that are retried until ESM acknowledges them.
//!
//! Failures are sorted by what repeating them would do:
//! - transient (outage, timeout, 429, 5xx) and deployment faults that an operator fixes
//!   (token refused after a fresh login, unknown list or column, redirect, unsupported
//!   operation): the failed rows only are retried with capped exponential backoff, forever
//!   (until shutdown). Dropping them would lose them; the stream waits instead.
//! - a refusal that may be caused by the entries themselves (an error page ESM does not
//!   mark as transient, a 4xx, an answer that is not a write's): the batch is bisected down
//!   to the entries ESM refuses, which are logged and skipped (one bad value must not block
//!   the others), and the rest is written.

use std::collections::HashMap;
use std::time::Duration;

use connector_runtime::schedule::{Shutdown, sleep_unless_shutdown, unless_shutdown};
use esm_client::EsmError;
use esm_client::active_lists::{ActiveListError, ActiveLists, WriteReport};
use stream_core::ledger::Change;
use tracing::{debug, error, warn};

use super::clock::Clock;
use crate::metrics::{OpLabel, StreamMetrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Remove,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
        }
    }
}

/// Changes not yet written: the last operation per value.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    map: HashMap<String, Op>,
    /// When the oldest change still pending arrived (the flush delay runs from it).
    pub(crate) since: Option<tokio::time::Instant>,
}

impl Pending {
    pub(crate) fn push(&mut self, change: Change) {
        let (value, op) = match change {
            Change::Add(v) => (v, Op::Add),
            Change::Remove(v) => (v, Op::Remove),
        };
        // The last operation wins: the ledger's changes for one value alternate, so the last
        // one is where the list must end.
        self.map.insert(value, op);
        self.since.get_or_insert_with(tokio::time::Instant::now);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Takes everything: (removes, adds).
    pub(crate) fn take(&mut self) -> (Vec<String>, Vec<String>) {
        self.since = None;
        let mut removes = Vec::new();
        let mut adds = Vec::new();
        for (v, op) in self.map.drain() {
            match op {
                Op::Add => adds.push(v),
                Op::Remove => removes.push(v),
            }
        }
        self.map.shrink_to(1024);
        (removes, adds)
    }
}

/// Shutdown came while a write was waiting or in flight: nothing was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interrupted;

/// What one repeating failure class calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Retry the same rows later.
    Retry,
    /// The rows themselves may be refused: bisect.
    Entries,
}

fn classify(e: &ActiveListError) -> Class {
    if e.is_transient() {
        return Class::Retry;
    }
    match e {
        ActiveListError::NotFound { .. }
        | ActiveListError::NotAList { .. }
        | ActiveListError::UnknownColumn { .. }
        | ActiveListError::NoColumns => Class::Retry,
        ActiveListError::RowWidth { .. } | ActiveListError::UnexpectedAnswer { .. } => {
            Class::Entries
        }
        ActiveListError::Esm(e) => match e {
            EsmError::Config { .. }
            | EsmError::Unauthorized { .. }
            | EsmError::Redirect { .. }
            | EsmError::Unsupported { .. }
            | EsmError::Aborted { .. }
            | EsmError::TooLarge { .. }
            | EsmError::Transport { .. } => Class::Retry,
            // The login, the list or the permissions: the same for every entry.
            EsmError::ErrorPage {
                exception: Some(x), ..
            } if {
                let x = x.to_ascii_lowercase();
                [
                    "authentication",
                    "authorization",
                    "resourcenotfound",
                    "invalidresourceid",
                ]
                .iter()
                .any(|m| x.contains(m))
            } =>
            {
                Class::Retry
            }
            _ => Class::Entries,
        },
    }
}

/// Writes to one list's value column, retrying as the module doc says.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pub(crate) lists: ActiveLists,
    pub(crate) list_id: String,
    pub(crate) columns: [String; 1],
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) metrics: StreamMetrics,
    pub(crate) clock: Clock,
}

impl Writer {
    /// Writes the removes then the adds; returns once ESM acknowledged every row (or refused
    /// it for itself), `Err` when shutdown came first.
    pub(crate) async fn write(
        &self,
        removes: Vec<String>,
        adds: Vec<String>,
        shutdown: &mut Shutdown,
    ) -> Result<(), Interrupted> {
        let any = !removes.is_empty() || !adds.is_empty();
        self.write_all(Op::Remove, removes, shutdown).await?;
        self.write_all(Op::Add, adds, shutdown).await?;
        if any {
            self.metrics.last_write_unix.set(self.clock.now_unix());
        }
        Ok(())
    }

    async fn call(
        &self,
        op: Op,
        rows: Vec<Vec<String>>,
        shutdown: &mut Shutdown,
    ) -> Result<WriteReport, Interrupted> {
        let fut = async {
            match op {
                Op::Add => {
                    self.lists
                        .add_entries(&self.list_id, &self.columns, rows)
                        .await
                }
                Op::Remove => {
                    self.lists
                        .delete_entries(&self.list_id, &self.columns, rows)
                        .await
                }
            }
        };
        let report = unless_shutdown(shutdown, fut).await.ok_or(Interrupted)?;
        self.metrics
            .batches
            .get_or_create(&OpLabel { op: op.name() })
            .inc_by(report.batches as u64);
        let written = report.written as u64;
        match op {
            Op::Add => self.metrics.entries_added.inc_by(written),
            Op::Remove => self.metrics.entries_removed.inc_by(written),
        };
        self.metrics.esm_errors.inc_by(report.failed.len() as u64);
        Ok(report)
    }

    async fn write_all(
        &self,
        op: Op,
        values: Vec<String>,
        shutdown: &mut Shutdown,
    ) -> Result<(), Interrupted> {
        if values.is_empty() {
            return Ok(());
        }
        let mut todo: Vec<Vec<String>> = values.into_iter().map(|v| vec![v]).collect();
        let mut delay = self.retry_initial;
        let mut attempt = 0u32;
        while !todo.is_empty() {
            attempt += 1;
            let mut retry: Vec<Vec<String>> = Vec::new();
            let mut suspects: Vec<(Vec<Vec<String>>, ActiveListError)> = Vec::new();
            let mut first_error: Option<ActiveListError> = None;
            let report = self.call(op, std::mem::take(&mut todo), shutdown).await?;
            for f in report.failed {
                match classify(&f.error) {
                    Class::Retry => {
                        first_error.get_or_insert(f.error);
                        retry.extend(f.rows);
                    }
                    Class::Entries => suspects.push((f.rows, f.error)),
                }
            }
            // Bisect what ESM may refuse for its content, each half its own request.
            while let Some((rows, err)) = suspects.pop() {
                if rows.len() <= 1 {
                    for r in rows {
                        self.metrics.entries_rejected.inc();
                        // The value only at debug: a URL indicator may carry credentials.
                        error!(op = op.name(), list = %self.list_id, error = %err,
                            "ESM refused an entry: skipped (the value is logged at debug level)");
                        debug!(op = op.name(), value = %r[0], "the entry ESM refused");
                    }
                    continue;
                }
                let mut a = rows;
                let b = a.split_off(a.len() / 2);
                for half in [a, b] {
                    let r = self.call(op, half, shutdown).await?;
                    for f in r.failed {
                        match classify(&f.error) {
                            Class::Retry => {
                                first_error.get_or_insert(f.error);
                                retry.extend(f.rows);
                            }
                            Class::Entries => suspects.push((f.rows, f.error)),
                        }
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            StreamMetrics::failing(&self.metrics.esm_failing_since, self.clock.now_unix());
            warn!(
                op = op.name(),
                list = %self.list_id,
                entries = retry.len(),
                attempt,
                retry_in = ?delay,
                error = %first_error.map(|e| e.to_string()).unwrap_or_default(),
                "Active List write not acknowledged: the stream waits and the write is retried"
            );
            if !sleep_unless_shutdown(shutdown, delay).await {
                return Err(Interrupted);
            }
            delay = (delay * 2).min(self.retry_max.max(self.retry_initial));
            todo = retry;
        }
        self.metrics.esm_failing_since.set(0);
        Ok(())
    }

    /// Reads the values of the list's value column, retried as writes are when `persist`
    /// (a resync's completion cannot go on without it); otherwise one attempt.
    pub(crate) async fn read_values(
        &self,
        persist: bool,
        shutdown: &mut Shutdown,
    ) -> Result<Option<Vec<String>>, Interrupted> {
        let mut delay = self.retry_initial;
        loop {
            let got = unless_shutdown(shutdown, self.lists.get_entries(&self.list_id))
                .await
                .ok_or(Interrupted)?;
            let err = match got {
                Ok(entries) => {
                    let col = &self.columns[0];
                    if entries.column(col).is_none() && !entries.rows.is_empty() {
                        ActiveListError::UnknownColumn {
                            list_id: self.list_id.clone(),
                            column: col.clone(),
                            fields: entries.columns.clone(),
                        }
                    } else {
                        // Moved, not copied: a copy would hold the whole list's values twice at the peak.
                        return Ok(Some(entries.into_values(col).collect()));
                    }
                }
                Err(e) => e,
            };
            self.metrics.esm_errors.inc();
            if !persist {
                warn!(list = %self.list_id, error = %err, "cannot read the Active List: reconciliation postponed");
                return Ok(None);
            }
            StreamMetrics::failing(&self.metrics.esm_failing_since, self.clock.now_unix());
            warn!(list = %self.list_id, error = %err, retry_in = ?delay,
                "cannot read the Active List to finish the resynchronisation: retrying");
            if !sleep_unless_shutdown(shutdown, delay).await {
                return Err(Interrupted);
            }
            delay = (delay * 2).min(self.retry_max.max(self.retry_initial));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_operation_per_value_wins() {
        let mut p = Pending::default();
        p.push(Change::Add("a".into()));
        p.push(Change::Remove("a".into()));
        p.push(Change::Add("b".into()));
        p.push(Change::Remove("c".into()));
        p.push(Change::Add("c".into()));
        assert_eq!(p.len(), 3);
        let (mut rm, mut add) = p.take();
        rm.sort();
        add.sort();
        assert_eq!(rm, ["a"]);
        assert_eq!(add, ["b", "c"]);
        assert!(p.is_empty() && p.since.is_none());
    }

    #[test]
    fn outages_and_deployment_faults_are_retried_content_refusals_bisected() {
        let page = |status, x: &str| {
            ActiveListError::Esm(EsmError::ErrorPage {
                operation: "addEntries",
                status,
                exception: Some(x.into()),
            })
        };
        assert_eq!(
            classify(&page(500, "java.lang.IllegalStateException")),
            Class::Retry
        );
        assert_eq!(
            classify(&page(500, "com.arcsight.AuthenticationException: expired")),
            Class::Retry
        );
        assert_eq!(
            classify(&page(500, "java.lang.IllegalArgumentException: bad value")),
            Class::Entries
        );
        assert_eq!(
            classify(&ActiveListError::NotFound {
                list_id: "L".into()
            }),
            Class::Retry
        );
        assert_eq!(
            classify(&ActiveListError::Esm(EsmError::Status {
                operation: "addEntries",
                status: 400
            })),
            Class::Entries
        );
    }
}
