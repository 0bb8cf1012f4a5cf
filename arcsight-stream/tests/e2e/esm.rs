//! ESM as the process meets it: both dialects detected from the login answer, a token that
//! expires in the middle of a batch, an outage in the middle of the stream.

use std::collections::BTreeSet;
use std::time::Duration;

use esm_simulator::Dialect;

use crate::world::{DEADLINE, Opts, free_port, healthz, spawn_world, wait_for};

/// The same run against each dialect, with `ARCSIGHT_API_DIALECT` left at `auto`: creates and a
/// delete end exact, on one login (a client that cannot read the 7.9+ login answer logs in
/// again at every call and writes nothing).
async fn one_dialect(dialect: Dialect) {
    let w = spawn_world(Opts {
        dialect,
        ..Opts::default()
    })
    .await;
    let ids = w.create_ips(1, 30);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    w.delete(&ids[..5]);
    w.create_ips(2, 5);
    w.wait_exact(&c, &BTreeSet::new()).await;
    assert_eq!(w.list().len(), 30, "{dialect:?}");
    assert_eq!(w.counter("login"), 1, "{dialect:?}: {}", c.output());
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn both_esm_dialects_are_detected_from_the_login_answer() {
    one_dialect(Dialect::Prefixed).await;
    one_dialect(Dialect::Plain).await;
}

#[tokio::test]
async fn a_token_expiring_mid_batch_costs_one_relogin_and_the_batch_is_retried() {
    let w = spawn_world(Opts {
        env: vec![("ARCSIGHT_BATCH_SIZE", "10".into())],
        ..Opts::default()
    })
    .await;
    let c = w.start();
    // Caught up on an empty stream, then every token lasts 3 calls: the 120 adds below take 12
    // requests, so tokens expire in the middle of the flush.
    wait_for(&c, "the start reconciliation", || {
        w.counter("activeList.getEntries") >= 1
    })
    .await;
    w.set_faults(|f| f.token_max_uses = Some(3));
    w.create_ips(3, 120);
    w.wait_exact(&c, &BTreeSet::new()).await;
    let expired = w.counter("fault.token_expired");
    let logins = w.counter("login");
    assert!(expired >= 1, "no token expired: the test proves nothing");
    let calls: u64 = w
        .esm
        .counters()
        .iter()
        .filter(|(k, _)| k.starts_with("activeList."))
        .map(|(_, v)| v)
        .sum();
    // Nor a login per request (a client that cannot keep its session).
    assert!(
        logins * 2 < calls,
        "{logins} logins for {calls} Active List calls"
    );
    // One login at start, then at most one per refused request (requests in flight when the
    // token expired each see the refusal, and share the one relogin).
    assert!(
        logins <= 1 + expired,
        "login storm: {logins} logins for {expired} refusals\n{}",
        c.output()
    );
    // No request was answered twice over: the writes carried each value once at most per
    // refusal (the retried batch only).
    let adds: usize = w
        .esm
        .active_list_calls()
        .iter()
        .filter(|c| c.operation == "addEntries")
        .map(|c| c.entries)
        .sum();
    assert!(
        adds <= 120 + 10 * expired as usize,
        "{adds} entries written for 120 values"
    );
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

/// Polls `/healthz` until it answers `want` (bounded).
async fn wait_health(port: u16, want: u16, out: &dyn Fn() -> String) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if healthz(port).await == Some(want) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "/healthz never answered {want}; connector output:\n{}",
                out()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_esm_outage_pauses_writes_keeps_the_position_and_shows_in_healthz() {
    let port = free_port();
    let w = spawn_world(Opts {
        env: vec![
            ("CONNECTOR_EXPOSE_METRICS", "true".into()),
            ("CONNECTOR_METRICS_PORT", port.to_string()),
            ("CONNECTOR_METRICS_HOST", "127.0.0.1".into()),
            ("CONNECTOR_HEALTH_STALL_TIMEOUT", "2".into()),
        ],
        ..Opts::default()
    })
    .await;
    let before = w.create_ips(4, 20);
    let c = w.start();
    w.wait_exact(&c, &BTreeSet::new()).await;
    let out = || c.output();
    wait_health(port, 200, &out).await;

    // ESM goes down; new events arrive.
    w.set_faults(|f| f.outage = true);
    let (_, mut during) = w.create_ips_events(5, 10);
    during.extend(w.delete(&before[..3]));
    let first_unacked = during[0];
    wait_for(&c, "writes refused by the outage", || {
        w.counter("fault.outage") >= 3
    })
    .await;
    wait_health(port, 503, &out).await;
    // Nothing was dropped while ESM refused: the saved position is still before the first
    // event not written (the 10 creates were pushed before the deletes, so before both).
    let saved = w.saved_position().expect("a position was saved");
    assert!(
        saved < first_unacked,
        "the saved position {saved} passed events ESM never acknowledged"
    );

    // ESM comes back: everything is written, the position moves on, healthy again.
    w.set_faults(|_| {});
    w.wait_exact(&c, &BTreeSet::new()).await;
    wait_for(&c, "the position to pass the outage's events", || {
        w.saved_position()
            .is_some_and(|p| p >= *during.last().unwrap())
    })
    .await;
    wait_health(port, 200, &out).await;
    let (code, out) = c.stop().await;
    assert_eq!(code, Some(0), "{out}");
}

/// The start check in the 7.9+ dialect (`tests/cli.rs` checks it against the
/// prefixed one): a missing list or column stops the process with exit 2 and one line naming
/// the setting, before anything is written or registered.
#[tokio::test]
async fn a_missing_list_or_column_exits_2_naming_it_in_the_plain_dialect_too() {
    for (setting, value, named) in [
        (
            "ARCSIGHT_ACTIVE_LIST_ID",
            "no-such-list",
            "ARCSIGHT_ACTIVE_LIST_ID: ",
        ),
        ("ARCSIGHT_VALUE_COLUMN", "ioc", "ARCSIGHT_VALUE_COLUMN: "),
    ] {
        let mut w = spawn_world(Opts {
            dialect: Dialect::Plain,
            ..Opts::default()
        })
        .await;
        w.env.insert(setting.into(), value.into());
        let mut c = w.start();
        let status = tokio::time::timeout(DEADLINE, c.child.wait())
            .await
            .expect("the connector exits")
            .unwrap();
        // The output readers end with the pipes.
        wait_for(&c, "the last line", || c.output().contains(named)).await;
        let out = c.output();
        assert_eq!(status.code(), Some(2), "{out}");
        let last = out.lines().last().unwrap_or("");
        assert!(last.starts_with(named) && last.contains(value), "{out}");
        assert_eq!(w.platform.calls("registerConnector"), 0, "{out}");
        assert!(w.list().is_empty());
    }
}
