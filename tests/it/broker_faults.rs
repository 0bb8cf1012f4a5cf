//! A broker in trouble, played by a proxy in front of the real RabbitMQ (no alarm is raised on
//! the shared broker): one that stops reading after the first publish, and one that blocks the
//! connection (`connection.blocked`). The run stays within its bounds, nothing is marked
//! delivered that the broker did not confirm, and an operator sees it in the logs, the metrics
//! and `/healthz`.

use std::time::Duration;

use arcsight_incidents::metrics::ImportMetrics as Metrics;
use connector_runtime::schedule::shutdown_pair;
use serde_json::Value;

use crate::common::amqp_proxy::{AmqpProxy, BLOCKED_REASON, Fault};
use crate::common::world::Env;

/// The log lines at `level` whose message contains `needle`.
fn logged(env: &Env, level: &str, needle: &str) -> Vec<Value> {
    env.logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["level"] == level && v["message"].as_str().is_some_and(|m| m.contains(needle))
        })
        .collect()
}

/// The value of the sample `name` (no labels) in the exposition.
fn sample(metrics: &Metrics, name: &str) -> Option<f64> {
    metrics.encode().lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.parse().unwrap())
    })
}

/// Polls `cond` every 20 ms until it holds or `within` has passed.
async fn eventually(within: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().await
}

#[tokio::test]
async fn a_broker_that_stops_reading_ends_the_run_within_its_bounds_and_the_next_run_delivers() {
    let proxy = AmqpProxy::start(Fault::StallAtPublish).await;
    let mut env = Env::start(3, 1).await;
    let mq = env.topo.registration_config(proxy.port);
    env.platform.update(|r| r.mq = mq);
    // The publish timeout, shortened (lapin's I/O thread ignores paused tokio time): the run's
    // own bound, which must hold. The stall setting is shorter, so /healthz shows the stall
    // before the run gives up.
    env.amqp_timeout = Some(Duration::from_secs(5));
    env.set("CONNECTOR_HEALTH_STALL_TIMEOUT", "1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_server, mut server_shutdown) = shutdown_pair();
    let server = tokio::spawn(arcsight_incidents::metrics::serve_on(
        listener,
        env.metrics.clone(),
        Duration::from_secs(60),
        async move { server_shutdown.wait().await },
    ));
    let health = || async {
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    let watch = async {
        proxy.stalled.notified().await;
        // Polled until the run gives up at the latest (the run's end makes it healthy again).
        eventually(Duration::from_secs(30), async || health().await == 503).await
    };
    // A guard against a hang, not the bound under test: that is the socket's end below.
    let (first, unhealthy) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(env.run(), watch)
    })
    .await
    .expect("the run ends");
    assert!(!first.succeeded, "nothing was confirmed");
    assert!(unhealthy, "/healthz reports the stalled run");
    assert_eq!(health().await, 200, "between runs the connector is healthy");
    assert!(first.objects.is_empty(), "the proxy forwarded no publish");
    let work = first.new_works.last().expect("the run opened a work");
    let (message, in_error) = work.processed.clone().expect("the work is closed");
    assert!(in_error, "the work is closed in error: {message}");
    // The connection ended without waiting for a close-ok that never comes: the client's
    // socket is shut, so lapin's I/O thread does not linger.
    tokio::time::timeout(Duration::from_secs(10), proxy.client_gone.notified())
        .await
        .expect("the connection's socket is closed");

    // The broker reads again: nothing was marked delivered, so everything is sent now.
    proxy.set_fault(Fault::None);
    let second = tokio::time::timeout(Duration::from_secs(120), env.run())
        .await
        .expect("the run ends");
    assert!(second.succeeded);
    assert_eq!(second.case_ids(), env.all_case_incident_ids());
    stop_server.trigger();
    server.await.unwrap().unwrap();
    env.stop().await;
}

#[tokio::test]
async fn a_blocked_broker_is_logged_once_counted_and_waited_for() {
    let proxy = AmqpProxy::start(Fault::Block).await;
    let mut env = Env::start(3, 1).await;
    let mq = env.topo.registration_config(proxy.port);
    env.platform.update(|r| r.mq = mq);
    // Long enough that the wait below never races the run's own bound (twice this).
    env.amqp_timeout = Some(Duration::from_secs(30));
    let metrics = env.metrics.clone();
    let watch = async {
        let reported = eventually(Duration::from_secs(20), async || {
            !logged(&env, "ERROR", "blocked the connection").is_empty()
        })
        .await;
        let gauge = sample(&metrics, "arcsight_broker_blocked");
        let count = sample(&metrics, "arcsight_broker_blocked_episodes_total");
        proxy.unblock();
        (reported, gauge, count)
    };
    let (run, (reported, gauge, count)) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(env.run(), watch)
    })
    .await
    .expect("the run ends");
    assert!(reported, "the block is logged at error");
    let lines = logged(&env, "ERROR", "blocked the connection");
    assert_eq!(lines.len(), 1, "logged once: {lines:?}");
    assert_eq!(
        lines[0]["reason"], BLOCKED_REASON,
        "with the broker's reason"
    );
    assert_eq!(gauge, Some(1.0), "the gauge shows the block while it lasts");
    assert_eq!(count, Some(1.0), "one episode counted");
    // Publishing waited for the unblock instead of failing: the run delivers everything.
    assert!(run.succeeded);
    assert_eq!(run.case_ids(), env.all_case_incident_ids());
    assert_eq!(logged(&env, "INFO", "unblocked the connection").len(), 1);
    assert_eq!(sample(&metrics, "arcsight_broker_blocked"), Some(0.0));
    assert_eq!(
        sample(&metrics, "arcsight_broker_blocked_episodes_total"),
        Some(1.0)
    );
    env.stop().await;
}

#[tokio::test]
async fn a_broker_that_stays_blocked_fails_the_run_as_blocked_and_the_next_run_delivers() {
    let proxy = AmqpProxy::start(Fault::Block).await;
    let mut env = Env::start(3, 1).await;
    let mq = env.topo.registration_config(proxy.port);
    env.platform.update(|r| r.mq = mq);
    // The block outlasts the run's bound (twice this): never unblocked.
    env.amqp_timeout = Some(Duration::from_secs(1));
    let first = tokio::time::timeout(Duration::from_secs(120), env.run())
        .await
        .expect("the run ends");
    assert!(!first.succeeded);
    assert!(first.objects.is_empty(), "nothing is written while blocked");
    // The failure says what happened (not a confirmation timeout) and blames no case: a
    // blocked broker is the sink's failure, never bisected.
    let line = env.last_run_line();
    assert_eq!(line["message"], "run failed", "{line}");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("blocked the connection") && error.contains(BLOCKED_REASON),
        "{error}"
    );
    assert_eq!(
        sample(&env.metrics, "arcsight_broker_blocked"),
        Some(0.0),
        "the connection is gone"
    );

    proxy.set_fault(Fault::None);
    let second = tokio::time::timeout(Duration::from_secs(120), env.run())
        .await
        .expect("the run ends");
    assert!(second.succeeded);
    assert_eq!(second.case_ids(), env.all_case_incident_ids());
    env.stop().await;
}
