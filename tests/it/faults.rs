//! The fault suite: for each fault, what the run reports, and that once the fault stops the
//! import completes with nothing sent twice within a run. (Broker down, broker nack and a stop
//! mid-run are in `daemon.rs`.) Every scenario also checks, when its deployment stops, that no
//! credential or token reached a log line at TRACE or a requested URL.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use esm_simulator::Faults;

use common::world::{Env, Run};

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn assert_no_case_twice(run: &Run) {
    assert_eq!(
        run.case_count(),
        run.case_ids().len(),
        "a case was sent twice within one run"
    );
}

/// With the fault gone: at most two more runs complete the import (every case delivered at
/// least once across all runs), a last one sends nothing, and no secret leaked.
async fn completes_after(env: Env, earlier: Vec<Run>) {
    let all = env.all_case_incident_ids();
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    for r in &earlier {
        assert_no_case_twice(r);
        delivered.extend(r.case_ids());
    }
    let mut extra_runs = 0;
    while delivered != all {
        extra_runs += 1;
        assert!(
            extra_runs <= 2,
            "{} of {} cases after the fault stopped",
            delivered.len(),
            all.len()
        );
        let r = env.run().await;
        assert!(r.succeeded, "a run without faults failed");
        assert_no_case_twice(&r);
        delivered.extend(r.case_ids());
    }
    let last = env.run().await;
    assert!(
        last.succeeded && last.objects.is_empty(),
        "nothing left to send"
    );
    env.stop().await;
}

fn logged(env: &Env, what: &str) -> bool {
    env.logs.text().contains(what)
}

#[tokio::test]
async fn esm_unreachable() {
    let mut env = Env::start(6, 2).await;
    env.set(
        "ARCSIGHT_INCIDENTS_API_BASE_URL",
        format!("http://127.0.0.1:{}", closed_port()),
    );
    env.set("ARCSIGHT_INCIDENTS_MAX_ATTEMPTS", "2");
    let r = env.run().await;
    assert!(!r.succeeded && r.objects.is_empty());
    assert!(
        r.new_works.is_empty(),
        "no work for a run that read nothing"
    );
    assert!(logged(&env, "ESM login failed"), "the run says why");
    env.clear("ARCSIGHT_INCIDENTS_API_BASE_URL");
    completes_after(env, vec![r]).await;
}

#[tokio::test]
async fn esm_refuses_the_login() {
    let mut env = Env::start(6, 2).await;
    env.set("ARCSIGHT_INCIDENTS_PASSWORD", "not-the-Pa55word-MUMBLE");
    let r = env.run().await;
    assert!(!r.succeeded && r.objects.is_empty());
    assert!(logged(&env, "ESM login failed"));
    assert!(!logged(&env, "not-the-Pa55word-MUMBLE"));
    env.clear("ARCSIGHT_INCIDENTS_PASSWORD");
    completes_after(env, vec![r]).await;
}

/// One run while the simulator injects `faults` (they must trip `counter`), then the import
/// completes without them.
async fn simulator_fault(faults: Faults, counter: &str, check: impl FnOnce(&Run)) {
    let env = Env::start(16, 3).await;
    env.sim.set_faults(faults);
    let r = env.run().await;
    let tripped = env.sim.counters().get(counter).copied().unwrap_or(0);
    assert!(tripped > 0, "{counter} never happened");
    // What the run reports is what it did: its summary line counts the cases published.
    let line = env.last_run_line();
    assert_eq!(line["delivered"], r.case_count(), "{line}");
    assert_eq!(
        line["message"] == "run finished",
        r.succeeded,
        "a run that failed says so: {line}"
    );
    if r.succeeded {
        assert_eq!(line["failed"], 0, "{line}");
    }
    check(&r);
    env.sim.set_faults(Faults::default());
    completes_after(env, vec![r]).await;
}

#[tokio::test]
async fn bursts_of_503() {
    let faults = Faults {
        error_503_ratio: 0.35,
        ..Faults::default()
    };
    simulator_fault(faults, "fault.503", |_| {}).await;
}

#[tokio::test]
async fn a_storm_of_429() {
    let faults = Faults {
        rate_limit_every: Some(2),
        retry_after_secs: 0,
        ..Faults::default()
    };
    simulator_fault(faults, "fault.429", |_| {}).await;
}

#[tokio::test]
async fn the_token_expires_mid_run() {
    let faults = Faults {
        token_max_uses: Some(3),
        ..Faults::default()
    };
    // Logging in again is enough: this run delivers everything despite the expiries.
    simulator_fault(faults, "fault.token_expired", |r| {
        assert!(r.succeeded);
        assert_eq!(r.case_count(), 16);
    })
    .await;
}

#[tokio::test]
async fn html_error_pages_with_http_200() {
    let faults = Faults {
        html_200_every: Some(3),
        ..Faults::default()
    };
    simulator_fault(faults, "fault.html200", |_| {}).await;
}

#[tokio::test]
async fn truncated_json() {
    let faults = Faults {
        truncate_every: Some(3),
        ..Faults::default()
    };
    simulator_fault(faults, "fault.truncated", |_| {}).await;
}

#[tokio::test]
async fn answers_slower_than_the_timeout() {
    let mut env = Env::start(4, 1).await;
    env.set("ARCSIGHT_INCIDENTS_REQUEST_TIMEOUT", "1");
    env.set("ARCSIGHT_INCIDENTS_MAX_ATTEMPTS", "2");
    env.sim.set_faults(Faults {
        latency: Duration::from_millis(1_500),
        ..Faults::default()
    });
    let r = env.run().await;
    assert!(!r.succeeded && r.objects.is_empty());
    assert!(
        logged(&env, "timed out") || logged(&env, "timeout"),
        "the run says why"
    );
    env.sim.set_faults(Faults::default());
    completes_after(env, vec![r]).await;
}

#[tokio::test]
async fn the_platform_answers_500_to_work_add() {
    let env = Env::start(5, 1).await;
    env.platform
        .update(|p| p.fail_http.push(("workAdd".into(), 1)));
    let r = env.run().await;
    assert!(!r.succeeded);
    assert!(r.objects.is_empty(), "nothing is published without a work");
    assert!(logged(&env, "creating the work failed"));
    completes_after(env, vec![r]).await;
}

#[tokio::test]
async fn graphql_errors_on_add_expectations() {
    let env = Env::start(5, 1).await;
    env.platform
        .update(|p| p.fail.push(("addExpectations".into(), 1)));
    let r = env.run().await;
    assert!(!r.succeeded);
    assert!(r.objects.is_empty(), "expectations come before publishing");
    let (message, in_error) = r.new_works[0].processed.clone().expect("work closed");
    assert!(
        in_error && message.contains("adding expectations failed"),
        "{message}"
    );
    // One line in the work's errors for one failed run, and the sentinel still reported so
    // the platform can complete the work.
    let errors: Vec<&str> = r.new_works[0]
        .errors
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(errors, vec![message.as_str()]);
    assert_eq!(r.new_works[0].reports, 1);
    completes_after(env, vec![r]).await;
}

#[tokio::test]
async fn graphql_errors_when_saving_the_state() {
    let env = Env::start(9, 1).await;
    // The first page's state save fails; the run goes on and the next save carries it.
    env.platform
        .update(|p| p.fail.push(("pingConnector".into(), 1)));
    let r = env.run().await;
    assert!(r.succeeded);
    assert_eq!(r.case_count(), 9);
    assert!(logged(&env, "persisting the state failed"));
    completes_after(env, vec![r]).await;
}

#[tokio::test(start_paused = true)]
async fn a_platform_unreachable_for_a_minute_is_logged_as_an_error() {
    use arcsight_incidents::import::daemon::{DaemonError, run_daemon};
    use arcsight_incidents::metrics::ImportMetrics as Metrics;
    use arcsight_incidents::settings::{Settings, Sources};
    use connector_runtime::schedule::shutdown_pair;
    // The clock is paused: the waits between attempts (1, 2, 4 ... s) pass at once, so two
    // minutes of a platform that never answers take no time.
    let (logs, _guard) = common::logs::capture();
    let env: std::collections::HashMap<String, String> = [
        ("OPENCTI_URL", format!("http://127.0.0.1:{}", closed_port())),
        ("OPENCTI_TOKEN", "0b9f2c1e-token".into()),
        (
            "CONNECTOR_ID",
            "6d3c2a3e-1f4b-4a57-9f0e-2b8f8f0d2c11".into(),
        ),
        ("CONNECTOR_RUN_AND_TERMINATE", "true".into()),
        ("OPENCTI_UNREACHABLE_TIMEOUT", "120".into()),
        (
            "ARCSIGHT_INCIDENTS_API_BASE_URL",
            "https://127.0.0.1:1".into(),
        ),
        ("ARCSIGHT_INCIDENTS_USERNAME", "admin".into()),
        ("ARCSIGHT_INCIDENTS_PASSWORD", "esm-password".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::from_sources(&Sources::new(env, None).unwrap()).unwrap();
    let (_trigger, shutdown) = shutdown_pair();
    let err = run_daemon(settings, Metrics::new(), shutdown)
        .await
        .expect_err("an unreachable platform ends a run-once connector");
    assert!(matches!(err, DaemonError::Unreachable { .. }), "{err}");
    let lines: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["message"] == "the platform is not ready")
        .collect();
    let levels: Vec<&str> = lines.iter().filter_map(|v| v["level"].as_str()).collect();
    // Warnings while a platform starting beside us is normal, then errors (the default log
    // level shows only those) once it has been a minute.
    let first_error = levels.iter().position(|l| *l == "ERROR");
    assert!(
        first_error.is_some_and(|i| i > 0 && levels[..i].iter().all(|l| *l == "WARN")),
        "{levels:?}"
    );
    let since = lines[first_error.unwrap()]["for_s"].as_u64().unwrap();
    assert!((60..120).contains(&since), "{since}");
}
