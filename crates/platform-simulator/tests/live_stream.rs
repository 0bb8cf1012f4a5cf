//! The simulated live stream seen from the wire (a plain HTTP client, no SSE library): the
//! platform's admission rules, parameters, `connected`, visibility rules, recovery, events.

use std::time::{Duration, Instant};

use platform_simulator::live_stream::OPENCTI_EXT;
use platform_simulator::{EventId, FakePlatform, IndicatorSpec, Kind, StreamFilter};
use serde_json::{Value, json};

const TOKEN: &str = "sim-token";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Msg {
    id: Option<String>,
    event: String,
    data: Value,
}

struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next message (by the platform's LF framing), with a deadline.
    async fn next(&mut self) -> Msg {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut m = Msg {
                    id: None,
                    event: String::new(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        m.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        m.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                m.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return m;
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("no message in time")
                .expect("body error")
                .expect("body ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Data messages (heartbeats skipped) until one has this id and topic's indicator.
    async fn until(&mut self, mut pred: impl FnMut(&Msg) -> bool) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.next().await;
            if m.event == "heartbeat" {
                continue;
            }
            let hit = pred(&m);
            out.push(m);
            if hit {
                return out;
            }
        }
    }
}

async fn platform(filter: StreamFilter) -> FakePlatform {
    let p = FakePlatform::start(TOKEN, json!({})).await;
    p.live.add_stream("s", filter);
    p.live.set_heartbeat(Some(Duration::from_millis(50)));
    p
}

async fn get(p: &FakePlatform, path_query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(format!("{}{path_query}", p.url()));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

async fn open(p: &FakePlatform, path_query: &str, headers: &[(&str, &str)]) -> Sse {
    let mut h = vec![("authorization", "Bearer sim-token")];
    h.extend_from_slice(headers);
    let resp = get(p, path_query, &h).await;
    assert_eq!(resp.status(), 200);
    Sse {
        resp,
        buf: String::new(),
    }
}

fn internal(m: &Msg) -> &str {
    m.data["data"]["extensions"][OPENCTI_EXT]["id"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn admission_follows_the_platform() {
    let p = platform(StreamFilter::All).await;
    let bearer = ("authorization", "Bearer sim-token");
    assert_eq!(get(&p, "/stream/s", &[]).await.status(), 401);
    assert_eq!(
        get(&p, "/stream/s", &[("authorization", "Bearer nope")])
            .await
            .status(),
        401
    );
    assert_eq!(get(&p, "/stream/unknown", &[bearer]).await.status(), 401);
    assert_eq!(
        get(&p, "/stream/s?recover=2026-01-01T00:00:00Z", &[bearer])
            .await
            .status(),
        500
    );
    p.live.stop_stream("s");
    assert_eq!(get(&p, "/stream/s", &[bearer]).await.status(), 410);
    p.live.start_stream("s");
    let ok = get(&p, "/stream/s", &[bearer]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(ok.headers()["cache-control"], "no-cache, no-transform");
    p.live.set_public("s", true);
    assert_eq!(get(&p, "/stream/s", &[]).await.status(), 200);
    p.live.refuse_next(503, 1);
    assert_eq!(get(&p, "/stream/s", &[bearer]).await.status(), 503);
    assert_eq!(get(&p, "/stream/s", &[bearer]).await.status(), 200);
    let statuses: Vec<u16> = p.live.connections().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![401, 401, 401, 500, 410, 200, 200, 503, 200]);
    assert!(
        !p.live
            .connections()
            .iter()
            .any(|c| c.headers.iter().any(|(k, _)| k == "authorization"))
    );
}

#[tokio::test]
async fn connected_carries_the_stream_info_and_from_is_read_from_query_then_headers() {
    let p = platform(StreamFilter::All).await;
    p.live.set_clock_ms(Some(1_000));
    let a = p
        .live
        .create_indicator(IndicatorSpec::ipv4("1.0.0.1").without_dependencies());
    let b = p
        .live
        .create_indicator(IndicatorSpec::ipv4("1.0.0.2").without_dependencies());
    p.live.set_clock_ms(Some(2_000));
    let c = p
        .live
        .create_indicator(IndicatorSpec::ipv4("1.0.0.3").without_dependencies());
    p.live.trim_through(a);

    let mut s = open(&p, "/stream/s", &[("last-event-id", &b.to_string())]).await;
    let connected = s.next().await;
    assert_eq!(connected.event, "connected");
    assert_eq!(connected.id, None);
    let d = &connected.data;
    assert_eq!(d["firstEventId"], json!(b.to_string()));
    assert_eq!(d["lastEventId"], json!(c.to_string()));
    assert_eq!(d["firstEventDate"], "1970-01-01T00:00:01.000Z");
    assert_eq!(d["lastEventDate"], "1970-01-01T00:00:02.000Z");
    assert_eq!(d["streamSize"], 2);
    assert!(!d["connectionId"].as_str().unwrap().is_empty());
    let got = s.until(|m| m.id.as_deref() == Some(&c.to_string())).await;
    assert_eq!(got.len(), 1, "exclusive from, via Last-Event-ID");

    // The query wins over the header; `0` is the start (the oldest kept, after trimming).
    let mut s = open(&p, "/stream/s?from=0", &[("from", &c.to_string())]).await;
    s.next().await;
    let got = s.until(|m| m.id.as_deref() == Some(&c.to_string())).await;
    assert_eq!(got.len(), 2);
    let rec = p.live.connections().last().cloned().unwrap();
    assert_eq!(rec.from, Some(EventId::ZERO));
}

#[tokio::test]
async fn a_filter_exit_is_a_delete_with_an_inner_update_and_an_entry_a_create() {
    let p = platform(StreamFilter::Label("detection".into())).await;
    let mut s = open(&p, "/stream/s?from=0-0", &[]).await;
    let mut s_nodel = open(&p, "/stream/s?from=0-0", &[("listen-delete", "false")]).await;
    let spec = IndicatorSpec::domain("a.example")
        .with_labels(&["detection"])
        .without_dependencies();
    let id = spec.internal_id.clone();
    p.live.create_indicator(spec);
    // Not matching: nothing.
    p.live
        .create_indicator(IndicatorSpec::domain("other.example").without_dependencies());
    let exit = p.live.update_indicator(&id, |s| s.labels.clear()).unwrap();
    let entry = p
        .live
        .update_indicator(&id, |s| s.labels = vec!["detection".into()])
        .unwrap();
    let kept = p.live.update_indicator(&id, |s| s.score = 90).unwrap();
    let gone = p.live.delete_indicator(&id).unwrap();
    let marker = p
        .live
        .create_indicator(IndicatorSpec::ipv4("9.9.9.9").with_labels(&["detection"]));
    let is_marker = |m: &Msg| {
        m.id.as_deref() == Some(&marker.to_string()) && m.data["data"]["type"] == "indicator"
    };

    let got = s.until(is_marker).await;
    let seen: Vec<(String, String, String)> = got
        .iter()
        .filter(|m| m.data["data"]["type"] == "indicator")
        .map(|m| {
            (
                m.id.clone().unwrap(),
                m.event.clone(),
                m.data["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let ids = |e: EventId| e.to_string();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen[1], (ids(exit), "delete".into(), "update".into()));
    assert_eq!(seen[2], (ids(entry), "create".into(), "update".into()));
    assert_eq!(seen[3], (ids(kept), "update".into(), "update".into()));
    assert_eq!(seen[4], (ids(gone), "delete".into(), "delete".into()));
    // The exit carries the new object (without the label).
    let exit_msg = got
        .iter()
        .find(|m| m.id.as_deref() == Some(&exit.to_string()))
        .unwrap();
    assert_eq!(exit_msg.data["data"]["labels"], json!([]));
    assert!(
        got.iter()
            .filter(|m| m.event != "connected")
            .all(|m| internal(m) == id || m.id.as_deref() == Some(&marker.to_string()))
    );

    // listen-delete=false: neither kind of delete.
    let got = s_nodel.until(is_marker).await;
    let topics: Vec<&str> = got
        .iter()
        .filter(|m| m.data["data"]["type"] == "indicator")
        .map(|m| m.event.as_str())
        .collect();
    assert_eq!(topics, vec!["create", "create", "update", "create"]);
    let rec = p.live.connections().last().cloned().unwrap();
    assert!(!rec.listen_delete);
}

#[tokio::test]
async fn update_merge_and_delete_carry_what_consumers_read() {
    let p = platform(StreamFilter::Indicators).await;
    let mut s = open(&p, "/stream/s?from=0-0", &[]).await;
    let a = IndicatorSpec::ipv4("2.0.0.1");
    let b = IndicatorSpec::ipv4("2.0.0.2");
    let (ida, idb) = (a.internal_id.clone(), b.internal_id.clone());
    let old_std = a.standard_id();
    p.live.create_indicators([a, b]);
    let upd = p
        .live
        .update_indicator(&ida, |s| s.pattern = "[ipv4-addr:value = '2.0.0.9']".into())
        .unwrap();
    let merged = p.live.merge_indicators(&ida, &[&idb]).unwrap();
    let del = p.live.delete_indicator(&ida).unwrap();
    let got = s.until(|m| m.id.as_deref() == Some(&del.to_string())).await;
    let by_id = |e: EventId| {
        got.iter()
            .find(|m| {
                m.id.as_deref() == Some(&e.to_string()) && m.data["data"]["type"] == "indicator"
            })
            .unwrap()
    };

    let u = by_id(upd);
    assert_eq!(u.data["version"], "4");
    assert_eq!(u.data["scope"], "external");
    let rev = u.data["context"]["reverse_patch"].as_array().unwrap();
    assert!(rev.contains(
        &json!({"op": "replace", "path": "/pattern", "value": "[ipv4-addr:value = '2.0.0.1']"})
    ));
    assert!(rev.contains(&json!({"op": "replace", "path": "/id", "value": old_std})));
    assert_eq!(u.data["data"]["pattern"], "[ipv4-addr:value = '2.0.0.9']");

    let m = by_id(merged);
    assert_eq!(m.event, "merge");
    assert_eq!(
        m.data["context"]["sources"][0]["extensions"][OPENCTI_EXT]["id"],
        json!(idb)
    );
    assert!(p.live.indicator(&idb).is_none());

    let d = by_id(del);
    assert_eq!(d.event, "delete");
    assert_eq!(
        d.data["data"]["pattern"], "[ipv4-addr:value = '2.0.0.9']",
        "full object"
    );
    assert_eq!(d.data["data"]["extensions"][OPENCTI_EXT]["detection"], true);
    assert_eq!(p.live.indicator_count(), 0);

    // A non-indicator object: filtered out by an indicators-only stream.
    p.live.push_stix(
        Kind::Create,
        json!({"type": "report", "id": "report--1", "name": "r"}),
    );
    let marker = p.live.create_indicator(IndicatorSpec::ipv4("2.0.0.3"));
    let got = s
        .until(|m| {
            m.id.as_deref() == Some(&marker.to_string()) && m.data["data"]["type"] == "indicator"
        })
        .await;
    assert!(got.iter().all(|m| m.data["data"]["type"] != "report"));
}

#[tokio::test]
async fn recovery_sends_the_current_objects_then_live_from_the_recover_date() {
    let p = platform(StreamFilter::All).await;
    p.live.set_clock_ms(Some(10_000));
    let a = IndicatorSpec::ipv4("3.0.0.1");
    let b = IndicatorSpec::ipv4("3.0.0.2");
    let c = IndicatorSpec::ipv4("3.0.0.3");
    let (ida, idb, idc) = (
        a.internal_id.clone(),
        b.internal_id.clone(),
        c.internal_id.clone(),
    );
    p.live.create_indicators([a, b, c]);
    p.live.set_clock_ms(Some(11_000));
    p.live.update_indicator(&ida, |s| s.score = 99);
    p.live.delete_indicator(&idb);
    p.live.set_clock_ms(Some(30_000));
    // Updated after the recovery date: not recovered, but its live update is after it.
    let late = p.live.update_indicator(&idc, |s| s.score = 1).unwrap();

    let mut s = open(
        &p,
        "/stream/s?from=0-0&recover=1970-01-01T00:00:20.000Z",
        &[],
    )
    .await;
    s.next().await;
    let got = s
        .until(|m| m.id.as_deref() == Some(&late.to_string()))
        .await;
    let indicators: Vec<&Msg> = got
        .iter()
        .filter(|m| m.data["data"]["type"] == "indicator")
        .collect();
    assert_eq!(indicators.len(), 2, "{indicators:#?}");
    let r = indicators[0];
    assert_eq!((r.event.as_str(), internal(r)), ("create", ida.as_str()));
    assert_eq!(r.data["origin"]["referer"], "init-create");
    assert_eq!(r.id.as_deref(), Some("11000-0"), "id from updated_at");
    assert_eq!(r.data["data"]["x_opencti_score"], 99, "the current object");
    // Dependencies first, same id.
    let deps: Vec<&Msg> = got
        .iter()
        .filter(|m| m.data["origin"]["referer"] == "init-dependencies")
        .collect();
    assert_eq!(deps.len(), 2);
    assert!(deps.iter().all(|d| d.id.as_deref() == Some("11000-0")));
    let l = indicators[1];
    assert_eq!((l.event.as_str(), internal(l)), ("update", idc.as_str()));
    assert_eq!(p.live.counters().recovered_sent, 1);
    assert_eq!(p.live.connections()[0].recover_ms, Some(20_000));
}

#[tokio::test]
async fn inferred_objects_only_with_inferences() {
    let p = platform(StreamFilter::All).await;
    let mut plain = open(&p, "/stream/s?from=0-0", &[]).await;
    let mut inf = open(&p, "/stream/s?from=0-0", &[("with-inferences", "true")]).await;
    let mut spec = IndicatorSpec::ipv4("4.0.0.1").without_dependencies();
    spec.is_inferred = true;
    let i = p.live.create_indicator(spec);
    let marker = p
        .live
        .create_indicator(IndicatorSpec::ipv4("4.0.0.2").without_dependencies());
    let is_marker = |m: &Msg| m.id.as_deref() == Some(&marker.to_string());
    let got = plain.until(is_marker).await;
    assert!(!got.iter().any(|m| m.id.as_deref() == Some(&i.to_string())));
    let got = inf.until(is_marker).await;
    assert!(got.iter().any(|m| m.id.as_deref() == Some(&i.to_string())));
}

#[tokio::test]
async fn bulk_loads_and_pushes_are_fast_enough_for_benchmarks() {
    let p = platform(StreamFilter::Indicators).await;
    let t = Instant::now();
    let now = p.live.now_ms() as i64;
    p.live
        .load_indicators(platform_simulator::generate_indicators(100_000, 7, now));
    let loaded = t.elapsed();
    let t = Instant::now();
    let ids =
        p.live.create_indicators((0..20_000).map(|k| {
            IndicatorSpec::ipv4(&format!("10.{}.{}.{}", k >> 16, (k >> 8) & 255, k & 255))
        }));
    let pushed = t.elapsed();
    assert_eq!(p.live.indicator_count(), 120_000);
    assert_eq!(p.live.log_len(), 20_000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let mut s = open(&p, &format!("/stream/s?from={}", ids[19_989]), &[]).await;
    s.next().await;
    let got = s
        .until(|m| m.id.as_deref() == Some(&ids[19_999].to_string()))
        .await;
    assert_eq!(
        got.iter()
            .filter(|m| m.data["data"]["type"] == "indicator")
            .count(),
        10
    );
    println!("load 100k: {loaded:?}, push 20k events: {pushed:?}");
}

/// The standalone binary: a platform with a seeded stream, for connectors run as processes.
#[tokio::test]
async fn the_standalone_binary_serves_a_seeded_stream() {
    use tokio::io::AsyncBufReadExt;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_platform-simulator"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token",
            "bin-token",
        ])
        .args(["--indicators", "20", "--heartbeat-ms", "100"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the binary did not start in time")
        .unwrap()
        .unwrap();
    assert_eq!(first, format!("listening on http://127.0.0.1:{port}"));
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let resp = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/stream/live?from=0-0&recover={now}"
        ))
        .bearer_auth("bin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut s = Sse {
        resp,
        buf: String::new(),
    };
    let mut n = 0;
    s.until(|m| {
        if m.data["data"]["type"] == "indicator" {
            assert_eq!(m.data["origin"]["referer"], "init-create");
            n += 1;
        }
        n == 20
    })
    .await;
    child.kill().await.unwrap();
}

/// The heartbeat timer runs beside the recovery (a first run over many indicators).
#[tokio::test]
async fn heartbeats_keep_flowing_during_a_long_recovery() {
    let p = platform(StreamFilter::Indicators).await;
    p.live.set_heartbeat(Some(Duration::from_millis(1)));
    let now = p.live.now_ms() as i64;
    p.live
        .load_indicators(platform_simulator::generate_indicators(3000, 3, now));
    let recover = platform_simulator::live_stream::iso(now + 1);
    let mut s = open(&p, &format!("/stream/s?from=0-0&recover={recover}"), &[]).await;
    let (mut recovered, mut beats_during) = (0, 0);
    let mut last_recovered_id = "0-0".to_owned();
    while recovered < 3000 {
        let m = s.next().await;
        if m.event == "heartbeat" {
            beats_during += 1;
            // A heartbeat carries the last id sent: a recovered one.
            assert_eq!(m.id.as_deref(), Some(last_recovered_id.as_str()));
        } else if m.data["data"]["type"] == "indicator" {
            recovered += 1;
            last_recovered_id = m.id.clone().unwrap();
        }
    }
    assert!(beats_during > 0);
}
