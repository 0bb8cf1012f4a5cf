//! Drift repaired by reconciliation with foreign entries left alone, no secret in any output,
//! and a stop by SIGTERM.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::world::{LIST, Opts, PASSWORD, TOKEN, spawn_world, wait_for};

/// A row of the list: the value, and the `source` column.
fn row(value: &str) -> Vec<String> {
    vec![value.to_owned(), "admin".to_owned()]
}

#[tokio::test]
async fn drift_is_repaired_by_reconciliation_and_foreign_entries_are_left_alone() {
    let ttl = Duration::from_secs(3600);
    let w = spawn_world(Opts {
        list_ttl: Some(ttl),
        env: vec![("ARCSIGHT_RECONCILE_PERIOD", "1".into())],
        ..Opts::default()
    })
    .await;
    // A foreign entry before the connector ever runs: never written by it, never removed.
    assert!(w.esm.add_active_list_entries(LIST, &[row("198.51.100.7")]));
    w.create_ips(40, 10);
    let c = w.start();
    let foreign: BTreeSet<String> = ["198.51.100.7".to_owned()].into();
    w.wait_exact(&c, &foreign).await;

    // An administrator removes two of ours and adds another foreign entry.
    let ours: Vec<String> = w.expected().into_iter().take(2).collect();
    let keys: Vec<&str> = ours.iter().map(String::as_str).collect();
    assert_eq!(w.esm.remove_active_list_entries(LIST, &keys), Some(2));
    assert!(w.esm.add_active_list_entries(LIST, &[row("203.0.113.9")]));
    let mut foreign = foreign;
    foreign.insert("203.0.113.9".to_owned());
    let reconciled = w.counter("activeList.getEntries");
    w.wait_exact(&c, &foreign).await;
    // Two more reconciliations: the foreign entries are still there after them.
    wait_for(&c, "two more reconciliations", || {
        w.counter("activeList.getEntries") >= reconciled + 2
    })
    .await;
    w.wait_exact(&c, &foreign).await;

    // The list's TTL passes: every entry expires. Ours come back, the foreign ones do not
    // (they are not the connector's to add).
    w.esm.advance_clock(ttl + Duration::from_secs(1));
    assert!(w.list().is_empty());
    w.wait_exact(&c, &BTreeSet::new()).await;
    // Repairs were adds only: nothing foreign was ever removed.
    assert_eq!(w.counter("activeList.deleteEntries"), 0);
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn no_secret_in_any_output_or_recorded_url_at_debug() {
    let w = spawn_world(Opts {
        env: vec![("CONNECTOR_LOG_LEVEL", "debug".into())],
        ..Opts::default()
    })
    .await;
    w.create_ips(41, 10);
    // Tokens expire (relogins, refusals logged), a few writes fail.
    w.set_faults(|f| {
        f.token_max_uses = Some(2);
        f.write_error_every = Some(3);
    });
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    w.create_ips(42, 5);
    w.wait_exact(&c, &BTreeSet::new()).await;
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines().any(|l| l.contains("DEBUG")),
        "not at debug level: the test proves little\n{out}"
    );

    let tokens = w.esm.issued_tokens();
    assert!(tokens.len() >= 2, "no relogin happened");
    let esm_urls = w.esm.request_log();
    let platform_urls: Vec<String> = w
        .platform
        .live
        .connections()
        .into_iter()
        .map(|r| format!("{} {:?}", r.uri, r.headers))
        .collect();
    for secret in [PASSWORD, TOKEN]
        .into_iter()
        .chain(tokens.iter().map(String::as_str))
    {
        assert!(
            !out.contains(secret),
            "a secret in the connector's output:\n{out}"
        );
        for u in esm_urls.iter().chain(&platform_urls) {
            assert!(!u.contains(secret), "a secret in a recorded URL: {u}");
        }
    }
    // Neither the password nor an ESM token travels in an URL at all (the simulator's log
    // redacts values, so the names are what is looked for).
    for u in &esm_urls {
        assert!(
            !u.contains("password=") && !u.contains("authToken="),
            "credentials in an URL: {u}"
        );
    }
}

#[tokio::test]
async fn sigterm_saves_the_final_position_logs_out_and_exits_0() {
    let w = spawn_world(Opts::default()).await;
    w.create_ips(43, 10);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    let (_, events) = w.create_ips_events(44, 3);
    w.wait_exact(&c, &BTreeSet::new()).await;
    // The last event's id is a position once a heartbeat completes its group (an object's
    // dependencies share its id).
    let last = *events.last().unwrap();
    wait_for(&c, "the last event's position", || {
        w.saved_position().is_some_and(|p| p >= last)
    })
    .await;
    assert_eq!(w.esm.active_sessions(), 1);
    let pings = w.platform.recorded(|r| r.pings.len());
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(w.esm.active_sessions(), 0, "no ESM logout at the stop");
    assert!(
        w.platform.recorded(|r| r.pings.len()) > pings,
        "no state saved at the stop"
    );
    let saved = w.saved_position().expect("a position saved");
    assert!(
        saved >= *events.last().unwrap(),
        "the saved position {saved} is behind the last event applied"
    );
    // The platform's logs name this connector, not the import one.
    let conns = w.platform.live.connections();
    assert!(
        conns.iter().all(|c| c
            .header("user-agent")
            .is_some_and(|u| u.starts_with("arcsight-stream/"))),
        "{:?}",
        conns
            .iter()
            .map(|c| c.header("user-agent"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn entries_evicted_at_capacity_are_added_back_and_nothing_foreign_is_removed() {
    let w = spawn_world(Opts {
        list_capacity: Some(11),
        env: vec![("ARCSIGHT_RECONCILE_PERIOD", "1".into())],
        ..Opts::default()
    })
    .await;
    assert!(w.esm.add_active_list_entries(LIST, &[row("198.51.100.1")]));
    w.create_ips(45, 10);
    let c = w.start();
    let mut foreign: BTreeSet<String> = ["198.51.100.1".to_owned()].into();
    w.wait_exact(&c, &foreign).await;

    // The list is full: an administrator's entry evicts a random one.
    assert!(w.esm.add_active_list_entries(LIST, &[row("198.51.100.2")]));
    foreign.insert("198.51.100.2".to_owned());
    assert_eq!(w.esm.active_list_evictions(LIST), Some(1));
    // Every value of ours ends in the list again (each re-add at capacity evicts another
    // entry, until a foreign one goes); the connector itself removed nothing.
    let ours = w.expected();
    wait_for(&c, "every value of ours back in the full list", || {
        let list = w.list();
        ours.is_subset(&list) && list.len() == 11
    })
    .await;
    assert!(w.list().difference(&ours).all(|v| foreign.contains(v)));
    assert_eq!(
        w.counter("activeList.deleteEntries"),
        0,
        "a removal of a foreign entry"
    );
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}
