//! `arcsight-stream demo`: the real connector (settings, ESM session and list check,
//! registration, state, engine) between an embedded simulated platform, whose live stream holds
//! generated indicators, and an embedded simulated ESM with an Active List. Nothing to
//! configure; it runs until the list converges twice (after the first run's recovery, then
//! after live creates, a revoke and deletes) and prints a summary.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use connector_runtime::schedule::shutdown_pair;
use esm_simulator::{ActiveListConfig, SimConfig, Simulator};
use platform_simulator::{FakePlatform, IndicatorSpec};
use stream_core::policy::{Indicator, Policy, evaluate};

use crate::settings::{Settings, Sources};

const TOKEN: &str = "demo-platform-token";
const PASSWORD: &str = "demo-esm-password";
const STREAM: &str = "demo-stream";
const LIST: &str = "demo-list";
/// Indicators in the platform before the connector starts (a first run recovers them).
const INDICATORS: usize = 300;
/// An entry an administrator put in the list: not the connector's, never removed.
const FOREIGN: &str = "203.0.113.250";
/// The longest each phase may take to converge.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The list ended exactly as the stream says it should.
    pub converged: bool,
    pub lines: Vec<String>,
}

/// Runs the demo.
pub async fn run() -> Result<Summary, String> {
    let esm = Simulator::start(SimConfig {
        password: PASSWORD.into(),
        active_lists: vec![ActiveListConfig::new(LIST, &["value"])],
        ..SimConfig::default()
    })
    .await
    .map_err(|e| format!("the simulated ESM did not start: {e}"))?;
    esm.add_active_list_entries(LIST, &[vec![FOREIGN.to_owned()]]);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let platform = FakePlatform::start_with_stream(loopback, TOKEN, STREAM, INDICATORS)
        .await
        .map_err(|e| format!("the simulated platform did not start: {e}"))?;
    let settings = settings(&esm, &platform)?;
    let policy = settings.sync.policy;

    let mut lines = vec![format!(
        "simulated platform {}: live stream {STREAM:?} with {} indicators; simulated ESM {}: Active List {LIST:?} with 1 entry of someone else's",
        platform.url(),
        platform.live.indicator_count(),
        esm.base_url()
    )];
    let (trigger, shutdown) = shutdown_pair();
    let connector = tokio::spawn(super::run::run(settings, shutdown));
    let started = Instant::now();

    // 1. The first run recovers every indicator of the stream.
    let first = converge(&esm, &platform, &policy).await;
    lines.push(phase("first run (recovery)", &first, started.elapsed()));

    // 2. Live changes: new indicators, one revoked, some deleted.
    let mut specs = platform.live.indicators();
    specs.sort_by(|a, b| a.internal_id.cmp(&b.internal_id));
    let created: Vec<IndicatorSpec> = (1..=20)
        .map(|i| IndicatorSpec::new(format!("[domain-name:value = 'live-{i}.demo.example']")))
        .collect();
    platform.live.create_indicators(created);
    let mut revoked = 0;
    if let Some(s) = specs.first() {
        revoked += usize::from(
            platform
                .live
                .update_indicator(&s.internal_id, |s| s.revoked = true)
                .is_some(),
        );
    }
    let deleted = specs
        .iter()
        .skip(1)
        .take(10)
        .filter(|s| platform.live.delete_indicator(&s.internal_id).is_some())
        .count();
    let live_started = Instant::now();
    let second = converge(&esm, &platform, &policy).await;
    lines.push(phase(
        &format!("live changes (20 created, {revoked} revoked, {deleted} deleted)"),
        &second,
        live_started.elapsed(),
    ));

    trigger.trigger();
    let stopped = tokio::time::timeout(Duration::from_secs(30), connector).await;
    let counters = esm.counters();
    let count = |op: &str| {
        counters
            .get(&format!("activeList.{op}"))
            .copied()
            .unwrap_or(0)
    };
    lines.push(format!(
        "ESM requests: {} addEntries, {} deleteEntries, {} getEntries; the foreign entry {FOREIGN} {}",
        count("addEntries"),
        count("deleteEntries"),
        count("getEntries"),
        if list(&esm).contains(FOREIGN) {
            "is still there"
        } else {
            "was removed (it must not be)"
        }
    ));
    let stop_ok = matches!(stopped, Ok(Ok(Ok(()))));
    lines.push(match stopped {
        Ok(Ok(Ok(()))) => "connector stopped cleanly".to_owned(),
        Ok(Ok(Err(e))) => format!("connector stopped: {e}"),
        Ok(Err(e)) => format!("connector task failed: {e}"),
        Err(_) => "connector did not stop within 30 s".to_owned(),
    });
    let converged = first.ok && second.ok && list(&esm).contains(FOREIGN) && stop_ok;
    esm.shutdown().await;
    Ok(Summary { converged, lines })
}

/// The settings an operator would give, pointing at the two simulators.
fn settings(esm: &Simulator, platform: &FakePlatform) -> Result<Settings, String> {
    let env: HashMap<String, String> = [
        ("OPENCTI_URL", platform.url()),
        ("OPENCTI_TOKEN", TOKEN.to_owned()),
        (
            "CONNECTOR_ID",
            "5f0c2a4e-6d1b-4c7e-9a3f-2b8d1e0c7a55".to_owned(),
        ),
        ("CONNECTOR_LIVE_STREAM_ID", STREAM.to_owned()),
        ("ARCSIGHT_API_BASE_URL", esm.base_url().to_string()),
        ("ARCSIGHT_USERNAME", "admin".to_owned()),
        ("ARCSIGHT_PASSWORD", PASSWORD.to_owned()),
        ("ARCSIGHT_ACTIVE_LIST_ID", LIST.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Sources::new(env, None)
        .and_then(|s| Settings::from_sources(&s))
        .map_err(|e| e.to_string())
}

/// The list's values now.
fn list(esm: &Simulator) -> BTreeSet<String> {
    esm.active_list_entries(LIST)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .collect()
}

/// What the list must hold: the values of the platform's live indicators that pass the
/// policy, and the foreign entry.
fn expected(platform: &FakePlatform, policy: &Policy) -> BTreeSet<String> {
    let now = platform.live.now_ms() as i64;
    let mut out: BTreeSet<String> = platform
        .live
        .indicators()
        .iter()
        .filter_map(|s| {
            let ind = Indicator {
                id: s.internal_id.clone(),
                internal_id: Some(s.internal_id.clone()),
                pattern: Some(s.pattern.clone()),
                pattern_type: Some(s.pattern_type.clone()),
                revoked: s.revoked,
                detection: Some(s.detection),
                score: Some(s.score),
                valid_from: Some(s.valid_from_ms),
                valid_until: s.valid_until_ms,
            };
            evaluate(&ind, policy, now).ok()
        })
        .flat_map(|(values, _)| values.into_iter().map(|e| e.value))
        .collect();
    out.insert(FOREIGN.to_owned());
    out
}

struct Phase {
    ok: bool,
    expected: usize,
    missing: usize,
    extra: usize,
}

/// Waits until the list holds exactly what it must (bounded).
async fn converge(esm: &Simulator, platform: &FakePlatform, policy: &Policy) -> Phase {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let (want, have) = (expected(platform, policy), list(esm));
        if want == have || Instant::now() >= deadline {
            return Phase {
                ok: want == have,
                expected: want.len(),
                missing: want.difference(&have).count(),
                extra: have.difference(&want).count(),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phase(what: &str, p: &Phase, took: Duration) -> String {
    if p.ok {
        format!(
            "{what}: the list holds exactly the {} expected values, after {:.1} s",
            p.expected,
            took.as_secs_f64()
        )
    } else {
        format!(
            "{what}: NOT converged within {} s ({} missing, {} extra of {} expected)",
            CONVERGE_WITHIN.as_secs(),
            p.missing,
            p.extra,
            p.expected
        )
    }
}

/// Prints the summary.
pub fn print(summary: &Summary, mut w: impl Write) -> std::io::Result<()> {
    for line in &summary.lines {
        writeln!(w, "{line}")?;
    }
    writeln!(
        w,
        "{}",
        if summary.converged {
            "demo: OK"
        } else {
            "demo: FAILED"
        }
    )
}
