//! "Delivered" means "in the platform" (issue 19): what the broker confirmed is read back.
//! Black box: the ESM simulator, the simulated platform and its simulated worker (which
//! consumes the real RabbitMQ queue after each run), the real broker.

use std::collections::BTreeSet;

use crate::common::world::Env;

/// The log lines at warn or above whose message starts with `prefix`.
fn warnings(env: &Env, prefix: &str) -> Vec<serde_json::Value> {
    env.logs
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .collect()
}

fn stored(env: &Env) -> BTreeSet<String> {
    env.platform.recorded(|r| r.case_incidents.clone())
}

#[tokio::test]
async fn cases_whose_messages_the_worker_drops_as_work_not_alive_arrive_again() {
    let env = Env::start(3, 1).await;
    // The operator clears the connector's works while its messages are queued: the broker
    // confirmed them, the worker acks and discards them.
    env.platform
        .update(|r| r.worker.works_cleared_before_import = true);
    let r1 = env.run().await;
    assert!(r1.succeeded);
    assert_eq!(r1.case_count(), 3, "the broker took every case");
    assert!(stored(&env).is_empty(), "the worker dropped them all");
    env.platform
        .update(|r| r.worker.works_cleared_before_import = false);
    let r2 = env.run().await;
    assert!(r2.succeeded);
    assert_eq!(r2.case_ids(), env.all_case_incident_ids(), "sent again");
    assert_eq!(stored(&env), env.all_case_incident_ids());
    assert_eq!(
        warnings(&env, "the work was deleted in the platform").len(),
        1
    );
    // Imported this time: nothing more is sent.
    let r3 = env.run().await;
    assert!(r3.succeeded);
    assert_eq!(r3.case_count(), 0);
    env.stop().await;
}

#[tokio::test]
async fn a_case_whose_import_fails_in_the_worker_arrives_again() {
    let env = Env::start(3, 1).await;
    let poisoned = env.case_incident_id(&env.sim.case_ids()[1]);
    env.platform
        .update(|r| r.worker.fail_import_containing = Some(poisoned.clone()));
    let r1 = env.run().await;
    assert!(r1.succeeded);
    assert!(r1.case_ids().contains(&poisoned), "the broker took it");
    assert!(!stored(&env).contains(&poisoned), "its import failed");
    env.platform
        .update(|r| r.worker.fail_import_containing = None);
    let r2 = env.run().await;
    assert!(r2.succeeded);
    assert!(r2.case_ids().contains(&poisoned), "sent again");
    assert_eq!(stored(&env), env.all_case_incident_ids());
    let r3 = env.run().await;
    assert_eq!(r3.case_count(), 0);
    env.stop().await;
}

#[tokio::test]
async fn a_case_deleted_from_the_platform_is_sent_again_by_the_verification() {
    let mut env = Env::start(5, 1).await;
    let r1 = env.run().await;
    assert!(r1.succeeded);
    assert_eq!(stored(&env), env.all_case_incident_ids());
    let deleted = env.case_incident_id(&env.sim.case_ids()[2]);
    assert!(env.platform.delete_case_incident(&deleted));
    // Running once, the verification is off unless asked.
    let r2 = env.run().await;
    assert_eq!(r2.case_count(), 0);
    assert_eq!(env.platform.calls("caseIncidents"), 0);
    env.set("CONNECTOR_VERIFY_PERIOD", "PT1H");
    let r3 = env.run().await;
    assert!(r3.succeeded);
    let found = warnings(&env, "delivered cases are missing in the platform");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["missing"], 1);
    let r4 = env.run().await;
    assert!(r4.succeeded);
    assert_eq!(r4.case_ids(), BTreeSet::from([deleted]));
    assert_eq!(stored(&env), env.all_case_incident_ids());
    env.stop().await;
}

#[tokio::test]
async fn the_verification_costs_one_call_a_batch_and_then_waits_its_period() {
    let mut env = Env::start(7, 1).await;
    env.verify_batch = Some(3);
    let r1 = env.run().await;
    assert!(r1.succeeded);
    env.set("CONNECTOR_VERIFY_PERIOD", "PT1H");
    let r2 = env.run().await;
    assert!(r2.succeeded);
    assert_eq!(r2.case_count(), 0, "every case is in the platform");
    assert_eq!(env.platform.calls("caseIncidents"), 7usize.div_ceil(3));
    let r3 = env.run().await;
    assert!(r3.succeeded);
    assert_eq!(
        env.platform.calls("caseIncidents"),
        7usize.div_ceil(3),
        "not due again within the period"
    );
    env.stop().await;
}
