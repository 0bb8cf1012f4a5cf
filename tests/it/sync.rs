//! Exact incremental sync (issue 12), black box: the ESM simulator, the simulated platform and
//! the real RabbitMQ. Each scenario ends with every case ESM holds received in its latest
//! version, and a further run with nothing changed sends nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use esm_simulator::Faults;
use serde_json::Value;

use crate::common::world::{Env, Run};

/// 2100-01-01T00:00:00Z.
const YEAR_2100_MS: i64 = 4_102_444_800_000;
/// 2001-09-09T01:46:40Z: below anything the simulator stamps.
const LONG_AGO_MS: i64 = 1_000_000_000_000;

/// The last version of each case-incident received over `runs`, by id.
fn received(runs: &[&Run]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for r in runs {
        for o in r.objects.iter().filter(|o| o["type"] == "case-incident") {
            out.insert(o["id"].as_str().unwrap().to_owned(), o.clone());
        }
    }
    out
}

/// Every case ESM holds arrived in its latest version, then a run sends nothing.
async fn assert_all_latest_then_quiet(env: &Env, runs: &[&Run]) {
    assert_all_latest(env, &received(runs));
    let quiet = env.run().await;
    assert!(quiet.succeeded);
    assert!(
        quiet.objects.is_empty(),
        "nothing changed, yet {} messages were sent",
        quiet.objects.len()
    );
    assert!(quiet.new_works.is_empty(), "no work when nothing is sent");
}

/// `got` (case-incidents by id) holds every case ESM holds, in its latest version.
fn assert_all_latest(env: &Env, got: &BTreeMap<String, Value>) {
    let expected = env.expected_objects();
    for id in env.all_case_incident_ids() {
        let want = &expected[&id];
        let have = got
            .get(&id)
            .unwrap_or_else(|| panic!("case {id} never arrived"));
        assert_eq!(
            have["modified"], want["modified"],
            "case {id} arrived in an old version"
        );
        assert_eq!(have, want, "case {id} differs from its latest version");
    }
}

/// The state the platform holds now.
fn platform_state(env: &Env) -> Value {
    let text = env
        .platform
        .recorded(|r| r.connector_state.clone())
        .expect("a state was saved");
    serde_json::from_str(&text).unwrap()
}

/// Cases in a state's ledger (12 bytes each, base64).
fn ledger_len(state: &Value) -> usize {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(state["ledger"].as_str().unwrap_or_default())
        .unwrap();
    assert_eq!(bytes.len() % 12, 0, "whole ledger entries");
    bytes.len() / 12
}

/// `stixBundlePush` calls so far (accepted or refused).
fn push_calls(env: &Env) -> usize {
    env.platform.recorded(|r| {
        r.operations
            .iter()
            .filter(|o| *o == "stixBundlePush")
            .count()
    })
}

/// The case-incidents of the bundles the platform accepted, from the `from`th on.
fn pushed_cases(env: &Env, from: usize) -> BTreeMap<String, Value> {
    let bundles = env.platform.recorded(|r| r.pushed_bundles[from..].to_vec());
    let mut out = BTreeMap::new();
    for b in bundles {
        let bundle: Value = serde_json::from_str(&b).unwrap();
        for o in bundle["objects"].as_array().unwrap() {
            if o["type"] == "case-incident" {
                out.insert(o["id"].as_str().unwrap().to_owned(), o.clone());
            }
        }
    }
    out
}

fn accepted_bundles(env: &Env) -> usize {
    env.platform.recorded(|r| r.pushed_bundles.len())
}

/// A case with at least `n` events, and its event ids.
fn case_with_events(env: &Env, n: usize) -> (String, Vec<i64>) {
    env.sim
        .case_ids()
        .into_iter()
        .map(|id| {
            let events = env.sim.case_event_ids(&id).unwrap();
            (id, events)
        })
        .find(|(_, e)| e.len() >= n)
        .expect("the data set has a case with enough events")
}

fn logged(env: &Env, level: &str, needle: &str) -> Vec<Value> {
    env.logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["level"]
                .as_str()
                .is_some_and(|l| l.eq_ignore_ascii_case(level))
                && v["message"].as_str().is_some_and(|m| m.contains(needle))
        })
        .collect()
}

#[tokio::test]
async fn a_case_stamped_in_the_future_does_not_stop_later_imports() {
    let env = Env::start(6, 1).await;
    let ids = env.sim.case_ids();
    env.sim.set_case_modified(&ids[0], YEAR_2100_MS);
    let r1 = env.run().await;
    assert!(r1.succeeded);
    let added = env.sim.add_cases(3);
    env.sim.touch_case(&ids[1]);
    let r2 = env.run().await;
    env.sim.add_cases(2);
    env.sim.touch_case(&added[0]);
    let r3 = env.run().await;
    assert!(r2.succeeded && r3.succeeded);
    assert_eq!(r2.case_count(), 4, "three new cases and one edit");
    assert_eq!(r3.case_count(), 3, "two new cases and one edit");
    assert_all_latest_then_quiet(&env, &[&r1, &r2, &r3]).await;
    env.stop().await;
}

#[tokio::test]
async fn a_backdated_new_case_and_an_edit_below_the_old_watermark_are_sent() {
    let env = Env::start(5, 1).await;
    let r1 = env.run().await;
    let ids = env.sim.case_ids();
    let new = env.sim.add_cases(1);
    env.sim.set_case_modified(&new[0], LONG_AGO_MS);
    env.sim.set_case_modified(&ids[2], LONG_AGO_MS + 1);
    let r2 = env.run().await;
    assert!(r2.succeeded);
    let sent: Vec<String> = r2.case_ids().into_iter().collect();
    let mut want = vec![env.case_incident_id(&new[0]), env.case_incident_id(&ids[2])];
    want.sort();
    assert_eq!(sent, want);
    assert_all_latest_then_quiet(&env, &[&r1, &r2]).await;
    env.stop().await;
}

#[tokio::test]
async fn a_case_created_while_the_listing_is_in_progress_is_sent_next_run() {
    let env = Env::start(4, 1).await;
    env.sim.create_cases_after_next_listing(2);
    let r1 = env.run().await;
    assert_eq!(r1.case_count(), 4, "the two new cases missed the listing");
    // Created during the listing, so stamped no later than what the run saw.
    for id in &env.sim.case_ids()[4..] {
        env.sim.set_case_modified(id, LONG_AGO_MS);
    }
    let r2 = env.run().await;
    assert_eq!(r2.case_count(), 2);
    assert_all_latest_then_quiet(&env, &[&r1, &r2]).await;
    env.stop().await;
}

#[tokio::test]
async fn an_empty_or_short_listing_forgets_nothing() {
    let env = Env::start(8, 1).await;
    let poison = env.sim.case_ids()[5].clone();
    env.sim.poison_case(&poison, true);
    let r1 = env.run().await;
    assert_eq!(r1.case_count(), 7);
    let state_before = env
        .platform
        .recorded(|r| r.connector_state.clone())
        .unwrap();
    for n in [0, 3] {
        env.sim.short_listing_once(n);
        let glitch = env.run().await;
        assert!(glitch.objects.is_empty());
    }
    assert_eq!(
        logged(&env, "error", "listed far fewer cases").len(),
        2,
        "each untrusted listing is logged at error"
    );
    let state_after: Value = serde_json::from_str(
        &env.platform
            .recorded(|r| r.connector_state.clone())
            .unwrap(),
    )
    .unwrap();
    let before: Value = serde_json::from_str(&state_before).unwrap();
    assert_eq!(
        state_after["ledger"], before["ledger"],
        "the ledger is kept"
    );
    assert!(
        state_after["retry"].get(&poison).is_some(),
        "the retry entry is kept: {state_after}"
    );
    env.sim.poison_case(&poison, false);
    let mut runs = vec![r1];
    // The failing case backs off; it arrives within a few runs.
    for _ in 0..4 {
        runs.push(env.run().await);
    }
    let refs: Vec<&Run> = runs.iter().collect();
    assert_all_latest_then_quiet(&env, &refs).await;
    env.stop().await;
}

#[tokio::test]
async fn a_poison_case_fails_alone_and_arrives_once_readable() {
    let env = Env::start(12, 1).await;
    let ids = env.sim.case_ids();
    env.sim.poison_case(&ids[7], true);
    let r1 = env.run().await;
    assert!(!r1.succeeded, "a failed case fails the run");
    assert_eq!(
        r1.case_count(),
        11,
        "every other case goes on in the same run"
    );
    assert!(!r1.case_ids().contains(&env.case_incident_id(&ids[7])));
    env.sim.poison_case(&ids[7], false);
    let r2 = env.run().await;
    assert_eq!(r2.case_count(), 1);
    assert_all_latest_then_quiet(&env, &[&r1, &r2]).await;
    env.stop().await;
}

#[tokio::test]
async fn a_poison_event_holds_back_only_its_case() {
    let env = Env::start(6, 3).await;
    let (case, events) = case_with_events(&env, 2);
    let event = events[1];
    env.sim.poison_event(event, true);
    let r1 = env.run().await;
    assert_eq!(r1.case_count(), 5);
    assert!(!r1.case_ids().contains(&env.case_incident_id(&case)));
    env.sim.poison_event(event, false);
    let r2 = env.run().await;
    assert_eq!(r2.case_count(), 1);
    assert_all_latest_then_quiet(&env, &[&r1, &r2]).await;
    env.stop().await;
}

#[tokio::test]
async fn missing_events_hold_a_case_back_then_it_is_delivered_with_a_warning() {
    let env = Env::start(3, 2).await;
    let (_, events) = case_with_events(&env, 2);
    let event = events[0];
    env.sim.hide_event(event, true);
    let r1 = env.run().await;
    let r2 = env.run().await;
    assert_eq!(
        (r1.case_count(), r2.case_count()),
        (2, 0),
        "held back twice"
    );
    let r3 = env.run().await;
    assert_eq!(r3.case_count(), 1, "then delivered with what exists");
    let warned = logged(&env, "warn", "fewer events than the case lists");
    assert_eq!(warned.len(), 1);
    let fields = &warned[0]["fields"];
    let fields = if fields.is_object() {
        fields
    } else {
        &warned[0]
    };
    let listed = events.len() as u64;
    assert_eq!(
        (fields["listed"].as_u64(), fields["returned"].as_u64()),
        (Some(listed), Some(listed - 1))
    );
    // With the event back, the case is complete again once it changes; until then nothing
    // is sent again.
    env.sim.hide_event(event, false);
    let quiet = env.run().await;
    assert!(quiet.objects.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn a_reset_seen_mid_run_stops_marking_and_the_next_run_starts_from_scratch() {
    let env = Env::start(10, 1).await;
    // The platform answers the first save (after page 1 of 3) with an empty state.
    env.platform.update(|r| r.reset_pending = true);
    let r1 = env.run().await;
    assert!(r1.succeeded, "a reset is not a failure");
    // Page 1's save runs while page 2 is delivered: the reset stops the run before page 3.
    assert!(
        r1.case_count() <= 8,
        "the run stopped after the pages in flight"
    );
    let r2 = env.run().await;
    assert_eq!(
        r2.case_count(),
        10,
        "the next run starts from the empty state"
    );
    assert_all_latest_then_quiet(&env, &[&r2]).await;
    env.stop().await;
}

#[tokio::test]
async fn an_undeliverable_case_is_isolated_retried_with_backoff_and_its_page_is_not_republished() {
    let mut env = Env::start(8, 1).await;
    env.set("CONNECTOR_QUEUE_PROTOCOL", "api");
    let bad = env.sim.case_ids()[5].clone();
    let bad_incident = env.case_incident_id(&bad);
    // The API refuses any bundle holding this case (its size, say): tied to its content.
    let needle = bad_incident.clone();
    env.platform
        .update(|r| r.refuse_bundles_containing = Some(needle));

    let r1 = env.run().await;
    assert!(!r1.succeeded, "a case no sink takes fails the run");
    let first = pushed_cases(&env, 0);
    assert_eq!(
        first.len(),
        7,
        "every other case is delivered in the same run"
    );
    assert!(!first.contains_key(&bad_incident));
    assert_eq!(
        platform_state(&env)["retry"][&bad]["n"],
        1,
        "the case goes to retry"
    );

    // Next run: only the failing case is tried, on its own, once.
    let (calls, accepted) = (push_calls(&env), accepted_bundles(&env));
    let r2 = env.run().await;
    assert!(!r2.succeeded);
    assert_eq!(push_calls(&env) - calls, 1, "only the failing case, alone");
    assert_eq!(accepted_bundles(&env), accepted);
    assert_eq!(platform_state(&env)["retry"][&bad]["n"], 2);

    // Then it backs off: a run without any publication.
    let calls = push_calls(&env);
    env.run().await;
    assert_eq!(
        push_calls(&env),
        calls,
        "the failing case waits its backoff"
    );

    env.platform.update(|r| r.refuse_bundles_containing = None);
    let accepted = accepted_bundles(&env);
    let r4 = env.run().await;
    assert!(r4.succeeded);
    let last = pushed_cases(&env, accepted);
    assert_eq!(
        last.keys().cloned().collect::<Vec<_>>(),
        vec![bad_incident],
        "once taken, the case arrives, and only it"
    );
    assert!(platform_state(&env)["retry"].is_null(), "retry is empty");
    assert_all_latest(&env, &pushed_cases(&env, 0));

    let calls = push_calls(&env);
    let quiet = env.run().await;
    assert!(quiet.succeeded);
    assert_eq!(push_calls(&env), calls, "nothing changed: nothing is sent");
    assert!(quiet.new_works.is_empty(), "no work when nothing is sent");
    env.stop().await;
}

#[tokio::test]
async fn pings_racing_the_runs_saves_never_send_an_older_state() {
    let mut env = Env::start(48, 1).await;
    // A ping every 2 ms while ESM takes 5 ms a request: pings land between every two saves.
    // The platform takes pings in at uneven speeds, so two sent at once may land out of order.
    env.ping_interval = Some(Duration::from_millis(2));
    env.platform.update(|r| r.ping_jitter = true);
    env.sim.set_faults(Faults {
        latency: Duration::from_millis(5),
        ..Faults::default()
    });
    let r1 = env.run().await;
    assert!(r1.succeeded);
    assert_eq!(r1.case_count(), 48);
    let received: Vec<String> = env
        .platform
        .recorded(|r| r.pings.clone())
        .into_iter()
        .map(|p| p.expect("every ping carries the state"))
        .collect();
    let pages = 48 / 4;
    assert!(
        received.len() > 2 * pages,
        "pings raced the {pages} page saves: {} states received",
        received.len()
    );
    // Never backwards: the ledger only grows, and no state comes back once a newer one was
    // sent.
    let sizes: Vec<usize> = received
        .iter()
        .map(|t| ledger_len(&serde_json::from_str(t).unwrap()))
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0] <= w[1]),
        "the ledger went backwards: {sizes:?}"
    );
    for (i, text) in received.iter().enumerate() {
        let earlier_then_left = received[..i]
            .iter()
            .rposition(|t| t == text)
            .is_some_and(|j| received[j..i].iter().any(|t| t != text));
        assert!(!earlier_then_left, "state {i} is an older one sent again");
    }
    assert_eq!(*sizes.last().unwrap(), 48);
    assert_eq!(
        received.last(),
        env.platform
            .recorded(|r| r.connector_state.clone())
            .as_ref(),
        "the platform keeps the final state"
    );
    env.sim.set_faults(Faults::default());
    assert_all_latest_then_quiet(&env, &[&r1]).await;
    env.stop().await;
}

#[tokio::test]
async fn a_case_esm_says_is_gone_leaves_the_ledger_at_once() {
    let env = Env::start(6, 1).await;
    let r1 = env.run().await;
    assert_eq!(r1.case_count(), 6);
    assert_eq!(ledger_len(&platform_state(&env)), 6);
    // Listed, then deleted before it is read: ESM answers InvalidResourceIDException.
    let gone = env.sim.case_ids()[2].clone();
    env.sim.delete_case_after_next_listing(&gone);
    let r2 = env.run().await;
    assert!(r2.succeeded, "a deleted case is not a failure");
    assert!(r2.objects.is_empty());
    let state = platform_state(&env);
    assert_eq!(
        ledger_len(&state),
        5,
        "forgotten at once, not after several listings"
    );
    assert!(state["retry"].is_null(), "not retried: {state}");
    assert_all_latest_then_quiet(&env, &[&r1]).await;
    env.stop().await;
}

#[tokio::test]
async fn a_first_import_reads_each_case_from_esm_once() {
    let env = Env::start(12, 2).await;
    let r1 = env.run().await;
    assert_eq!(r1.case_count(), 12);
    let counters = env.sim.counters();
    let reads = |name: &str| counters.get(name).copied().unwrap_or(0);
    // 12 cases fit one batch: read once while listing, not again for their three pages.
    assert_eq!(
        (reads("getResourcesByIds"), reads("getResourceById")),
        (1, 0),
        "{counters:?}"
    );
    assert_all_latest_then_quiet(&env, &[&r1]).await;
    env.stop().await;
}

fn incidents(run: &Run) -> usize {
    run.objects
        .iter()
        .filter(|o| o["type"] == "incident")
        .count()
}

#[tokio::test]
async fn a_case_whose_event_fails_three_runs_then_recovers_arrives_complete() {
    let env = Env::start(1, 3).await;
    let (case, events) = case_with_events(&env, 3);
    let event = *events.last().unwrap();
    env.sim.poison_event(event, true);
    let r1 = env.run().await;
    let r2 = env.run().await;
    let r3 = env.run().await;
    for r in [&r1, &r2, &r3] {
        assert!(
            !r.case_ids().contains(&env.case_incident_id(&case)),
            "not delivered while an event fails"
        );
        assert_eq!(incidents(r), 0);
    }
    // Runs 1 and 2 try it and report it failed (run 3 is within the backoff).
    for r in [&r1, &r2] {
        assert!(!r.succeeded, "a case whose event failed fails the run");
        let work = r.new_works.last().expect("a work per run");
        let (message, failed) = work.processed.clone().expect("the work is closed");
        assert!(failed);
        assert!(
            message.contains("1 failed (1 for their events)"),
            "{message}"
        );
    }
    assert!(!logged(&env, "warn", "reading some of the case's events failed").is_empty());
    env.sim.poison_event(event, false);
    let r4 = env.run().await;
    assert!(r4.case_ids().contains(&env.case_incident_id(&case)));
    assert_eq!(incidents(&r4), events.len(), "every event arrives");
    env.stop().await;
}

#[tokio::test]
async fn an_event_linked_without_a_case_change_is_imported_next_run() {
    let env = Env::start(2, 2).await;
    let r1 = env.run().await;
    assert_eq!(r1.case_count(), 2);
    let (case, events) = case_with_events(&env, 1);
    assert!(env.sim.link_events_silently(&case, 1));
    let r2 = env.run().await;
    assert_eq!(r2.case_ids(), [env.case_incident_id(&case)].into());
    assert_eq!(incidents(&r2), events.len() + 1);
    env.stop().await;
}

#[tokio::test]
async fn two_cases_whose_id_hashes_collide_are_both_delivered() {
    // A real 48-bit collision of the ledger's id hash (found by search, not by this code):
    // with the same stamps, the second case used to look delivered once the first was.
    let (a, b) = ("case-0016331425", "case-0053236029");
    let mut env = Env::start(0, 1).await;
    env.set("ARCSIGHT_INCIDENTS_MAX_CASES", "1");
    let modified = 1_708_550_400_000;
    // Different creation times, so their case-incidents have different ids.
    assert!(env.sim.add_case_with_id(a, modified - 60_000, modified, 3));
    assert!(env.sim.add_case_with_id(b, modified - 120_000, modified, 3));
    let mut delivered = BTreeSet::new();
    for _ in 0..4 {
        delivered.extend(env.run().await.case_ids());
    }
    for id in [a, b] {
        assert!(
            delivered.contains(&env.case_incident_id(id)),
            "{id} is delivered"
        );
    }
    env.stop().await;
}
