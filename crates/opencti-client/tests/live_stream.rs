//! Black-box tests of `opencti_client::stream` against the simulated platform's live stream.
//! No sleeps: every wait is on an item or a recorded condition, with a deadline.

use std::time::Duration;

use opencti_client::stream::{LiveStream, StreamConfig, StreamError, StreamItem, StreamPosition};
use platform_simulator::{EventId, FakePlatform, IndicatorSpec, StreamFilter};
use secrecy::SecretString;
use serde_json::{Value, json};

const TOKEN: &str = "tok-5ecret-live-stream-0123456789";
const WAIT: Duration = Duration::from_secs(10);

async fn platform() -> FakePlatform {
    let p = FakePlatform::start(TOKEN, json!({})).await;
    p.live.add_stream("live", StreamFilter::All);
    p.live.set_heartbeat(Some(Duration::from_millis(50)));
    p
}

fn config(p: &FakePlatform) -> StreamConfig {
    let mut c = StreamConfig::new(
        url::Url::parse(&format!("{}/", p.url())).unwrap(),
        SecretString::from(TOKEN),
        "live",
    );
    c.read_timeout = Duration::from_millis(600);
    c.backoff_initial = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(50);
    c
}

fn from(id: impl ToString) -> Option<StreamPosition> {
    Some(StreamPosition {
        start_from: Some(id.to_string()),
        recover_until: None,
    })
}

/// Items until one matches `pred` (returned with everything before it).
async fn until(s: &mut LiveStream, mut pred: impl FnMut(&StreamItem) -> bool) -> Vec<StreamItem> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let item = tokio::time::timeout_at(deadline, s.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching item within {WAIT:?}; seen: {seen:#?}"))
            .expect("the stream ended");
        let hit = pred(&item);
        seen.push(item);
        if hit {
            return seen;
        }
    }
}

/// The data events among `items`: (id, topic, parsed data).
fn events(items: &[StreamItem]) -> Vec<(String, String, Value)> {
    items
        .iter()
        .filter_map(|i| match i {
            StreamItem::Event { id, name, data } => Some((
                id.clone(),
                name.clone(),
                serde_json::from_str(data).unwrap_or(Value::Null),
            )),
            _ => None,
        })
        .collect()
}

fn is_event_of(id: EventId) -> impl FnMut(&StreamItem) -> bool {
    move |i| matches!(i, StreamItem::Event { id: e, .. } if *e == id.to_string())
}

fn indicator_ids(items: &[StreamItem]) -> Vec<String> {
    events(items)
        .into_iter()
        .filter(|(_, _, d)| d["data"]["type"] == "indicator")
        .map(|(_, _, d)| {
            d["data"]["extensions"][platform_simulator::live_stream::OPENCTI_EXT]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn first_run_sends_pycti_parameters_recovers_then_drops_recover_once_past_it() {
    let p = platform().await;
    let now = p.live.now_ms() as i64;
    let old: Vec<IndicatorSpec> = (0..3)
        .map(|k| {
            let mut s = IndicatorSpec::ipv4(&format!("10.0.0.{k}"));
            s.updated_ms = now - 60_000 + k;
            s.created_ms = s.updated_ms;
            s
        })
        .collect();
    p.live.load_indicators(old.clone());
    let first = StreamPosition::first_run(chrono::Utc::now());
    let mut s = LiveStream::start(config(&p), Some(first.clone())).unwrap();
    let mut n = 0;
    let mut items = until(&mut s, |i| {
        if matches!(i, StreamItem::Event { data, .. } if data.contains("\"type\":\"indicator\"")) {
            n += 1;
        }
        n == 3
    })
    .await;
    // The recovered objects: `create` with init-create, ids from updated_at, oldest first.
    let recovered: Vec<_> = events(&items)
        .into_iter()
        .filter(|(_, _, d)| d["data"]["type"] == "indicator")
        .collect();
    assert_eq!(recovered.len(), 3);
    for ((id, topic, d), spec) in recovered.iter().zip(&old) {
        assert_eq!(topic, "create");
        assert_eq!(d["origin"]["referer"], "init-create");
        assert_eq!(id, &format!("{}-0", spec.updated_ms));
        assert_eq!(d["data"]["pattern"], json!(spec.pattern));
    }
    let c = &p.live.connections()[0];
    assert_eq!(c.param("from"), Some("0-0"));
    assert_eq!(c.param("recover"), first.recover_until.as_deref());
    assert_eq!(c.header("last-event-id"), Some("0-0"));
    assert_eq!(c.header("listen-delete"), Some("true"));
    assert_eq!(c.header("no-dependencies"), Some("false"));
    assert_eq!(c.header("with-inferences"), Some("false"));
    assert_eq!(c.header("accept"), Some("text/event-stream"));
    assert_eq!(c.header("cache-control"), Some("no-cache"));
    assert!(c.bearer_ok);
    assert_eq!(
        c.uri.split('?').next(),
        Some("/stream/live"),
        "no `//stream`"
    );
    assert!(c.recover_ms.is_some());

    // Live, then a drop: the reconnection resumes from the live id, without `recover`.
    let live = p
        .live
        .create_indicator(IndicatorSpec::domain("new.example"));
    items.extend(until(&mut s, is_event_of(live)).await);
    // Once a heartbeat is past it, the live event's id is complete (messages sharing it are
    // all sent): a drop resumes after it.
    let past = |i: &StreamItem| matches!(i, StreamItem::Heartbeat { id } if EventId::parse(id).is_some_and(|h| h > live));
    until(&mut s, past).await;
    p.live.drop_connections();
    until(&mut s, |i| matches!(i, StreamItem::Reconnecting { .. })).await;
    until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
    let second = p.live.connections().last().cloned().unwrap();
    let resumed = second.param("from").unwrap().to_owned();
    assert!(
        EventId::parse(&resumed).unwrap() >= live,
        "resumed from {resumed}, before the live event {live}"
    );
    assert_eq!(second.param("recover"), None);
    assert_eq!(second.header("last-event-id"), Some(resumed.as_str()));
    for c in p.live.connections() {
        assert!(!c.uri.contains(TOKEN) && !c.headers.iter().any(|(_, v)| v.contains(TOKEN)));
    }
    s.shutdown().await;
}

#[tokio::test]
async fn from_is_exclusive_by_id_and_by_date() {
    let p = platform().await;
    p.live.set_clock_ms(Some(1_000));
    let e1 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("1.1.1.1").without_dependencies());
    let e2 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("2.2.2.2").without_dependencies());
    p.live.set_clock_ms(Some(2_000));
    let e3 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("3.3.3.3").without_dependencies());
    assert_eq!((e1.ms, e2.ms, e2.seq), (1_000, 1_000, 1));

    let mut s = LiveStream::start(config(&p), from(e1)).unwrap();
    let items = until(&mut s, is_event_of(e3)).await;
    let ids: Vec<_> = events(&items).into_iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![e2.to_string(), e3.to_string()]);
    s.shutdown().await;

    // A date: `<ms>-0`, exclusive too.
    let mut s = LiveStream::start(config(&p), from("1970-01-01T00:00:01.500Z")).unwrap();
    let items = until(&mut s, is_event_of(e3)).await;
    let ids: Vec<_> = events(&items).into_iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![e3.to_string()]);
    s.shutdown().await;

    // No position: live only.
    let mut s = LiveStream::start(config(&p), None).unwrap();
    until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
    p.live.set_clock_ms(Some(3_000));
    let e4 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("4.4.4.4").without_dependencies());
    let items = until(&mut s, is_event_of(e4)).await;
    assert_eq!(events(&items).len(), 1, "{items:#?}");
    s.shutdown().await;
}

#[tokio::test]
async fn dependencies_share_the_indicator_event_id() {
    let p = platform().await;
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    let spec = IndicatorSpec::sha256(&"ab".repeat(32));
    let id = p.live.create_indicator(spec.clone());
    let items = until(
        &mut s,
        |i| matches!(i, StreamItem::Event { data, .. } if data.contains("\"type\":\"indicator\"")),
    )
    .await;
    let evs = events(&items);
    let types: Vec<_> = evs.iter().map(|e| e.2["data"]["type"].clone()).collect();
    assert_eq!(
        types,
        vec![
            json!("identity"),
            json!("marking-definition"),
            json!("indicator")
        ]
    );
    assert!(evs.iter().all(|e| e.0 == id.to_string()), "{evs:?}");
    assert_eq!(evs[0].2["origin"]["referer"], "init-dependencies");
    // Sent once per connection.
    let id2 = p
        .live
        .create_indicator(IndicatorSpec::md5(&"cd".repeat(16)));
    let items = until(&mut s, is_event_of(id2)).await;
    assert_eq!(events(&items).len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn crlf_multiline_retry_comments_unknown_topic_and_invalid_json_are_read() {
    let p = platform().await;
    p.live.faults(|f| {
        f.crlf = true;
        f.multiline_data = true;
        f.retry_ms = Some(1234);
        f.comments = true;
    });
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    let spec = IndicatorSpec::url("http://x.example/it's").without_dependencies();
    let a = p.live.create_indicator(spec.clone());
    let b = p.live.push_raw("weird-topic", "{\"x\":1}");
    let c = p.live.push_raw("create", "{not json");
    let d = p
        .live
        .create_indicator(IndicatorSpec::ipv6("2001:db8::1").without_dependencies());
    let items = until(&mut s, is_event_of(d)).await;
    let evs = events(&items);
    assert_eq!(evs.len(), 4, "{items:#?}");
    assert_eq!(evs[0].0, a.to_string());
    // Multi-line data joined back into the same JSON.
    assert_eq!(evs[0].2["data"], spec_stix(&p, &spec.internal_id));
    assert_eq!(
        (evs[1].0.as_str(), evs[1].1.as_str()),
        (b.to_string().as_str(), "weird-topic")
    );
    let raw_c = items.iter().find_map(|i| match i {
        StreamItem::Event { id, data, .. } if *id == c.to_string() => Some(data.clone()),
        _ => None,
    });
    assert_eq!(
        raw_c.as_deref(),
        Some("{not json"),
        "invalid JSON passed on as is"
    );
    s.shutdown().await;
}

fn spec_stix(p: &FakePlatform, id: &str) -> Value {
    p.live.indicator(id).unwrap().to_stix()
}

#[tokio::test]
async fn a_drop_mid_event_resumes_from_the_last_id_and_the_partial_event_is_not_delivered() {
    let p = platform().await;
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    let e1 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("1.0.0.1").without_dependencies());
    until(&mut s, is_event_of(e1)).await;
    p.live.faults(|f| f.cut_next_events = 1);
    let e2 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("1.0.0.2").without_dependencies());
    let items = until(&mut s, is_event_of(e2)).await;
    let reconnect = items
        .iter()
        .position(|i| matches!(i, StreamItem::Reconnecting { .. }))
        .expect("a reconnection");
    assert!(matches!(
        &items[reconnect],
        StreamItem::Reconnecting {
            reason: StreamError::Transport(_) | StreamError::Ended,
            ..
        }
    ));
    // e2 once, whole, after the reconnection (e1 may be replayed: its group was the last
    // one delivered); nothing partial.
    let evs = events(&items);
    let after: Vec<_> = items[reconnect..].iter().collect();
    assert!(evs.iter().all(|e| e.2 != Value::Null), "{items:#?}");
    let e2s: Vec<_> = evs.iter().filter(|e| e.0 == e2.to_string()).collect();
    assert_eq!(e2s.len(), 1, "{items:#?}");
    assert_eq!(e2s[0].2["data"]["pattern"], "[ipv4-addr:value = '1.0.0.2']");
    assert!(
        evs.iter()
            .all(|e| e.0 == e1.to_string() || e.0 == e2.to_string())
    );
    assert!(matches!(after.last(), Some(StreamItem::Event { .. })));
    assert_eq!(p.live.counters().cut, 1);
    let c = p.live.connections();
    assert_eq!(c.len(), 2);
    let resumed = EventId::parse(c[1].param("from").unwrap()).unwrap();
    assert!(
        resumed < e2,
        "resumed from {resumed}, past the cut event {e2}"
    );
    s.shutdown().await;
}

/// Dependencies share the object's id: a drop after them and before the object must not
/// resume past that id (the object would be lost).
#[tokio::test]
async fn a_drop_between_dependencies_and_their_object_loses_nothing() {
    let p = platform().await;
    p.live.set_heartbeat(None);
    let mut cfg = config(&p);
    cfg.read_timeout = Duration::from_secs(5);
    let mut s = LiveStream::start(cfg, from("0-0")).unwrap();
    until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
    p.live.faults(|f| {
        f.cut_next_events = 1;
        f.cut_after = 2;
    });
    let spec = IndicatorSpec::ipv4("3.1.4.1");
    let id = p.live.create_indicator(spec.clone());
    let items = until(&mut s, |i| {
        matches!(i, StreamItem::Event { id: e, data, .. }
            if *e == id.to_string() && data.contains("\"type\":\"indicator\""))
    })
    .await;
    assert!(
        items
            .iter()
            .any(|i| matches!(i, StreamItem::Reconnecting { .. }))
    );
    assert_eq!(indicator_ids(&items), vec![spec.internal_id.clone()]);
    let c = p.live.connections();
    assert_eq!(c.len(), 2);
    assert_eq!(
        c[1].param("from"),
        Some("0-0"),
        "not past the incomplete id {id}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_stall_ends_in_a_read_timeout_and_a_reconnection() {
    let p = platform().await;
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    until(&mut s, |i| matches!(i, StreamItem::Heartbeat { .. })).await;
    p.live.faults(|f| f.stall = true);
    until(&mut s, |i| {
        matches!(
            i,
            StreamItem::Reconnecting {
                reason: StreamError::ReadTimeout(_),
                ..
            }
        )
    })
    .await;
    p.live.faults(|f| f.stall = false);
    let e = p
        .live
        .create_indicator(IndicatorSpec::ipv4("9.9.9.9").without_dependencies());
    let items = until(&mut s, is_event_of(e)).await;
    assert_eq!(indicator_ids(&items).len(), 1);
    assert!(p.live.counters().stalled >= 1);
    s.shutdown().await;
}

#[tokio::test]
async fn refusals_are_waited_out_reported_and_the_stream_resumes() {
    let p = platform().await;
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
    for (status, n) in [(401u16, 2usize), (410, 1), (500, 3), (503, 1)] {
        p.live.refuse_next(status, n);
        p.live.drop_connections();
        let items = until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
        let reasons: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                StreamItem::Reconnecting { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        // The drop itself, then one per refusal.
        assert_eq!(reasons.len(), n + 1, "{status}: {reasons:?}");
        for r in &reasons[1..] {
            match (status, r) {
                (401, StreamError::Unauthorized { status: 401, .. }) => {}
                (410, StreamError::Stopped { .. }) => {}
                (500 | 503, StreamError::Status { status: got, .. }) if *got == status => {}
                _ => panic!("{status}: {r:?}"),
            }
            assert!(r.is_transient());
        }
    }
    let e = p
        .live
        .create_indicator(IndicatorSpec::ipv4("8.8.8.8").without_dependencies());
    until(&mut s, is_event_of(e)).await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_stopped_stream_and_a_bad_token_are_reported_then_resumed() {
    let p = platform().await;
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
    p.live.stop_stream("live");
    until(&mut s, |i| {
        matches!(
            i,
            StreamItem::Reconnecting {
                reason: StreamError::Stopped { .. },
                ..
            }
        )
    })
    .await;
    p.live.start_stream("live");
    let e = p
        .live
        .create_indicator(IndicatorSpec::ipv4("7.7.7.7").without_dependencies());
    until(&mut s, is_event_of(e)).await;
    s.shutdown().await;

    // A wrong token: 401, retried, and the token never in an error.
    let mut cfg = config(&p);
    cfg.token = SecretString::from("wrong-token-value-xyz");
    p.live.faults(|f| f.echo_request_on_refusal = true);
    let mut s = LiveStream::start(cfg, from("0-0")).unwrap();
    let items = until(&mut s, |i| matches!(i, StreamItem::Reconnecting { .. })).await;
    let text = format!("{items:?}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong-token-value-xyz"), "{text}");
    s.shutdown().await;
}

#[tokio::test]
async fn no_token_in_any_error_text_even_when_the_peer_echoes_it() {
    let p = platform().await;
    p.live.faults(|f| f.echo_request_on_refusal = true);
    p.live.refuse_next(500, 2);
    let cfg = config(&p);
    assert!(!format!("{cfg:?}").contains(TOKEN));
    let mut s = LiveStream::start(cfg, from("0-0")).unwrap();
    let items = until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
    let errors: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            StreamItem::Reconnecting { reason, .. } => Some(format!("{reason} {reason:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2, "{items:#?}");
    for e in &errors {
        assert!(!e.contains(TOKEN), "{e}");
        assert!(e.contains("500"), "{e}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn a_position_before_the_retention_window_is_a_gap() {
    let p = platform().await;
    let ids: Vec<EventId> = (0..5)
        .map(|k| {
            p.live
                .create_indicator(IndicatorSpec::ipv4(&format!("5.5.5.{k}")).without_dependencies())
        })
        .collect();
    p.live.set_retention(Some(2));
    assert_eq!(p.live.first_event_id(), Some(ids[3]));
    let mut s = LiveStream::start(config(&p), from(ids[0])).unwrap();
    let items = until(&mut s, |i| matches!(i, StreamItem::Gap { .. })).await;
    match items.last().unwrap() {
        StreamItem::Gap {
            position,
            first_event_id,
        } => {
            assert_eq!(position, &ids[0].to_string());
            assert_eq!(first_event_id, &ids[3].to_string());
        }
        _ => unreachable!(),
    }
    s.shutdown().await;

    // At the oldest kept id: nothing lost, no gap.
    let mut s = LiveStream::start(config(&p), from(ids[3])).unwrap();
    let items = until(&mut s, is_event_of(ids[4])).await;
    assert!(!items.iter().any(|i| matches!(i, StreamItem::Gap { .. })));
    assert_eq!(events(&items).len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn no_gap_while_a_recovery_covers_the_trimmed_part() {
    let p = platform().await;
    p.live.set_clock_ms(Some(10_000));
    let spec = IndicatorSpec::ipv4("6.6.6.6").without_dependencies();
    p.live.create_indicator(spec.clone());
    let last = p
        .live
        .create_indicator(IndicatorSpec::ipv4("6.6.6.7").without_dependencies());
    p.live.set_retention(Some(1));
    // A reconnection mid-recovery: position an old recovery id, recovery date after the
    // oldest kept event.
    let pos = StreamPosition {
        start_from: Some("5-0".into()),
        recover_until: Some("1970-01-01T00:00:20.000Z".into()),
    };
    let mut s = LiveStream::start(config(&p), Some(pos)).unwrap();
    let mut n = 0;
    let items = until(&mut s, |i| {
        if matches!(i, StreamItem::Event { data, .. } if data.contains("\"type\":\"indicator\"")) {
            n += 1;
        }
        n == 2
    })
    .await;
    assert!(
        !items.iter().any(|i| matches!(i, StreamItem::Gap { .. })),
        "{items:#?}"
    );
    // Both come from the recovery (updated before the recovery date), ids from updated_at.
    let ids: Vec<_> = events(&items).into_iter().map(|e| e.0).collect();
    assert_eq!(ids, vec!["10000-0".to_owned(), "10000-1".to_owned()]);
    assert_eq!(last, EventId::new(10_000, 1));
    s.shutdown().await;
}

#[tokio::test]
async fn an_oversized_event_is_reported_and_the_stream_continues() {
    let p = platform().await;
    let mut cfg = config(&p);
    cfg.max_event_bytes = 2 * 1024 * 1024;
    let mut s = LiveStream::start(cfg, from("0-0")).unwrap();
    let mut big = IndicatorSpec::domain("big.example").without_dependencies();
    big.description = Some("x".repeat(2 * 1024 * 1024 + 100));
    let b = p.live.create_indicator(big);
    let after = p
        .live
        .create_indicator(IndicatorSpec::domain("after.example").without_dependencies());
    let items = until(&mut s, is_event_of(after)).await;
    let too_large: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            StreamItem::TooLarge { id, limit } => Some((id.clone(), *limit)),
            _ => None,
        })
        .collect();
    assert_eq!(too_large, vec![(b.to_string(), 2 * 1024 * 1024)]);
    assert_eq!(events(&items).len(), 1, "only the event after");
    s.shutdown().await;
}

#[tokio::test]
async fn heartbeats_carry_the_last_id_then_advance_with_the_clock_when_idle() {
    let p = platform().await;
    p.live.set_clock_ms(Some(1_000));
    let e1 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("4.3.2.1").without_dependencies());
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    until(&mut s, is_event_of(e1)).await;
    // Idle at the same ms: the heartbeat carries the last id sent.
    until(
        &mut s,
        |i| matches!(i, StreamItem::Heartbeat { id } if *id == e1.to_string()),
    )
    .await;
    p.live.set_clock_ms(Some(5_000));
    until(
        &mut s,
        |i| matches!(i, StreamItem::Heartbeat { id } if id == "5000-0"),
    )
    .await;
    // An event after a synthetic id is above it: resuming from a heartbeat skips nothing.
    let e2 = p
        .live
        .create_indicator(IndicatorSpec::ipv4("4.3.2.2").without_dependencies());
    assert!(e2 > EventId::new(5_000, 0), "{e2}");
    s.shutdown().await;
    let mut s = LiveStream::start(config(&p), from("5000-0")).unwrap();
    until(&mut s, is_event_of(e2)).await;
    s.shutdown().await;
}

#[tokio::test]
async fn no_heartbeats_at_all_is_a_read_timeout() {
    let p = platform().await;
    p.live.set_heartbeat(None);
    let mut s = LiveStream::start(config(&p), from("0-0")).unwrap();
    let items = until(&mut s, |i| matches!(i, StreamItem::Reconnecting { .. })).await;
    assert!(matches!(
        items.last(),
        Some(StreamItem::Reconnecting {
            reason: StreamError::ReadTimeout(_),
            ..
        })
    ));
    assert!(
        !items
            .iter()
            .any(|i| matches!(i, StreamItem::Heartbeat { .. }))
    );
    s.shutdown().await;
}

#[tokio::test]
async fn the_flags_reach_the_platform_and_shape_what_it_sends() {
    let p = platform().await;
    p.live
        .set_filter("live", StreamFilter::Label("detection".into()));
    let mut cfg = config(&p);
    cfg.listen_delete = false;
    cfg.no_dependencies = true;
    cfg.with_inferences = true;
    let mut s = LiveStream::start(cfg, from("0-0")).unwrap();
    until(&mut s, |i| matches!(i, StreamItem::Connected { .. })).await;
    let spec = IndicatorSpec::domain("flags.example").with_labels(&["detection"]);
    let id = spec.internal_id.clone();
    p.live.create_indicator(spec);
    p.live.update_indicator(&id, |s| s.labels.clear()); // a filter exit: a delete
    p.live
        .create_indicator(IndicatorSpec::domain("gone.example").with_labels(&["detection"]));
    let marker = p
        .live
        .create_indicator(IndicatorSpec::domain("marker.example").with_labels(&["detection"]));
    let items = until(&mut s, |i| {
        matches!(i, StreamItem::Event { id, data, .. }
            if *id == marker.to_string() && data.contains("\"type\":\"indicator\""))
    })
    .await;
    let c = &p.live.connections()[0];
    assert_eq!(c.header("listen-delete"), Some("false"));
    assert_eq!(c.header("no-dependencies"), Some("true"));
    assert_eq!(c.header("with-inferences"), Some("true"));
    let topics: Vec<String> = events(&items).into_iter().map(|e| e.1).collect();
    assert!(!topics.iter().any(|t| t == "delete"), "{topics:?}");
    // `no-dependencies` only drops core relationships: authors and markings still come.
    assert!(
        events(&items)
            .iter()
            .any(|e| e.2["origin"]["referer"] == "init-dependencies")
    );
    s.shutdown().await;
}
