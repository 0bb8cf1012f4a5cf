//! One run: list and select, then page by page fetch, convert, deliver, commit.
//!
//! The state advances only after a page is confirmed by every sink, and is persisted at once,
//! so a crash or a SIGTERM loses at most the page in flight, and memory is bounded by the page
//! size, not by the number of cases. A case or an event that makes ESM fail its whole batch, or
//! a case that no sink can take, is isolated by bisection: it goes to `retry` and the rest of
//! its batch or page goes on in the same run.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{debug, error, info, warn};

use super::ports::{CaseSource, Saved, SharedState, Tracker, TrackerError};
use super::state::{MAX_INCOMPLETE_RUNS, Seen, State, id_hash, select_owned, version_hash};
use crate::convert::Converter;
use crate::delivery::{DeliveryError, Sink};
use crate::esm::client::MAX_ID_LEN;
use crate::esm::model::{Case, EventId, SecurityEvent};
use crate::esm::{EsmError, EventsFetch};
use crate::stix::{Bundle, StixObject};
use connector_runtime::schedule::Shutdown;

/// Longest wait for each cleanup step after a stop request (logout, closing the connection,
/// closing the work), so the process ends within Docker's 10 s grace even when a peer hangs.
const STOP_CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for a sink's close, stopping or not: a broker that stopped reading never
/// answers a close, and the run must end (or reopen) anyway.
const SINK_CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// Extra batch requests one bisection may make: a single poison id in a batch of 100 costs
/// about 14; an ESM failing everything stops here instead of asking for each id twice.
const BISECT_BUDGET: usize = 64;

/// Changed cases kept from the listing's reads so their page does not read them again (a first
/// import of up to this many cases reads each case once); beyond it, pages read their cases.
/// Bounds the memory they take, whatever the number of cases.
const READ_ONCE_BUDGET: usize = 5_000;

/// Why a run stopped early: which step failed, and the (secret-free) error of the port.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("ESM login failed: {0}")]
    Login(EsmError),
    #[error("listing cases failed: {0}")]
    ListCases(EsmError),
    #[error("delivery unavailable: {0}")]
    Open(DeliveryError),
    #[error("creating the work failed: {0}")]
    WorkAdd(TrackerError),
    #[error("adding expectations failed: {0}")]
    AddExpectations(TrackerError),
    #[error("delivery failed: {0}")]
    Deliver(DeliveryError),
    #[error("stopped: the connector is shutting down")]
    ShuttingDown,
    #[error("stopped: the state was reset in the platform; the next run starts from scratch")]
    Reset,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    pub(crate) max_cases: usize,
    pub(crate) page_size: usize,
    /// Case ids per `get_cases` call while listing (the ESM client batches and parallelises
    /// within a call): bounds the raw answers held at once.
    pub(crate) fetch_chunk: usize,
    pub(crate) friendly_name: String,
    /// How often the delivered cases are looked up in the platform (`None`: never).
    pub(crate) verify_period: Option<Duration>,
    /// Case-incident ids per verification call.
    pub(crate) verify_batch: usize,
    /// Told of each page committed, for `/healthz` (`None`: nobody watches).
    pub(crate) progress: Option<crate::metrics::ImportMetrics>,
}

/// What a run did, logged as one line and shown in the work.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RunReport {
    pub(crate) cases_seen: usize,
    pub(crate) cases_changed: usize,
    pub(crate) cases_selected: usize,
    pub(crate) cases_delivered: usize,
    pub(crate) cases_failed: usize,
    /// Of `cases_failed`: cases kept back because reading some of their events failed.
    pub(crate) cases_events_failed: usize,
    /// Cases held back because ESM returned fewer events than they list.
    pub(crate) cases_incomplete: usize,
    pub(crate) incidents: usize,
    pub(crate) objects: usize,
    pub(crate) messages: u64,
    pub(crate) pages: usize,
    pub(crate) seconds: f64,
    /// Why the run stopped early, if it did (secret-free).
    pub(crate) error: Option<String>,
    /// The run stopped because an operator reset the state: not a failure.
    pub(crate) reset: bool,
    pub(crate) work_id: Option<String>,
    /// The read-back of earlier works and the verification of the ledger (`sync::verify`).
    pub(crate) works_checked: super::verify::WorksChecked,
    pub(crate) verified: Option<super::verify::Verified>,
}

impl RunReport {
    pub(crate) fn succeeded(&self) -> bool {
        self.reset || (self.error.is_none() && self.cases_failed == 0)
    }

    /// The message put on the work.
    pub(crate) fn summary(&self) -> String {
        let mut s = format!(
            "{} cases seen, {} changed, {} delivered, {} failed ({} for their events), {} held back incomplete, {} objects in {} messages",
            self.cases_seen,
            self.cases_changed,
            self.cases_delivered,
            self.cases_failed,
            self.cases_events_failed,
            self.cases_incomplete,
            self.objects,
            self.messages
        );
        if let Some(e) = &self.error {
            s.push_str("; stopped: ");
            s.push_str(e);
        }
        s
    }
}

/// Runs once. `state` is updated page by page and saved through the tracker after each
/// confirmed page.
/// When `shutdown` fires, the page in flight is abandoned (its state is not advanced), the work
/// is closed in error and ESM is logged out of; cleanup steps are then bounded in time so the
/// process stops within Docker's grace even if ESM or the platform hangs.
pub(crate) async fn run_once(
    source: &impl CaseSource,
    sinks: &mut [impl Sink],
    tracker: &impl Tracker,
    converter: &Converter,
    state: &SharedState,
    cfg: &RunConfig,
    shutdown: Option<&Shutdown>,
) -> RunReport {
    Run {
        source,
        sinks,
        tracker,
        converter,
        state,
        cfg,
        resets: state.resets(),
        run_no: 0,
        report: RunReport::default(),
        opened: false,
        read_once: HashMap::new(),
        delivered: None,
    }
    .execute(shutdown)
    .await
}

/// A case read for a page, with what its events gave.
struct Prepared {
    seen: Seen,
    /// The version read in this page (the latest): what the ledger records once delivered.
    version: u64,
    objects: Vec<StixObject>,
    incidents: usize,
}

/// What became of a page's cases before delivery.
#[derive(Default)]
struct PageCases {
    ready: Vec<Prepared>,
    failed: Vec<String>,
    incomplete: Vec<String>,
    gone: Vec<String>,
    /// Cases not delivered because reading some of their events failed (they back off and
    /// are retried; never marked delivered at this version).
    events_failed: Vec<String>,
}

/// One run and its steps.
struct Run<'a, S, K, T> {
    source: &'a S,
    sinks: &'a mut [K],
    tracker: &'a T,
    converter: &'a Converter,
    state: &'a SharedState,
    cfg: &'a RunConfig,
    /// The resets adopted when the run started: another one means "stop marking".
    resets: u64,
    run_no: u64,
    report: RunReport,
    opened: bool,
    /// Changed cases read while listing, kept (up to [`READ_ONCE_BUDGET`]) so their page does
    /// not read them again.
    read_once: HashMap<String, Case>,
    /// When the verification is due: the delivered cases seen while listing.
    delivered: Option<Vec<super::verify::Delivered>>,
}

impl<'a, S: CaseSource, K: Sink, T: Tracker> Run<'a, S, K, T> {
    fn reader(&self) -> Reader<'a, S> {
        Reader {
            source: self.source,
            state: self.state,
            converter: self.converter,
        }
    }

    async fn execute(mut self, shutdown: Option<&Shutdown>) -> RunReport {
        let started = Instant::now();
        let mut stopping = false;
        let result = match self.source.login().await {
            Err(e) => Err(RunError::Login(e)),
            Ok(()) => {
                let result = match shutdown {
                    Some(sd) => {
                        let mut sd = sd.clone();
                        tokio::select! {
                            biased;
                            _ = sd.wait() => Err(RunError::ShuttingDown),
                            r = self.pages_then_verify() => r,
                        }
                    }
                    None => self.pages_then_verify().await,
                };
                stopping = shutdown.is_some_and(Shutdown::is_triggered);
                self.cleanup(stopping, shutdown).await;
                result
            }
        };
        // The one place a run's error becomes text, for the work's message and the logs.
        if let Err(RunError::Reset) = &result {
            self.report.reset = true;
        }
        self.report.error = result.err().map(|e| e.to_string());
        self.close_work(stopping).await;
        self.report.seconds = started.elapsed().as_secs_f64();
        self.report
    }

    /// The pages, then (when due) the verification of the ledger: after the pages so it
    /// never holds up a delivery; bounded in time and never fatal (`sync::verify`).
    async fn pages_then_verify(&mut self) -> Result<(), RunError> {
        let result = self.pages().await;
        if let (Ok(()), Some(cases)) = (&result, self.delivered.take()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.report.verified = Some(
                super::verify::verify_delivered(
                    self.tracker,
                    self.state,
                    self.resets,
                    cases,
                    self.cfg.verify_batch,
                    now,
                )
                .await,
            );
        }
        result
    }

    /// Logout and closing the sinks; bounded only when stopping. The logout is also bounded
    /// when the stop request comes while it waits: ESM may hang there for its whole request
    /// timeout and retries, far past Docker's grace.
    async fn cleanup(&mut self, stopping: bool, shutdown: Option<&Shutdown>) {
        if bounded_from_stop(stopping, shutdown, self.source.logout())
            .await
            .is_none()
        {
            warn!(
                timeout_s = STOP_CLEANUP_TIMEOUT.as_secs(),
                "ESM logout timed out; the session ends when ESM expires it"
            );
        }
        for sink in self.sinks.iter_mut() {
            let limit = if stopping {
                STOP_CLEANUP_TIMEOUT
            } else {
                SINK_CLOSE_TIMEOUT
            };
            match tokio::time::timeout(limit, sink.close()).await {
                Ok(Err(e)) => warn!(error = %e, "closing the delivery failed"),
                Err(_) => warn!(
                    timeout_s = limit.as_secs(),
                    "closing the delivery timed out; the connection is dropped"
                ),
                Ok(Ok(())) => {}
            }
        }
    }

    /// The sentinel's report, then `toProcessed`: what completes the work.
    ///
    /// The sentinel is reported without an error even when the run failed: the platform
    /// appends both a `reportExpectation` error and a `toProcessed(inError)` message to the
    /// work's errors, so reporting the failure in both would show it twice. `toProcessed`
    /// alone carries it; the sentinel's report still counts as processed, so the work's
    /// `processed >= expected` holds and it completes.
    async fn close_work(&mut self, stopping: bool) {
        let Some(work_id) = self.report.work_id.clone() else {
            return;
        };
        let summary = self.report.summary();
        let failed = !self.report.succeeded();
        bounded(stopping, self.tracker.report_expectation(&work_id, None)).await;
        bounded(stopping, self.tracker.work_done(&work_id, &summary, failed)).await;
    }

    /// Two pages in flight: the next page's cases and events are read while the current one is
    /// delivered and confirmed, and the state save of the page before runs meanwhile too.
    /// Pages still commit in order, each after its confirms, and memory holds at most two
    /// pages.
    async fn pages(&mut self) -> Result<(), RunError> {
        let selected = self.list_and_select().await?;
        let page_size = self.cfg.page_size.max(1);
        let reader = self.reader();
        let (tracker, state) = (self.tracker, self.state);
        let mut pages = selected.chunks(page_size);
        let Some(first) = pages.next() else {
            return Ok(());
        };
        let cached = self.cached(first);
        // The broker connection and the work are made while the first page is read: each is
        // a round trip or more that would otherwise hold up the first delivery.
        let (mut cases, ()) = tokio::try_join!(
            async { Ok(reader.fetch_page(first, cached).await) },
            self.prepare_delivery(),
        )?;
        // The previous page's save, running while the current page is delivered: it has its
        // own round trip and carries the whole state, and the writer serializes saves in
        // order.
        let mut saving = None;
        loop {
            let next = pages.next();
            let cached = next.map(|p| self.cached(p)).unwrap_or_default();
            let fetch_next = async {
                match next {
                    Some(page) => Some(reader.fetch_page(page, cached).await),
                    None => None,
                }
            };
            let save_previous = finish(saving.take());
            let current = async {
                let delivered = self.deliver(&mut cases.ready).await?;
                self.commit(cases, delivered)?;
                if let Some(m) = &self.cfg.progress {
                    m.progress(chrono::Utc::now().timestamp());
                }
                Ok(())
            };
            // Joined, not raced: a delivery is never cut off halfway (its expectations would
            // outlive its messages). A failed page stops the run: the next page, read or not,
            // is dropped uncommitted.
            let (delivered, next_cases, saved) = tokio::join!(current, fetch_next, save_previous);
            saved?;
            delivered?;
            saving = Some(save_state(tracker, state));
            match next_cases {
                Some(c) => cases = c,
                None => break,
            }
        }
        finish(saving).await
    }

    /// Opens the sinks and creates the work, once per run.
    async fn prepare_delivery(&mut self) -> Result<(), RunError> {
        if !self.opened {
            for sink in self.sinks.iter_mut() {
                sink.open().await.map_err(RunError::Open)?;
            }
            self.opened = true;
        }
        if self.report.work_id.is_none() {
            self.report.work_id = self
                .tracker
                .work_add(&self.cfg.friendly_name)
                .await
                .map_err(RunError::WorkAdd)?;
            // The sentinel: the work stays open (not `complete`) until the run reports it.
            if let Some(work_id) = &self.report.work_id {
                self.tracker
                    .add_expectations(work_id, 1)
                    .await
                    .map_err(RunError::AddExpectations)?;
            }
        }
        Ok(())
    }

    /// The cases of `page` read while listing (taken out of the cache).
    fn cached(&mut self, page: &[Seen]) -> HashMap<String, Case> {
        let taken = page
            .iter()
            .filter_map(|s| self.read_once.remove(&s.id).map(|c| (s.id.clone(), c)))
            .collect();
        // A map keeps its table when emptied: give it back as the pages drain it (up to
        // 5,000 entries' worth otherwise held to the end of the run).
        if self.read_once.len() * 4 < self.read_once.capacity() {
            self.read_once.shrink_to_fit();
        }
        taken
    }

    /// Is the verification of the ledger due this run?
    fn verify_due(&self) -> bool {
        let Some(period) = self.cfg.verify_period else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.state.update(|st| st.verified_at);
        now >= last.saturating_add(period.as_secs())
    }

    /// Lists every case, reads each one's version, and selects what to send.
    async fn list_and_select(&mut self) -> Result<Vec<Seen>, RunError> {
        // Earlier works are read back while ESM lists: the cases the platform lost leave the
        // ledger before the selection, so this run sends them again.
        let (ids, checked) = tokio::join!(
            self.source.find_all_ids(),
            super::verify::check_works(self.tracker, self.state, self.resets)
        );
        self.report.works_checked = checked;
        let mut ids = ids.map_err(RunError::ListCases)?;
        self.delivered = self.verify_due().then(Vec::new);
        self.report.cases_seen = ids.len();
        // An id far longer than any real one fails its case here, before the state (which
        // would keep it) or any request (which would carry it) sees it.
        let listed = ids.len();
        ids.retain(|id| {
            let ok = id.len() <= MAX_ID_LEN;
            if !ok {
                // Logged by size only: the id itself is what is wrong, and may be anything.
                warn!(
                    bytes = id.len(),
                    limit = MAX_ID_LEN,
                    "ESM listed a case id far longer than any real one; that case fails"
                );
            }
            ok
        });
        let too_long = listed - ids.len();
        self.run_no = self
            .state
            .update_unless_reset(self.resets, State::start_run)
            .ok_or(RunError::Reset)?;

        // Pass 1: every case's version. Cases are read in chunks and only their id, time and
        // version hash are kept, so memory does not grow with the size of ESM's cases; the
        // page step reads the selected ones again.
        // The listed ids are kept as hashes only; each id string is dropped once its chunk is
        // read, so the listing and `seen` do not both hold every id at the run's peak.
        let listed_count = ids.len();
        let listed: HashSet<u64> = ids.iter().map(|id| id_hash(id)).collect();
        let mut seen = Vec::with_capacity(ids.len());
        let mut failed = Vec::new();
        let mut gone = Vec::new();
        let reader = self.reader();
        let chunk_len = self.cfg.fetch_chunk.max(1);
        let mut rest = ids.into_iter();
        loop {
            let chunk: Vec<String> = rest.by_ref().take(chunk_len).collect();
            if chunk.is_empty() {
                break;
            }
            for (id, answer) in reader.read_cases(&chunk).await {
                match answer.as_ref().map(|v| (v, Case::from_value(v))) {
                    Ok((v, Some(case))) => {
                        let version = version_hash(&id, v, &case.event_ids);
                        let modified_ms = case.modified_ms;
                        let current = self.state.update(|st| st.is_current(&id, version));
                        if let (Some(d), true) = (&mut self.delivered, current) {
                            let ci = self.converter.case_incident_id(&case);
                            d.extend(super::verify::Delivered::new(id_hash(&id), &ci));
                        }
                        if self.read_once.len() < READ_ONCE_BUDGET && !current {
                            self.read_once.insert(id.clone(), case);
                        }
                        seen.push(Seen {
                            version,
                            modified_ms,
                            id,
                        });
                    }
                    Err(e) if is_gone(e) => gone.push(id),
                    _ => {
                        note_read_failure(&id, &answer);
                        failed.push(id);
                    }
                }
            }
        }
        drop(rest);
        let whole = self.state.read(|s| s.listing_looks_whole(listed_count));
        let run_no = self.run_no;
        let selection = self
            .state
            .update_unless_reset(self.resets, |st| {
                st.apply_upgrade(&seen);
                for id in &gone {
                    st.forget(id);
                }
                for id in &failed {
                    st.mark_failed(id, run_no);
                }
                if whole {
                    let forgotten = st.note_listing(&listed);
                    if forgotten > 0 {
                        info!(
                            cases = forgotten,
                            "cases absent from several listings in a row are forgotten"
                        );
                    }
                } else {
                    error!(
                        listed = listed_count,
                        delivered = st.delivered_count(),
                        "ESM listed far fewer cases than were delivered before: the listing is not trusted to forget any case this run"
                    );
                }
                select_owned(st, seen, self.cfg.max_cases, run_no)
            })
            .ok_or(RunError::Reset)?;
        drop(listed);
        // Only the selected cases are kept for their pages.
        let selected: HashSet<&str> = selection.cases.iter().map(|c| c.id.as_str()).collect();
        self.read_once
            .retain(|id, _| selected.contains(id.as_str()));
        self.report.cases_failed += failed.len() + too_long;
        self.report.cases_changed = selection.changed + failed.len() + too_long;
        self.report.cases_selected = selection.cases.len();
        info!(
            seen = self.report.cases_seen,
            changed = self.report.cases_changed,
            selected = self.report.cases_selected,
            "cases listed"
        );
        // Saved now: a run number, failures and forgotten cases must survive a crash. (A run
        // that changed nothing else still moves the backoff clock: the pings carry it.)
        if !failed.is_empty() || !gone.is_empty() {
            save_state(self.tracker, self.state).await?;
        }
        Ok(selection.cases)
    }

    /// Delivers the page's cases. A failure that may be tied to the content is bisected down
    /// to the single cases no sink takes; those are returned as not delivered and the rest
    /// goes on. Returns, per case of `ready`, whether it was delivered.
    async fn deliver(&mut self, ready: &mut [Prepared]) -> Result<Vec<bool>, RunError> {
        let mut delivered = vec![false; ready.len()];
        if ready.is_empty() {
            return Ok(delivered);
        }
        self.prepare_delivery().await?;
        let mut todo: Vec<Vec<usize>> = vec![(0..ready.len()).collect()];
        let mut first_error = None;
        while let Some(group) = todo.pop() {
            match self.deliver_group(ready, &group).await? {
                Ok(()) => {
                    for i in group {
                        delivered[i] = true;
                    }
                }
                Err(e) => {
                    // A timeout, a closed connection, a transport or routing failure is
                    // the sink's: no case of the page is to blame, and no split can help.
                    if !e.blames_content() {
                        return Err(RunError::Deliver(e));
                    }
                    if group.len() > 1 {
                        warn!(error = %e, cases = group.len(), "delivery failed; splitting the page to find the case no sink takes");
                        let (a, b) = group.split_at(group.len() / 2);
                        todo.push(b.to_vec());
                        todo.push(a.to_vec());
                    } else {
                        let case = &ready[group[0]].seen.id;
                        warn!(case = %case, error = %e, "no sink takes this case; it is retried later, the others go on");
                    }
                    first_error.get_or_insert(e);
                    self.reopen().await?;
                }
            }
        }
        // Nothing of a page of several cases went through: the failure is not about any one
        // case (a broker or a directory that takes nothing): stop the run, blame no case.
        if ready.len() > 1 && !delivered.iter().any(|d| *d) {
            if let Some(e) = first_error {
                return Err(RunError::Deliver(e));
            }
        }
        Ok(delivered)
    }

    /// One bundle of the cases `group` to every sink, with its expectations; gives back the
    /// expectations of the messages never confirmed when it fails.
    ///
    /// The cases' objects are moved into the bundle, not copied (a copy of every object was
    /// a twentieth of the run's CPU): a delivered case needs them no more, and when the
    /// delivery fails each case gets its objects back from the bundle, for the bisection.
    async fn deliver_group(
        &mut self,
        ready: &mut [Prepared],
        group: &[usize],
    ) -> Result<Result<(), DeliveryError>, RunError> {
        let mut bundle = Bundle::new(Vec::new());
        // Per case of `group`, where each of its objects stands in the bundle (an object two
        // cases share, an observable say, stands once).
        let mut places: Vec<Vec<usize>> = Vec::with_capacity(group.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for i in group {
            let objects = std::mem::take(&mut ready[*i].objects);
            let mut at = Vec::with_capacity(objects.len());
            for o in objects {
                let next = bundle.objects.len();
                let place = *index.entry(o.id().to_owned()).or_insert(next);
                if place == next {
                    bundle.objects.push(o);
                }
                at.push(place);
            }
            places.push(at);
        }
        drop(index);
        bundle.extend_dedup(self.converter.common_objects());
        let per_sink: Vec<u64> = self.sinks.iter().map(|s| s.expectations(&bundle)).collect();
        let expected: u64 = per_sink.iter().sum();
        if let (Some(work_id), true) = (&self.report.work_id, expected > 0) {
            self.tracker
                .add_expectations(work_id, i64::try_from(expected).unwrap_or(i64::MAX))
                .await
                .map_err(RunError::AddExpectations)?;
        }
        let mut confirmed = 0u64;
        let mut messages = 0u64;
        let mut failure = None;
        for (sink, n) in self.sinks.iter_mut().zip(&per_sink) {
            match sink.deliver(&bundle, self.report.work_id.as_deref()).await {
                Ok(sent) => {
                    confirmed += n;
                    messages += sent.messages;
                }
                Err(e) => {
                    if let DeliveryError::Publish { confirmed: c, .. } = &e {
                        confirmed += c;
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            let unconfirmed = expected.saturating_sub(confirmed);
            if let (Some(work_id), true) = (&self.report.work_id, unconfirmed > 0) {
                let back = -i64::try_from(unconfirmed).unwrap_or(i64::MAX);
                if let Err(ge) = self.tracker.add_expectations(work_id, back).await {
                    warn!(error = %ge, "giving back the expectations of unconfirmed messages failed");
                }
            }
            for (i, at) in group.iter().zip(&places) {
                ready[*i].objects = at.iter().map(|p| bundle.objects[*p].clone()).collect();
            }
            return Ok(Err(e));
        }
        self.report.messages += messages;
        self.report.objects += bundle.objects.len();
        self.report.pages += 1;
        for i in group {
            self.report.incidents += ready[*i].incidents;
        }
        Ok(Ok(()))
    }

    /// A fresh connection after a failed delivery (a broker closes the channel on a message
    /// it refuses).
    async fn reopen(&mut self) -> Result<(), RunError> {
        for sink in self.sinks.iter_mut() {
            // Bounded: a broker that stopped reading never answers the close (each sink
            // bounds its own steps too; this is the run's guard whatever the sink).
            let _ = tokio::time::timeout(SINK_CLOSE_TIMEOUT, sink.close()).await;
            sink.open().await.map_err(RunError::Open)?;
        }
        Ok(())
    }

    /// Records the page in the state (the caller saves it); stops when a reset was adopted
    /// meanwhile.
    fn commit(&mut self, cases: PageCases, delivered: Vec<bool>) -> Result<(), RunError> {
        let run_no = self.run_no;
        let mut failed = cases.failed;
        let mut ok = 0usize;
        let work_id = self.report.work_id.clone();
        let marked = self.state.update_unless_reset(self.resets, |st| {
            for (p, d) in cases.ready.iter().zip(&delivered) {
                if *d {
                    st.mark_delivered(&p.seen.id, p.version);
                    if let Some(w) = &work_id {
                        super::verify::track(st, w, &p.seen.id);
                    }
                    ok += 1;
                } else {
                    failed.push(p.seen.id.clone());
                }
            }
            for id in failed.iter().chain(&cases.events_failed) {
                st.mark_failed(id, run_no);
            }
            for id in &cases.incomplete {
                st.mark_incomplete(id, run_no);
            }
            for id in &cases.gone {
                st.forget(id);
            }
        });
        if marked.is_none() {
            return Err(RunError::Reset);
        }
        self.report.cases_delivered += ok;
        self.report.cases_failed += failed.len() + cases.events_failed.len();
        self.report.cases_events_failed += cases.events_failed.len();
        self.report.cases_incomplete += cases.incomplete.len();
        info!(
            page = self.report.pages,
            delivered = ok,
            failed = failed.len() + cases.events_failed.len(),
            events_failed = cases.events_failed.len(),
            incomplete = cases.incomplete.len(),
            "page done"
        );
        Ok(())
    }
}

/// Awaits a save in flight, if any.
async fn finish(
    save: Option<impl std::future::Future<Output = Result<(), RunError>>>,
) -> Result<(), RunError> {
    match save {
        Some(save) => save.await,
        None => Ok(()),
    }
}

/// Saves the state; a reset seen by the platform stops the run.
async fn save_state(tracker: &impl Tracker, state: &SharedState) -> Result<(), RunError> {
    match tracker.save_state(state).await {
        Ok(Saved::Kept) => Ok(()),
        Ok(Saved::Reset) => Err(RunError::Reset),
        // Not fatal: the state stays in memory and the next save (next page, next ping)
        // carries it. Worst case after a crash: a page is sent again, with the same ids.
        Err(e) => {
            warn!(error = %e, "persisting the state failed; will retry");
            Ok(())
        }
    }
}

/// The ESM side of a run: reading cases and events and converting them. Shared, so the next
/// page is read while the current one is delivered.
struct Reader<'a, S> {
    source: &'a S,
    state: &'a SharedState,
    converter: &'a Converter,
}

impl<S> Clone for Reader<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Reader<'_, S> {}

impl<S: CaseSource> Reader<'_, S> {
    /// Reads `ids`; when a batch fails, bisects the failed ids down to the ones that fail
    /// alone, so one poison case costs only itself.
    async fn read_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, EsmError>)> {
        let mut out = Vec::with_capacity(ids.len());
        let mut todo = vec![ids.to_vec()];
        let mut budget = BISECT_BUDGET;
        while let Some(group) = todo.pop() {
            let mut failed = Vec::new();
            for (id, answer) in self.source.get_cases(&group).await {
                match &answer {
                    Err(e) if !is_gone(e) && bisectable(e) => failed.push((id, answer)),
                    _ => out.push((id, answer)),
                }
            }
            if failed.len() > 1 && budget >= 2 {
                budget -= 2;
                let ids: Vec<String> = failed.into_iter().map(|(id, _)| id).collect();
                let (a, b) = ids.split_at(ids.len() / 2);
                warn!(
                    cases = ids.len(),
                    "a case batch failed; splitting it to find the case that fails it"
                );
                todo.push(b.to_vec());
                todo.push(a.to_vec());
            } else {
                out.extend(failed);
            }
        }
        out
    }

    /// Reads `ids`' events, bisecting failed batches as [`Self::read_cases`] does.
    async fn read_events(&self, ids: &[EventId]) -> EventsFetch {
        let mut out = EventsFetch::default();
        let mut todo = vec![ids.to_vec()];
        let mut budget = BISECT_BUDGET;
        while let Some(group) = todo.pop() {
            let EventsFetch { events, failed } = self.source.get_events(&group).await;
            out.events.extend(events);
            let retry: Vec<EventId> = failed
                .iter()
                .filter(|(_, e)| bisectable(e))
                .map(|(id, _)| *id)
                .collect();
            let retried: HashSet<EventId> = retry.iter().copied().collect();
            if retry.len() > 1 && budget >= 2 {
                budget -= 2;
                warn!(
                    events = retry.len(),
                    "an event batch failed; splitting it to find the event that fails it"
                );
                let (a, b) = retry.split_at(retry.len() / 2);
                todo.push(b.to_vec());
                todo.push(a.to_vec());
                out.failed
                    .extend(failed.into_iter().filter(|(id, _)| !retried.contains(id)));
            } else {
                out.failed.extend(failed);
            }
        }
        out
    }

    /// Reads the page's cases again (their latest version) unless cached, and their events,
    /// and converts the ones that are complete (or have been incomplete for too long).
    /// `cached`: cases of the page read while listing, in the version selected; they are not
    /// read again.
    async fn fetch_page(&self, page: &[Seen], mut cached: HashMap<String, Case>) -> PageCases {
        let started = Instant::now();
        let ids: Vec<String> = page
            .iter()
            .filter(|s| !cached.contains_key(&s.id))
            .map(|s| s.id.clone())
            .collect();
        let mut answers: HashMap<String, Result<Value, EsmError>> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.read_cases(&ids).await.into_iter().collect()
        };
        let mut out = PageCases::default();
        let mut cases: Vec<(Seen, u64, Case)> = Vec::with_capacity(page.len());
        for s in page {
            if let Some(case) = cached.remove(&s.id) {
                cases.push((s.clone(), s.version, case));
                continue;
            }
            let answer = answers.remove(&s.id).unwrap_or(Err(EsmError::NotReturned {
                operation: "getResourcesByIds",
            }));
            match answer.as_ref().map(|v| (v, Case::from_value(v))) {
                Ok((v, Some(case))) => {
                    let version = version_hash(&s.id, v, &case.event_ids);
                    cases.push((s.clone(), version, case))
                }
                Err(e) if is_gone(e) => out.gone.push(s.id.clone()),
                _ => {
                    note_read_failure(&s.id, &answer);
                    out.failed.push(s.id.clone());
                }
            }
        }
        let event_ids: Vec<EventId> = {
            let mut set = HashSet::new();
            cases
                .iter()
                .flat_map(|(_, _, c)| c.event_ids.iter().copied())
                .filter(|id| set.insert(*id))
                .collect()
        };
        let fetched = if event_ids.is_empty() {
            EventsFetch::default()
        } else {
            self.read_events(&event_ids).await
        };
        for (seen, version, case) in cases {
            match self.convert(&fetched, &seen, &case) {
                Converted::Ready(objects, incidents) => out.ready.push(Prepared {
                    seen,
                    version,
                    objects,
                    incidents,
                }),
                Converted::Absent => out.incomplete.push(seen.id),
                Converted::EventsFailed => out.events_failed.push(seen.id),
            }
        }
        // What the read-ahead hides: compared with the delivery's "bundle published" line, it
        // tells whether a run waits for ESM or for the broker.
        debug!(
            cases = page.len(),
            events = fetched.events.len(),
            ms = started.elapsed().as_millis() as u64,
            "page read"
        );
        out
    }

    /// The case's objects; or why it is not delivered this run.
    ///
    /// An event whose read failed (an error, a timeout, a batch refused even after bisection)
    /// keeps the whole case back with the failure backoff: a case is delivered only when all
    /// its events are, else ESM trouble would drop the failed events for good (the case would
    /// be recorded as delivered at its version). An event ESM says does not exist (absent from
    /// a successful answer, or refused as an invalid resource) cannot come later: the case is
    /// held back a few runs (an event may be still being written when the case is read) and
    /// then goes with the events that exist.
    fn convert(&self, fetched: &EventsFetch, seen: &Seen, case: &Case) -> Converted {
        let mut unique = HashSet::new();
        let wanted: Vec<EventId> = case
            .event_ids
            .iter()
            .copied()
            .filter(|id| unique.insert(*id))
            .collect();
        let failed = wanted
            .iter()
            .filter(|id| fetched.failed.get(id).is_some_and(|e| !is_gone(e)))
            .count();
        if failed > 0 {
            warn!(case = %seen.id, listed = wanted.len(), failed, "reading some of the case's events failed; the case is retried in a later run");
            return Converted::EventsFailed;
        }
        let events: Vec<SecurityEvent> = wanted
            .iter()
            .filter_map(|id| fetched.events.get(id))
            .filter_map(SecurityEvent::from_value)
            .collect();
        if events.len() < wanted.len() {
            let runs = self.state.read(|s| s.incomplete_runs(&seen.id)) + 1;
            if runs < MAX_INCOMPLETE_RUNS {
                info!(case = %seen.id, listed = wanted.len(), returned = events.len(), "ESM returned fewer events than the case lists; case held back and tried again next run");
                return Converted::Absent;
            }
            warn!(case = %seen.id, listed = wanted.len(), returned = events.len(), runs, "ESM returned fewer events than the case lists, run after run (ESM says the others do not exist); delivering the case with the events that exist");
        }
        let incidents = events.len();
        Converted::Ready(self.converter.convert_case(case, &events), incidents)
    }
}

/// What [`Reader::convert`] made of a case.
enum Converted {
    /// Its objects and how many incidents they hold.
    Ready(Vec<StixObject>, usize),
    /// ESM says some of its events do not exist: held back (for now).
    Absent,
    /// Some of its events could not be read: retried with the backoff.
    EventsFailed,
}

/// `f`, bounded to [`STOP_CLEANUP_TIMEOUT`] when stopping (`None` when cut short).
async fn bounded<F: std::future::Future>(stopping: bool, f: F) -> Option<F::Output> {
    if stopping {
        tokio::time::timeout(STOP_CLEANUP_TIMEOUT, f).await.ok()
    } else {
        Some(f.await)
    }
}

/// `f`, given [`STOP_CLEANUP_TIMEOUT`] from the stop request, whether it came before `f`
/// started (`stopping`) or comes while `f` runs; `None` when that time ran out.
async fn bounded_from_stop<F: std::future::Future>(
    stopping: bool,
    shutdown: Option<&Shutdown>,
    f: F,
) -> Option<F::Output> {
    let Some(sd) = shutdown.filter(|_| !stopping) else {
        return bounded(stopping, f).await;
    };
    let mut sd = sd.clone();
    let mut f = std::pin::pin!(f);
    tokio::select! {
        biased;
        r = &mut f => Some(r),
        () = sd.wait() => tokio::time::timeout(STOP_CLEANUP_TIMEOUT, f).await.ok(),
    }
}

/// ESM says the case does not exist (any more).
fn is_gone(e: &EsmError) -> bool {
    matches!(e, EsmError::ErrorPage { exception: Some(x), .. } if x.to_ascii_lowercase().contains("invalidresourceid"))
}

/// Could this error come from one id in the batch (rather than from ESM or the network)?
fn bisectable(e: &EsmError) -> bool {
    matches!(
        e,
        EsmError::Status { .. }
            | EsmError::ErrorPage { .. }
            | EsmError::Decode { .. }
            | EsmError::NotReturned { .. }
    )
}

fn note_read_failure(id: &str, answer: &Result<Value, EsmError>) {
    match answer {
        Err(e) => warn!(case = %id, error = %e, "case fetch failed; retrying in a later run"),
        Ok(_) => warn!(
            case = %id,
            "ESM answered a case that is not a JSON object; retrying in a later run"
        ),
    }
}
