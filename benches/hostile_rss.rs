//! Peak memory of the ESM client facing a hostile 500 MB answer (issue 14): one line,
//! `peak RSS ... MB`, for docs/benchmarks.md. The answer is generated while it is sent and
//! refused at ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB (64 MiB by default), so the peak stays far
//! below the answer's size.

#[path = "../tests/it/common/hostile_server.rs"]
mod hostile_server;

use std::time::{Duration, Instant};

use arcsight_incidents::esm::ApiDialect;
use arcsight_incidents::esm::{EsmClient, EsmConfig};
use hostile_server::{HostileServer, Reply, Request};
use secrecy::SecretString;
use serde_json::json;

const MIB: u64 = 1024 * 1024;

fn vm(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = HostileServer::start(|req: &Request| {
            if req.path.contains("login") {
                Reply::json(200, json!({"log.loginResponse": {"log.return": "t"}}))
            } else {
                Reply::Huge {
                    bytes: 500 * MIB,
                    sized: false,
                }
            }
        })
        .await;
        let esm = EsmClient::new(EsmConfig {
            dialect: ApiDialect::Prefixed,
            max_attempts: 1,
            retry_min_wait: Duration::from_millis(1),
            retry_max_wait: Duration::from_millis(1),
            request_timeout: Duration::from_secs(120),
            event_batch_size: 100,
            ..EsmConfig::new(
                url::Url::parse(&server.url()).unwrap(),
                "admin",
                SecretString::from("bench-password"),
            )
        })
        .unwrap();
        let before = vm("VmHWM:");
        let started = Instant::now();
        let got = esm.get_cases(&["a".into(), "b".into()]).await;
        let failed = got.iter().filter(|(_, r)| r.is_err()).count();
        println!(
            "hostile: 500 MB ESM answers refused at 64 MiB ({failed} of {} cases failed, {} requests, {:.1} s): peak RSS {} MB (was {} MB before)",
            got.len(),
            server.requests(),
            started.elapsed().as_secs_f64(),
            vm("VmHWM:") / MIB,
            before / MIB,
        );
    });
}
