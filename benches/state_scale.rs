//! The state at scale: start (registration and state decode), save (encode and ping) and an
//! operator's reset, with 100,000 and 1,000,000 delivered cases in the platform's state. The
//! connector binary (release) runs once per phase as a separate process, so its wall time and
//! peak RSS (`wait4`) are its own, against the ESM simulator (10 cases) and a small platform
//! of this file that stamps every call and measures every answer.
//!
//! `cargo bench --bench state_scale` prints the figures; `STATE_CASES=n` runs one size only.
//! No broker needed: bundles go through `stixBundlePush` (`CONNECTOR_QUEUE_PROTOCOL=api`), which
//! leaves the state's costs alone in the figures.

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use esm_simulator::{SimConfig, Simulator};
use serde_json::{Value, json};

const PASSWORD: &str = "bench-password";
const TOKEN: &str = "bench-token";

/// One GraphQL call the platform answered.
#[derive(Debug, Clone)]
struct Call {
    op: &'static str,
    /// When the whole request had arrived.
    received: SystemTime,
    /// When the answer was ready to go.
    answered: SystemTime,
    request_bytes: usize,
    answer_bytes: usize,
}

#[derive(Default)]
struct Platform {
    connector_state: Option<String>,
    /// `connector_state_timestamp`: moved by a reset, as `resetStateConnector` does.
    mark: Option<String>,
    reset_pending: bool,
    calls: Vec<Call>,
    works: u32,
}

type Shared = Arc<Mutex<Platform>>;

// Which call a document is, and what it selects: as the test platform reads them.
use platform_simulator::{operation as op_of, selects};

async fn graphql(
    State(p): State<Shared>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], String) {
    let received = SystemTime::now();
    let request_bytes = body.len();
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    drop(body);
    let query = v["query"].as_str().unwrap_or_default().to_owned();
    let vars = &v["variables"];
    let op = op_of(&query);
    let mut s = p.lock().unwrap();
    let data = match op {
        "health" => json!({"about": {"version": "6.9.0"}}),
        "registerConnector" => json!({"registerConnector": {
            "id": vars["input"]["id"],
            "connector_state": s.connector_state,
            "connector_state_timestamp": s.mark,
            "config": {
                "connection": {"host": "127.0.0.1", "vhost": "/", "use_ssl": false, "port": 5672,
                               "user": "guest", "pass": "guest"},
                "listen": null, "listen_routing": null, "listen_exchange": null,
                "push": "push_bench", "push_routing": "push_routing_bench",
                "push_exchange": "amqp.worker.exchange"},
            "connector_user_id": "user--bench"}}),
        "pingConnector" => {
            if s.reset_pending {
                s.reset_pending = false;
                s.connector_state = Some(String::new());
                s.mark = Some(Utc::now().to_rfc3339());
            } else {
                s.connector_state = vars["state"].as_str().map(str::to_owned);
            }
            let mut answer = json!({"id": vars["id"], "connector_state_timestamp": s.mark,
                "connector_info": null});
            // What a GraphQL server does: only the fields asked (pycti's document asks for
            // the state back).
            if selects(&query, "connector_state") {
                answer["connector_state"] = json!(s.connector_state);
            }
            json!({"pingConnector": answer})
        }
        "workAdd" => {
            s.works += 1;
            json!({"workAdd": {"id": format!("work-{}", s.works)}})
        }
        "addExpectations" | "reportExpectation" | "toProcessed" => {
            json!({"workEdit": {op: vars["id"]}})
        }
        "stixBundlePush" => json!({"stixBundlePush": true}),
        "queueDetails" => json!({"connector": {"id": vars["id"],
            "connector_queue_details": {"messages_number": 0, "messages_size": 0}}}),
        _ => json!(null),
    };
    let text = json!({"data": data}).to_string();
    s.calls.push(Call {
        op,
        received,
        answered: SystemTime::now(),
        request_bytes,
        answer_bytes: text.len(),
    });
    ([("content-type", "application/json")], text)
}

async fn start_platform(p: Shared) -> String {
    let app = Router::new()
        .route("/graphql", post(graphql))
        // The platform's default `app:max_payload_body_size`.
        .layer(axum::extract::DefaultBodyLimit::max(50 * 1024 * 1024))
        .with_state(p);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A valid version-2 state of `n` delivered cases (the format of docs/design.md: 12 bytes a
/// case, sorted by id hash, unpadded base64); the hashes are spread so none is a simulator id.
fn ledger_state(n: u64) -> String {
    let step = (1u64 << 48) / n;
    let mut bytes = Vec::with_capacity(n as usize * 12);
    for i in 0..n {
        bytes.extend_from_slice(&(i * step).to_le_bytes()[..6]);
        bytes.extend_from_slice(&(i ^ 0x5a5a).to_le_bytes()[..6]);
    }
    let ledger = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    json!({"version": 2, "runs": 7, "last_run": 1_765_000_000, "ledger": ledger}).to_string()
}

/// One process life of the connector: its log lines (JSON), when it ended, its wall time and
/// its peak RSS in MiB.
struct Life {
    lines: Vec<Value>,
    ended: SystemTime,
    wall_s: f64,
    peak_rss_mib: f64,
    status: i32,
}

// The child is reaped by `wait4`, which also gives its own peak RSS; `Child::wait` would not.
#[allow(clippy::zombie_processes)]
fn run_connector(platform_url: &str, esm_url: &str) -> Life {
    let bin = env!("CARGO_BIN_EXE_arcsight-incidents");
    let started = Instant::now();
    let mut child = std::process::Command::new(bin)
        .arg("run")
        .env_clear()
        .env("OPENCTI_URL", platform_url)
        .env("OPENCTI_TOKEN", TOKEN)
        .env("CONNECTOR_ID", "6f1d3c8e-0000-4000-8000-00000000be4c")
        .env("CONNECTOR_RUN_AND_TERMINATE", "true")
        .env("CONNECTOR_QUEUE_PROTOCOL", "api")
        .env("CONNECTOR_LOG_LEVEL", "info")
        .env("OPENCTI_JSON_LOGGING", "true")
        .env("ARCSIGHT_INCIDENTS_API_BASE_URL", esm_url)
        .env("ARCSIGHT_INCIDENTS_USERNAME", "admin")
        .env("ARCSIGHT_INCIDENTS_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the connector starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 only writes the status and the struct it is given; the child is ours and
    // not waited for elsewhere (`child` is only dropped, never waited on).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let ended = SystemTime::now();
    let wall_s = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4");
    let log = reader.join().unwrap();
    Life {
        lines: log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        ended,
        wall_s,
        // Linux reports ru_maxrss in KiB.
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        status: libc::WEXITSTATUS(status),
    }
}

impl Life {
    fn at(&self, message: &str) -> Option<SystemTime> {
        self.lines
            .iter()
            .find(|v| v["message"] == message)
            .and_then(|v| v["timestamp"].as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc).into())
    }

    fn logged(&self, fragment: &str) -> usize {
        self.lines
            .iter()
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(fragment)))
            .count()
    }
}

fn secs(from: Option<SystemTime>, to: Option<SystemTime>) -> f64 {
    match (from, to) {
        (Some(a), Some(b)) => b.duration_since(a).map_or(f64::NAN, |d| d.as_secs_f64()),
        _ => f64::NAN,
    }
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

async fn scale(cases: u64) {
    let sim = Simulator::start(SimConfig {
        cases: 10,
        events_per_case: 1,
        password: PASSWORD.into(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let platform: Shared = Arc::default();
    let url = start_platform(platform.clone()).await;
    let state = ledger_state(cases);
    let state_bytes = state.len();
    platform.lock().unwrap().connector_state = Some(state);
    let esm = sim.base_url().to_string();
    let calls_of = |from: usize| platform.lock().unwrap().calls[from..].to_vec();
    let calls_count = || platform.lock().unwrap().calls.len();

    println!(
        "\n{cases} delivered cases: a state of {:.1} MB",
        mb(state_bytes)
    );

    // Start and save: 10 new cases, one page, then the final save.
    let from = calls_count();
    let spawned = SystemTime::now();
    let life = {
        let (u, e) = (url.clone(), esm.clone());
        tokio::task::spawn_blocking(move || run_connector(&u, &e))
            .await
            .unwrap()
    };
    let calls = calls_of(from);
    assert_eq!(life.status, 0, "the run succeeds: {:?}", life.lines.last());
    let register = calls.iter().find(|c| c.op == "registerConnector").unwrap();
    let pings: Vec<&Call> = calls.iter().filter(|c| c.op == "pingConnector").collect();
    let last_ping = pings.last().expect("a final save");
    let held = platform
        .lock()
        .unwrap()
        .connector_state
        .as_deref()
        .map_or(0, str::len);
    println!(
        "  start: spawn to registered {:.3} s (the answer: {:.1} MB, the platform built it in {:.3} s), \
         registered to cases listed (state decode and ESM's listing of 10 cases) {:.3} s",
        secs(Some(spawned), life.at("registered with the platform")),
        mb(register.answer_bytes),
        secs(Some(register.received), Some(register.answered)),
        secs(
            life.at("registered with the platform"),
            life.at("cases listed")
        ),
    );
    println!(
        "  save: {} pings of {:.1} MB each at most, answers of {} bytes at most; final save: \
         run finished to the ping received (encode and upload) {:.3} s, answer to exit {:.3} s; \
         the platform holds {:.1} MB",
        pings.len(),
        mb(pings.iter().map(|c| c.request_bytes).max().unwrap_or(0)),
        pings.iter().map(|c| c.answer_bytes).max().unwrap_or(0),
        secs(life.at("run finished"), Some(last_ping.received)),
        secs(Some(last_ping.answered), Some(life.ended)),
        mb(held),
    );
    println!(
        "  whole run: {:.3} s, peak RSS {:.1} MiB, failed saves logged: {}",
        life.wall_s,
        life.peak_rss_mib,
        life.logged("persisting the state failed") + life.logged("ping failed"),
    );

    // Reset: an operator resets the state while a run delivers a new case.
    sim.add_cases(1);
    platform.lock().unwrap().reset_pending = true;
    let from = calls_count();
    let life = {
        let (u, e) = (url.clone(), esm.clone());
        tokio::task::spawn_blocking(move || run_connector(&u, &e))
            .await
            .unwrap()
    };
    let calls = calls_of(from);
    assert_eq!(life.status, 0, "the run succeeds: {:?}", life.lines.last());
    let pings: Vec<&Call> = calls.iter().filter(|c| c.op == "pingConnector").collect();
    let reset_ping = pings.first().expect("the reset's ping");
    let held = platform
        .lock()
        .unwrap()
        .connector_state
        .as_deref()
        .map_or(0, str::len);
    println!(
        "  reset: the reset's ping answered ({} bytes) to the reset adopted {:.3} s; {} pings, \
         the last carries {} bytes; the platform holds {} bytes; whole run {:.3} s, peak RSS \
         {:.1} MiB",
        reset_ping.answer_bytes,
        secs(
            Some(reset_ping.answered),
            life.at("the state was reset in the platform: the next run imports everything again")
        ),
        pings.len(),
        pings.last().map_or(0, |c| c.request_bytes),
        held,
        life.wall_s,
        life.peak_rss_mib,
    );
    sim.shutdown().await;
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is an option here.
    let sizes: Vec<u64> = match std::env::var("STATE_CASES") {
        Ok(n) => vec![n.parse().expect("STATE_CASES is a number")],
        Err(_) => vec![100_000, 1_000_000],
    };
    for n in sizes {
        scale(n).await;
    }
}
