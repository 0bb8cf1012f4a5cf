//! The live stream as the process meets it: a connection dropped in the middle of an event, a
//! stall without heartbeats, a retention gap, a reset from the UI, a stopped stream.

use crate::world::{Opts, spawn_world, wait_for};
use std::collections::BTreeSet;

#[tokio::test]
async fn a_connection_dropped_mid_event_resumes_from_the_saved_position() {
    let w = spawn_world(Opts::default()).await;
    w.create_ips(30, 5);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    w.wait_caught_up(&c).await;
    let connections = w.platform.live.counters().connections;

    // The next event is cut halfway and the connection dropped.
    w.platform.live.faults(|f| f.cut_next_events = 1);
    let (_, events) = w.create_ips_events(31, 3);
    w.wait_exact(&c, &BTreeSet::new()).await;
    let live = &w.platform.live;
    assert_eq!(live.counters().cut, 1, "the cut never happened");
    assert!(live.counters().connections > connections);
    // The reconnection asked from a position before the cut event (never past it).
    let again = live.connections().last().cloned().unwrap();
    let from = again.from.expect("the reconnection gives a position");
    assert!(from < events[0], "resumed from {from}, past the cut event");
    assert!(
        again.recover_ms.is_none(),
        "a resync instead of a resume: {:?}",
        live.connections()
    );
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_stall_without_heartbeats_reconnects_after_the_read_timeout() {
    let w = spawn_world(Opts::default()).await;
    w.create_ips(32, 5);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    w.wait_caught_up(&c).await;
    let connections = w.platform.live.counters().connections;
    let before = w.platform.live.last_event_id().unwrap();

    // The open connection goes silent for good (no data, no heartbeat), then new
    // connections work again.
    w.platform.live.faults(|f| f.stall = true);
    wait_for(&c, "the connection to stall", || {
        w.platform.live.counters().stalled >= 1
    })
    .await;
    w.platform.live.faults(|f| f.stall = false);
    w.create_ips(33, 3);
    w.wait_exact(&c, &BTreeSet::new()).await;
    let live = &w.platform.live;
    assert!(live.counters().connections > connections);
    let again = live.connections().last().cloned().unwrap();
    let from = again.from.expect("the reconnection gives a position");
    assert!(
        from >= before,
        "resumed from {from}: a replay from before the saved position"
    );
    assert!(
        again.recover_ms.is_none(),
        "a resync instead of a resume: {:?}",
        live.connections()
    );
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_retention_gap_resyncs_and_removes_a_value_deleted_in_the_gap() {
    let w = spawn_world(Opts::default()).await;
    let a = w.create_ips(34, 10);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");

    // While it is stopped: a value deleted, another created, and retention trims every event
    // since its position.
    w.delete(&a[..2]);
    w.create_ips(35, 4);
    let last = w.platform.live.last_event_id().unwrap();
    w.platform.live.trim_through(last);
    let connections = w.platform.live.connections().len();

    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    // It was a full resync: a connection from the start with a recovery.
    assert!(
        w.platform.live.connections()[connections..]
            .iter()
            .any(|r| r.recover_ms.is_some()),
        "no recovery asked for after the gap"
    );
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_reset_from_the_ui_resyncs_from_the_start() {
    let w = spawn_world(Opts::default()).await;
    w.create_ips(36, 10);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    // Drift nothing else repairs (no periodic reconciliation): only a full resync re-adds it.
    w.wait_caught_up(&c).await;
    let gone = w.list().into_iter().next().unwrap();
    assert_eq!(
        w.esm
            .remove_active_list_entries(crate::world::LIST, &[&gone]),
        Some(1)
    );
    assert!(!w.list().contains(&gone));
    let connections = w.platform.live.connections().len();

    w.platform.reset_state_from_ui();
    w.wait_exact(&c, &BTreeSet::new()).await;
    assert!(
        w.platform.live.connections()[connections..]
            .iter()
            .any(|r| r.recover_ms.is_some()),
        "no recovery asked for after the reset: {:?}\n{}",
        w.platform
            .live
            .connections()
            .iter()
            .map(|r| r.uri.clone())
            .collect::<Vec<_>>(),
        c.output()
    );
    // The platform holds a position again.
    wait_for(&c, "a position saved after the reset", || {
        w.saved_position().is_some()
    })
    .await;
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_stopped_stream_is_waited_out_and_resumed_without_exiting() {
    let w = spawn_world(Opts::default()).await;
    w.create_ips(37, 5);
    let mut c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    let refused = w.platform.live.counters().refused;

    w.platform.live.stop_stream(crate::world::STREAM);
    w.create_ips(38, 3);
    wait_for(&c, "two reconnections refused with 410", || {
        w.platform.live.counters().refused >= refused + 2
    })
    .await;
    assert!(
        w.platform
            .live
            .connections()
            .iter()
            .any(|r| r.status == 410),
        "the refusals were not 410s"
    );
    assert!(c.running(), "the connector exited on a stopped stream");

    w.platform.live.start_stream(crate::world::STREAM);
    w.wait_exact(&c, &BTreeSet::new()).await;
    assert!(c.running());
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}
