//! The simulator's malformed answers are exactly what the connector's JSON repair undoes: the
//! one simulator fault whose check needs the connector's code (the simulator's own tests live in
//! `crates/esm-simulator/tests`).

use arcsight_incidents::esm::decode::repair_json;
use esm_simulator::{Faults, SimConfig, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::data::fixture;

const LOGIN: &str = "/www/core-service/rest/LoginService/login";
const EVENTS: &str = "/www/manager-service/rest/SecurityEventService/getSecurityEvents";

/// The client's repair (escape every `\` that does not start a valid JSON escape).
fn repair(bad: &str) -> String {
    repair_json(bad).unwrap_or_else(|| bad.to_owned())
}

fn as_vec(v: Option<Value>) -> Vec<Value> {
    match v {
        None => vec![],
        Some(Value::Array(a)) => a,
        Some(x) => vec![x],
    }
}

/// Logs in (prefixed dialect) and returns the token.
async fn login(http: &reqwest::Client, sim: &Simulator) -> String {
    let cfg = SimConfig::default();
    let body: Value = http
        .post(sim.base_url().join(LOGIN.trim_start_matches('/')).unwrap())
        .form(&[
            ("login", cfg.username.as_str()),
            ("password", cfg.password.as_str()),
            ("alt", "json"),
        ])
        .send()
        .await
        .expect("login sent")
        .json()
        .await
        .expect("login JSON");
    body["log.loginResponse"]["log.return"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// `getSecurityEvents` in the prefixed dialect: status and raw body.
async fn events(
    http: &reqwest::Client,
    sim: &Simulator,
    token: &str,
    ids: &[i64],
) -> (StatusCode, String) {
    let body = json!({"sev.getSecurityEvents": {
        "sev.authToken": token, "sev.ids": ids, "sev.startMillis": -1, "sev.endMillis": -1
    }});
    let url = sim
        .base_url()
        .join(&format!("{}?alt=json", &EVENTS[1..]))
        .unwrap();
    let resp = http.post(url).json(&body).send().await.expect("sent");
    (resp.status(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn malformed_answers_repair_to_the_real_answer() {
    // The client's repair turns the fixture's malformed answer into valid JSON too. `\b` is a
    // valid JSON escape (backspace), so `\bob` keeps it, as every integration's repair does;
    // `\U` and `\s` are not, so their backslashes are kept as text.
    let repaired: Value =
        serde_json::from_str(&repair(&fixture("getSecurityEvents-malformed.txt")))
            .expect("fixture repairs");
    assert_eq!(
        repaired["sev.getSecurityEventsResponse"]["sev.return"]["message"],
        json!("cmd.exe /c copy C:\\Users\u{8}ob\\secrets.txt \\fileserver\\share")
    );

    let sim = Simulator::start(SimConfig {
        cases: 20,
        events_per_case: 3,
        seed: 7,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let http = reqwest::Client::new();
    let token = login(&http, &sim).await;
    let ids: Vec<i64> = sim
        .case_ids()
        .iter()
        .filter_map(|c| sim.case_json(c))
        .flat_map(|c| as_vec(c.get("eventIDs").cloned()))
        .filter_map(|v| v.as_i64())
        .collect();
    let (_, clean) = events(&http, &sim, &token, &ids).await;
    assert!(clean.contains("\\\\"), "the data set has Windows paths");
    sim.set_faults(Faults {
        malformed_every: Some(2),
        ..Faults::default()
    });
    let (s1, first) = events(&http, &sim, &token, &ids).await;
    let (s2, second) = events(&http, &sim, &token, &ids).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first, clean);
    assert!(
        serde_json::from_str::<Value>(&second).is_err(),
        "invalid JSON with HTTP 200"
    );
    assert_eq!(repair(&second), clean);
    assert_eq!(sim.counters().get("fault.malformed"), Some(&1));
}
