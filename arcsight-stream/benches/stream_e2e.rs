//! The stream connector's budgets (issue 21), end to end, with the connector in a process of
//! its own so its CPU time and peak RSS are its own: the simulated platform (live stream) and
//! the ESM simulator (an Active List) run in this bench process, the connector in a child.
//!
//! `cargo bench -p arcsight-stream --bench stream_e2e` runs every scenario; name some to run
//! only those: `-- throughput latency first_run memory`. Figures are printed, and written to
//! `<target dir>/bench-figures/stream_e2e.txt`. Nothing here fails on time.
//!
//! The connector: until `arcsight-stream run` exists, the child is this same executable
//! started again with `STREAM_BENCH_CHILD=1`: it does what the binary's `run` will do on the
//! hot path (glibc malloc tuned as the import's `src/main.rs` does, JSON logs at info, a
//! two-worker runtime, `engine::run` over `opencti_client::stream::LiveStream` and the
//! shared ESM session's Active List service, the engine's default timers and a ledger file)
//! except saving the position in the platform (its store keeps it in memory: a save is one
//! small GraphQL call, debounced).
//!
//! Knobs: `STREAM_BENCH_LATENCY_RATE` (events/s, 20), `STREAM_BENCH_LATENCY_SECS` (30),
//! `STREAM_BENCH_FIRST_RUN` (indicators, 100,000), `STREAM_BENCH_MEMORY` (indicators of the
//! large run, 1,000,000), `STREAM_BENCH_LOG_DIR` (keeps each child's log there),
//! `STREAM_BENCH_WRITE_DELAY_MS` (2), `STREAM_BENCH_LIVE_PUBLISH=1` (throughput: publish while
//! the connector reads), `STREAM_BENCH_WRAP` (a command the connector runs under),
//! `STREAM_BENCH_NO_MALLOC_TUNING=1` (the connector with glibc's malloc defaults).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use esm_simulator::{ActiveListConfig as SimList, Faults, SimConfig, Simulator};
use platform_simulator::{FakePlatform, IndicatorSpec, StreamFilter, generate_indicators};

const CHILD_ENV: &str = "STREAM_BENCH_CHILD";
const TOKEN: &str = "bench-stream-token";
const PASSWORD: &str = "bench-stream-password";
const LIST: &str = "HBench+gxUvkwBABCRvFGFq5Z/g==";
const STREAM: &str = "live";
const COLUMN: &str = "value";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child::main();
        return;
    }
    // cargo passes `--bench`; anything else not starting with `-` picks scenarios.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let on = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = String::new();
    let mut emit = |text: String| {
        println!("{text}");
        report.push_str(&text);
        report.push('\n');
    };
    if on("throughput") {
        emit(rt.block_on(throughput()));
    }
    if on("latency") {
        emit(rt.block_on(latency()));
    }
    let mut small = None;
    if on("first_run") || on("memory") {
        let n = env_usize("STREAM_BENCH_FIRST_RUN", 100_000);
        let f = rt.block_on(first_run(n));
        emit(f.text());
        small = Some(f);
    }
    if on("memory") {
        let n = env_usize("STREAM_BENCH_MEMORY", 1_000_000);
        let big = rt.block_on(first_run(n));
        emit(big.text());
        if let Some(small) = small {
            emit(memory_text(&small, &big));
        }
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
        .join("bench-figures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("stream_e2e.txt");
    match std::fs::write(&path, &report) {
        Ok(()) => println!("figures written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ the world

struct World {
    esm: Simulator,
    platform: FakePlatform,
    child: Child,
}

impl World {
    /// The simulators, with `existing` indicators already in the platform (only a recovery
    /// sends them), then the connector.
    async fn start(label: &str, existing: &[IndicatorSpec], heartbeat: Duration) -> World {
        let write_delay = Duration::from_millis(env_usize("STREAM_BENCH_WRITE_DELAY_MS", 2) as u64);
        let esm = Simulator::start(SimConfig {
            password: PASSWORD.into(),
            active_lists: vec![SimList {
                // Room for every value: the budgets are about the connector, not evictions.
                capacity: 10_000_000,
                ..SimList::new(LIST, &[COLUMN])
            }],
            faults: Faults {
                write_delay,
                ..Faults::default()
            },
            ..SimConfig::default()
        })
        .await
        .expect("ESM simulator");
        let platform = FakePlatform::start(TOKEN, serde_json::json!({})).await;
        platform.live.add_stream(STREAM, StreamFilter::Indicators);
        platform.live.set_heartbeat(Some(heartbeat));
        platform.live.load_indicators(existing.iter().cloned());
        let child = Child::spawn(label, &platform.url(), esm.base_url().as_str());
        World {
            esm,
            platform,
            child,
        }
    }

    /// The values in the Active List.
    fn values(&self) -> Vec<String> {
        self.esm
            .active_list_entries(LIST)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect()
    }

    fn list_len(&self) -> usize {
        self.esm.active_list_entries(LIST).map_or(0, |l| l.len())
    }

    /// Waits (bounded) until the list holds exactly `want`; the instant it was first seen so.
    async fn until_exact(&self, want: &HashSet<String>, deadline: Duration) -> Option<Instant> {
        let end = Instant::now() + deadline;
        loop {
            if self.list_len() == want.len() {
                let now = Instant::now();
                let got: HashSet<String> = self.values().into_iter().collect();
                if got == *want {
                    return Some(now);
                }
            }
            if Instant::now() > end || self.child.exited() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The connector finished its first-run resynchronisation (it read the list to reconcile).
    async fn until_ready(&self) {
        let end = Instant::now() + Duration::from_secs(60);
        while !self
            .esm
            .active_list_calls()
            .iter()
            .any(|c| c.operation == "getEntries")
        {
            assert!(
                Instant::now() < end && !self.child.exited(),
                "the connector did not finish its start (see its log: {})",
                self.child.log.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// ESM requests answered so far (injected faults are not requests).
    fn requests(&self) -> u64 {
        self.esm
            .counters()
            .iter()
            .filter(|(k, _)| !k.starts_with("fault."))
            .map(|(_, v)| v)
            .sum()
    }

    /// Write calls and the entries they carried, from the `skip`-th Active List call on.
    fn writes(&self, skip: usize) -> (u64, u64) {
        self.esm
            .active_list_calls()
            .iter()
            .skip(skip)
            .filter(|c| c.operation == "addEntries" || c.operation == "deleteEntries")
            .fold((0, 0), |(n, e), c| (n + 1, e + c.entries as u64))
    }

    async fn stop(self) {
        self.child.stop();
        self.esm.shutdown().await;
        drop(self.platform);
    }
}

/// The values of `specs` that should end in the list: the equality patterns on the types
/// the connector supports by default (the generator also makes e-mail, YARA and AND
/// indicators, which contribute nothing). Read from the generator's specs (the value is the
/// name it gives an equality), not from the connector.
fn wanted_values(specs: &[IndicatorSpec]) -> HashSet<String> {
    const SUPPORTED: [&str; 7] = [
        "[ipv4-addr:value = '",
        "[ipv6-addr:value = '",
        "[domain-name:value = '",
        "[url:value = '",
        "[file:hashes.MD5 = '",
        "[file:hashes.'SHA-1' = '",
        "[file:hashes.'SHA-256' = '",
    ];
    specs
        .iter()
        .filter(|s| {
            s.pattern_type == "stix"
                && !s.revoked
                && s.detection
                && !s.pattern.contains(" AND ")
                && SUPPORTED.iter().any(|p| s.pattern.starts_with(p))
        })
        .map(|s| s.name.clone())
        .collect()
}

fn fresh(specs: Vec<IndicatorSpec>) -> Vec<IndicatorSpec> {
    // Dates from the platform's clock when published (a live create is "now").
    specs
        .into_iter()
        .map(|mut s| {
            s.created_ms = 0;
            s.updated_ms = 0;
            s.valid_from_ms = 0;
            s
        })
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ------------------------------------------------------------------ 1. throughput

async fn throughput() -> String {
    const CREATES: usize = 20_000;
    const DELETES: usize = 2_000;
    let w = World::start("throughput", &[], Duration::from_secs(1)).await;
    w.until_ready().await;
    let specs = fresh(generate_indicators(CREATES, 7, now_ms()));
    // Every 10th created indicator is deleted (2,000 of them), after all the creates.
    let deleted: Vec<String> = specs
        .iter()
        .step_by(CREATES / DELETES)
        .map(|s| s.internal_id.clone())
        .collect();
    let gone: HashSet<String> = deleted.iter().cloned().collect();
    let kept: Vec<IndicatorSpec> = specs
        .iter()
        .filter(|s| !gone.contains(&s.internal_id))
        .cloned()
        .collect();
    let want = wanted_values(&kept);
    // `STREAM_BENCH_LIVE_PUBLISH=1`: publish while the connector reads (the simulated
    // platform's own publishing, 1.4 s for the 22,000 events here, is then in the figure).
    // Otherwise the connector is stopped (SIGSTOP) while the events are published and the
    // clock starts when it is continued: the connector's own rate over a backlog.
    let live_publish = std::env::var_os("STREAM_BENCH_LIVE_PUBLISH").is_some();
    if !live_publish {
        w.child.signal(libc::SIGSTOP);
    }
    let calls_before = w.esm.active_list_calls().len();
    let requests_before = w.requests();
    let cpu_before = w.child.cpu_s();
    let mut started = Instant::now();
    w.platform.live.create_indicators(specs);
    for id in &deleted {
        w.platform.live.delete_indicator(id);
    }
    let published = started.elapsed();
    if !live_publish {
        started = Instant::now();
        w.child.signal(libc::SIGCONT);
    }
    let done = w.until_exact(&want, Duration::from_secs(300)).await;
    let cpu = w.child.cpu_s() - cpu_before;
    let status = w.child.status();
    let requests = w.requests() - requests_before;
    let (write_calls, entries) = w.writes(calls_before);
    let log = w.child.log.clone();
    w.stop().await;
    let Some(done) = done else {
        return format!(
            "throughput: the list never became exact (see {})",
            log.display()
        );
    };
    let secs = (done - started).as_secs_f64();
    let events = (CREATES + DELETES) as f64;
    format!(
        "1. throughput: {CREATES} creates + {DELETES} deletes, ESM write delay {} ms, {} values end in the list, {}\n\
         | events/s | wall s | published in s | connector CPU s (the run / whole process) | peak RSS MiB (VmHWM) | RSS at the end MiB (anon + file) | ESM requests | write requests | entries written | entries per write request |\n\
         | {:.0} | {:.2} | {:.2} | {:.2} / {:.2} | {:.1} | {:.1} ({:.1} + {:.1}) | {} | {} | {} | {:.0} |",
        env_usize("STREAM_BENCH_WRITE_DELAY_MS", 2),
        want.len(),
        if live_publish {
            "published while the connector reads"
        } else {
            "published while the connector was stopped, the clock started at its continuation"
        },
        events / secs,
        secs,
        published.as_secs_f64(),
        cpu,
        status.cpu_s,
        status.hwm_mib,
        status.rss_mib,
        status.anon_mib,
        status.file_mib,
        requests,
        write_calls,
        entries,
        entries as f64 / write_calls.max(1) as f64,
    )
}

// ------------------------------------------------------------------ 2. live latency

async fn latency() -> String {
    let rate = env_usize("STREAM_BENCH_LATENCY_RATE", 20).max(1);
    let secs = env_usize("STREAM_BENCH_LATENCY_SECS", 30).max(1);
    let n = rate * secs;
    let w = std::sync::Arc::new(World::start("latency", &[], Duration::from_secs(5)).await);
    w.until_ready().await;
    let specs = fresh(generate_indicators(n, 11, now_ms()));
    let want = wanted_values(&specs);
    // Published instants by value, filled as published; the watcher records first sightings.
    let published: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> =
        std::sync::Arc::default();
    let seen: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> =
        std::sync::Arc::default();
    let watcher = {
        let (w, seen, want) = (w.clone(), seen.clone(), want.clone());
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(secs as u64 + 30);
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            while Instant::now() < end {
                tick.tick().await;
                let now = Instant::now();
                let values = w.values();
                let mut s = seen.lock().unwrap();
                for v in values {
                    s.entry(v).or_insert(now);
                }
                if want.iter().all(|v| s.contains_key(v)) {
                    break;
                }
            }
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for s in specs {
        tick.tick().await;
        let value = s.name.clone();
        let at = Instant::now();
        w.platform.live.create_indicator(s);
        published.lock().unwrap().insert(value, at);
    }
    let _ = watcher.await;
    let status = w.child.status();
    let published = published.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    let mut lat: Vec<f64> = want
        .iter()
        .filter_map(|v| Some((*seen.get(v)? - *published.get(v)?).as_secs_f64() * 1e3))
        .collect();
    lat.sort_by(f64::total_cmp);
    let missing = want.len() - lat.len();
    let w = std::sync::Arc::into_inner(w).expect("the watcher ended");
    w.stop().await;
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    format!(
        "2. live latency: {rate} events/s for {secs} s, {} values measured ({missing} never seen), from publication to presence in the list (polled every 2 ms)\n\
         | p50 ms | p90 ms | p99 ms | max ms | peak RSS MiB | connector CPU s |\n\
         | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} |",
        lat.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        status.hwm_mib,
        status.cpu_s,
    )
}

// ------------------------------------------------------------------ 3. first run, 4. memory

struct FirstRun {
    indicators: usize,
    values: usize,
    secs: Option<f64>,
    requests: u64,
    write_calls: u64,
    entries: u64,
    /// The last sample (every 5 ms) before the recovery's reconciliation read the list
    /// (`getEntries`): the ledger and the engine with everything written.
    before_reconcile: Status,
    /// 1 s after the reconciliation's read was answered (it decodes the whole list).
    after: Status,
    /// From the spawn to the reconciliation's read being answered.
    reconcile_at_s: Option<f64>,
}

impl FirstRun {
    fn text(&self) -> String {
        format!(
            "3. first run: {} existing indicators ({} values), empty list, from the connector's start\n\
             | converged in s | reconciliation read at s | ESM requests | write requests | entries written | connector CPU s | RSS before the reconciliation MiB | peak RSS MiB (with the reconciliation) | RSS 1 s after it MiB |\n\
             | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} |",
            self.indicators,
            self.values,
            self.secs
                .map_or_else(|| "never (see the log)".to_owned(), |s| format!("{s:.2}")),
            self.reconcile_at_s
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.2}")),
            self.requests,
            self.write_calls,
            self.entries,
            self.after.cpu_s,
            self.before_reconcile.rss_mib,
            self.after.hwm_mib,
            self.after.rss_mib,
        )
    }
}

async fn first_run(n: usize) -> FirstRun {
    let specs = generate_indicators(n, 3, now_ms());
    let want = wanted_values(&specs);
    let started = Instant::now();
    let w = World::start(&format!("first_run-{n}"), &specs, Duration::from_secs(5)).await;
    drop(specs);
    let end = Instant::now() + Duration::from_secs(600);
    let mut done = None;
    let mut reconciled = None;
    let mut before_reconcile = Status::default();
    while (done.is_none() || reconciled.is_none()) && Instant::now() < end && !w.child.exited() {
        let status = w.child.status();
        if reconciled.is_none() {
            if w.esm
                .active_list_calls()
                .iter()
                .any(|c| c.operation == "getEntries")
            {
                reconciled = Some(Instant::now());
            } else {
                before_reconcile = status;
            }
        }
        if done.is_none() && w.list_len() == want.len() {
            let now = Instant::now();
            if w.values().into_iter().collect::<HashSet<_>>() == want {
                done = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = w.child.status();
    let requests = w.requests();
    let (write_calls, entries) = w.writes(0);
    w.stop().await;
    FirstRun {
        indicators: n,
        values: want.len(),
        secs: done.map(|d| (d - started).as_secs_f64()),
        requests,
        write_calls,
        entries,
        before_reconcile,
        after,
        reconcile_at_s: reconciled.map(|d| (d - started).as_secs_f64()),
    }
}

fn memory_text(small: &FirstRun, big: &FirstRun) -> String {
    let tracked = big.values.saturating_sub(small.values) as f64;
    let per = |a: f64, b: f64| (b - a) * 1024.0 * 1024.0 / tracked;
    format!(
        "4. memory per tracked indicator, the connector's RSS growth from {} to {} indicators ({} to {} tracked)\n\
         | before the reconciliation B/indicator | peak (with the reconciliation) B/indicator | RSS before MiB small / large | peak MiB small / large |\n\
         | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} |",
        small.indicators,
        big.indicators,
        small.values,
        big.values,
        per(small.before_reconcile.rss_mib, big.before_reconcile.rss_mib),
        per(small.after.hwm_mib, big.after.hwm_mib),
        small.before_reconcile.rss_mib,
        big.before_reconcile.rss_mib,
        small.after.hwm_mib,
        big.after.hwm_mib,
    )
}

// ------------------------------------------------------------------ the connector's process

struct Child {
    proc: std::sync::Mutex<std::process::Child>,
    pid: u32,
    log: PathBuf,
    /// The connector's ledger file, removed once it has stopped.
    ledger: PathBuf,
}

#[derive(Debug, Clone, Copy, Default)]
struct Status {
    rss_mib: f64,
    hwm_mib: f64,
    /// `RssAnon` (the heap, stacks) and `RssFile` (mostly the executable's code pages).
    anon_mib: f64,
    file_mib: f64,
    cpu_s: f64,
}

impl Child {
    fn spawn(label: &str, platform_url: &str, esm_url: &str) -> Child {
        let dir = std::env::var_os("STREAM_BENCH_LOG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join(format!("stream-bench-{label}-{}.log", std::process::id()));
        let ledger = std::env::temp_dir().join(format!(
            "stream-bench-{label}-{}.ledger",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&ledger);
        let exe = std::env::current_exe().expect("this executable");
        // STREAM_BENCH_WRAP: a command line the connector runs under (`valgrind
        // --tool=massif --massif-out-file=F`, say); its figures are then the wrapper's.
        let wrap: Vec<String> = std::env::var("STREAM_BENCH_WRAP")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        // A process group of its own, so signals reach a wrapped connector too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let proc = command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("MALLOC_")))
            .env(CHILD_ENV, "1")
            .envs(
                std::env::var_os("STREAM_BENCH_NO_MALLOC_TUNING")
                    .map(|v| ("STREAM_BENCH_NO_MALLOC_TUNING", v)),
            )
            .env("CHILD_OPENCTI_URL", platform_url)
            .env("CHILD_OPENCTI_TOKEN", TOKEN)
            .env("CHILD_STREAM_ID", STREAM)
            .env("CHILD_ESM_URL", esm_url)
            .env("CHILD_ESM_PASSWORD", PASSWORD)
            .env("CHILD_LIST_ID", LIST)
            .env("CHILD_COLUMN", COLUMN)
            .env("CHILD_LEDGER", &ledger)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the child's log"))
            .spawn()
            .expect("the connector starts");
        Child {
            pid: proc.id(),
            proc: std::sync::Mutex::new(proc),
            log,
            ledger,
        }
    }

    fn exited(&self) -> bool {
        self.proc
            .lock()
            .unwrap()
            .try_wait()
            .ok()
            .flatten()
            .is_some()
    }

    /// RSS, peak RSS (`VmHWM`) and CPU time (user + system) of the connector so far.
    fn status(&self) -> Status {
        let mut s = Status::default();
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) {
            for line in text.lines() {
                let kib = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<f64>().ok())
                        .map_or(f64::NAN, |k| k / 1024.0)
                };
                if line.starts_with("VmRSS:") {
                    s.rss_mib = kib(line);
                } else if line.starts_with("VmHWM:") {
                    s.hwm_mib = kib(line);
                } else if line.starts_with("RssAnon:") {
                    s.anon_mib = kib(line);
                } else if line.starts_with("RssFile:") {
                    s.file_mib = kib(line);
                }
            }
        }
        s.cpu_s = self.cpu_s();
        s
    }

    fn cpu_s(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return f64::NAN;
        };
        // After the command's `(...)`: state is field 3, utime 14, stime 15.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return f64::NAN;
        };
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(f64::NAN))
            .collect();
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (f.get(11).copied().unwrap_or(f64::NAN) + f.get(12).copied().unwrap_or(f64::NAN)) / hz
    }

    /// Signals the connector's process group (the connector, or its wrapper and it).
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill only sends a signal to our own child's process group.
        unsafe {
            libc::kill(-(self.pid as libc::pid_t), sig);
        }
    }

    /// SIGTERM (the engine's clean shutdown), then waits.
    fn stop(self) {
        self.signal(libc::SIGTERM);
        let mut p = self.proc.lock().unwrap();
        let end = Instant::now() + Duration::from_secs(15);
        while p.try_wait().ok().flatten().is_none() {
            if Instant::now() > end {
                self.signal(libc::SIGKILL);
                let _ = p.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&self.ledger);
    }
}

/// The connector's process: the engine over the live stream and the ESM session.
mod child {
    use std::sync::Arc;
    use std::time::Duration;

    use arcsight_stream::engine::{self, EngineConfig, PositionStore, Source, StreamState};
    use arcsight_stream::metrics::StreamMetrics;
    use connector_runtime::platform::SharedState;
    use connector_runtime::schedule::shutdown_pair;
    use connector_runtime::telemetry::{self, LogLevel};
    use esm_client::active_lists::ActiveListConfig;
    use esm_client::{EsmClient, EsmConfig};
    use opencti_client::stream::{LiveStream, StreamConfig, StreamItem, StreamPosition};
    use secrecy::SecretString;

    fn var(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the bench"))
    }

    pub fn main() {
        // STREAM_BENCH_NO_MALLOC_TUNING: glibc's defaults (many arenas, a dynamic mmap
        // threshold), to see what the tuning is worth.
        if std::env::var_os("STREAM_BENCH_NO_MALLOC_TUNING").is_none() {
            tune_malloc();
        }
        telemetry::init(arcsight_stream::LOG_TARGETS, true, LogLevel::Info);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run());
    }

    /// What `arcsight-stream run` does after its settings and registration.
    async fn run() {
        let esm = EsmClient::new(EsmConfig::new(
            var("CHILD_ESM_URL").parse().expect("ESM URL"),
            "admin",
            SecretString::from(var("CHILD_ESM_PASSWORD")),
        ))
        .expect("ESM client");
        let lists = esm.active_lists(ActiveListConfig::default());
        let cfg = EngineConfig {
            ledger_path: Some(var("CHILD_LEDGER").into()),
            stream_id: var("CHILD_STREAM_ID"),
            ..EngineConfig::new(
                var("CHILD_LIST_ID"),
                var("CHILD_COLUMN"),
                Default::default(),
            )
        };
        engine::check(&lists, &cfg).await.expect("the list checks");
        let source = Live {
            cfg: StreamConfig::new(
                var("CHILD_OPENCTI_URL").parse().expect("platform URL"),
                SecretString::from(var("CHILD_OPENCTI_TOKEN")),
                var("CHILD_STREAM_ID"),
            ),
            stream: None,
        };
        let state = Arc::new(SharedState::new(StreamState::default()));
        let (trigger, shutdown) = shutdown_pair();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
            trigger.trigger();
        });
        let outcome = engine::run(
            cfg,
            source,
            lists,
            state,
            KeptInMemory,
            StreamMetrics::default(),
            shutdown,
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), esm.logout()).await;
        if let Err(e) = outcome {
            eprintln!("engine stopped: {e}");
            std::process::exit(1);
        }
    }

    /// The live stream as the engine's source: restarted from the position it asks.
    struct Live {
        cfg: StreamConfig,
        stream: Option<LiveStream>,
    }

    impl Source for Live {
        async fn recv(&mut self) -> Option<StreamItem> {
            match &mut self.stream {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        }

        async fn restart(&mut self, position: StreamPosition) {
            if let Some(s) = self.stream.take() {
                s.shutdown().await;
            }
            self.stream =
                Some(LiveStream::start(self.cfg.clone(), Some(position)).expect("live stream"));
        }
    }

    /// The position stays in the shared state (the platform's ping is not part of the hot path).
    struct KeptInMemory;

    impl PositionStore for KeptInMemory {
        async fn save(&self) -> Result<bool, String> {
            Ok(false)
        }
    }

    /// As the import's `src/main.rs`: one malloc arena, a fixed 128 KiB mmap threshold, each
    /// unless its `MALLOC_*` variable says otherwise.
    fn tune_malloc() {
        let unset = |name: &str| std::env::var_os(name).is_none();
        // SAFETY: first thing in the child's main, before any other thread exists; mallopt only
        // sets tunables of glibc's allocator.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            }
        }
    }
}
