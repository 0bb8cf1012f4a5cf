//! The daemon end to end: the ESM simulator, a simulated OpenCTI platform (every GraphQL
//! document validated against the real schema) and the real RabbitMQ on 127.0.0.1:5672.
//!
//! Each `run()` is one process life with `CONNECTOR_RUN_AND_TERMINATE=true`: the state the next
//! run starts from is the one the platform kept, as after a restart.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use connector_runtime::schedule::shutdown_pair;
use esm_simulator::Faults;
use serde_json::Value;

use common::world::{Env, by_id};

#[tokio::test]
async fn a_first_import_delivers_the_converters_objects_then_a_second_run_sends_nothing() {
    let env = Env::start(13, 3).await;
    let first = env.run().await;
    assert!(first.succeeded);
    assert_eq!(first.case_count(), 13, "each case exactly once");
    assert_eq!(by_id(&first.objects), env.expected_objects());
    // x_opencti_seq: dependencies first within each page, so every reference points back.
    let mut seen = BTreeSet::new();
    for o in &first.objects {
        for r in o["object_refs"].as_array().into_iter().flatten() {
            assert!(
                seen.contains(r.as_str().unwrap()),
                "{r} sent after its container"
            );
        }
        seen.insert(o["id"].as_str().unwrap().to_owned());
    }
    // One work, expecting exactly the messages published plus the run's sentinel (which keeps
    // the work open until the last page), the sentinel reported, closed without error.
    assert_eq!(first.new_works.len(), 1);
    let work = &first.new_works[0];
    assert_eq!(work.reports, 1, "the sentinel is reported once");
    assert_eq!(work.expectations, first.objects.len() as u64 + work.reports);
    let (message, in_error) = work.processed.clone().expect("work closed");
    assert!(!in_error, "{message}");
    assert!(env.sim.active_sessions() == 0, "logged out of ESM");
    // 32 KiB frames, agreed with the broker: lapin's two 32-frame buffers take 2 MiB, not the
    // 8 MiB of RabbitMQ's default 128 KiB frames.
    let logs = env.logs.text();
    assert!(logs.contains("\"frame_max\":32768"), "{logs:.2000}");

    let second = env.run().await;
    assert!(second.succeeded);
    assert!(second.objects.is_empty(), "nothing changed, nothing sent");
    assert!(second.new_works.is_empty(), "no work when nothing changed");
    // Listing and reading cases only: no event fetch.
    env.stop().await;
}

#[tokio::test]
async fn max_cases_spreads_the_import_over_runs_without_skipping_any_case() {
    let mut env = Env::start(10, 1).await;
    env.set("ARCSIGHT_INCIDENTS_MAX_CASES", "3");
    let mut delivered = BTreeSet::new();
    for run in 0..4 {
        let r = env.run().await;
        assert!(r.succeeded);
        let ids = r.case_ids();
        assert_eq!(ids.len(), if run < 3 { 3 } else { 1 }, "run {run}");
        assert!(delivered.is_disjoint(&ids), "a case sent twice");
        delivered.extend(ids);
    }
    let all = env.all_case_incident_ids();
    assert_eq!(delivered, all, "ceil(10 / 3) = 4 runs deliver every case");
    assert!(env.run().await.objects.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn a_modified_case_is_delivered_again_with_its_new_content_and_the_same_id() {
    let env = Env::start(6, 2).await;
    assert!(env.run().await.succeeded);
    let target = env.sim.case_ids()[2].clone();
    let before = env
        .expected_objects()
        .remove(&env.case_incident_id(&target))
        .unwrap();
    assert!(env.sim.add_events(&target, 2));
    let r = env.run().await;
    assert!(r.succeeded);
    let cases: Vec<&Value> = r
        .objects
        .iter()
        .filter(|o| o["type"] == "case-incident")
        .collect();
    assert_eq!(cases.len(), 1, "only the modified case is sent");
    assert_eq!(cases[0]["id"], before["id"], "same case-incident id");
    let refs = |v: &Value| v["object_refs"].as_array().unwrap().len();
    assert!(refs(cases[0]) > refs(&before), "the new events are in it");
    assert_eq!(
        cases[0],
        &env.expected_objects()[before["id"].as_str().unwrap()]
    );
    env.stop().await;
}

#[tokio::test]
async fn an_operators_state_reset_leads_to_a_full_reimport() {
    let env = Env::start(5, 1).await;
    assert_eq!(env.run().await.case_count(), 5);
    assert!(env.platform.recorded(|r| r.connector_state.is_some()));
    assert_eq!(
        env.run().await.case_count(),
        0,
        "the state survived the restart"
    );
    env.platform.update(|r| r.connector_state = None);
    assert_eq!(env.run().await.case_count(), 5);
    env.stop().await;
}

#[tokio::test]
async fn a_broker_that_refuses_connections_leaves_the_state_where_it_was() {
    let env = Env::start(4, 1).await;
    assert_eq!(env.run().await.case_count(), 4);
    let new_cases = env.sim.add_cases(2);
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let saved = env.platform.recorded(|r| r.connector_state.clone());
    env.platform
        .update(|r| r.mq = env.topo.registration_config(closed_port));
    let failed = env.run().await;
    assert!(!failed.succeeded);
    assert!(failed.objects.is_empty());
    // Nothing recorded as delivered or failed (the state's run counter, the retry backoff's
    // clock, does move).
    let fields = |t: Option<String>| {
        let v: serde_json::Value = serde_json::from_str(&t.unwrap_or_default()).unwrap();
        (v["ledger"].clone(), v["retry"].clone())
    };
    assert_eq!(
        fields(env.platform.recorded(|r| r.connector_state.clone())),
        fields(saved)
    );

    env.platform
        .update(|r| r.mq = env.topo.registration_config(5672));
    let r = env.run().await;
    assert!(r.succeeded);
    let expected: BTreeSet<String> = new_cases
        .iter()
        .map(|id| env.case_incident_id(id))
        .collect();
    assert_eq!(
        r.case_ids(),
        expected,
        "the two new cases, once the broker is back"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_platform_error_on_work_add_fails_the_run_and_the_next_run_delivers() {
    let env = Env::start(3, 1).await;
    env.platform.update(|r| r.fail.push(("workAdd".into(), 1)));
    let failed = env.run().await;
    assert!(!failed.succeeded);
    assert!(
        failed.objects.is_empty(),
        "nothing published without a work"
    );
    let r = env.run().await;
    assert!(r.succeeded);
    assert_eq!(r.case_count(), 3);
    env.stop().await;
}

#[tokio::test]
async fn a_fault_mix_converges_to_a_complete_import_and_nothing_is_sent_twice_in_a_run() {
    let env = Env::start(24, 3).await;
    env.sim.set_faults(Faults {
        error_503_ratio: 0.15,
        rate_limit_every: Some(7),
        retry_after_secs: 0,
        token_max_uses: Some(5),
        malformed_every: Some(4),
        html_200_every: Some(11),
        ..Faults::default()
    });
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs = 0;
    while delivered.len() < 24 {
        runs += 1;
        assert!(
            runs <= 8,
            "not converged after 8 runs: {} of 24",
            delivered.len()
        );
        let r = env.run().await;
        assert_eq!(
            r.case_count(),
            r.case_ids().len(),
            "a case sent twice in run {runs}"
        );
        for id in r.case_ids() {
            *delivered.entry(id).or_default() += 1;
        }
    }
    let counters = env.sim.counters();
    for fault in [
        "fault.503",
        "fault.429",
        "fault.malformed",
        "fault.token_expired",
    ] {
        assert!(
            counters.get(fault).copied().unwrap_or(0) > 0,
            "{fault} never happened: {counters:?}"
        );
    }
    // Once faults stop, a run finds nothing left and everything delivered is current.
    env.sim.set_faults(Faults::default());
    let last = env.run().await;
    assert!(last.succeeded);
    assert!(last.objects.is_empty(), "everything was already delivered");
    env.stop().await;
}

#[tokio::test]
async fn a_stop_request_mid_run_keeps_the_confirmed_pages_and_the_next_run_finishes() {
    let env = Env::start(12, 1).await;
    env.sim.set_faults(Faults {
        latency: std::time::Duration::from_millis(20),
        ..Faults::default()
    });
    let (trigger, shutdown) = shutdown_pair();
    let stop = async {
        // The first page is confirmed and its state saved: stop now, as SIGTERM would.
        env.platform.pinged().await;
        trigger.trigger();
    };
    let (first, ()) = tokio::join!(env.run_with(shutdown), stop);
    assert!(first.succeeded, "a requested stop ends well (exit 0)");
    let sent = first.case_ids();
    assert!(!sent.is_empty() && sent.len() < 12, "{} cases", sent.len());
    let work = first.new_works[0].processed.clone().expect("work closed");
    assert!(work.1, "the work is closed in error: {}", work.0);
    assert_eq!(env.sim.active_sessions(), 0, "logged out of ESM");

    env.sim.set_faults(Faults::default());
    let rest = env.run().await;
    assert!(rest.succeeded);
    let all: BTreeSet<String> = sent.union(&rest.case_ids()).cloned().collect();
    assert_eq!(all.len(), 12, "every case delivered across the two runs");
    // At most the page in flight (4 cases) is sent again.
    assert!(sent.intersection(&rest.case_ids()).count() <= 4);
    env.stop().await;
}

/// The bundle files in `dir` (not the state file), and the case-incidents they hold.
fn directory_cases(dir: &std::path::Path) -> (usize, Vec<String>) {
    let mut files = 0;
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        files += 1;
        let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for o in file["bundle"]["objects"].as_array().unwrap() {
            if o["type"] == "case-incident" {
                cases.push(o["id"].as_str().unwrap().to_owned());
            }
        }
    }
    (files, cases)
}

#[tokio::test]
async fn with_no_platform_it_previews_into_a_directory_and_remembers_what_it_wrote() {
    let mut env = Env::start(5, 2).await;
    let dir = std::env::temp_dir().join(format!(
        "arcsight-offline-{}",
        uuid::Uuid::new_v4().simple()
    ));
    env.unset = vec!["OPENCTI_URL", "OPENCTI_TOKEN"];
    env.set("CONNECTOR_SEND_TO_QUEUE", "false");
    env.set("CONNECTOR_SEND_TO_DIRECTORY", "true");
    env.set("CONNECTOR_SEND_TO_DIRECTORY_PATH", dir.to_string_lossy());
    let first = env.run().await;
    assert!(first.succeeded);
    assert!(first.objects.is_empty(), "nothing goes to the queue");
    let (files, cases) = directory_cases(&dir);
    assert_eq!((files, cases.len()), (2, 5), "two pages of at most 4 cases");
    assert!(dir.join(".arcsight-incidents-state.json").is_file());
    assert!(
        env.platform.recorded(|r| r.operations.is_empty()),
        "the platform is never called"
    );

    // A new process: the state file says everything was written.
    assert!(env.run().await.succeeded);
    assert_eq!(directory_cases(&dir).0, 2, "nothing new to write");

    let target = env.sim.case_ids()[1].clone();
    env.sim.touch_case(&target);
    assert!(env.run().await.succeeded);
    let (files, cases) = directory_cases(&dir);
    assert_eq!(files, 3);
    assert_eq!(
        cases
            .iter()
            .filter(|c| **c == env.case_incident_id(&target))
            .count(),
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
    env.stop().await;
}

#[tokio::test]
async fn a_broker_nack_fails_the_run_without_advancing_the_state() {
    let env = Env::start(6, 1).await;
    // A second, full queue on the same routing key: the broker nacks what it cannot hold.
    let full = common::amqp::Topology::refusing_after(0).await;
    full.ch
        .queue_bind(
            full.queue.as_str().into(),
            env.topo.exchange.as_str().into(),
            env.topo.routing.as_str().into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let failed = env.run().await;
    assert!(!failed.succeeded);
    assert!(failed.new_works[0].processed.as_ref().is_some_and(|p| p.1));
    let state_after_failure = env.platform.recorded(|r| r.connector_state.clone());
    let ledger = state_after_failure
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .map(|v| v["ledger"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(
        ledger.is_empty(),
        "nothing recorded as delivered: {state_after_failure:?}"
    );

    full.drop_all().await;
    let r = env.run().await;
    assert!(r.succeeded);
    assert_eq!(
        r.case_count(),
        6,
        "every case is sent again once the broker accepts"
    );
    assert_ne!(
        env.platform.recorded(|r| r.connector_state.clone()),
        state_after_failure
    );
    env.stop().await;
}

#[tokio::test]
async fn runs_after_the_first_are_skipped_while_the_platforms_queue_is_over_the_threshold() {
    let mut env = Env::start(3, 1).await;
    env.set("CONNECTOR_RUN_AND_TERMINATE", "false");
    env.set("CONNECTOR_DURATION_PERIOD", "PT1S");
    env.set("CONNECTOR_QUEUE_THRESHOLD", "1");
    env.platform
        .update(|r| r.queue_messages_size = 2 * 1024 * 1024);
    let (trigger, shutdown) = shutdown_pair();
    let touched = env.sim.case_ids()[0].clone();
    let observe = async {
        // The first run is never held back (as pycti: a restart always runs once).
        env.platform.work_closed().await;
        // A change waits in ESM while the queue is full: two checks a period apart skip it.
        env.sim.touch_case(&touched);
        env.platform.queue_read().await;
        env.platform.queue_read().await;
        trigger.trigger();
    };
    let (run, ()) = tokio::join!(env.run_with(shutdown), observe);
    assert_eq!(run.case_count(), 3, "only the first run delivered");
    assert_eq!(run.new_works.len(), 1, "no work for a skipped run");
    assert!(env.logs.text().contains("run skipped"));

    // The queue drains: the next process delivers the waiting change.
    env.platform.update(|r| r.queue_messages_size = 0);
    env.set("CONNECTOR_RUN_AND_TERMINATE", "true");
    let next = env.run().await;
    assert_eq!(
        next.case_ids(),
        BTreeSet::from([env.case_incident_id(&touched)])
    );
    env.stop().await;
}

/// A valid version-2 state of `n` delivered cases: 12 bytes a case (a 48-bit id hash, a
/// 48-bit version hash, little-endian), sorted by id hash, in unpadded base64 (the format of
/// docs/design.md). The hashes are spread evenly, so none is an id the simulator lists.
fn ledger_state(n: u64) -> (String, BTreeSet<[u8; 12]>) {
    use base64::Engine;
    let step = (1u64 << 48) / n;
    let mut bytes = Vec::with_capacity(n as usize * 12);
    let mut entries = BTreeSet::new();
    for i in 0..n {
        let mut e = [0u8; 12];
        e[..6].copy_from_slice(&(i * step).to_le_bytes()[..6]);
        e[6..].copy_from_slice(&(i ^ 0x5a5a).to_le_bytes()[..6]);
        bytes.extend_from_slice(&e);
        entries.insert(e);
    }
    let ledger = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let state = serde_json::json!({"version": 2, "runs": 7, "ledger": ledger}).to_string();
    (state, entries)
}

/// The ledger entries of a state text.
fn ledger_entries(state: &str) -> BTreeSet<[u8; 12]> {
    use base64::Engine;
    let v: Value = serde_json::from_str(state).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(v["ledger"].as_str().unwrap_or_default())
        .unwrap();
    bytes
        .chunks_exact(12)
        .map(|c| c.try_into().unwrap())
        .collect()
}

fn logged_failures(env: &Env) -> Vec<String> {
    env.logs
        .text()
        .lines()
        .filter(|l| {
            l.contains("persisting the state failed")
                || l.contains("ping failed")
                || l.contains("the platform is not ready")
        })
        .map(|l| format!("{l:.300}"))
        .collect()
}

#[tokio::test]
async fn a_million_case_state_starts_saves_and_still_sees_a_reset() {
    let mut env = Env::start(3, 1).await;
    // A platform that cannot answer the registration fails the run-once process in seconds,
    // not after the default five minutes.
    env.set("OPENCTI_UNREACHABLE_TIMEOUT", "5");
    let (state, million) = ledger_state(1_000_000);
    assert!(state.len() > 16_000_000, "16 characters a case");
    env.platform.update(|r| r.connector_state = Some(state));

    // Starts (the registration's answer holds the whole state), delivers the 3 new cases and
    // saves: the platform holds the million cases and the 3.
    let r1 = env.run().await;
    assert!(r1.succeeded);
    assert_eq!(r1.case_count(), 3);
    assert_eq!(logged_failures(&env), Vec::<String>::new());
    let saved = env
        .platform
        .recorded(|r| r.connector_state.clone())
        .unwrap();
    let entries = ledger_entries(&saved);
    assert_eq!(entries.len(), 1_000_003);
    assert!(million.is_subset(&entries), "every delivered case is kept");
    drop((saved, entries));

    // An operator resets the state while a run delivers a new case: the reset is seen at the
    // run's first save, and the state sent after it is the empty one, not the million.
    let pings_before = env.platform.recorded(|r| r.pings.len());
    env.sim.add_cases(1);
    env.platform.update(|r| r.reset_pending = true);
    let r2 = env.run().await;
    assert!(r2.succeeded, "a reset is not a failure");
    let after_reset = env.platform.recorded(|r| r.pings.len()) - pings_before;
    assert!(
        after_reset >= 2,
        "a save after the reset's ping ({after_reset} pings)"
    );
    let kept = env
        .platform
        .recorded(|r| r.connector_state.clone())
        .unwrap();
    assert!(
        ledger_entries(&kept).len() <= 1,
        "the reset state is kept, not overwritten by the old one ({} bytes)",
        kept.len()
    );
    // The next run imports every case again.
    let r3 = env.run().await;
    assert!(r3.succeeded);
    assert_eq!(r3.case_ids(), env.all_case_incident_ids());
    assert_eq!(logged_failures(&env), Vec::<String>::new());
    env.stop().await;
}

#[tokio::test]
async fn last_run_is_saved_as_unix_seconds_and_an_old_text_last_run_still_loads() {
    let env = Env::start(2, 1).await;
    let before = chrono::Utc::now().timestamp();
    assert!(env.run().await.succeeded);
    let after = chrono::Utc::now().timestamp();
    let saved: Value = serde_json::from_str(
        &env.platform
            .recorded(|r| r.connector_state.clone())
            .unwrap(),
    )
    .unwrap();
    let last_run = saved["last_run"].as_i64().expect("last_run is an integer");
    assert!((before..=after).contains(&last_run), "{last_run}");
    // A state with the integer loads: nothing is sent again.
    assert!(env.run().await.objects.is_empty());

    // The same state as an earlier version wrote it, with an RFC 3339 last_run: it loads too.
    let mut old = saved.clone();
    old["last_run"] = Value::from("2026-11-29T22:00:00+00:00");
    env.platform
        .update(|r| r.connector_state = Some(old.to_string()));
    let r = env.run().await;
    assert!(r.succeeded);
    assert!(
        r.objects.is_empty(),
        "the ledger was read: nothing sent again"
    );
    let resaved: Value = serde_json::from_str(
        &env.platform
            .recorded(|r| r.connector_state.clone())
            .unwrap(),
    )
    .unwrap();
    assert!(resaved["last_run"].as_i64().is_some_and(|t| t >= last_run));
    env.stop().await;
}
