//! SIGKILL at the points where a connector loses or leaks values, then a restart: the list
//! ends exact (nothing missing, nothing extra), values deleted while the connector was dead
//! included.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::world::{Opts, spawn_world, wait_for};

#[tokio::test]
async fn a_kill_mid_batch_while_esm_is_slow_then_a_restart_ends_exact() {
    let w = spawn_world(Opts {
        env: vec![("ARCSIGHT_BATCH_SIZE", "10".into())],
        ..Opts::default()
    })
    .await;
    let a = w.create_ips(10, 20);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;

    // ESM slows down; a burst arrives and the kill lands while its writes are in flight.
    w.set_faults(|f| f.write_delay = Duration::from_secs(2));
    let writes = w.counter("activeList.addEntries") + w.counter("activeList.deleteEntries");
    let b = w.create_ips(11, 50);
    w.delete(&a[..5]);
    wait_for(&c, "a write in flight", || {
        w.counter("activeList.addEntries") + w.counter("activeList.deleteEntries") > writes
    })
    .await;
    c.kill().await;

    // While it is dead: values it wrote (or was writing) are deleted, others created.
    w.delete(&a[5..8]);
    w.delete(&b[..5]);
    w.create_ips(12, 10);
    w.set_faults(|_| {});

    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    assert_eq!(w.list().len(), 20 - 8 + 50 - 5 + 10);
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_kill_mid_recovery_on_a_first_run_then_a_restart_ends_exact() {
    let w = spawn_world(Opts {
        env: vec![
            ("ARCSIGHT_BATCH_SIZE", "50".into()),
            ("ARCSIGHT_CONCURRENCY", "1".into()),
        ],
        ..Opts::default()
    })
    .await;
    // A platform with existing data: a first run recovers it.
    w.load_ips(20, 1500);
    w.set_faults(|f| f.write_delay = Duration::from_millis(100));
    let c = w.start();
    wait_for(&c, "part of the recovery written", || {
        let n = w.list().len();
        (200..1000).contains(&n)
    })
    .await;
    c.kill().await;
    w.set_faults(|_| {});

    // Meanwhile some values already in the list are deleted in the platform, others created.
    let by_value: HashMap<String, String> = w
        .platform
        .live
        .indicators()
        .into_iter()
        .map(|s| (s.name, s.internal_id))
        .collect();
    let written: Vec<String> = w.list().into_iter().take(40).collect();
    let gone: Vec<String> = written.iter().map(|v| by_value[v].clone()).collect();
    w.delete(&gone);
    w.create_ips(21, 10);

    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    for v in &written {
        assert!(!w.list().contains(v), "{v}, deleted meanwhile, left behind");
    }
    assert_eq!(w.list().len(), 1500 - 40 + 10);
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_kill_then_a_retention_gap_removes_a_value_added_and_deleted_meanwhile() {
    let w = spawn_world(Opts::default()).await;
    w.create_ips(13, 10);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    w.wait_caught_up(&c).await;
    // A value written after the ledger file was last written, then the kill.
    let late = w.create_ips(14, 2);
    w.wait_exact(&c, &BTreeSet::new()).await;
    w.wait_caught_up(&c).await;
    c.kill().await;

    // While it is dead the value is deleted, and retention trims every event since.
    w.delete(&late[..1]);
    let last = w.platform.live.last_event_id().unwrap();
    w.platform.live.trim_through(last);

    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_kill_during_an_esm_outage_loses_nothing_at_the_restart() {
    let w = spawn_world(Opts::default()).await;
    let a = w.create_ips(15, 10);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    w.wait_caught_up(&c).await;

    // ESM refuses every call; events arrive; the connector dies before ESM comes back.
    w.set_faults(|f| f.outage = true);
    w.create_ips(16, 10);
    w.delete(&a[..3]);
    wait_for(&c, "writes refused by the outage", || {
        w.counter("fault.outage") >= 2
    })
    .await;
    c.kill().await;
    w.set_faults(|_| {});

    // The saved position did not pass what ESM never acknowledged: the restart writes it.
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    assert_eq!(w.list().len(), 10 - 3 + 10);
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}
