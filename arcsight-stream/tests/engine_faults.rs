//! Engine-level black-box tests of issue 21's "Nothing lost, at any fault": an ESM outage, a
//! token refused mid-batch, a kill mid-batch and a restart, a retention gap, an operator's
//! reset, drift repaired by reconciliation, and batching.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arcsight_stream::engine::snapshot;
use common::*;
use esm_simulator::{Dialect, Faults};
use opencti_client::stream::parse_id;

fn key(id: &str) -> (u64, u64) {
    parse_id(id).expect("an id")
}

#[tokio::test]
async fn an_esm_outage_pauses_the_stream_keeps_the_position_and_loses_nothing() {
    let w = World::new(Dialect::Prefixed).await;
    w.platform.set_heartbeats(false);
    let mut cfg = config(None);
    cfg.max_pending = 50;
    let mut want = BTreeSet::new();
    let first: Vec<_> = (0..5)
        .map(|i| ipv4(&format!("p{i}"), &format!("192.0.2.{i}")))
        .collect();
    for (i, ind) in first.iter().enumerate() {
        w.platform.push("create", create(ind));
        want.insert(format!("192.0.2.{i}"));
    }
    let engine = w.run(cfg);
    w.settle().await;
    let before = w.store.platform_position().expect("a position");

    w.esm.faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let sent_before = w.platform.sent.load(Ordering::SeqCst);
    let mut first_in_outage = None;
    for i in 0..200 {
        let id = w.platform.push(
            "create",
            create(&ipv4(
                &format!("o{i}"),
                &format!("10.0.{}.{}", i / 250, i % 250),
            )),
        );
        first_in_outage.get_or_insert(id);
        want.insert(format!("10.0.{}.{}", i / 250, i % 250));
    }
    w.platform.push("delete", delete(&first[0]));
    want.remove("192.0.2.0");
    let outages = || {
        w.esm
            .sim
            .counters()
            .get("fault.outage")
            .copied()
            .unwrap_or(0)
    };
    wait_for("writes retried during the outage", || outages() >= 5).await;
    let read = w.platform.sent.load(Ordering::SeqCst) - sent_before;
    // The engine read at most one flush's worth (max_pending) plus the channel (16).
    assert!(
        read <= 50 + 16 + 1,
        "the stream was drained while ESM was down: {read} items"
    );
    let seen = outages();
    wait_for("more retries", || outages() >= seen + 5).await;
    assert_eq!(
        w.platform.sent.load(Ordering::SeqCst) - sent_before,
        read,
        "nothing more is read while the write waits"
    );
    // The position never passes an event whose writes ESM has not acknowledged.
    let pos = w.store.platform_position().expect("a position");
    assert!(
        key(&pos) < key(first_in_outage.as_deref().unwrap()),
        "{pos} vs {before}"
    );
    assert!(w.metrics.esm_failing_for(i64::MAX / 2).is_some());

    w.esm.faults(Faults::default());
    w.settle().await;
    assert_eq!(w.esm.values(), want);
    assert_eq!(w.metrics.esm_failing_for(i64::MAX / 2), None);
    engine.stop().await;
}

#[tokio::test]
async fn a_token_refused_mid_batch_costs_one_login_and_the_batch_completes() {
    for dialect in [Dialect::Prefixed, Dialect::Plain] {
        let w = World::new(dialect).await;
        // Heartbeats off: the one after the recovery is the only one.
        w.platform.set_heartbeats(false);
        let mut want = BTreeSet::new();
        for i in 0..3000 {
            let v = format!("t{i:05}.example");
            w.platform.push(
                "create",
                create(&indicator(
                    &format!("t{i}"),
                    &format!("[domain-name:value = '{v}']"),
                )),
            );
            want.insert(v);
        }
        // A first run over existing indicators: they come as the recovery.
        w.clock.advance(Duration::from_secs(10));
        // Each token serves 4 calls: the two batches of the third flush are refused (then
        // the recovery's end reads the list once).
        w.esm.faults(Faults {
            token_max_uses: Some(4),
            ..Faults::default()
        });
        let mut cfg = config(None);
        // Flushes of exactly max_pending (1000) changes: two batches of 500 each.
        cfg.flush_delay = Duration::from_secs(3600);
        let engine = w.run(cfg);
        wait_for("every value written", || w.esm.values().len() == 3000).await;
        assert_eq!(w.esm.values(), want, "{dialect:?}");
        assert_eq!(w.esm.client.stats().relogins, 1, "{dialect:?}");
        assert_eq!(
            w.esm.sim.counters().get("login").copied(),
            Some(2),
            "{dialect:?}"
        );
        assert_eq!(
            w.esm.calls("addEntries").len(),
            6,
            "{dialect:?}: 3000 / 500"
        );
        engine.stop().await;
    }
}

#[tokio::test]
async fn a_kill_mid_batch_then_a_restart_from_the_saved_state_ends_exact() {
    let path = temp_ledger("kill");
    let w = World::new(Dialect::Plain).await;
    let mut want = BTreeSet::new();
    let mut first = Vec::new();
    for i in 0..300 {
        let ind = ipv4(&format!("k{i}"), &format!("172.16.{}.{}", i / 200, i % 200));
        w.platform.push("create", create(&ind));
        want.insert(format!("172.16.{}.{}", i / 200, i % 200));
        first.push(ind);
    }
    let engine = w.run(config(Some(path.clone())));
    w.settle().await;
    wait_for("a ledger file at a quiet point", || {
        snapshot::peek(&path)
            .ok()
            .flatten()
            .is_some_and(|f| !f.resyncing && f.position.is_some())
    })
    .await;

    // Slow writes, then a burst; the engine is killed while a batch is in flight.
    w.esm.faults(Faults {
        write_delay: Duration::from_millis(30),
        ..Faults::default()
    });
    let calls_before = w.esm.calls("addEntries").len() + w.esm.calls("deleteEntries").len();
    for (i, ind) in first.iter().enumerate().take(100) {
        w.platform.push("delete", delete(ind));
        want.remove(&format!("172.16.{}.{}", i / 200, i % 200));
    }
    for (i, ind) in first.iter().enumerate().skip(100).take(50) {
        let v = format!("172.17.0.{i}");
        let moved = repattern(ind, &format!("[ipv4-addr:value = '{v}']"));
        w.platform.push("update", update(ind, &moved));
        want.remove(&format!("172.16.{}.{}", i / 200, i % 200));
        want.insert(v);
    }
    let mut second = Vec::new();
    for i in 0..1500 {
        let ind = ipv4(&format!("m{i}"), &format!("10.1.{}.{}", i / 200, i % 200));
        w.platform.push("create", create(&ind));
        want.insert(format!("10.1.{}.{}", i / 200, i % 200));
        second.push(ind);
    }
    wait_for("a write in flight", || {
        w.esm.calls("addEntries").len() + w.esm.calls("deleteEntries").len() > calls_before
    })
    .await;
    engine.kill().await;

    // While it is down: more changes.
    w.esm.faults(Faults::default());
    for (i, ind) in second.iter().enumerate().take(50) {
        w.platform.push("delete", delete(ind));
        want.remove(&format!("10.1.{}.{}", i / 200, i % 200));
    }
    let (engine, store2, m2) = w.rerun(config(Some(path.clone())), &w.store);
    let last = w.platform.last_id().unwrap();
    settled(&store2, &last).await;
    assert_eq!(w.esm.values(), want);
    // Resumed from the ledger file, not resynchronised.
    let restart = w.platform.restarts.lock().unwrap().last().cloned().unwrap();
    assert_ne!(restart.start_from.as_deref(), Some("0-0"), "{restart:?}");
    for reason in ["gap", "reset", "no_snapshot", "no_position"] {
        assert_eq!(m2.resyncs_for(reason), 0, "{reason}");
    }
    engine.stop().await;
}

#[tokio::test]
async fn a_retention_gap_resyncs_and_removes_what_was_deleted_in_the_gap() {
    let path = temp_ledger("gap");
    let w = World::new(Dialect::Prefixed).await;
    let a = ipv4("a", "198.18.0.1");
    let b = ipv4("b", "198.18.0.2");
    let c = ipv4("c", "198.18.0.3");
    for i in [&a, &b, &c] {
        w.platform.push("create", create(i));
    }
    let engine = w.run(config(Some(path.clone())));
    w.settle().await;
    wait_for("a ledger file at a quiet point", || {
        snapshot::peek(&path)
            .ok()
            .flatten()
            .is_some_and(|f| !f.resyncing && f.tracked == 3)
    })
    .await;
    engine.stop().await;
    assert!(
        w.esm
            .sim
            .add_active_list_entries(LIST, &[vec!["foreign.example".into()]])
    );

    // While stopped: b deleted, d created, and the stream trims all of it.
    w.platform.push("delete", delete(&b));
    w.platform.push("create", create(&ipv4("d", "198.18.0.4")));
    w.platform.trim_all();
    let (engine, store2, m2) = w.rerun(config(Some(path.clone())), &w.store);
    wait_for("the gap's resync", || m2.resyncs_for("gap") == 1).await;
    wait_for("the list converged", || {
        w.esm.values() == set(&["198.18.0.1", "198.18.0.3", "198.18.0.4", "foreign.example"])
    })
    .await;
    // b, managed before, removed (counted once the write returned).
    wait_for("the repair counted", || m2.repairs_for("stale") >= 1).await;
    assert_eq!(m2.repairs_for("stale"), 1);
    // The position is the new run's, saved.
    assert!(store2.platform_position().is_some());
    engine.stop().await;
}

#[tokio::test]
async fn an_operator_reset_resyncs_from_the_start() {
    let path = temp_ledger("reset");
    let w = World::new(Dialect::Prefixed).await;
    for (i, ip) in ["198.18.1.1", "198.18.1.2"].iter().enumerate() {
        w.platform
            .push("create", create(&ipv4(&format!("r{i}"), ip)));
    }
    let engine = w.run(config(Some(path)));
    w.settle().await;
    let restarts = w.platform.restarts.lock().unwrap().len();
    w.store.reset();
    // Time passes: heartbeats move the position, whose save finds the reset.
    w.clock.advance(Duration::from_secs(5));
    wait_for("the stream restarted from its start", || {
        w.platform.restarts.lock().unwrap()[restarts..]
            .iter()
            .any(|p| p.start_from.as_deref() == Some("0-0") && p.recover_until.is_some())
    })
    .await;
    assert_eq!(w.metrics.resyncs_for("reset"), 1);
    w.platform.push("create", create(&ipv4("r3", "198.18.1.3")));
    w.settle().await;
    assert_eq!(
        w.esm.values(),
        set(&["198.18.1.1", "198.18.1.2", "198.18.1.3"])
    );
    engine.stop().await;
}

#[tokio::test]
async fn idle_heartbeats_move_the_saved_position() {
    let w = World::new(Dialect::Prefixed).await;
    w.platform.push("create", create(&ipv4("h", "198.18.2.1")));
    let engine = w.run(config(None));
    w.settle().await;
    w.clock.advance(Duration::from_secs(30));
    let now = w.clock.now_ms() as u64;
    wait_for("a heartbeat's position saved", || {
        w.store
            .platform_position()
            .is_some_and(|p| key(&p) >= (now, 0))
    })
    .await;
    engine.stop().await;
}

#[tokio::test]
async fn drift_is_repaired_by_reconciliation_and_foreign_entries_are_left() {
    let mut list = sim_list(&["value"]);
    list.ttl = Some(Duration::from_secs(600));
    let w = World::with_list(Dialect::Plain, list).await;
    let mut cfg = config(None);
    cfg.reconcile_period = Some(Duration::from_millis(100));
    for (i, ip) in ["198.18.3.1", "198.18.3.2", "198.18.3.3"]
        .iter()
        .enumerate()
    {
        w.platform
            .push("create", create(&ipv4(&format!("d{i}"), ip)));
    }
    let engine = w.run(cfg);
    w.settle().await;
    let ours = set(&["198.18.3.1", "198.18.3.2", "198.18.3.3"]);
    assert_eq!(w.esm.values(), ours);
    // An administrator removes one of ours and adds one of theirs.
    assert_eq!(
        w.esm.sim.remove_active_list_entries(LIST, &["198.18.3.2"]),
        Some(1)
    );
    assert!(
        w.esm
            .sim
            .add_active_list_entries(LIST, &[vec!["foreign.example".into()]])
    );
    let mut with_foreign = ours.clone();
    with_foreign.insert("foreign.example".into());
    wait_for("the removed value re-added", || {
        w.esm.values() == with_foreign
    })
    .await;
    wait_for("the repair counted", || {
        w.metrics.repairs_for("missing") >= 1
    })
    .await;
    // The list's time to live passes: every entry expires; ours come back.
    w.esm.sim.advance_clock(Duration::from_secs(601));
    wait_for("the expired values re-added", || w.esm.values() == ours).await;
    // A reconciliation after that finds nothing to do and removes nothing foreign.
    assert!(
        w.esm
            .sim
            .add_active_list_entries(LIST, &[vec!["foreign2.example".into()]])
    );
    let n = w.metrics.reconciliations.get();
    wait_for("two more reconciliations", || {
        w.metrics.reconciliations.get() >= n + 2
    })
    .await;
    let mut with_foreign = ours.clone();
    with_foreign.insert("foreign2.example".into());
    assert_eq!(w.esm.values(), with_foreign);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_creates_cost_at_most_one_request_per_200_entries() {
    let mut list = sim_list(&["value"]);
    list.capacity = 100_000;
    let w = World::with_list(Dialect::Prefixed, list).await;
    w.platform.set_heartbeats(false);
    w.esm.faults(Faults {
        write_delay: Duration::from_millis(2),
        ..Faults::default()
    });
    // The production flush timing: the budget is the engine's as shipped.
    let defaults = arcsight_stream::engine::EngineConfig::new(LIST, "value", Default::default());
    let mut cfg = config(None);
    cfg.flush_delay = defaults.flush_delay;
    cfg.max_pending = defaults.max_pending;
    let engine = w.run(cfg);
    // The first run's (empty) recovery is over: what follows is live.
    wait_for("the first run's position", || {
        w.store.platform_position().is_some()
    })
    .await;
    // The events are built first: the figure is the engine's, not the test's JSON.
    let mut events = Vec::new();
    let mut inds = Vec::new();
    for i in 0..20_000u32 {
        let ind = ipv4(
            &format!("b{i}"),
            &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
        );
        events.push(("create", create(&ind)));
        inds.push(ind);
    }
    for ind in inds.iter().take(2_000) {
        events.push(("delete", delete(ind)));
    }
    let started = Instant::now();
    for (name, ev) in events {
        w.platform.push(name, ev);
    }
    wait_for("every write acknowledged", || {
        w.metrics.entries_added.get() >= 20_000 && w.metrics.entries_removed.get() >= 2_000
    })
    .await;
    let written_in = started.elapsed();
    w.settle().await;
    let saved_in = started.elapsed();
    assert_eq!(w.esm.values().len(), 18_000);
    let adds = w.esm.calls("addEntries");
    let deletes = w.esm.calls("deleteEntries");
    let requests = adds.len() + deletes.len();
    eprintln!(
        "20,000 creates + 2,000 deletes at 2 ms write delay: written in {:.2} s ({:.0} events/s), position saved after {:.2} s; {} addEntries + {} deleteEntries requests for {} entries",
        written_in.as_secs_f64(),
        22_000.0 / written_in.as_secs_f64(),
        saved_in.as_secs_f64(),
        adds.len(),
        deletes.len(),
        adds.iter().sum::<usize>() + deletes.iter().sum::<usize>()
    );
    let written: usize = adds.iter().sum::<usize>() + deletes.iter().sum::<usize>();
    assert!(
        requests * 200 <= written.max(22_000),
        "{requests} requests for {written} entries"
    );
    engine.stop().await;
}

#[tokio::test]
async fn an_entry_esm_refuses_is_skipped_and_does_not_block_the_others() {
    let w = World::new(Dialect::Prefixed).await;
    w.esm.sim.poison_active_list_value("198.18.4.13", true);
    let mut want = BTreeSet::new();
    for i in 0..40 {
        let ip = format!("198.18.4.{i}");
        w.platform
            .push("create", create(&ipv4(&format!("x{i}"), &ip)));
        if i != 13 {
            want.insert(ip);
        }
    }
    let engine = w.run(config(None));
    w.settle().await;
    assert_eq!(w.esm.values(), want);
    // Refused at its write (and again when a reconciliation finds it missing).
    assert!(w.metrics.entries_rejected.get() >= 1);
    // The stream goes on.
    w.platform.push("create", create(&ipv4("y", "198.18.5.1")));
    want.insert("198.18.5.1".into());
    w.settle().await;
    assert_eq!(w.esm.values(), want);
    engine.stop().await;
}

#[tokio::test]
async fn a_changed_policy_resyncs_and_removes_what_no_longer_passes() {
    let path = temp_ledger("policy");
    let w = World::new(Dialect::Prefixed).await;
    let high = ipv4("hi", "198.18.6.1");
    let low = with(
        &ipv4("lo", "198.18.6.2"),
        serde_json::json!({"x_opencti_score": 30}),
    );
    w.platform.push("create", create(&high));
    w.platform.push("create", create(&low));
    let engine = w.run(config(Some(path.clone())));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["198.18.6.1", "198.18.6.2"]));
    engine.stop().await;
    assert!(
        snapshot::peek(&path)
            .unwrap()
            .is_some_and(|f| !f.resyncing && f.tracked == 2)
    );

    // Restarted with a minimum score: the file's ledger no longer applies, its values were ours.
    let mut cfg = config(Some(path.clone()));
    cfg.policy.min_score = Some(50);
    let (engine, _store2, m2) = w.rerun(cfg, &w.store);
    wait_for("the low-score value removed", || {
        w.esm.values() == set(&["198.18.6.1"])
    })
    .await;
    assert_eq!(m2.resyncs_for("no_snapshot"), 1);
    engine.stop().await;
}

#[tokio::test]
async fn the_start_check_names_a_missing_column_or_list() {
    let esm = Esm::start(Dialect::Plain, sim_list(&["value", "type"])).await;
    let cfg = config(None);
    let info = arcsight_stream::engine::check(&esm.lists, &cfg)
        .await
        .expect("the list");
    assert_eq!(info.fields, ["value", "type"]);
    let mut bad = config(None);
    bad.value_column = "ioc".into();
    let e = arcsight_stream::engine::check(&esm.lists, &bad)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ioc"), "{e}");
    bad = config(None);
    bad.list_id = "nope".into();
    let e = arcsight_stream::engine::check(&esm.lists, &bad)
        .await
        .unwrap_err();
    assert!(!e.is_transient() && e.to_string().contains("nope"), "{e}");
}

#[tokio::test]
async fn a_kill_during_a_full_resync_keeps_what_it_wrote_as_ours() {
    let path = temp_ledger("resync-kill");
    let w = World::new(Dialect::Prefixed).await;
    let a = ipv4("a", "198.18.7.1");
    let b = ipv4("b", "198.18.7.2");
    w.platform.push("create", create(&a));
    w.platform.push("create", create(&b));
    // A first run whose recovery is killed before it ends.
    w.platform.set_endless_recovery(true);
    let engine = w.run(config(Some(path.clone())));
    wait_for("the recovery's values written and on file", || {
        w.esm.values() == set(&["198.18.7.1", "198.18.7.2"])
            && snapshot::peek(&path)
                .ok()
                .flatten()
                .is_some_and(|f| f.resyncing && f.prior == 2)
    })
    .await;
    engine.kill().await;
    // While down, b is deleted; the list also holds an entry that never was ours.
    w.platform.push("delete", delete(&b));
    assert!(
        w.esm
            .sim
            .add_active_list_entries(LIST, &[vec!["foreign.example".into()]])
    );
    w.platform.set_endless_recovery(false);
    let (engine, _store2, m2) = w.rerun(config(Some(path.clone())), &w.store);
    wait_for("b removed, the foreign entry kept", || {
        w.esm.values() == set(&["198.18.7.1", "foreign.example"])
    })
    .await;
    assert_eq!(
        m2.resyncs_for("no_snapshot") + m2.resyncs_for("no_position"),
        1
    );
    engine.stop().await;
}

/// A source the test feeds item by item.
struct ChanSource(tokio::sync::mpsc::Receiver<opencti_client::stream::StreamItem>);

impl arcsight_stream::engine::Source for ChanSource {
    async fn recv(&mut self) -> Option<opencti_client::stream::StreamItem> {
        self.0.recv().await
    }
    async fn restart(&mut self, _: opencti_client::stream::StreamPosition) {}
}

#[tokio::test]
async fn stream_health_lag_and_oversized_events_are_reported() {
    use opencti_client::stream::{StreamError, StreamItem};
    let w = World::new(Dialect::Prefixed).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let engine = spawn(
        config(None),
        ChanSource(rx),
        &w.esm,
        &w.store,
        &w.metrics,
        &w.clock,
    );
    let now = w.clock.now_unix();
    tx.send(StreamItem::Reconnecting {
        after: Duration::from_secs(1),
        reason: StreamError::Ended,
    })
    .await
    .unwrap();
    wait_for("the stream marked failing", || {
        w.metrics.stream_failing_for(now + 7) == Some(Duration::from_secs(7))
    })
    .await;
    tx.send(StreamItem::Connected {
        first_event_id: None,
        last_event_id: None,
    })
    .await
    .unwrap();
    wait_for("the stream marked healthy", || {
        w.metrics.stream_failing_for(now + 7).is_none()
    })
    .await;
    // Two minutes behind; an oversized event is skipped and counted, its id applied.
    let behind = format!("{}-0", T0 - 120_000);
    tx.send(StreamItem::Heartbeat { id: behind.clone() })
        .await
        .unwrap();
    wait_for("the lag", || w.metrics.lag_seconds.get() == 120).await;
    let big = format!("{}-0", T0 - 60_000);
    tx.send(StreamItem::TooLarge {
        id: big.clone(),
        limit: 10,
    })
    .await
    .unwrap();
    wait_for("the skip counted", || w.metrics.skipped("too_large") == 1).await;
    settled(&w.store, &big).await;
    engine.stop().await;
}

#[tokio::test]
async fn a_resumed_run_reconciles_once_caught_up() {
    let path = temp_ledger("start-reconcile");
    let w = World::new(Dialect::Plain).await;
    for (i, ip) in ["198.18.8.1", "198.18.8.2"].iter().enumerate() {
        w.platform
            .push("create", create(&ipv4(&format!("s{i}"), ip)));
    }
    let engine = w.run(config(Some(path.clone())));
    w.settle().await;
    engine.stop().await;
    // While it is down an administrator removes one of ours and adds one of theirs.
    assert_eq!(
        w.esm.sim.remove_active_list_entries(LIST, &["198.18.8.1"]),
        Some(1)
    );
    assert!(
        w.esm
            .sim
            .add_active_list_entries(LIST, &[vec!["foreign.example".into()]])
    );
    // No periodic reconciliation: only the one at start can repair it.
    let (engine, _store2, m2) = w.rerun(config(Some(path)), &w.store);
    wait_for("the removed value re-added", || {
        w.esm.values() == set(&["198.18.8.1", "198.18.8.2", "foreign.example"])
    })
    .await;
    assert_eq!(
        m2.resyncs_for("no_snapshot") + m2.resyncs_for("no_position"),
        0
    );
    wait_for("the repair counted", || m2.repairs_for("missing") == 1).await;
    engine.stop().await;
}
