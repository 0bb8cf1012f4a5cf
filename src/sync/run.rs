//! One run: list, select, fetch, convert, deliver page by page, advance the state.
//!
//! The state advances only after a page is confirmed by every sink, and is persisted at once,
//! so a crash or a SIGTERM loses at most the page in flight, and memory is bounded by the page
//! size, not by the number of cases.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::Value;
use tracing::{debug, info, warn};

use super::schedule::Shutdown;
use super::state::{Seen, State, count_changed, select};

/// Longest wait for each cleanup step (logout, closing the connection, closing the work), so a
/// stop request is honoured within seconds even when a peer hangs.
const CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
use crate::convert::Converter;
use crate::esm::model::{Case, EventId, SecurityEvent};
use crate::stix::Bundle;

/// Where the ESM data comes from: the real client, or anything shaped like it.
#[allow(async_fn_in_trait)]
pub trait CaseSource {
    async fn login(&self) -> Result<(), String>;
    async fn logout(&self);
    async fn find_all_ids(&self) -> Result<Vec<String>, String>;
    /// Per id, the raw case or why it could not be read.
    async fn get_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, String>)>;
    /// Events found, and the ids whose fetch failed (with why).
    async fn get_events(
        &self,
        ids: &[EventId],
    ) -> (HashMap<EventId, Value>, HashMap<EventId, String>);
}

/// The platform's work tracking and state persistence.
#[allow(async_fn_in_trait)]
pub trait Tracker {
    async fn work_add(&self, friendly_name: &str) -> Result<Option<String>, String>;
    async fn add_expectations(&self, work_id: &str, n: u64) -> Result<(), String>;
    async fn work_done(&self, work_id: &str, message: &str, in_error: bool);
    /// Persists the state; the run goes on (the next page's save retries it) if this fails.
    /// `Ok(Some(state))`: the platform holds another state (an operator reset it): adopt it.
    async fn save_state(&self, state: &State) -> Result<Option<State>, String>;
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub max_cases: usize,
    pub page_size: usize,
    /// Case ids per `get_cases` call while listing (the ESM client batches and parallelises
    /// within a call): bounds the raw answers held at once.
    pub fetch_chunk: usize,
    pub friendly_name: String,
}

/// What a run did, logged as one line and shown in the work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    pub cases_seen: usize,
    pub cases_changed: usize,
    pub cases_selected: usize,
    pub cases_delivered: usize,
    pub cases_failed: usize,
    pub incidents: usize,
    pub objects: usize,
    pub messages: u64,
    pub pages: usize,
    pub seconds: f64,
    /// Why the run stopped early, if it did (secret-free).
    pub error: Option<String>,
    pub work_id: Option<String>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.cases_failed == 0
    }

    /// The message put on the work.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} cases seen, {} changed, {} delivered, {} failed, {} objects in {} messages",
            self.cases_seen,
            self.cases_changed,
            self.cases_delivered,
            self.cases_failed,
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

/// Runs once. `state` is the shared state; it is updated page by page and saved through the
/// tracker after each confirmed page.
/// When `shutdown` fires, the page in flight is abandoned (its state is not advanced), the work
/// is closed in error and ESM is logged out of; cleanup steps are bounded in time so the process
/// stops promptly even if ESM or the platform hangs.
#[allow(clippy::too_many_arguments)]
pub async fn run_once(
    source: &impl CaseSource,
    sinks: &mut [&mut dyn Sink],
    tracker: &impl Tracker,
    converter: &Converter,
    state: &std::sync::Mutex<State>,
    cfg: &RunConfig,
    shutdown: Option<&Shutdown>,
) -> RunReport {
    let started = Instant::now();
    let mut report = RunReport::default();
    if let Err(e) = source.login().await {
        report.error = Some(format!("ESM login failed: {e}"));
        report.seconds = started.elapsed().as_secs_f64();
        return report;
    }
    let work = run_logged_in(source, sinks, tracker, converter, state, cfg, &mut report);
    let result = match shutdown {
        Some(sd) => {
            let mut sd = sd.clone();
            tokio::select! {
                biased;
                _ = sd.wait() => Err("stopped: the connector is shutting down".to_owned()),
                r = work => r,
            }
        }
        None => work.await,
    };
    if let Err(e) = result {
        report.error = Some(e);
    }
    if tokio::time::timeout(CLEANUP_TIMEOUT, source.logout())
        .await
        .is_err()
    {
        warn!(
            timeout_s = CLEANUP_TIMEOUT.as_secs(),
            "ESM logout timed out; the session ends when ESM expires it"
        );
    }
    for sink in sinks.iter_mut() {
        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, sink.close_dyn()).await;
    }
    if let Some(work_id) = &report.work_id {
        let summary = report.summary();
        let _ = tokio::time::timeout(
            CLEANUP_TIMEOUT,
            tracker.work_done(work_id, &summary, !report.succeeded()),
        )
        .await;
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

async fn run_logged_in(
    source: &impl CaseSource,
    sinks: &mut [&mut dyn Sink],
    tracker: &impl Tracker,
    converter: &Converter,
    state: &std::sync::Mutex<State>,
    cfg: &RunConfig,
    report: &mut RunReport,
) -> Result<(), String> {
    let ids = source
        .find_all_ids()
        .await
        .map_err(|e| format!("listing cases failed: {e}"))?;
    report.cases_seen = ids.len();

    // Pass 1: every case's modification time, to select what changed. Cases are read in
    // chunks and only their id and timestamp are kept, so memory does not grow with the
    // number of cases in ESM; pass 2 reads the selected ones again, a page at a time.
    let mut seen = Vec::with_capacity(ids.len());
    let mut fetch_failed = 0usize;
    for chunk in ids.chunks(cfg.fetch_chunk.max(1)) {
        for (id, answer) in source.get_cases(chunk).await {
            match read_case(&id, answer) {
                Some(case) => seen.push(Seen {
                    id,
                    modified_ms: case.modified_ms,
                }),
                None => {
                    state_lock(state).mark_failed(None, &id);
                    fetch_failed += 1;
                }
            }
        }
    }
    let selected = {
        let mut st = state_lock(state);
        let existing: HashSet<&str> = ids.iter().map(String::as_str).collect();
        st.forget_missing(&existing);
        report.cases_changed = count_changed(&st, &seen) + fetch_failed;
        select(&st, &seen, cfg.max_cases)
    };
    drop(seen);
    report.cases_failed += fetch_failed;
    report.cases_selected = selected.len();
    info!(
        seen = report.cases_seen,
        changed = report.cases_changed,
        selected = report.cases_selected,
        "cases listed"
    );
    if selected.is_empty() {
        if fetch_failed > 0 {
            save(tracker, state).await;
        }
        return Ok(());
    }

    let mut opened = false;
    for page in selected.chunks(cfg.page_size.max(1)) {
        // Pass 2: the page's cases, read again (their latest version).
        let page_ids: Vec<String> = page.iter().map(|s| s.id.clone()).collect();
        let mut fetched: HashMap<String, Case> = HashMap::with_capacity(page.len());
        for (id, answer) in source.get_cases(&page_ids).await {
            if let Some(case) = read_case(&id, answer) {
                fetched.insert(id, case);
            }
        }
        let mut failed: Vec<&Seen> = Vec::new();
        let mut page_cases: Vec<(&Seen, Case)> = Vec::with_capacity(page.len());
        for s in page {
            match fetched.remove(&s.id) {
                Some(case) => page_cases.push((s, case)),
                None => failed.push(s),
            }
        }
        let event_ids: Vec<EventId> = {
            let mut set = HashSet::new();
            page_cases
                .iter()
                .flat_map(|(_, c)| c.event_ids.iter().copied())
                .filter(|id| set.insert(*id))
                .collect()
        };
        let (events, failed_events) = if event_ids.is_empty() {
            (HashMap::new(), HashMap::new())
        } else {
            source.get_events(&event_ids).await
        };

        let mut bundle = Bundle::new(Vec::new());
        let mut delivered: Vec<&Seen> = Vec::new();
        for (seen, case) in &page_cases {
            if let Some((id, why)) = case
                .event_ids
                .iter()
                .find_map(|id| failed_events.get(id).map(|why| (id, why)))
            {
                warn!(case = %seen.id, event = id, error = %why, "events fetch failed; case retried next run");
                failed.push(seen);
                continue;
            }
            let mut seen_events = HashSet::new();
            let case_events: Vec<SecurityEvent> = case
                .event_ids
                .iter()
                .filter(|id| seen_events.insert(**id))
                .filter_map(|id| events.get(id))
                .filter_map(SecurityEvent::from_value)
                .collect();
            let missing = case.event_ids.len() - case_events.len().min(case.event_ids.len());
            if missing > 0 {
                debug!(case = %seen.id, missing, "some events were not found in ESM");
            }
            report.incidents += case_events.len();
            bundle.extend_dedup(converter.convert_case(case, &case_events));
            delivered.push(seen);
        }
        drop(events);

        if !delivered.is_empty() {
            bundle.extend_dedup(converter.common_objects());
            if !opened {
                for sink in sinks.iter_mut() {
                    sink.open_dyn()
                        .await
                        .map_err(|e| format!("delivery unavailable: {e}"))?;
                }
                opened = true;
            }
            if report.work_id.is_none() {
                report.work_id = tracker
                    .work_add(&cfg.friendly_name)
                    .await
                    .map_err(|e| format!("creating the work failed: {e}"))?;
            }
            let expectations: u64 = sinks.iter().map(|s| s.expectations_dyn(&bundle)).sum();
            if let (Some(work_id), true) = (&report.work_id, expectations > 0) {
                tracker
                    .add_expectations(work_id, expectations)
                    .await
                    .map_err(|e| format!("adding expectations failed: {e}"))?;
            }
            for sink in sinks.iter_mut() {
                let sent = sink
                    .deliver_dyn(&bundle, report.work_id.as_deref())
                    .await
                    .map_err(|e| format!("delivery failed: {e}"))?;
                report.messages += sent;
            }
            report.objects += bundle.objects.len();
            report.pages += 1;
        }

        {
            let mut st = state_lock(state);
            for s in &delivered {
                st.mark_delivered(s.modified_ms.unwrap_or(i64::MIN), &s.id);
            }
            for s in &failed {
                st.mark_failed(s.modified_ms, &s.id);
            }
        }
        report.cases_delivered += delivered.len();
        report.cases_failed += failed.len();
        save(tracker, state).await;
        info!(
            page = report.pages,
            delivered = delivered.len(),
            failed = failed.len(),
            objects = bundle.objects.len(),
            "page delivered"
        );
    }
    Ok(())
}

/// The case in `answer`, or `None` after saying why it cannot be used this run.
fn read_case(id: &str, answer: Result<Value, String>) -> Option<Case> {
    match answer.map(|v| Case::from_value(&v)) {
        Ok(Some(case)) => Some(case),
        Ok(None) => {
            warn!(case = %id, "ESM answered a case that is not a JSON object; retrying next run");
            None
        }
        Err(e) => {
            warn!(case = %id, error = %e, "case fetch failed; retrying next run");
            None
        }
    }
}

async fn save(tracker: &impl Tracker, state: &std::sync::Mutex<State>) {
    let snapshot = state_lock(state).clone();
    match tracker.save_state(&snapshot).await {
        Ok(None) => {}
        Ok(Some(reset)) => {
            info!("the state was reset in the platform: the next run imports everything again");
            *state_lock(state) = reset;
        }
        // Not fatal: the state stays in memory and the next save (next page, next ping)
        // carries it. Worst case after a crash: a page is sent again, with the same ids.
        Err(e) => warn!(error = %e, "persisting the state failed; will retry"),
    }
}

fn state_lock(state: &std::sync::Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A poisoned lock only means another thread panicked mid-update of plain data; the state
    // is still usable.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where bundles go. The run only asks "how many messages will this page make" and "deliver
/// it"; object-safe so that one run can feed several sinks (queue and directory) at once.
pub trait Sink: Send {
    /// Opens what a run needs (e.g. a fresh AMQP connection); called before the first page.
    fn open_dyn(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>;
    /// AMQP messages this page will produce (0 when the sink does not use the queue).
    fn expectations_dyn(&self, bundle: &Bundle) -> u64;
    /// Delivers a page; `Ok(messages)` only once the destination confirmed it.
    fn deliver_dyn<'a>(
        &'a mut self,
        bundle: &'a Bundle,
        work_id: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + 'a>>;
    /// Releases what `open_dyn` took; called at the end of every run, failed or not.
    fn close_dyn(&mut self)
    -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}
