//! `GET /stream/{id}`: admission (token, collection, stopped, recovery without a start),
//! then one writer task per connection: `connected`, the recovery, the live reader with the
//! visibility rules and dependencies, heartbeats.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::faults::{Faults, frame, line};
use super::log::{EventId, Kind, Payload};
use super::objects::{self, OPENCTI_EXT};
use super::{ConnectionRecord, LiveStreams, StreamFilter, recovery};

/// The live reader's batch (`XREAD COUNT`).
const BATCH: usize = 100;
/// The per-connection dependency cache (`LRU` of 5000 in the platform).
const DEPS_CACHE: usize = 5000;

/// The request's parameters, each read from the query first, then from the headers.
#[derive(Debug, Clone)]
struct Params {
    from: Option<String>,
    recover: Option<String>,
    listen_delete: bool,
    no_dependencies: bool,
    with_inferences: bool,
    /// `delay` / `event-delay`: ms waited between two batches (pacing).
    delay_ms: u64,
}

impl Params {
    fn read(query: &[(String, String)], headers: &HeaderMap) -> Self {
        let get = |qs: &[&str], hs: &[&str]| -> Option<String> {
            qs.iter()
                .find_map(|q| query.iter().find(|(k, _)| k == q).map(|(_, v)| v.clone()))
                .or_else(|| {
                    hs.iter().find_map(|h| {
                        headers
                            .get(*h)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    })
                })
        };
        Params {
            from: get(&["from"], &["from", "last-event-id"]),
            recover: get(&["recover"], &["recover", "recover-date"]),
            listen_delete: get(&["listen-delete"], &["listen-delete"]).as_deref() != Some("false"),
            no_dependencies: get(
                &["no-dependencies", "no-relationships"],
                &["no-dependencies", "no-relationships"],
            )
            .as_deref()
                == Some("true"),
            with_inferences: get(&["with-inferences"], &["with-inferences"]).as_deref()
                == Some("true"),
            delay_ms: get(&["delay"], &["event-delay"])
                .and_then(|d| d.trim().parse().ok())
                .unwrap_or(0),
        }
    }
}

/// `0`/`0-0` -> the start; `<a>-<b>` as is; a date -> `<ms>-0`; anything else ignored.
pub(crate) fn position(v: &str) -> Option<EventId> {
    let v = v.trim();
    if v == "0" || v == "0-0" {
        return Some(EventId::ZERO);
    }
    if let Some(id) = EventId::parse(v) {
        return Some(id);
    }
    let ms = chrono::DateTime::parse_from_rfc3339(v)
        .map(|d| d.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|d| d.and_utc().timestamp_millis())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_millis()
            })
        })
        .ok()?;
    Some(EventId::new(u64::try_from(ms).ok()?, 0))
}

fn refused(status: u16, echo: Option<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match echo {
        None => code.into_response(),
        Some(text) => (code, text).into_response(),
    }
}

/// Everything a connection's writer needs, decided at admission.
struct Conn {
    live: LiveStreams,
    stream_id: String,
    params: Params,
    from: Option<EventId>,
    recover: Option<EventId>,
    connected: String,
    drop_generation: u64,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    deps_sent: HashSet<String>,
    last_id: Option<EventId>,
    /// The heartbeat timer: the period in force and the next beat.
    period: Option<Duration>,
    next_beat: Option<tokio::time::Instant>,
}

/// Why the writer stops.
enum Stop {
    /// The client went away, or the connection is dropped / cut (already handled).
    Gone,
}

pub(crate) async fn stream(
    State(live): State<LiveStreams>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let params = Params::read(&query, &headers);
    let token = live.platform.lock().unwrap().token.clone();
    let bearer_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {token}").as_str());
    let from = params.from.as_deref().and_then(position);
    let recover_at = params.recover.as_deref().and_then(position);
    let (tx, rx) = mpsc::channel(16);
    let decision = {
        let mut i = live.inner.lock().unwrap();
        let mut record = ConnectionRecord {
            connection_id: String::new(),
            stream_id: id.clone(),
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            query: query.clone(),
            headers: headers
                .iter()
                .filter(|(k, _)| *k != header::AUTHORIZATION)
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            bearer_ok,
            status: 200,
            from,
            recover_ms: None,
            listen_delete: params.listen_delete,
            no_dependencies: params.no_dependencies,
            with_inferences: params.with_inferences,
        };
        i.counters.connections += 1;
        let mut status = 200;
        if let Some((code, n)) = i.faults.refuse_next.as_mut().filter(|(_, n)| *n > 0) {
            *n -= 1;
            status = *code;
        } else {
            match i.streams.get(&id) {
                None => status = 401,
                Some(s) if !s.public && !bearer_ok => status = 401,
                Some(s) if s.stopped => status = 410,
                Some(_) if recover_at.is_some() && from.is_none() => status = 500,
                Some(_) => {}
            }
        }
        // Recovery only when `recover` is after `from`.
        let recover = recover_at.filter(|r| from.is_some_and(|f| *r > f));
        record.status = status;
        if status == 200 {
            i.next_connection += 1;
            record.connection_id = format!(
                "{:08x}-sim0-4000-8000-{:012x}",
                i.next_connection, i.next_connection
            );
            record.recover_ms = recover.map(|r| r.ms);
            i.counters.open += 1;
        } else {
            i.counters.refused += 1;
        }
        // An empty log (nothing yet, or everything trimmed) reports the last id generated
        // for both bounds: a position before it is a gap, `0-0` is none.
        let first_id = i.log.first_id().unwrap_or(i.log.last_generated());
        let last_id = i.log.last_id().unwrap_or(i.log.last_generated());
        let connected = json!({
            "lastEventId": last_id.to_string(),
            "firstEventId": first_id.to_string(),
            "firstEventDate": objects::iso(first_id.ms as i64),
            "lastEventDate": objects::iso(last_id.ms as i64),
            "streamSize": i.log.len(),
            "connectionId": record.connection_id,
        })
        .to_string();
        // No `from`: only events after the current last one (`$`).
        let start = from.or(Some(i.log.last_generated()));
        let conn = Conn {
            live: live.clone(),
            stream_id: id.clone(),
            params: params.clone(),
            from: start,
            recover,
            connected,
            drop_generation: i.drop_generation,
            tx,
            deps_sent: HashSet::new(),
            // Heartbeats from the first tick when a start was given.
            last_id: from,
            period: None,
            next_beat: None,
        };
        i.connections.push(record);
        let echo = i.faults.echo_request_on_refusal.then(|| {
            let mut t = format!("GET {uri}\n");
            for (k, v) in &headers {
                t.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
            }
            t
        });
        (status, conn, echo)
    };
    live.changed.send_modify(|g| *g += 1);
    let (status, conn, echo) = decision;
    if status != 200 {
        return refused(status, echo);
    }
    tokio::spawn(async move {
        let live = conn.live.clone();
        let _ = conn.run().await;
        live.with(|i| i.counters.open = i.counters.open.saturating_sub(1));
    });
    let body = Body::from_stream(ChannelBody(rx));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-transform"),
            (header::CONNECTION, "keep-alive"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

/// The writer's channel as a body stream; an `Err` aborts the connection (a TCP drop).
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for ChannelBody {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

impl Conn {
    fn faults(&self) -> Faults {
        self.live.read(|i| i.faults.clone())
    }

    async fn write(&mut self, bytes: Vec<u8>) -> Result<(), Stop> {
        self.tx.send(Ok(bytes.into())).await.map_err(|_| Stop::Gone)
    }

    /// Stall, drop and stop checks before every message.
    async fn check(&mut self) -> Result<(), Stop> {
        let (stall, dropped, stopped) = self.live.read(|i| {
            (
                i.faults.stall,
                i.drop_generation != self.drop_generation,
                i.streams.get(&self.stream_id).is_none_or(|s| s.stopped),
            )
        });
        if stall {
            self.live.with(|i| i.counters.stalled += 1);
            // Silent for good: the connection is dead, only the client can end it.
            self.tx.closed().await;
            return Err(Stop::Gone);
        }
        if dropped {
            let _ = self
                .tx
                .send(Err(std::io::Error::other("connection dropped")))
                .await;
            return Err(Stop::Gone);
        }
        if stopped {
            // The platform ends the open response (headers are sent already).
            return Err(Stop::Gone);
        }
        Ok(())
    }

    /// One data event, whole or cut (the knob).
    async fn send_event(&mut self, id: EventId, topic: &str, data: &str) -> Result<(), Stop> {
        self.check().await?;
        let (f, cut) = self.live.with(|i| {
            let mut cut = i.faults.cut_next_events > 0;
            if cut && i.faults.cut_after > 0 {
                i.faults.cut_after -= 1;
                cut = false;
            }
            if cut {
                i.faults.cut_next_events -= 1;
                i.counters.cut += 1;
            }
            (i.faults.clone(), cut)
        });
        let bytes = frame(&f, Some(&id.to_string()), topic, data);
        if cut {
            let half = bytes.len() / 2;
            let _ = self
                .tx
                .send(Ok(Bytes::copy_from_slice(&bytes[..half])))
                .await;
            // Let the half reach the socket before the connection is aborted.
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = self
                .tx
                .send(Err(std::io::Error::other("connection cut mid-event")))
                .await;
            return Err(Stop::Gone);
        }
        self.write(bytes).await?;
        self.last_id = Some(id);
        self.live.with(|i| i.counters.events_sent += 1);
        Ok(())
    }

    async fn send_dependencies(&mut self, id: EventId, deps: &[String]) -> Result<(), Stop> {
        for d in deps {
            if self.deps_sent.contains(d) {
                continue;
            }
            if self.deps_sent.len() >= DEPS_CACHE {
                self.deps_sent.clear();
            }
            self.deps_sent.insert(d.clone());
            let obj = objects::dependency_object(d);
            let json = objects::event_json(
                Kind::Create,
                objects::message(Kind::Create, &obj),
                Some(json!({"referer": "init-dependencies"})),
                &obj,
                None,
            );
            self.send_event(id, "create", &json).await?;
            self.live.with(|i| i.counters.dependencies_sent += 1);
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), Stop> {
        let Some(id) = self.last_id else {
            return Ok(());
        };
        self.check().await?;
        let f = self.faults();
        if f.comments {
            self.write(line(&f, ": keep-alive")).await?;
        }
        let data = json!(objects::iso(id.ms as i64)).to_string();
        self.write(frame(&f, Some(&id.to_string()), "heartbeat", &data))
            .await?;
        self.live.with(|i| i.counters.heartbeats_sent += 1);
        Ok(())
    }

    /// The heartbeat timer runs beside the reader, as the platform's `setInterval` does:
    /// beats go out during a long recovery or a busy live part too. A period change (the
    /// knob) restarts the timer.
    async fn beat_if_due(&mut self) -> Result<(), Stop> {
        let period = self.live.read(|i| i.heartbeat);
        if period != self.period {
            self.period = period;
            self.next_beat = period.map(|p| tokio::time::Instant::now() + p);
        }
        if let (Some(p), Some(at)) = (self.period, self.next_beat) {
            if tokio::time::Instant::now() >= at {
                self.heartbeat().await?;
                self.next_beat = Some(tokio::time::Instant::now() + p);
            }
        }
        Ok(())
    }

    async fn run(mut self) -> Result<(), Stop> {
        self.check().await?;
        self.beat_if_due().await?;
        let f = self.faults();
        let connected = self.connected.clone();
        self.write(frame(&f, None, "connected", &connected)).await?;
        if let Some(ms) = f.retry_ms {
            self.write(line(&f, &format!("retry: {ms}"))).await?;
            self.write(line(&f, "")).await?;
        }
        let mut cursor = self.from.unwrap_or(EventId::ZERO);
        if let Some(recover) = self.recover {
            self.recover(recover).await?;
            cursor = recover;
        }
        self.live_part(cursor).await
    }

    async fn recover(&mut self, recover: EventId) -> Result<(), Stop> {
        let from_ms = self.from.map_or(0, |f| f.ms);
        let plan = self.live.read(|i| {
            let filter = i
                .streams
                .get(&self.stream_id)
                .map_or(StreamFilter::All, |s| s.filter.clone());
            recovery::plan(
                &i.store,
                &filter,
                from_ms,
                recover.ms,
                self.params.with_inferences,
            )
        });
        for chunk in plan.chunks(500) {
            // The page as it is now (objects deleted meanwhile are gone from the listing).
            let page: Vec<(EventId, Value, Vec<String>)> = self.live.read(|i| {
                chunk
                    .iter()
                    .filter_map(|(id, key)| {
                        i.store
                            .get(key)
                            .map(|s| (*id, s.to_stix(), s.dependencies()))
                    })
                    .collect()
            });
            for (id, stix, deps) in page {
                self.send_dependencies(id, &deps).await?;
                let json = objects::event_json(
                    Kind::Create,
                    objects::message(Kind::Create, &stix),
                    Some(json!({"referer": "init-create"})),
                    &stix,
                    None,
                );
                self.send_event(id, "create", &json).await?;
                self.live.with(|i| i.counters.recovered_sent += 1);
                self.beat_if_due().await?;
            }
        }
        Ok(())
    }

    /// The topic this connection sends an object event under, if any (reference 2.5).
    fn visible(
        &self,
        filter: &StreamFilter,
        kind: Kind,
        after: &Value,
        before: Option<&Value>,
    ) -> Option<&'static str> {
        let inferred = after["extensions"][OPENCTI_EXT]["is_inferred"] == true;
        if inferred && !self.params.with_inferences {
            return None;
        }
        let deletes = self.params.listen_delete;
        let is = filter.matches(after);
        match kind {
            Kind::Create => is.then_some("create"),
            Kind::Merge => is.then_some("merge"),
            Kind::Delete => (is && deletes).then_some("delete"),
            Kind::Update => match (before.is_some_and(|b| filter.matches(b)), is) {
                (true, true) => Some("update"),
                (true, false) => deletes.then_some("delete"),
                (false, true) => Some("create"),
                (false, false) => None,
            },
        }
    }

    async fn live_part(&mut self, mut cursor: EventId) -> Result<(), Stop> {
        let mut changed = self.live.changed.subscribe();
        loop {
            changed.borrow_and_update();
            self.check().await?;
            let (batch, filter) = self.live.read(|i| {
                (
                    i.log.read_after(cursor, BATCH),
                    i.streams
                        .get(&self.stream_id)
                        .map_or(StreamFilter::All, |s| s.filter.clone()),
                )
            });
            if !batch.is_empty() {
                for e in batch {
                    cursor = e.id;
                    match &e.payload {
                        Payload::Raw { topic, data } => {
                            self.send_event(e.id, topic, data).await?;
                        }
                        Payload::Object {
                            kind,
                            json,
                            after,
                            before,
                            deps,
                        } => {
                            if let Some(topic) =
                                self.visible(&filter, *kind, after, before.as_deref())
                            {
                                if topic != "delete" {
                                    self.send_dependencies(e.id, deps).await?;
                                }
                                self.send_event(e.id, topic, json).await?;
                            }
                        }
                    }
                    // The reader's last id moves with every entry read, sent or filtered out.
                    self.last_id = Some(e.id);
                    self.beat_if_due().await?;
                }
                if self.params.delay_ms > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(self.params.delay_ms)) => {}
                        _ = self.tx.closed() => return Err(Stop::Gone),
                    }
                }
                continue;
            }
            self.beat_if_due().await?;
            let next_beat = self.next_beat;
            // Caught up: wait for an event, a change, a heartbeat, or the client leaving.
            let beat = async {
                match next_beat {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = changed.changed() => {}
                _ = self.tx.closed() => return Err(Stop::Gone),
                _ = beat => {
                    // Nothing to read: the platform's reader reports `<now>-0` as its last
                    // id, so heartbeats advance with the clock.
                    let synthetic = self.live.with(|i| {
                        let id = EventId::new(i.now_ms(), 0);
                        if self.last_id.is_none_or(|l| id > l) && i.log.read_after(cursor, 1).is_empty() {
                            i.log.note_synthetic(id);
                            Some(id)
                        } else {
                            None
                        }
                    });
                    if let Some(id) = synthetic {
                        self.last_id = Some(id);
                    }
                    self.heartbeat().await?;
                    self.next_beat = self.period.map(|p| tokio::time::Instant::now() + p);
                }
            }
        }
    }
}
