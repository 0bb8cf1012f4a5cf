//! Black-box tests of the ESM simulator over HTTP: every endpoint in both dialects, every fault
//! knob, run-time changes, counters, the request log, determinism, and the quirks the fixtures
//! (`tests/data/fixtures/esm/` at the repository root) show.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use esm_simulator::{Dialect, Faults, SimConfig, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LOGIN: &str = "/www/core-service/rest/LoginService/login";
const LOGOUT: &str = "/www/core-service/rest/LoginService/logout";
const CASES: &str = "/www/manager-service/rest/CaseService/";
const EVENTS: &str = "/www/manager-service/rest/SecurityEventService/getSecurityEvents";
const PASSWORD: &str = "s3cr3t-pw";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../tests/data/fixtures/esm/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn config(cases: usize, events: usize, dialect: Dialect) -> SimConfig {
    SimConfig {
        cases,
        events_per_case: events,
        seed: 7,
        dialect,
        password: PASSWORD.into(),
        ..SimConfig::default()
    }
}

/// A prefixed-dialect simulator of `cases` cases of one event, with `faults`.
fn faulty(faults: Faults, cases: usize) -> SimConfig {
    SimConfig {
        faults,
        ..config(cases, 1, Dialect::Prefixed)
    }
}

/// Response key and return key of an operation in a dialect, as the fixtures spell them.
fn keys(dialect: Dialect, prefix: &str, op: &str) -> (String, String) {
    match dialect {
        Dialect::Prefixed => (format!("{prefix}{op}Response"), format!("{prefix}return")),
        Dialect::Plain => (format!("{op}Response"), "return".to_string()),
    }
}

struct Esm {
    sim: Simulator,
    http: reqwest::Client,
    dialect: Dialect,
}

impl Esm {
    async fn start(cfg: SimConfig) -> Esm {
        let dialect = cfg.dialect;
        let sim = Simulator::start(cfg).await.expect("simulator starts");
        Esm {
            sim,
            http: reqwest::Client::new(),
            dialect,
        }
    }

    /// A login by GET with the query string, the raw answer.
    async fn login_by_query(&self) -> reqwest::Response {
        self.http
            .get(self.url(LOGIN))
            .query(&[("login", "admin"), ("password", PASSWORD), ("alt", "json")])
            .send()
            .await
            .expect("sent")
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.sim.base_url().as_str().trim_end_matches('/'),
            path
        )
    }

    async fn login(&self) -> String {
        let resp = self
            .http
            .post(self.url(LOGIN))
            .form(&[("login", "admin"), ("password", PASSWORD), ("alt", "json")])
            .send()
            .await
            .expect("login sent");
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("login JSON");
        let (r, ret) = keys(self.dialect, "log.", "login");
        body[&r][&ret].as_str().expect("token").to_string()
    }

    /// POST JSON in the configured dialect; returns status and raw body.
    async fn call(&self, op: &str, token: &str, params: Value) -> (StatusCode, String) {
        let path = if op == "getSecurityEvents" {
            EVENTS.to_string()
        } else {
            format!("{CASES}{op}")
        };
        let prefix = match (self.dialect, op) {
            (Dialect::Plain, _) => "",
            (_, "getSecurityEvents") => "sev.",
            _ => "cas.",
        };
        let mut inner = serde_json::Map::new();
        inner.insert(format!("{prefix}authToken"), json!(token));
        if let Value::Object(p) = params {
            for (k, v) in p {
                inner.insert(format!("{prefix}{k}"), v);
            }
        }
        let body = json!({ format!("{prefix}{op}"): inner });
        let resp = self
            .http
            .post(self.url(&format!("{path}?alt=json")))
            .json(&body)
            .send()
            .await
            .expect("sent");
        (resp.status(), resp.text().await.expect("body"))
    }

    /// `call` that must succeed with valid JSON; returns the `return` value (None when `""`).
    async fn ret(&self, op: &str, token: &str, params: Value) -> Option<Value> {
        let (status, body) = self.call(op, token, params).await;
        assert_eq!(status, StatusCode::OK, "{op}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{op}: {e}: {body}"));
        let prefix = if op == "getSecurityEvents" {
            "sev."
        } else {
            "cas."
        };
        let (r, ret) = keys(self.dialect, prefix, op);
        let outer = v
            .get(&r)
            .unwrap_or_else(|| panic!("{op}: no {r} in {body}"));
        if outer == &json!("") {
            return None;
        }
        Some(
            outer
                .get(&ret)
                .unwrap_or_else(|| panic!("{op}: no {ret} in {body}"))
                .clone(),
        )
    }
}

fn as_vec(v: Option<Value>) -> Vec<Value> {
    match v {
        None => vec![],
        Some(Value::Array(a)) => a,
        Some(x) => vec![x],
    }
}

#[tokio::test]
async fn login_by_form_query_and_json_in_both_dialects() {
    for (dialect, fixture_name) in [
        (Dialect::Prefixed, "login.json"),
        (Dialect::Plain, "login-esm79.json"),
    ] {
        let esm = Esm::start(config(1, 1, dialect)).await;
        let expected = fixture_json(fixture_name);
        let (r, ret) = keys(dialect, "log.", "login");
        let fixture_token = expected[&r][&ret].as_str().expect("fixture token");

        let form = esm.login().await;
        let query = esm.login_by_query().await;
        let query: Value = query.json().await.expect("json");
        let prefixed = json!({"log.login": {"log.login": "admin", "log.password": PASSWORD}});
        let plain = json!({"login": {"login": "admin", "password": PASSWORD}});
        let mut tokens = vec![
            form,
            query[&r][&ret].as_str().expect("query token").to_string(),
        ];
        for body in [prefixed, plain] {
            let resp = esm
                .http
                .post(esm.url(&format!("{LOGIN}?alt=json")))
                .json(&body)
                .send()
                .await
                .expect("sent");
            let v: Value = resp.json().await.expect("json");
            assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
            tokens.push(v[&r][&ret].as_str().expect("json token").to_string());
        }
        for t in &tokens {
            assert_eq!(t.len(), fixture_token.len(), "{t}");
            assert!(t.ends_with('.'));
        }
        assert_eq!(
            tokens.iter().collect::<BTreeSet<_>>().len(),
            4,
            "tokens are distinct"
        );
        assert_eq!(esm.sim.active_sessions(), 4);
        esm.sim.shutdown().await;
    }
}

#[tokio::test]
async fn bad_login_is_the_tomcat_page_of_the_fixture() {
    let esm = Esm::start(config(1, 1, Dialect::Prefixed)).await;
    let resp = esm
        .http
        .post(esm.url(LOGIN))
        .form(&[("login", "admin"), ("password", "wrong"), ("alt", "json")])
        .send()
        .await
        .expect("sent");
    assert!(!resp.status().is_success());
    // The fixture file ends with a newline that is not part of the page.
    assert_eq!(
        resp.text().await.expect("body").trim_end(),
        fixture("error-login.html").trim_end()
    );
    assert_eq!(esm.sim.active_sessions(), 0);
}

#[tokio::test]
async fn find_all_ids_lists_every_case_and_renders_one_as_a_scalar() {
    for dialect in [Dialect::Prefixed, Dialect::Plain] {
        let esm = Esm::start(config(3, 2, dialect)).await;
        let token = esm.login().await;
        let ids = as_vec(esm.ret("findAllIds", &token, json!({})).await);
        let want: Vec<Value> = esm.sim.case_ids().into_iter().map(Value::String).collect();
        assert_eq!(ids, want);
        // GET with the token in the query answers the same.
        let get = esm
            .http
            .get(esm.url(&format!("{CASES}findAllIds")))
            .query(&[("authToken", token.as_str()), ("alt", "json")])
            .send()
            .await
            .expect("sent");
        let (r, ret) = keys(dialect, "cas.", "findAllIds");
        let v: Value = get.json().await.expect("json");
        assert_eq!(as_vec(Some(v[&r][&ret].clone())), want);
    }
    // One case: the bare string of findAllIds-single.json; the key layout is the fixture's.
    let esm = Esm::start(config(1, 2, Dialect::Prefixed)).await;
    let token = esm.login().await;
    let (_, body) = esm.call("findAllIds", &token, json!({})).await;
    let got: Value = serde_json::from_str(&body).expect("json");
    let single = fixture_json("findAllIds-single.json");
    assert!(single["cas.findAllIdsResponse"]["cas.return"].is_string());
    assert!(
        got["cas.findAllIdsResponse"]["cas.return"].is_string(),
        "{body}"
    );
    // Nothing left: an empty answer, like getSecurityEvents-empty.json.
    assert!(esm.sim.delete_case(&esm.sim.case_ids()[0]));
    assert_eq!(esm.ret("findAllIds", &token, json!({})).await, None);
}

#[tokio::test]
async fn cases_have_the_fixture_shapes_for_zero_one_and_many_events() {
    let esm = Esm::start(config(12, 4, Dialect::Prefixed)).await;
    let token = esm.login().await;
    let severities = [
        "NONE",
        "INSIGNIFICANT",
        "MARGINAL",
        "CRITICAL",
        "CATASTROPHIC",
    ];
    let stages = ["QUEUED", "INITIAL", "FOLLOW_UP", "FINAL", "CLOSED"];
    let tickets = ["INTERNAL", "CLIENT", "INCIDENT"];
    let fixture_keys: BTreeSet<String> = [
        "getResourceById-one-event.json",
        "getResourceById-no-events.json",
    ]
    .iter()
    .flat_map(|f| {
        fixture_json(f)["cas.getResourceByIdResponse"]["cas.return"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    })
    .map(|(k, _)| k)
    .collect();
    let (mut none, mut one, mut many) = (0, 0, 0);
    for id in esm.sim.case_ids() {
        let case = esm
            .ret("getResourceById", &token, json!({"resourceId": id}))
            .await
            .expect("a case");
        assert_eq!(Some(&case), esm.sim.case_json(&id).as_ref());
        let obj = case.as_object().expect("object");
        for k in &fixture_keys {
            assert!(
                k == "eventIDs" || obj.contains_key(k),
                "{k} missing in {case}"
            );
        }
        assert_eq!(case["resourceid"], json!(id));
        // Real ids are base64 of 16 or 17 bytes (the fixtures hold both lengths).
        assert!(
            matches!(id.len(), 24 | 25) && id.ends_with("=="),
            "{id} is not shaped like an ESM resource id"
        );
        assert!(severities.contains(&case["consequenceSeverity"].as_str().unwrap_or("")));
        assert!(stages.contains(&case["stage"].as_str().unwrap_or("")));
        assert!(tickets.contains(&case["ticketType"].as_str().unwrap_or("")));
        assert!(case["createdTimestamp"].as_i64() <= case["modifiedTimestamp"].as_i64());
        assert!(
            case["URI"]
                .as_str()
                .is_some_and(|u| u.starts_with("/All Cases/"))
        );
        let event_ids = esm
            .ret("getCaseEventIDs", &token, json!({"caseId": id}))
            .await;
        match case.get("eventIDs") {
            None => {
                none += 1;
                assert_eq!(event_ids, None);
            }
            Some(Value::Array(list)) => {
                many += 1;
                assert!(list.len() > 1);
                assert_eq!(event_ids, Some(Value::Array(list.clone())));
            }
            Some(n) => {
                one += 1;
                assert!(n.is_i64(), "{n}");
                assert_eq!(event_ids.as_ref(), Some(n));
            }
        }
    }
    assert!(none > 0 && one > 0 && many > 0, "{none} {one} {many}");
}

#[tokio::test]
async fn unknown_case_is_the_invalid_resource_page_of_the_fixture() {
    let esm = Esm::start(config(2, 1, Dialect::Prefixed)).await;
    let token = esm.login().await;
    let (status, body) = esm
        .call("getResourceById", &token, json!({"resourceId": "bogus"}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body.trim_end(),
        fixture("error-invalid-resource.html").trim_end()
    );
    let (status, body) = esm
        .call("getCaseEventIDs", &token, json!({"caseId": "bogus"}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("InvalidResourceIDException"));
}

#[tokio::test]
async fn batch_lookup_answers_known_ids_and_can_be_absent() {
    let esm = Esm::start(config(3, 1, Dialect::Plain)).await;
    let token = esm.login().await;
    let ids = esm.sim.case_ids();
    let got = esm
        .ret(
            "getResourcesByIds",
            &token,
            json!({"ids": [ids[0], "bogus", ids[2]]}),
        )
        .await;
    let want = vec![
        esm.sim.case_json(&ids[0]).expect("case"),
        esm.sim.case_json(&ids[2]).expect("case"),
    ];
    assert_eq!(got, Some(Value::Array(want)));
    let single = esm
        .ret("getResourcesByIds", &token, json!({"ids": ids[1]}))
        .await;
    assert_eq!(
        single,
        esm.sim.case_json(&ids[1]),
        "one case is a bare object"
    );
    assert_eq!(
        esm.ret("getResourcesByIds", &token, json!({"ids": ["bogus"]}))
            .await,
        None
    );

    let old = Esm::start(SimConfig {
        batch_api: false,
        ..config(3, 1, Dialect::Plain)
    })
    .await;
    let token = old.login().await;
    let (status, body) = old
        .call("getResourcesByIds", &token, json!({"ids": [ids[0]]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("Apache Tomcat"), "{body}");
}

#[tokio::test]
async fn security_events_show_the_fixtures_quirks() {
    let esm = Esm::start(config(60, 4, Dialect::Prefixed)).await;
    let token = esm.login().await;
    let mut all = Vec::new();
    for id in esm.sim.case_ids() {
        let ids: Vec<i64> = esm
            .sim
            .case_json(&id)
            .map(|c| as_vec(c.get("eventIDs").cloned()))
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let got = as_vec(
            esm.ret(
                "getSecurityEvents",
                &token,
                json!({"ids": ids, "startMillis": -1, "endMillis": -1}),
            )
            .await,
        );
        assert_eq!(got, esm.sim.events_json(&ids));
        assert_eq!(got.len(), ids.len());
        for e in &got {
            if e["type"] == "CORRELATION" {
                let bases: Vec<i64> = as_vec(e.get("baseEventIds").cloned())
                    .iter()
                    .filter_map(Value::as_i64)
                    .collect();
                assert!(
                    !bases.is_empty() && bases.iter().all(|b| ids.contains(b)),
                    "{e}"
                );
            }
        }
        all.extend(got);
    }
    let text = serde_json::to_string(&all).expect("json");
    let big = all
        .iter()
        .filter(|e| e["eventId"].as_i64().is_some_and(|i| i > 1 << 53))
        .count();
    assert!(
        big > 0 && big < all.len(),
        "some ids above 2^53: {big}/{}",
        all.len()
    );
    assert!(
        text.contains("-9223372036854775808")
            && text.contains("-2147483648")
            && text.contains("\"4.9E-324\"")
    );
    let mut ipv4 = 0;
    let mut ipv6 = 0;
    for e in &all {
        for side in ["source", "destination", "agent"] {
            let Some(b64) = e[side]["addressAsBytes"].as_str() else {
                continue;
            };
            let bytes = STANDARD.decode(b64).expect("base64");
            match bytes.len() {
                4 => {
                    ipv4 += 1;
                    if let Some(a) = e[side]["address"].as_u64() {
                        assert_eq!(
                            a,
                            u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
                            "{e}"
                        );
                    }
                }
                16 => ipv6 += 1,
                n => panic!("address of {n} bytes in {e}"),
            }
        }
    }
    assert!(ipv4 > 0 && ipv6 > 0);
    assert!(
        all.iter()
            .any(|e| e["type"] == "CORRELATION" && e["baseEventIds"].is_array())
    );
    // The fixture's field names are the simulator's.
    let fixture_event = &fixture_json("getSecurityEvents-many.json")["sev.getSecurityEventsResponse"]
        ["sev.return"][0];
    let base = all
        .iter()
        .find(|e| e["type"] == "BASE")
        .expect("a base event");
    for k in fixture_event.as_object().expect("object").keys() {
        assert!(base.get(k).is_some(), "{k} missing in {base}");
    }
}

#[tokio::test]
async fn one_event_is_an_object_and_none_is_the_empty_fixture() {
    let esm = Esm::start(config(3, 3, Dialect::Prefixed)).await;
    let token = esm.login().await;
    let first = esm.sim.case_json(&esm.sim.case_ids()[0]).expect("case");
    let id = as_vec(first.get("eventIDs").cloned())[0]
        .as_i64()
        .expect("id");
    let one = esm
        .ret(
            "getSecurityEvents",
            &token,
            json!({"ids": id, "startMillis": -1, "endMillis": -1}),
        )
        .await;
    assert!(one.as_ref().is_some_and(Value::is_object), "{one:?}");
    let (status, body) = esm
        .call(
            "getSecurityEvents",
            &token,
            json!({"ids": [1], "startMillis": -1, "endMillis": -1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        fixture_json("getSecurityEvents-empty.json")
    );
}

#[tokio::test]
async fn tokens_are_required_checked_and_released_by_logout() {
    let esm = Esm::start(config(2, 1, Dialect::Prefixed)).await;
    let missing = esm
        .http
        .get(esm.url(&format!("{CASES}findAllIds?alt=json")))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = esm.call("findAllIds", "not-a-token", json!({})).await;
    assert!(!status.is_success());
    assert!(
        body.contains("Apache Tomcat") && body.contains("AuthenticationException"),
        "{body}"
    );

    let token = esm.login().await;
    assert_eq!(esm.sim.active_sessions(), 1);
    let out = esm
        .http
        .post(esm.url(LOGOUT))
        .form(&[("authToken", token.as_str()), ("alt", "json")])
        .send()
        .await
        .expect("sent");
    assert!(out.status().is_success());
    assert_eq!(esm.sim.active_sessions(), 0);
    let (status, _) = esm.call("findAllIds", &token, json!({})).await;
    assert!(!status.is_success(), "a logged-out token no longer works");
}

#[tokio::test]
async fn without_alt_json_the_answer_is_xml() {
    let esm = Esm::start(config(2, 1, Dialect::Prefixed)).await;
    let token = esm.login().await;
    let resp = esm
        .http
        .get(esm.url(&format!("{CASES}findAllIds")))
        .query(&[("authToken", &token)])
        .send()
        .await
        .expect("sent");
    assert!(resp.text().await.expect("body").starts_with("<?xml"));
}

#[tokio::test]
async fn latency_delays_answers() {
    let esm = Esm::start(config(1, 1, Dialect::Prefixed)).await;
    esm.sim.set_faults(Faults {
        latency: Duration::from_secs(600),
        ..Faults::default()
    });
    let slow = esm
        .http
        .get(esm.url(LOGIN))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(slow.is_err_and(|e| e.is_timeout()));
    esm.sim.set_faults(Faults::default());
    esm.login().await;
}

#[tokio::test]
async fn a_ratio_of_503s_is_seeded() {
    async fn statuses() -> Vec<u16> {
        let cfg = faulty(
            Faults {
                error_503_ratio: 0.5,
                ..Faults::default()
            },
            1,
        );
        let esm = Esm::start(cfg).await;
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(esm.login_by_query().await.status().as_u16());
        }
        assert_eq!(
            esm.sim.counters().get("fault.503").copied().unwrap_or(0),
            out.iter().filter(|s| **s == 503).count() as u64
        );
        out
    }
    let a = statuses().await;
    assert!(a.contains(&503) && a.contains(&200), "{a:?}");
    assert_eq!(a, statuses().await, "same seed, same failures");
}

#[tokio::test]
async fn every_nth_request_is_rate_limited_with_retry_after() {
    let cfg = faulty(
        Faults {
            rate_limit_every: Some(3),
            retry_after_secs: 7,
            ..Faults::default()
        },
        1,
    );
    let esm = Esm::start(cfg).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let resp = esm.login_by_query().await;
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        seen.push((resp.status().as_u16(), retry));
    }
    let limited = (429, Some("7".to_string()));
    assert_eq!(seen[2], limited);
    assert_eq!(seen[5], limited);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, s)| (i % 3 == 2) == (s.0 == 429)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn tokens_expire_after_n_uses() {
    let cfg = faulty(
        Faults {
            token_max_uses: Some(2),
            ..Faults::default()
        },
        2,
    );
    let esm = Esm::start(cfg).await;
    let token = esm.login().await;
    esm.ret("findAllIds", &token, json!({})).await;
    esm.ret("findAllIds", &token, json!({})).await;
    let (status, body) = esm.call("findAllIds", &token, json!({})).await;
    assert!(
        !status.is_success() && body.contains("AuthenticationException"),
        "{status} {body}"
    );
    assert_eq!(esm.sim.active_sessions(), 0);
    let fresh = esm.login().await;
    esm.ret("findAllIds", &fresh, json!({})).await;
}

#[tokio::test]
async fn every_nth_answer_can_be_an_html_page_with_200() {
    let cfg = faulty(
        Faults {
            html_200_every: Some(2),
            ..Faults::default()
        },
        2,
    );
    let esm = Esm::start(cfg).await;
    let token = esm.login().await;
    let (s1, b1) = esm.call("findAllIds", &token, json!({})).await;
    let (s2, b2) = esm.call("findAllIds", &token, json!({})).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert!(serde_json::from_str::<Value>(&b1).is_ok());
    assert!(
        b2.starts_with("<!doctype html>") && b2.contains("Apache Tomcat"),
        "{b2}"
    );
}

#[tokio::test]
async fn every_nth_answer_can_be_cut_short() {
    let cfg = faulty(
        Faults {
            truncate_every: Some(2),
            ..Faults::default()
        },
        3,
    );
    let esm = Esm::start(cfg).await;
    let token = esm.login().await;
    let (s1, whole) = esm.call("findAllIds", &token, json!({})).await;
    let (s2, cut) = esm.call("findAllIds", &token, json!({})).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert!(serde_json::from_str::<Value>(&whole).is_ok());
    assert_eq!(cut, whole[..whole.len() / 2]);
    assert!(serde_json::from_str::<Value>(&cut).is_err());
    assert_eq!(esm.sim.counters().get("fault.truncated"), Some(&1));
}

#[tokio::test]
async fn run_time_changes_through_the_api_and_the_admin_endpoint() {
    let esm = Esm::start(config(4, 2, Dialect::Prefixed)).await;
    let token = esm.login().await;
    let ids = esm.sim.case_ids();
    let modified = |c: &Option<Value>| {
        c.as_ref()
            .and_then(|c| c["modifiedTimestamp"].as_i64())
            .unwrap_or(0)
    };

    let before = modified(&esm.sim.case_json(&ids[0]));
    assert!(esm.sim.touch_case(&ids[0]));
    let after_api = modified(
        &esm.ret("getResourceById", &token, json!({"resourceId": ids[0]}))
            .await,
    );
    assert!(after_api > before);
    let admin = |path: String| {
        let http = esm.http.clone();
        let url = esm.url(&path);
        async move {
            http.post(url)
                .send()
                .await
                .expect("sent")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let id0 = url::form_urlencoded::byte_serialize(ids[0].as_bytes()).collect::<String>();
    assert_eq!(
        admin(format!("/sim-admin/touch?id={id0}")).await,
        json!({"ok": true})
    );
    assert!(modified(&esm.sim.case_json(&ids[0])) > after_api);

    let n_before = as_vec(
        esm.ret("getCaseEventIDs", &token, json!({"caseId": ids[0]}))
            .await,
    )
    .len();
    assert!(esm.sim.add_events(&ids[0], 2));
    assert_eq!(
        admin(format!("/sim-admin/add-events?id={id0}&n=1")).await,
        json!({"ok": true})
    );
    let n_after = as_vec(
        esm.ret("getCaseEventIDs", &token, json!({"caseId": ids[0]}))
            .await,
    );
    assert_eq!(n_after.len(), n_before + 3);
    let new_events: Vec<i64> = n_after.iter().filter_map(Value::as_i64).collect();
    assert_eq!(
        as_vec(
            esm.ret("getSecurityEvents", &token, json!({"ids": new_events}))
                .await
        )
        .len(),
        n_before + 3
    );

    let added = esm.sim.add_cases(1);
    let added_admin = admin("/sim-admin/add-cases?n=2".into()).await;
    assert_eq!(added_admin["ids"].as_array().map(Vec::len), Some(2));
    assert!(esm.sim.delete_case(&ids[1]));
    let id2 = url::form_urlencoded::byte_serialize(ids[2].as_bytes()).collect::<String>();
    assert_eq!(
        admin(format!("/sim-admin/delete?id={id2}")).await,
        json!({"ok": true})
    );
    let listed: Vec<String> = as_vec(esm.ret("findAllIds", &token, json!({})).await)
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(listed.len(), 4 - 2 + 3);
    assert!(listed.contains(&added[0]) && !listed.contains(&ids[1]) && !listed.contains(&ids[2]));
    let (status, body) = esm
        .call("getResourceById", &token, json!({"resourceId": ids[1]}))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("InvalidResourceIDException"));
}

#[tokio::test]
async fn counters_count_each_endpoint_and_the_log_holds_no_secret() {
    let esm = Esm::start(config(2, 2, Dialect::Prefixed)).await;
    let query_login = esm.login_by_query().await;
    let v: Value = query_login.json().await.expect("json");
    let token = v["log.loginResponse"]["log.return"]
        .as_str()
        .expect("token")
        .to_string();
    let id = esm.sim.case_ids()[0].clone();
    esm.http
        .get(esm.url(&format!("{CASES}getResourceById")))
        .query(&[
            ("authToken", token.as_str()),
            ("resourceId", &id),
            ("alt", "json"),
        ])
        .send()
        .await
        .expect("sent");
    esm.ret("getResourceById", &token, json!({"resourceId": id}))
        .await;
    esm.ret("getCaseEventIDs", &token, json!({"caseId": id}))
        .await;
    esm.ret("getSecurityEvents", &token, json!({"ids": [1]}))
        .await;
    esm.http
        .post(esm.url(LOGOUT))
        .form(&[("authToken", token.as_str())])
        .send()
        .await
        .expect("sent");

    let c = esm.sim.counters();
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert_eq!(
        (
            get("login"),
            get("getResourceById"),
            get("getCaseEventIDs"),
            get("getSecurityEvents"),
            get("logout")
        ),
        (1, 2, 1, 1, 1)
    );
    assert_eq!(get("findAllIds"), 0);
    let log = esm.sim.request_log();
    assert_eq!(log.len(), 6);
    assert!(
        log[0].starts_with("GET /www/core-service/rest/LoginService/login?"),
        "{}",
        log[0]
    );
    for line in &log {
        assert!(
            !line.contains(PASSWORD) && !line.contains(&token),
            "secret in {line}"
        );
    }
}

#[tokio::test]
async fn same_seed_serves_the_same_bytes() {
    async fn bodies(seed: u64) -> Vec<String> {
        let esm = Esm::start(SimConfig {
            seed,
            ..config(8, 3, Dialect::Prefixed)
        })
        .await;
        let token = esm.login().await;
        let mut out = vec![esm.call("findAllIds", &token, json!({})).await.1];
        for id in esm.sim.case_ids() {
            out.push(
                esm.call("getResourceById", &token, json!({"resourceId": id}))
                    .await
                    .1,
            );
            let ids = as_vec(
                esm.ret("getCaseEventIDs", &token, json!({"caseId": id}))
                    .await,
            );
            out.push(
                esm.call("getSecurityEvents", &token, json!({"ids": ids}))
                    .await
                    .1,
            );
        }
        out
    }
    let a = bodies(11).await;
    assert_eq!(a, bodies(11).await);
    assert_ne!(a, bodies(12).await);
}

#[tokio::test]
async fn tls_serves_with_the_returned_ca() {
    let esm = Esm::start(SimConfig {
        tls: true,
        ..config(1, 1, Dialect::Plain)
    })
    .await;
    assert_eq!(esm.sim.base_url().scheme(), "https");
    let pem = esm.sim.ca_pem().expect("a CA when tls");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let esm = Esm { http, ..esm };
    let token = esm.login().await;
    assert_eq!(
        as_vec(esm.ret("findAllIds", &token, json!({})).await).len(),
        1
    );
    // An untrusting client fails the handshake.
    assert!(
        reqwest::Client::new()
            .get(esm.url(LOGIN))
            .send()
            .await
            .is_err()
    );
}
