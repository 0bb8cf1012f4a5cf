//! Figures of the simulated stream (not a test): how fast it loads, pushes and serves, so a
//! connector's benchmark knows the simulator is not its bottleneck.
//! `cargo run --release -p platform-simulator --example stream_figures [indicators]`

use std::time::{Duration, Instant};

use platform_simulator::{FakePlatform, IndicatorSpec, StreamFilter, generate_indicators};
use serde_json::json;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn count_messages(url: &str, until: usize) -> (usize, Duration) {
    let t = Instant::now();
    let mut resp = reqwest::Client::new()
        .get(url)
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    let (mut n, mut tail) = (0usize, Vec::new());
    while n < until {
        let chunk = resp.chunk().await.unwrap().expect("stream ended");
        tail.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(i) = tail[start..].windows(2).position(|w| w == b"\n\n") {
            let msg = &tail[start..start + i];
            if !msg.windows(16).any(|w| w == b"event: heartbeat")
                && !msg.windows(16).any(|w| w == b"event: connected")
            {
                n += 1;
            }
            start += i + 2;
        }
        tail.drain(..start);
    }
    (n, t.elapsed())
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let p = FakePlatform::start("t", json!({})).await;
    p.live.add_stream("live", StreamFilter::Indicators);
    let before = rss_mib();
    let t = Instant::now();
    let now = p.live.now_ms() as i64;
    p.live.load_indicators(generate_indicators(n, 1, now));
    println!(
        "load {n} indicators: {:?}, store RSS +{:.0} MiB ({:.0} B/indicator)",
        t.elapsed(),
        rss_mib() - before,
        (rss_mib() - before) * 1048576.0 / n as f64
    );
    let recover = platform_simulator::live_stream::iso(now + 1);
    let (m, d) = count_messages(
        &format!(
            "{}/stream/live?from=0-0&recover={recover}&no-dependencies=true",
            p.url()
        ),
        n,
    )
    .await;
    println!("recovery of {n}: {m} messages (dependencies included) in {d:?}");

    let t = Instant::now();
    let ids =
        p.live.create_indicators((0..20_000u32).map(|k| {
            IndicatorSpec::ipv4(&format!("10.{}.{}.{}", k >> 16, (k >> 8) & 255, k & 255))
        }));
    let specs = p.live.indicators();
    let created: Vec<String> = specs
        .iter()
        .filter(|s| s.name.starts_with("10."))
        .take(2_000)
        .map(|s| s.internal_id.clone())
        .collect();
    for id in &created {
        p.live.delete_indicator(id);
    }
    println!("push 20,000 creates + 2,000 deletes: {:?}", t.elapsed());
    let (m, d) = count_messages(&format!("{}/stream/live?from={}", p.url(), ids[0]), 21_999).await;
    println!(
        "serve {m} live events to one reader: {d:?} ({:.0} events/s)",
        m as f64 / d.as_secs_f64()
    );
}
