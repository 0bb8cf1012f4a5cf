//! A standalone simulated platform (GraphQL + one live stream), for running a connector as a
//! separate process by hand or from a test:
//!
//! `platform-simulator [--listen 127.0.0.1:8080] [--token T] [--stream live] [--indicators N]
//!  [--heartbeat-ms MS] [--events N]`
//!
//! It prints `listening on http://<addr>` once ready and runs until killed. `--events N`
//! creates N more indicators as live events, one every 10 ms, after start.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use platform_simulator::{FakePlatform, generate_indicators};

struct Args {
    listen: SocketAddr,
    token: String,
    stream: String,
    indicators: usize,
    heartbeat_ms: Option<u64>,
    events: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:8080".parse().expect("an address"),
        token: "simulated-token".into(),
        stream: "live".into(),
        indicators: 1000,
        heartbeat_ms: Some(5000),
        events: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--token" => a.token = value()?,
            "--stream" => a.stream = value()?,
            "--indicators" => {
                a.indicators = value()?.parse().map_err(|e| format!("--indicators: {e}"))?
            }
            "--events" => a.events = value()?.parse().map_err(|e| format!("--events: {e}"))?,
            "--heartbeat-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--heartbeat-ms: {e}"))?;
                a.heartbeat_ms = (ms > 0).then_some(ms);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: platform-simulator [--listen ADDR] [--token T] [--stream ID] \
                            [--indicators N] [--heartbeat-ms MS (0: none)] [--events N]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let p = match FakePlatform::start_with_stream(
        args.listen,
        &args.token,
        &args.stream,
        args.indicators,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    p.live
        .set_heartbeat(args.heartbeat_ms.map(Duration::from_millis));
    println!("listening on {}", p.url());
    let now = p.live.now_ms() as i64;
    for s in generate_indicators(args.events, 2, now) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut s = s;
        s.created_ms = 0;
        s.updated_ms = 0;
        s.valid_from_ms = 0;
        p.live.create_indicator(s);
    }
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
