//! `spawn_world`: a simulated platform with one live stream, an ESM simulator with an Active
//! List, and the real `arcsight-stream` binary run as a child process configured by
//! environment variables only, its output captured line by line.
//!
//! What a test expects is computed from what it put in the platform (the store's current
//! indicators, every one a plain equality pattern whose value is the indicator's name), never
//! from the connector's code.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esm_simulator::{ActiveListConfig, Dialect, Faults, SimConfig, Simulator};
use platform_simulator::{EventId, FakePlatform, IndicatorSpec, StreamFilter};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_arcsight-stream");
pub const PASSWORD: &str = "e2e-esm-Pa55word-x7";
pub const TOKEN: &str = "e2e-platform-t0ken-9f3c";
pub const LIST: &str = "HL+e2eListBABCRvFGFq5Z/g==";
pub const STREAM: &str = "live-e2e";
pub const CONNECTOR_ID: &str = "6f1c8a52-3b7e-4c1d-9a0f-2e5b7d9c1a34";
/// The bound of every wait: far above what any step needs, so only a missing feature hits it.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// How a world is built.
pub struct Opts {
    pub dialect: Dialect,
    pub list_fields: Vec<&'static str>,
    pub list_ttl: Option<Duration>,
    /// `None`: ESM's default.
    pub list_capacity: Option<usize>,
    pub heartbeat: Option<Duration>,
    /// Extra (or overriding) settings of the connector.
    pub env: Vec<(&'static str, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            dialect: Dialect::Prefixed,
            list_fields: vec!["value", "source"],
            list_ttl: None,
            list_capacity: None,
            heartbeat: Some(Duration::from_millis(200)),
            env: Vec::new(),
        }
    }
}

pub struct World {
    pub platform: FakePlatform,
    pub esm: Simulator,
    pub env: HashMap<String, String>,
    pub dir: PathBuf,
}

/// Removes the world's directory (the ledger file) when the test ends, pass or fail.
impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn spawn_world(opts: Opts) -> World {
    let mut list = ActiveListConfig::new(LIST, &opts.list_fields);
    list.ttl = opts.list_ttl;
    if let Some(c) = opts.list_capacity {
        list.capacity = c;
    }
    let esm = Simulator::start(SimConfig {
        password: PASSWORD.into(),
        dialect: opts.dialect,
        active_lists: vec![list],
        ..SimConfig::default()
    })
    .await
    .expect("the ESM simulator starts");
    let platform =
        FakePlatform::start(TOKEN, platform_simulator::default_registration_config()).await;
    platform.live.add_stream(STREAM, StreamFilter::Indicators);
    platform.live.set_heartbeat(opts.heartbeat);
    let dir = std::env::temp_dir().join(format!(
        "arcsight-stream-e2e-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut env: HashMap<String, String> = [
        ("OPENCTI_URL", platform.url()),
        ("OPENCTI_TOKEN", TOKEN.into()),
        ("OPENCTI_JSON_LOGGING", "false".into()),
        ("CONNECTOR_ID", CONNECTOR_ID.into()),
        ("CONNECTOR_LIVE_STREAM_ID", STREAM.into()),
        ("CONNECTOR_LOG_LEVEL", "info".into()),
        ("CONNECTOR_EXPOSE_METRICS", "false".into()),
        ("ARCSIGHT_API_BASE_URL", esm.base_url().to_string()),
        ("ARCSIGHT_USERNAME", "admin".into()),
        ("ARCSIGHT_PASSWORD", PASSWORD.into()),
        ("ARCSIGHT_ACTIVE_LIST_ID", LIST.into()),
        ("ARCSIGHT_VALUE_COLUMN", "value".into()),
        ("ARCSIGHT_MAX_ATTEMPTS", "2".into()),
        ("ARCSIGHT_RETRY_MIN_WAIT", "0".into()),
        ("ARCSIGHT_RETRY_MAX_WAIT", "1".into()),
        ("ARCSIGHT_FLUSH_DELAY", "0.05".into()),
        ("ARCSIGHT_RECONCILE_PERIOD", "0".into()),
        (
            "ARCSIGHT_LEDGER_PATH",
            dir.join("ledger.bin").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in opts.env {
        env.insert(k.to_owned(), v);
    }
    World {
        platform,
        esm,
        env,
        dir,
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 48)
}

/// A free loopback port (for the metrics server).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The running connector: the child and its captured output.
pub struct Connector {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl World {
    /// Starts `arcsight-stream run` with exactly the world's settings (nothing inherited).
    pub fn start(&self) -> Connector {
        let mut child = Command::new(BIN)
            .arg("run")
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the connector starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for reader in [
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(err),
        ] {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(reader).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    lines.lock().unwrap().push(l);
                }
            });
        }
        Connector { child, lines }
    }

    /// Creates `n` IPv4 indicators `10.<tag>.x.y` (no dependencies); their internal ids.
    pub fn create_ips(&self, tag: u8, n: usize) -> Vec<String> {
        self.create_ips_events(tag, n).0
    }

    /// [`World::create_ips`], with the events' ids too.
    pub fn create_ips_events(&self, tag: u8, n: usize) -> (Vec<String>, Vec<EventId>) {
        let specs: Vec<IndicatorSpec> = (0..n)
            .map(|k| {
                IndicatorSpec::ipv4(&format!("10.{tag}.{}.{}", k / 256, k % 256))
                    .without_dependencies()
            })
            .collect();
        let ids = specs.iter().map(|s| s.internal_id.clone()).collect();
        (ids, self.platform.live.create_indicators(specs))
    }

    /// Indicators in the store without events (older than the stream's retention: only a
    /// recovery sends them).
    pub fn load_ips(&self, tag: u8, n: usize) -> Vec<String> {
        let specs: Vec<IndicatorSpec> = (0..n)
            .map(|k| {
                IndicatorSpec::ipv4(&format!("10.{tag}.{}.{}", k / 256, k % 256))
                    .without_dependencies()
            })
            .collect();
        let ids = specs.iter().map(|s| s.internal_id.clone()).collect();
        self.platform.live.load_indicators(specs);
        ids
    }

    pub fn delete(&self, ids: &[String]) -> Vec<EventId> {
        ids.iter()
            .filter_map(|id| self.platform.live.delete_indicator(id))
            .collect()
    }

    /// The values the list must hold: those of the platform's current indicators (each
    /// created with its value as its name), plus the `foreign` entries.
    pub fn expected(&self) -> BTreeSet<String> {
        self.platform
            .live
            .indicators()
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    /// The list's value column as ESM holds it.
    pub fn list(&self) -> BTreeSet<String> {
        self.esm
            .active_list_entries(LIST)
            .expect("the list exists")
            .into_iter()
            .map(|row| row[0].clone())
            .collect()
    }

    pub fn set_faults(&self, f: impl FnOnce(&mut Faults)) {
        let mut faults = Faults::default();
        f(&mut faults);
        self.esm.set_faults(faults);
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.esm.counters().get(name).copied().unwrap_or(0)
    }

    /// The connector's state in the platform, parsed.
    pub fn saved_state(&self) -> Option<serde_json::Value> {
        self.platform
            .recorded(|r| r.connector_state.clone())
            .filter(|s| !s.is_empty())
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    /// pycti's `start_from` in the platform's state.
    pub fn saved_position(&self) -> Option<EventId> {
        self.saved_state()
            .and_then(|s| s["start_from"].as_str().and_then(EventId::parse))
    }

    /// Waits (bounded) until the connector has caught up: its recovery (or start)
    /// reconciliation is done (its log line says so) and the platform holds a position past
    /// the last event (a heartbeat moved it).
    pub async fn wait_caught_up(&self, c: &Connector) {
        let last = self.platform.live.last_event_id().unwrap_or_default();
        wait_for(
            c,
            "the reconciliation and a position past the last event",
            || {
                c.output().contains("reconciliation")
                    && self.saved_position().is_some_and(|p| p > last)
            },
        )
        .await;
    }

    /// Waits (bounded) until the list holds exactly `extra` plus the platform's values.
    pub async fn wait_exact(&self, c: &Connector, extra: &BTreeSet<String>) {
        let mut want = self.expected();
        want.extend(extra.iter().cloned());
        wait_for(c, "the list to be exact", || self.list() == want).await;
    }
}

impl Connector {
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and the exit reaped.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM (as `docker stop`), then the exit status, bounded.
    pub async fn stop(mut self) -> (Option<i32>, String) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the connector stops within the deadline after SIGTERM")
            .unwrap();
        // The output readers end with the pipes.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while std::sync::Arc::strong_count(&self.lines) > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        (status.code(), self.output())
    }
}

/// Polls `cond` every 20 ms until it holds; panics with the connector's output at
/// [`DEADLINE`].
pub async fn wait_for(c: &Connector, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what}; connector output:\n{}",
                c.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /healthz` on the connector's metrics port: the HTTP status, `None` when nothing
/// answers.
pub async fn healthz(port: u16) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}
