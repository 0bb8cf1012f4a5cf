//! The run's invariants against in-memory fakes (the end-to-end tests in `tests/` check the same
//! against the ESM simulator, a simulated platform and the real RabbitMQ).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::ports::{CaseSource, Saved, SharedState, Tracker, TrackerError};
use super::run::{RunConfig, RunReport, run_once};
use super::state::State;
use crate::convert::{ConvertOptions, Converter};
use crate::delivery::{DeliveryError, DeliveryReport, Sink};
use crate::esm::model::EventId;
use crate::esm::{EsmError, EventsFetch};
use crate::stix::{Bundle, StixObject};
use connector_runtime::schedule::{Shutdown, shutdown_pair};

/// Counts occurrences of something (a sink opened, a delivery begun) that a fake waits for.
#[derive(Default)]
struct Signal {
    count: Mutex<usize>,
    changed: tokio::sync::Notify,
}

impl Signal {
    fn fire(&self) {
        *self.count.lock().unwrap() += 1;
        self.changed.notify_waiters();
    }

    async fn reached(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if *self.count.lock().unwrap() >= n {
                return;
            }
            changed.await;
        }
    }
}

#[derive(Default)]
struct FakeEsm {
    cases: Mutex<BTreeMap<String, Value>>,
    events: Mutex<HashMap<EventId, Value>>,
    failing_cases: Mutex<HashSet<String>>,
    failing_events: Mutex<HashSet<EventId>>,
    logins: Mutex<usize>,
    logouts: Mutex<usize>,
    event_calls: Mutex<usize>,
    /// How often each case was read.
    case_reads: Mutex<HashMap<String, usize>>,
    /// From this event fetch on (0 = the first), signal `entered` and never answer.
    hang_from_call: Option<usize>,
    entered: std::sync::Arc<tokio::sync::Notify>,
    /// When set, event fetches wait until the sink has been opened.
    events_after_open: Option<Arc<Signal>>,
}

impl FakeEsm {
    fn with_cases(n: usize, events_per_case: usize) -> FakeEsm {
        let esm = FakeEsm::default();
        for c in 0..n {
            esm.put_case(c, 1_700_000_000_000 + (c as i64 % 3), events_per_case);
        }
        esm
    }

    fn put_case(&self, c: usize, modified: i64, events_per_case: usize) {
        let ids: Vec<EventId> = (0..events_per_case)
            .map(|e| (c * 100 + e) as EventId + 9_007_199_254_740_993)
            .collect();
        for id in &ids {
            self.events.lock().unwrap().insert(*id, json!({"eventId": id, "name": format!("event {id}"), "endTime": 1_700_000_000_000i64}));
        }
        self.cases.lock().unwrap().insert(
            format!("case-{c:03}"),
            json!({"resourceid": format!("case-{c:03}"), "name": format!("Case {c}"),
                   "createdTimestamp": 1_690_000_000_000i64, "modifiedTimestamp": modified, "eventIDs": ids}),
        );
    }

    fn touch(&self, c: usize, modified: i64) {
        let mut cases = self.cases.lock().unwrap();
        let case = cases.get_mut(&format!("case-{c:03}")).unwrap();
        case["modifiedTimestamp"] = json!(modified);
    }
}

impl CaseSource for FakeEsm {
    async fn login(&self) -> Result<(), EsmError> {
        *self.logins.lock().unwrap() += 1;
        Ok(())
    }
    async fn logout(&self) {
        *self.logouts.lock().unwrap() += 1;
    }
    async fn find_all_ids(&self) -> Result<Vec<String>, EsmError> {
        Ok(self.cases.lock().unwrap().keys().cloned().collect())
    }
    async fn get_cases(&self, ids: &[String]) -> Vec<(String, Result<Value, EsmError>)> {
        let cases = self.cases.lock().unwrap();
        let failing = self.failing_cases.lock().unwrap();
        let mut reads = self.case_reads.lock().unwrap();
        for id in ids {
            *reads.entry(id.clone()).or_default() += 1;
        }
        ids.iter()
            .map(|id| {
                let r = if failing.contains(id) {
                    Err(EsmError::Status {
                        operation: "getResourcesByIds",
                        status: 503,
                    })
                } else {
                    cases.get(id).cloned().ok_or(EsmError::NotReturned {
                        operation: "getResourcesByIds",
                    })
                };
                (id.clone(), r)
            })
            .collect()
    }
    async fn get_events(&self, ids: &[EventId]) -> EventsFetch {
        let call = {
            let mut n = self.event_calls.lock().unwrap();
            *n += 1;
            *n - 1
        };
        if let Some(opened) = &self.events_after_open {
            opened.reached(1).await;
        }
        if self.hang_from_call.is_some_and(|k| call >= k) {
            self.entered.notify_one();
            std::future::pending::<()>().await;
        }
        let events = self.events.lock().unwrap();
        let failing = self.failing_events.lock().unwrap();
        let mut fetched = EventsFetch::default();
        for id in ids {
            if failing.contains(id) {
                let page = EsmError::ErrorPage {
                    operation: "getSecurityEvents",
                    status: 500,
                    exception: None,
                };
                fetched.failed.insert(*id, Arc::new(page));
            } else if let Some(e) = events.get(id) {
                fetched.events.insert(*id, e.clone());
            }
        }
        fetched
    }
}

#[derive(Default)]
struct FakeSink {
    bundles: Vec<Bundle>,
    fail: bool,
    /// Deliveries so far, and the one (0 = the first) that fails as a lost broker does.
    delivers: usize,
    fail_at: Option<usize>,
    opened: usize,
    closed: usize,
    /// A bundle holding this case is refused (a nack: tied to the content).
    refuse_case: Option<String>,
    /// Every delivery times out, as a broker that stopped reading makes it.
    time_out: bool,
    /// Fired at every open and at the start of every delivery.
    on_open: Option<Arc<Signal>>,
    on_deliver: Option<Arc<Signal>>,
}

impl FakeSink {
    fn case_ids(&self) -> Vec<String> {
        self.bundles.iter().flat_map(case_ids_of).collect()
    }
}

/// The ESM ids of the cases a bundle holds.
fn case_ids_of(bundle: &Bundle) -> Vec<String> {
    bundle
        .objects
        .iter()
        .filter_map(|o| match o {
            StixObject::CaseIncident(c) => c
                .external_references
                .first()
                .and_then(|r| r.external_id.clone()),
            _ => None,
        })
        .collect()
}

impl Sink for FakeSink {
    async fn open(&mut self) -> Result<(), DeliveryError> {
        self.opened += 1;
        if let Some(s) = &self.on_open {
            s.fire();
        }
        Ok(())
    }
    fn expectations(&self, bundle: &Bundle) -> u64 {
        bundle.objects.len() as u64
    }
    async fn deliver(
        &mut self,
        bundle: &Bundle,
        _work_id: Option<&str>,
    ) -> Result<DeliveryReport, DeliveryError> {
        self.delivers += 1;
        if let Some(s) = &self.on_deliver {
            s.fire();
        }
        if self.fail || self.fail_at == Some(self.delivers - 1) {
            return Err(DeliveryError::Connect {
                host: "broker".into(),
                port: 5672,
                reason: "broker refused the connection".into(),
            });
        }
        if self.time_out {
            return Err(DeliveryError::Timeout {
                action_sequence: 1,
                after: std::time::Duration::from_secs(30),
            });
        }
        if let Some(refused) = &self.refuse_case
            && case_ids_of(bundle).contains(refused)
        {
            return Err(DeliveryError::Nack { action_sequence: 1 });
        }
        self.bundles.push(bundle.clone());
        Ok(DeliveryReport {
            messages: bundle.objects.len() as u64,
            ..DeliveryReport::default()
        })
    }
    async fn close(&mut self) -> Result<(), DeliveryError> {
        self.closed += 1;
        Ok(())
    }
}

/// A work: its id, its expectations (net of those given back), how it was closed (message, in
/// error), and the expectations reported processed (the sentinel).
type Work = (String, i64, Option<(String, bool)>, u64);

#[derive(Default)]
struct FakeTracker {
    works: Mutex<Vec<Work>>,
    saved: Mutex<Vec<State>>,
    /// When set, the first save waits until a second delivery has begun.
    first_save_after_second_delivery: Option<Arc<Signal>>,
}

impl Tracker for FakeTracker {
    async fn work_add(&self, _name: &str) -> Result<Option<String>, TrackerError> {
        let mut w = self.works.lock().unwrap();
        let id = format!("work-{}", w.len() + 1);
        w.push((id.clone(), 0, None, 0));
        Ok(Some(id))
    }
    async fn add_expectations(&self, work_id: &str, n: i64) -> Result<(), TrackerError> {
        let mut w = self.works.lock().unwrap();
        w.iter_mut().find(|x| x.0 == work_id).unwrap().1 += n;
        Ok(())
    }
    async fn report_expectation(&self, work_id: &str, _error: Option<&str>) {
        let mut w = self.works.lock().unwrap();
        w.iter_mut().find(|x| x.0 == work_id).unwrap().3 += 1;
    }
    async fn work_done(&self, work_id: &str, message: &str, in_error: bool) {
        let mut w = self.works.lock().unwrap();
        w.iter_mut().find(|x| x.0 == work_id).unwrap().2 = Some((message.to_owned(), in_error));
    }
    async fn save_state(&self, state: &SharedState) -> Result<Saved, TrackerError> {
        if let Some(deliveries) = &self.first_save_after_second_delivery
            && self.saved.lock().unwrap().is_empty()
        {
            deliveries.reached(2).await;
        }
        self.saved.lock().unwrap().push(state.snapshot());
        Ok(Saved::Kept)
    }
}

struct Harness {
    esm: FakeEsm,
    sink: FakeSink,
    tracker: FakeTracker,
    state: SharedState,
    converter: Converter,
    cfg: RunConfig,
}

impl Harness {
    fn new(esm: FakeEsm, max_cases: usize, page_size: usize) -> Harness {
        Harness {
            esm,
            sink: FakeSink::default(),
            tracker: FakeTracker::default(),
            state: SharedState::new(State::default()),
            converter: Converter::new(ConvertOptions::default()),
            cfg: RunConfig {
                max_cases,
                page_size,
                fetch_chunk: 3,
                friendly_name: "test run".into(),
                verify_period: None,
                verify_batch: 500,
                progress: None,
            },
        }
    }

    async fn run(&mut self) -> RunReport {
        self.run_until(None).await
    }

    /// A run that must finish: with the clock paused, a deadlock shows as the timeout firing
    /// at once, in virtual time, and fails the test with `stuck`.
    async fn run_unless_stuck(&mut self, stuck: &str) -> RunReport {
        tokio::time::timeout(std::time::Duration::from_secs(3600), self.run())
            .await
            .expect(stuck)
    }

    /// How many cases each save so far held, in order.
    fn saved_ledgers(&self) -> Vec<usize> {
        self.tracker
            .saved
            .lock()
            .unwrap()
            .iter()
            .map(State::delivered_count)
            .collect()
    }

    async fn run_until(&mut self, shutdown: Option<&Shutdown>) -> RunReport {
        run_once(
            &self.esm,
            std::slice::from_mut(&mut self.sink),
            &self.tracker,
            &self.converter,
            &self.state,
            &self.cfg,
            shutdown,
        )
        .await
    }
}

#[tokio::test]
async fn first_run_imports_everything_page_by_page_then_nothing() {
    let mut h = Harness::new(FakeEsm::with_cases(7, 2), 100, 3);
    let r = h.run().await;
    assert_eq!(
        (r.cases_seen, r.cases_delivered, r.cases_failed, r.pages),
        (7, 7, 0, 3)
    );
    let mut ids = h.sink.case_ids();
    ids.sort();
    assert_eq!(
        ids,
        (0..7).map(|c| format!("case-{c:03}")).collect::<Vec<_>>()
    );
    // Every page carries the author and the marking, and its cases' incidents.
    for b in &h.sink.bundles {
        assert!(
            b.objects
                .iter()
                .any(|o| matches!(o, StixObject::Identity(_)))
        );
        assert!(
            b.objects
                .iter()
                .any(|o| matches!(o, StixObject::MarkingDefinition(_)))
        );
    }
    // One work, expectations announced for every message plus the sentinel that keeps the
    // work open until the run reports it, closed without error.
    let works = h.tracker.works.lock().unwrap().clone();
    assert_eq!(works.len(), 1);
    assert_eq!(works[0].1, r.messages as i64 + 1);
    assert_eq!(works[0].3, 1, "the sentinel is reported");
    assert!(!works[0].2.as_ref().unwrap().1);
    // The state was saved after each page.
    assert_eq!(h.tracker.saved.lock().unwrap().len(), 3);
    assert_eq!(
        (
            *h.esm.logins.lock().unwrap(),
            *h.esm.logouts.lock().unwrap()
        ),
        (1, 1)
    );

    let before = h.sink.bundles.len();
    let r2 = h.run().await;
    assert_eq!(
        (r2.cases_changed, r2.messages, r2.work_id.clone()),
        (0, 0, None)
    );
    assert_eq!(h.sink.bundles.len(), before);
    assert_eq!(
        h.tracker.works.lock().unwrap().len(),
        1,
        "no work when nothing changed"
    );
    assert_eq!(*h.esm.logouts.lock().unwrap(), 2);
}

#[tokio::test]
async fn max_cases_spreads_the_import_over_runs_without_skipping() {
    let mut h = Harness::new(FakeEsm::with_cases(11, 1), 4, 2);
    let mut delivered = Vec::new();
    for _ in 0..11usize.div_ceil(4) {
        let before = h.sink.bundles.len();
        h.run().await;
        delivered.extend(
            FakeSink {
                bundles: h.sink.bundles[before..].to_vec(),
                ..FakeSink::default()
            }
            .case_ids(),
        );
    }
    let unique: HashSet<_> = delivered.iter().collect();
    assert_eq!(unique.len(), 11);
    assert_eq!(delivered.len(), 11, "nothing delivered twice");
    assert_eq!(h.run().await.cases_changed, 0);
}

#[tokio::test]
async fn a_failing_case_is_retried_and_does_not_stop_the_others() {
    let esm = FakeEsm::with_cases(5, 2);
    let poisoned: EventId = 9_007_199_254_740_993 + 200; // first event of case 2
    esm.failing_events.lock().unwrap().insert(poisoned);
    esm.failing_cases.lock().unwrap().insert("case-004".into());
    let mut h = Harness::new(esm, 100, 100);
    // Case 4 cannot be read: it fails. Case 2's event read fails: it fails too (a case is
    // delivered only when all its events are).
    let r = h.run().await;
    assert_eq!(
        (r.cases_delivered, r.cases_failed, r.cases_incomplete),
        (3, 2, 0)
    );
    assert_eq!(r.cases_events_failed, 1);
    assert!(!h.sink.case_ids().contains(&"case-002".to_owned()));
    let works = h.tracker.works.lock().unwrap().clone();
    assert!(works[0].2.as_ref().unwrap().1, "work closed in error");

    // Still failing: case 2 is tried again, case 4 still cannot be read, the others are not
    // re-sent.
    let r = h.run().await;
    assert_eq!(
        (r.cases_selected, r.cases_delivered, r.cases_failed),
        (1, 0, 2)
    );
    // Once the faults clear, both, which failed twice in a row, arrive after their backoff
    // (one run).
    h.esm.failing_events.lock().unwrap().clear();
    h.esm.failing_cases.lock().unwrap().clear();
    let before = h.sink.bundles.len();
    let r = h.run().await;
    assert_eq!((r.cases_delivered, r.cases_failed), (0, 0));
    let r = h.run().await;
    assert_eq!((r.cases_delivered, r.cases_failed), (2, 0));
    let mut late = FakeSink {
        bundles: h.sink.bundles[before..].to_vec(),
        ..FakeSink::default()
    }
    .case_ids();
    late.sort();
    assert_eq!(late, ["case-002", "case-004"]);
    assert_eq!(h.run().await.cases_changed, 0);
}

#[tokio::test]
async fn a_delivery_failure_leaves_the_state_where_it_was() {
    let mut h = Harness::new(FakeEsm::with_cases(3, 1), 100, 100);
    h.sink.fail = true;
    let r = h.run().await;
    assert!(r.error.as_deref().unwrap().contains("broker refused"));
    let st = h.state.snapshot();
    assert_eq!((st.delivered_count(), st.retry.len()), (0, 0));
    assert_eq!(h.sink.closed, 1, "the sink is closed after a failed run");
    h.sink.fail = false;
    let r = h.run().await;
    assert_eq!(r.cases_delivered, 3);
}

#[tokio::test]
async fn a_modified_case_is_sent_again_with_the_same_id() {
    let mut h = Harness::new(FakeEsm::with_cases(3, 1), 100, 100);
    h.run().await;
    let first_id = |b: &Bundle| {
        b.objects.iter().find_map(|o| match o {
            StixObject::CaseIncident(c) if c.name == "Case 1" => {
                Some((c.id.clone(), c.modified.clone()))
            }
            _ => None,
        })
    };
    let (id, modified) = first_id(&h.sink.bundles[0]).unwrap();
    h.esm.touch(1, 1_800_000_000_000);
    let r = h.run().await;
    assert_eq!(r.cases_delivered, 1);
    let (id2, modified2) = first_id(h.sink.bundles.last().unwrap()).unwrap();
    assert_eq!(id, id2);
    assert_ne!(modified, modified2);
}

#[tokio::test]
async fn a_stop_request_abandons_the_page_in_flight_and_keeps_what_was_confirmed() {
    let mut esm = FakeEsm::with_cases(5, 1);
    // The first page (two cases) goes through; the second page's event fetch hangs.
    esm.hang_from_call = Some(1);
    let entered = esm.entered.clone();
    let mut h = Harness::new(esm, 100, 2);
    let (trigger, shutdown) = shutdown_pair();
    let stop = async move {
        entered.notified().await;
        trigger.trigger();
    };
    let (r, ()) = tokio::join!(h.run_until(Some(&shutdown)), stop);
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("shutting down")),
        "{r:?}"
    );
    assert_eq!(r.cases_delivered, 2);
    assert_eq!(h.sink.bundles.len(), 1);
    assert_eq!(*h.esm.logouts.lock().unwrap(), 1, "ESM is logged out of");
    assert_eq!(h.sink.closed, 1, "the delivery is closed");
    {
        let works = h.tracker.works.lock().unwrap();
        let closed = works[0].2.as_ref().expect("the work is closed");
        assert!(closed.1, "the work is closed in error: {closed:?}");
    }
    // After a restart, the three cases of the abandoned pages are delivered, and only they.
    h.esm.hang_from_call = None;
    let r = h.run().await;
    assert_eq!(r.cases_delivered, 3, "{r:?}");
}

#[tokio::test]
async fn pages_commit_in_order_and_a_failed_page_leaves_the_later_ones_uncommitted() {
    let mut h = Harness::new(FakeEsm::with_cases(8, 1), 100, 2);
    // Page 2 of 4 fails (not about its content): the run stops there.
    h.sink.fail_at = Some(1);
    let r = h.run().await;
    assert!(
        r.error.as_deref().unwrap().contains("broker refused"),
        "{r:?}"
    );
    assert_eq!(r.cases_delivered, 2);
    let first = h.sink.case_ids();
    assert_eq!(first.len(), 2);
    // Every save holds a prefix of the pages: never a later page without the ones before.
    let ledgers = h.saved_ledgers();
    assert!(ledgers.iter().all(|n| *n <= 2), "{ledgers:?}");
    let st = h.state.snapshot();
    assert_eq!(
        st.delivered_count(),
        2,
        "pages 3 and 4 (read ahead or not) are not committed"
    );
    h.sink.fail_at = None;
    let r = h.run().await;
    assert_eq!(r.cases_delivered, 6, "{r:?}");
    let all: HashSet<String> = h.sink.case_ids().into_iter().collect();
    assert_eq!(all.len(), 8, "every case delivered across the two runs");
    assert_eq!(h.run().await.cases_delivered, 0);
}

#[tokio::test]
async fn a_first_import_reads_each_case_once() {
    let mut h = Harness::new(FakeEsm::with_cases(7, 2), 100, 2);
    let r = h.run().await;
    assert_eq!(r.cases_delivered, 7);
    let reads = h.esm.case_reads.lock().unwrap().clone();
    assert_eq!(reads.len(), 7);
    assert!(reads.values().all(|n| *n == 1), "{reads:?}");
    // An edit: the edited case is read once more (listing), not twice.
    h.esm.touch(3, 1_800_000_000_000);
    h.esm.case_reads.lock().unwrap().clear();
    assert_eq!(h.run().await.cases_delivered, 1);
    let reads = h.esm.case_reads.lock().unwrap().clone();
    assert!(reads.values().all(|n| *n == 1), "{reads:?}");
}

#[tokio::test(start_paused = true)]
async fn the_broker_connection_is_opened_while_the_first_page_is_read() {
    let mut h = Harness::new(FakeEsm::with_cases(4, 1), 100, 2);
    // Events are answered only once the sink is open: were the first page read before the
    // connection is made, the run would wait forever.
    let opened = Arc::new(Signal::default());
    h.esm.events_after_open = Some(opened.clone());
    h.sink.on_open = Some(opened);
    let r = h
        .run_unless_stuck("the first page's read and the connection ran in turn")
        .await;
    assert_eq!(r.cases_delivered, 4, "{r:?}");
    assert_eq!(h.sink.opened, 1);
}

#[tokio::test(start_paused = true)]
async fn a_page_is_saved_while_the_next_one_is_delivered_and_saves_stay_in_order() {
    let mut h = Harness::new(FakeEsm::with_cases(6, 1), 100, 2);
    // Page 1's save completes only once page 2's delivery has begun: were the save awaited
    // before the next delivery, the run would wait forever.
    let deliveries = Arc::new(Signal::default());
    h.sink.on_deliver = Some(deliveries.clone());
    h.tracker.first_save_after_second_delivery = Some(deliveries);
    let r = h
        .run_unless_stuck("the save and the next page's delivery ran in turn")
        .await;
    assert_eq!(r.cases_delivered, 6, "{r:?}");
    // Saves are whole prefixes, in order, and the last one holds every page.
    let ledgers = h.saved_ledgers();
    assert!(ledgers.windows(2).all(|w| w[0] <= w[1]), "{ledgers:?}");
    assert!(ledgers.iter().all(|n| n % 2 == 0), "{ledgers:?}");
    assert_eq!(ledgers.last(), Some(&6), "{ledgers:?}");
}

#[tokio::test]
async fn a_sink_that_times_out_everything_is_not_bisected() {
    let mut h = Harness::new(FakeEsm::with_cases(6, 1), 100, 6);
    h.sink.time_out = true;
    let r = h.run().await;
    // One delivery of the page, not 2n-1 = 11: a timeout says nothing about the content.
    assert_eq!(h.sink.delivers, 1, "{r:?}");
    assert_eq!(r.cases_delivered, 0);
    assert!(
        r.error.as_deref().unwrap().contains("did not confirm"),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_refused_page_is_bisected_and_the_other_cases_arrive_with_every_object_intact() {
    let esm = || {
        let esm = FakeEsm::with_cases(4, 2);
        // Case 1 also holds one of case 0's events: their incident stands once in a bundle.
        let mut cases = esm.cases.lock().unwrap();
        let shared = cases["case-000"]["eventIDs"][0].clone();
        cases.get_mut("case-001").unwrap()["eventIDs"]
            .as_array_mut()
            .unwrap()
            .push(shared);
        drop(cases);
        esm
    };
    let by_id = |bundles: &[Bundle]| -> HashMap<String, StixObject> {
        bundles
            .iter()
            .flat_map(|b| b.objects.iter())
            .map(|o| (o.id().to_owned(), o.clone()))
            .collect()
    };
    // What one page of the four cases holds when nothing is refused.
    let mut clean = Harness::new(esm(), 100, 4);
    assert_eq!(clean.run().await.cases_delivered, 4);
    let whole = by_id(&clean.sink.bundles);

    let mut h = Harness::new(esm(), 100, 4);
    h.sink.refuse_case = Some("case-002".into());
    let r = h.run().await;
    assert_eq!(r.cases_delivered, 3, "{r:?}");
    let mut delivered = h.sink.case_ids();
    delivered.sort();
    assert_eq!(delivered, ["case-000", "case-001", "case-003"]);
    // The halves carried the cases' own objects, as the whole page would have: none altered,
    // none lost (every reference of a delivered case is in what was delivered), and only
    // what case 2 alone brings is missing.
    let got = by_id(&h.sink.bundles);
    for (id, o) in &got {
        assert_eq!(Some(o), whole.get(id), "{id}");
    }
    let refs_of = |case: &str| -> Vec<String> {
        whole
            .values()
            .find_map(|o| match o {
                StixObject::CaseIncident(c)
                    if c.external_references[0].external_id.as_deref() == Some(case) =>
                {
                    let mut refs = c.object_refs.clone();
                    refs.push(c.id.clone());
                    Some(refs)
                }
                _ => None,
            })
            .unwrap()
    };
    for case in ["case-000", "case-001", "case-003"] {
        for id in refs_of(case) {
            assert!(got.contains_key(&id), "{case}: {id} was lost");
        }
    }
    let others: HashSet<String> = ["case-000", "case-001", "case-003"]
        .iter()
        .flat_map(|c| refs_of(c))
        .collect();
    let only_case_2 = refs_of("case-002")
        .into_iter()
        .filter(|id| !others.contains(id))
        .count();
    assert_eq!(got.len(), whole.len() - only_case_2);
}
