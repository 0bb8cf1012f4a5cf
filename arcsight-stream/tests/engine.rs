//! Engine-level black-box tests (issue 21, "Exact list semantics" and "Nothing lost"): the
//! real engine against the ESM simulator's Active List, fed by a model of the live stream.
//! Each test asserts the list at a quiet moment (the platform holds a position at or past the
//! last event, so every write up to it was acknowledged).

mod common;

use common::*;
use esm_simulator::Dialect;
use serde_json::json;

#[tokio::test]
async fn the_seven_supported_types_reach_the_list_in_one_batch() {
    for dialect in [Dialect::Prefixed, Dialect::Plain] {
        let w = World::new(dialect).await;
        let patterns = [
            ("i1", "[ipv4-addr:value = '198.51.100.7']", "198.51.100.7"),
            ("i2", "[ipv6-addr:value = '2001:db8::1']", "2001:db8::1"),
            ("i3", "[domain-name:value = 'evil.example']", "evil.example"),
            (
                "i4",
                "[url:value = 'http://evil.example/x']",
                "http://evil.example/x",
            ),
            (
                "i5",
                "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
                "d41d8cd98f00b204e9800998ecf8427e",
            ),
            (
                "i6",
                "[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']",
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            ),
            (
                "i7",
                "[file:hashes.'SHA-256' = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for (id, p, _) in patterns {
            w.platform.push("create", create(&indicator(id, p)));
        }
        // A first run: the existing indicators come as the recovery.
        w.clock.advance(std::time::Duration::from_secs(1));
        let engine = w.run(config(None));
        w.settle().await;
        let want: Vec<&str> = patterns.iter().map(|p| p.2).collect();
        assert_eq!(w.esm.values(), set(&want), "{dialect:?}");
        assert_eq!(w.esm.calls("addEntries"), [7], "{dialect:?}: one batch");
        engine.stop().await;
    }
}

#[tokio::test]
async fn an_or_of_equalities_gives_every_value_only_with_the_setting() {
    let pattern = "[ipv4-addr:value = '203.0.113.1' OR ipv4-addr:value = '203.0.113.2']";
    // Default: skipped and counted, as the Python connector skips it.
    let w = World::new(Dialect::Prefixed).await;
    w.platform.push("create", create(&indicator("or", pattern)));
    w.platform
        .push("create", create(&ipv4("one", "203.0.113.9")));
    let engine = w.run(config(None));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["203.0.113.9"]));
    assert_eq!(w.metrics.skipped("pattern_or"), 1);
    engine.stop().await;

    let w = World::new(Dialect::Prefixed).await;
    w.platform.push("create", create(&indicator("or", pattern)));
    let mut cfg = config(None);
    cfg.policy.extract.or_values = true;
    let engine = w.run(cfg);
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["203.0.113.1", "203.0.113.2"]));
    engine.stop().await;
}

#[tokio::test]
async fn stix_escapes_are_decoded() {
    let w = World::new(Dialect::Prefixed).await;
    w.platform.push(
        "create",
        create(&indicator(
            "q",
            r"[url:value = 'http://evil.example/it\'s\\here']",
        )),
    );
    let engine = w.run(config(None));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&[r"http://evil.example/it's\here"]));
    engine.stop().await;
}

#[tokio::test]
async fn a_shared_value_stays_while_one_indicator_carries_it() {
    let w = World::new(Dialect::Prefixed).await;
    let a = indicator(
        "a",
        "[file:hashes.MD5 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']",
    );
    let b = indicator(
        "b",
        "[file:hashes.'MD5' = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']",
    );
    let c = ipv4("c", "192.0.2.10");
    let d = ipv4("d", "192.0.2.10");
    for i in [&a, &b, &c, &d] {
        w.platform.push("create", create(i));
    }
    let engine = w.run(config(None));
    w.settle().await;
    assert_eq!(
        w.esm.values(),
        set(&["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "192.0.2.10"])
    );
    // One of two carriers deleted; the other of the second pair changes its pattern.
    w.platform.push("delete", delete(&a));
    let c2 = repattern(&c, "[ipv4-addr:value = '192.0.2.11']");
    w.platform.push("update", update(&c, &c2));
    w.settle().await;
    assert_eq!(
        w.esm.values(),
        set(&[
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "192.0.2.10",
            "192.0.2.11"
        ])
    );
    // The last carriers go: so do the values.
    w.platform.push("delete", delete(&b));
    w.platform.push("delete", delete(&d));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["192.0.2.11"]));
    engine.stop().await;
}

#[tokio::test]
async fn a_pattern_change_replaces_the_old_value() {
    let w = World::new(Dialect::Plain).await;
    let a = indicator("a", "[domain-name:value = 'old.example']");
    w.platform.push("create", create(&a));
    let engine = w.run(config(None));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["old.example"]));
    let a2 = repattern(&a, "[domain-name:value = 'new.example']");
    w.platform.push("update", update(&a, &a2));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["new.example"]));
    // A pattern that gives no value any more: the indicator leaves the list.
    let a3 = repattern(&a2, "[email-addr:value = 'x@new.example']");
    w.platform.push("update", update(&a2, &a3));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&[]));
    engine.stop().await;
}

#[tokio::test]
async fn revoked_detection_off_and_low_score_leave_and_come_back() {
    let w = World::new(Dialect::Prefixed).await;
    let mut cfg = config(None);
    cfg.policy.min_score = Some(50);
    let a = ipv4("a", "198.51.100.1");
    w.platform.push("create", create(&a));
    let engine = w.run(cfg);
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["198.51.100.1"]));
    let exclusions = [
        (json!({"revoked": true}), "revoked"),
        (json!({"x_opencti_detection": false}), "detection_off"),
        (json!({"x_opencti_score": 40}), "score_below_minimum"),
    ];
    for (change, reason) in exclusions {
        let off = with(&a, change);
        w.platform.push("update", update(&a, &off));
        w.settle().await;
        assert_eq!(w.esm.values(), set(&[]), "{reason}");
        assert!(w.metrics.skipped(reason) >= 1, "{reason} counted");
        // Undone: the value comes back.
        w.platform.push("update", update(&off, &a));
        w.settle().await;
        assert_eq!(w.esm.values(), set(&["198.51.100.1"]), "{reason} undone");
    }
    engine.stop().await;
}

#[tokio::test]
async fn valid_until_removes_the_value_at_that_instant_without_any_event() {
    let w = World::new(Dialect::Prefixed).await;
    // No heartbeat either: nothing but the time may remove it.
    w.platform.set_heartbeats(false);
    let until = T0 + 60_000;
    let a = with(
        &ipv4("a", "198.51.100.2"),
        json!({"valid_until": iso(until)}),
    );
    let b = ipv4("b", "198.51.100.3");
    w.platform.push("create", create(&a));
    w.platform.push("create", create(&b));
    let engine = w.run(config(None));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["198.51.100.2", "198.51.100.3"]));
    w.clock.set(until - 1);
    // Still there one millisecond before: checked once the engine has written an event
    // that came after that time.
    w.platform
        .push("create", create(&ipv4("c", "198.51.100.30")));
    w.settle().await;
    assert_eq!(
        w.esm.values(),
        set(&["198.51.100.2", "198.51.100.3", "198.51.100.30"])
    );
    w.clock.set(until);
    wait_for("the expired value to leave", || {
        w.esm.values() == set(&["198.51.100.3", "198.51.100.30"])
    })
    .await;
    // Undone (valid_until moved on): back.
    let a2 = with(&a, json!({"valid_until": iso(until + 3_600_000)}));
    w.platform.push("update", update(&a, &a2));
    w.settle().await;
    assert_eq!(
        w.esm.values(),
        set(&["198.51.100.2", "198.51.100.3", "198.51.100.30"])
    );
    assert!(
        w.metrics.skipped("expired") == 0,
        "expiry is not an event skip"
    );
    engine.stop().await;
}

#[tokio::test]
async fn the_sse_event_name_decides_a_filter_exit_and_entry() {
    let w = World::new(Dialect::Prefixed).await;
    let a = ipv4("a", "198.51.100.4");
    w.platform.push("create", create(&a));
    let engine = w.run(config(None));
    w.settle().await;
    // The label that made it match is removed: the platform sends the update as `delete`.
    let unlabelled = with(&a, json!({"labels": []}));
    w.platform.push("delete", update(&a, &unlabelled));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&[]));
    // Matching again: the update comes as `create`.
    w.platform.push("create", update(&unlabelled, &a));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["198.51.100.4"]));
    engine.stop().await;
}

#[tokio::test]
async fn a_merge_keeps_the_target_and_forgets_the_absorbed() {
    let w = World::new(Dialect::Prefixed).await;
    let a = ipv4("a", "198.51.100.5");
    let b = ipv4("b", "198.51.100.6");
    let c = ipv4("c", "198.51.100.5");
    for i in [&a, &b, &c] {
        w.platform.push("create", create(i));
    }
    let engine = w.run(config(None));
    w.settle().await;
    // `a` absorbs `b` and `c`: b's value goes, the shared 198.51.100.5 stays (a carries it).
    w.platform.push("merge", merge(&a, &[&b, &c]));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["198.51.100.5"]));
    // Only `a` carries it now.
    w.platform.push("delete", delete(&a));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&[]));
    engine.stop().await;
}

#[tokio::test]
async fn non_indicators_and_unparsable_events_are_skipped_counted_and_not_fatal() {
    let w = World::new(Dialect::Prefixed).await;
    // Live events (an unparsable one cannot come from a recovery).
    let engine = w.run(config(None));
    wait_for("the first run's position", || {
        w.store.platform_position().is_some()
    })
    .await;
    w.platform.push(
        "create",
        json!({"version": "4", "type": "create", "data": {"id": "identity--0d6a3b1e-3f1e-5b8e-9d1e-1b7e0e0f0a01",
            "type": "identity", "spec_version": "2.1", "name": "ACME", "identity_class": "organization"},
            "origin": {"referer": "init-dependencies"}}),
    );
    w.platform.push(
        "create",
        json!({"version": "4", "type": "create", "data": {"id": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
            "type": "marking-definition", "spec_version": "2.1", "definition_type": "TLP", "name": "TLP:GREEN"}}),
    );
    w.platform
        .push_raw("create", "{\"data\": {\"type\": \"indicator\", tru");
    let bad_date = with(
        &ipv4("bad", "198.51.100.66"),
        json!({"valid_until": "next tuesday"}),
    );
    w.platform.push("update", create(&bad_date));
    w.platform
        .push("create", create(&ipv4("ok", "198.51.100.7")));
    w.settle().await;
    assert_eq!(w.esm.values(), set(&["198.51.100.7"]));
    assert_eq!(w.metrics.skipped("decode_error"), 2);
    assert_eq!(w.metrics.skipped("not_an_indicator"), 2);
    assert!(!engine.is_finished());
    engine.stop().await;
}
