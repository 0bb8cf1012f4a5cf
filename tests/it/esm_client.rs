//! The ESM client against a mock ESM (wiremock): every call in both dialects, every fixture in
//! `tests/data/fixtures/esm/`, every failure mode, and TLS with a private CA.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcsight_incidents::esm::decode::Dialect;
use arcsight_incidents::esm::{ApiDialect, EsmClient, EsmConfig, EsmError, Jitter, TransportKind};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{
    body_json, body_partial_json, body_string_contains, method, path, query_param,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "arcsight-svc";
const PASSWORD: &str = "S3cr3t-Pa55w0rd!";
const TOKEN: &str = "TOKEN-ZXCVBNM";

const LOGIN: &str = "/www/core-service/rest/LoginService/login";
const LOGOUT: &str = "/www/core-service/rest/LoginService/logout";
const FIND_ALL_IDS: &str = "/www/manager-service/rest/CaseService/findAllIds";
const GET_BY_ID: &str = "/www/manager-service/rest/CaseService/getResourceById";
const GET_BY_IDS: &str = "/www/manager-service/rest/CaseService/getResourcesByIds";
const EVENTS: &str = "/www/manager-service/rest/SecurityEventService/getSecurityEvents";

use crate::common::data::fixture;
use crate::common::tls::{self, Presents};

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).expect("fixture is valid JSON")
}

/// The case object inside a `getResourceById` fixture.
fn inner_case(name: &str) -> Value {
    fixture_json(name)["cas.getResourceByIdResponse"]["cas.return"].clone()
}

fn json_response(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn html_response(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "text/html;charset=utf-8")
}

fn prefixed_login(token: &str) -> String {
    json!({"log.loginResponse": {"log.return": token}}).to_string()
}

/// Millisecond waits so retries cost nothing; the policy itself is unit-tested with the real
/// defaults in `src/esm/retry.rs`.
fn config(base: &str) -> EsmConfig {
    EsmConfig {
        retry_min_wait: Duration::from_millis(1),
        retry_max_wait: Duration::from_millis(4),
        request_timeout: Duration::from_secs(5),
        ..EsmConfig::new(
            Url::parse(base).unwrap(),
            USER,
            SecretString::from(PASSWORD),
        )
    }
}

fn client(cfg: EsmConfig) -> EsmClient {
    EsmClient::with_jitter(cfg, Jitter::seeded(7)).unwrap()
}

/// Mounts a login that answers `body`, expected `times` times.
async fn mount_login(server: &MockServer, body: String, times: impl Into<wiremock::Times>) {
    Mock::given(method("POST"))
        .and(path(LOGIN))
        .and(query_param("alt", "json"))
        .and(body_string_contains("password="))
        .respond_with(json_response(&body))
        .expect(times)
        .mount(server)
        .await;
}

/// `findAllIds` answers `answer`, expected `times` times.
async fn answer_find_all_ids(
    server: &MockServer,
    answer: ResponseTemplate,
    times: impl Into<wiremock::Times>,
) {
    Mock::given(method("POST"))
        .and(path(FIND_ALL_IDS))
        .respond_with(answer)
        .expect(times)
        .mount(server)
        .await;
}

/// `findAllIds` answers `failure` `n` times (each expected), then the fixture once.
async fn fail_then_answer(
    server: &MockServer,
    failure: ResponseTemplate,
    n: u64,
    fixture_name: &str,
) {
    Mock::given(method("POST"))
        .and(path(FIND_ALL_IDS))
        .respond_with(failure)
        .up_to_n_times(n)
        .with_priority(1)
        .expect(n)
        .mount(server)
        .await;
    answer_find_all_ids(server, json_response(&fixture(fixture_name)), 1).await;
}

async fn assert_no_secret_in_urls(server: &MockServer) {
    for req in server.received_requests().await.unwrap() {
        let url = req.url.to_string();
        assert_eq!(req.url.query(), Some("alt=json"), "{url}");
        assert!(!url.contains(TOKEN) && !url.contains("S3cr3t"), "{url}");
        assert!(
            !url.contains("7Kg2eRWvQGI3TBofLrFHMyHRv5FqIIqexHEMzzzcslo"),
            "{url}"
        );
    }
}

// ---- calls, prefixed dialect (ESM <= 7.8) ------------------------------------------------

#[tokio::test]
async fn login_posts_a_form_and_find_all_ids_uses_prefixed_keys() {
    let server = MockServer::start().await;
    let token = fixture_json("login.json")["log.loginResponse"]["log.return"]
        .as_str()
        .unwrap()
        .to_owned();
    Mock::given(method("POST"))
        .and(path(LOGIN))
        .and(body_string_contains(format!("login={USER}")))
        // The form encoding of `S3cr3t-Pa55w0rd!`.
        .and(body_string_contains("password=S3cr3t-Pa55w0rd%21"))
        .and(body_string_contains("alt=json"))
        .respond_with(json_response(&fixture("login.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(FIND_ALL_IDS))
        .and(body_json(
            json!({"cas.findAllIds": {"cas.authToken": token}}),
        ))
        .respond_with(json_response(&fixture("findAllIds.json")))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    c.login().await.unwrap();
    assert_eq!(c.dialect().await, Some(Dialect::Prefixed));
    let ids = c.find_all_ids().await.unwrap();
    assert_eq!(
        ids,
        [
            "12ax-uGgBABCWb2puJdY8ZA==",
            "1234DfGkBABCenF0601F2Ww==",
            "456mUEWcBABD6cSFwTn5Fog=="
        ]
    );
    server.verify().await;
    assert_no_secret_in_urls(&server).await;
    let login = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        login.headers.get("content-type").unwrap().to_str().unwrap(),
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn find_all_ids_logs_in_on_demand_and_accepts_a_single_bare_id() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    answer_find_all_ids(
        &server,
        json_response(&fixture("findAllIds-single.json")),
        1,
    )
    .await;
    let c = client(config(&server.uri()));
    assert_eq!(
        c.find_all_ids().await.unwrap(),
        ["12ax-uGgBABCWb2puJdY8ZA=="]
    );
}

#[tokio::test]
async fn cases_are_fetched_in_batches_and_returned_in_request_order() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    let a = inner_case("getResourceById.json");
    let b = inner_case("getResourceById-one-event.json");
    let c3 = inner_case("getResourceById-no-events.json");
    let id = |v: &Value| v["resourceid"].as_str().unwrap().to_owned();
    // First batch answered out of order; second batch holds one case, answered as a bare object.
    Mock::given(method("POST"))
        .and(path(GET_BY_IDS))
        .and(body_json(
            json!({"cas.getResourcesByIds": {"cas.authToken": TOKEN, "cas.ids": [id(&a), id(&b)]}}),
        ))
        .respond_with(json_response(
            &json!({"cas.getResourcesByIdsResponse": {"cas.return": [b.clone(), a.clone()]}})
                .to_string(),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GET_BY_IDS))
        .and(body_partial_json(
            json!({"cas.getResourcesByIds": {"cas.ids": [id(&c3)]}}),
        ))
        .respond_with(json_response(
            &json!({"cas.getResourcesByIdsResponse": {"cas.return": c3.clone()}}).to_string(),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.case_batch_size = 2;
    let c = client(cfg);
    let ids = vec![id(&a), id(&b), id(&c3)];
    let got = c.get_cases(&ids).await;
    let got_ids: Vec<&str> = got.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(got[0].1.as_ref().unwrap(), &a);
    assert_eq!(got[1].1.as_ref().unwrap(), &b);
    assert_eq!(got[2].1.as_ref().unwrap(), &c3);
    server.verify().await;
    assert_no_secret_in_urls(&server).await;
}

#[tokio::test]
async fn missing_batch_call_falls_back_to_single_calls_for_the_clients_life() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    Mock::given(method("POST"))
        .and(path(GET_BY_IDS))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    for (name, times) in [
        ("getResourceById.json", 3u64),
        ("getResourceById-one-event.json", 1u64),
    ] {
        let case = inner_case(name);
        Mock::given(method("POST"))
            .and(path(GET_BY_ID))
            .and(body_json(json!({"cas.getResourceById": {"cas.authToken": TOKEN, "cas.resourceId": case["resourceid"]}})))
            .respond_with(json_response(&fixture(name)))
            .expect(times)
            .mount(&server)
            .await;
    }
    let c = client(config(&server.uri()));
    let a = inner_case("getResourceById.json")["resourceid"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = inner_case("getResourceById-one-event.json")["resourceid"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = c.get_cases(&[a.clone(), b.clone()]).await;
    assert!(first.iter().all(|(_, r)| r.is_ok()), "{first:?}");
    assert_eq!(
        first[1].1.as_ref().unwrap()["eventIDs"],
        json!(14457190769i64)
    );
    // The batch call is not tried again (its mock expects exactly one request).
    let second = c.get_cases(&[a.clone(), a.clone()]).await;
    assert_eq!(second.len(), 2);
    server.verify().await;
}

#[tokio::test]
async fn an_error_page_naming_a_missing_operation_also_triggers_the_fallback() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    let page = "<!doctype html><html><body><h1>HTTP Status 500</h1><p><b>Message</b> org.apache.axis2.AxisFault: No such operation 'getResourcesByIds'</p></body></html>";
    Mock::given(method("POST"))
        .and(path(GET_BY_IDS))
        .respond_with(html_response(500, page))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GET_BY_ID))
        .respond_with(json_response(&fixture("getResourceById-no-events.json")))
        .expect(2)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    let got = c.get_cases(&["x".into(), "y".into()]).await;
    assert!(got.iter().all(|(_, r)| r.is_ok()), "{got:?}");
    server.verify().await;
}

#[tokio::test]
async fn one_bad_case_never_fails_the_others() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    let page = fixture("error-invalid-resource.html");
    // ESM fails the whole batch when one id is bogus; the error is permanent, so no retries.
    Mock::given(method("POST"))
        .and(path(GET_BY_IDS))
        .respond_with(html_response(500, &page))
        .expect(1)
        .mount(&server)
        .await;
    let good = inner_case("getResourceById.json");
    Mock::given(method("POST"))
        .and(path(GET_BY_ID))
        .and(body_partial_json(
            json!({"cas.getResourceById": {"cas.resourceId": good["resourceid"]}}),
        ))
        .respond_with(json_response(&fixture("getResourceById.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GET_BY_ID))
        .and(body_partial_json(
            json!({"cas.getResourceById": {"cas.resourceId": "bogus"}}),
        ))
        .respond_with(html_response(500, &page))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    let got = c
        .get_cases(&["bogus".into(), good["resourceid"].as_str().unwrap().into()])
        .await;
    let err = got[0].1.as_ref().unwrap_err();
    assert!(
        matches!(err, EsmError::ErrorPage { status: 500, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("InvalidResourceIDException"),
        "{err}"
    );
    assert_eq!(err.operation(), "getResourceById");
    assert_eq!(got[1].1.as_ref().unwrap(), &good);
    server.verify().await;
}

#[tokio::test]
async fn security_events_in_batches_with_every_fixture_shape() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    let many = [12395741i64, 45696713, 2305843016676439806];
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_json(json!({"sev.getSecurityEvents": {
            "sev.authToken": TOKEN, "sev.ids": many, "sev.startMillis": -1, "sev.endMillis": -1}})))
        .respond_with(json_response(&fixture("getSecurityEvents-many.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_partial_json(
            json!({"sev.getSecurityEvents": {"sev.ids": [14457190769i64, 99887766]}}),
        ))
        .respond_with(json_response(&fixture("getSecurityEvents-one.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_partial_json(
            json!({"sev.getSecurityEvents": {"sev.ids": [5]}}),
        ))
        .respond_with(json_response(&fixture("getSecurityEvents-empty.json")))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.event_batch_size = 3;
    let c = client(cfg);
    // Duplicates are asked for once: two batches, of three and two ids.
    let mut ids = many.to_vec();
    ids.extend([12395741, 14457190769, 99887766]);
    let got = c.get_security_events(&ids).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    let mut keys: Vec<i64> = got.events.keys().copied().collect();
    keys.sort_unstable();
    assert_eq!(keys, [12395741, 45696713, 14457190769, 2305843016676439806]);
    assert_eq!(
        got.events[&2305843016676439806]["type"],
        json!("CORRELATION")
    );
    assert_eq!(got.events[&14457190769]["name"], json!("Process Created"));
    // Nothing found: neither an event nor a failure.
    let none = c.get_security_events(&[5]).await;
    assert!(none.events.is_empty() && none.failed.is_empty(), "{none:?}");
    server.verify().await;
    assert_no_secret_in_urls(&server).await;
}

#[tokio::test]
async fn malformed_event_json_is_repaired_and_decoded() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            fixture("getSecurityEvents-malformed.txt").into_bytes(),
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    let got = c.get_security_events(&[99887766]).await;
    assert!(got.failed.is_empty(), "{:?}", got.failed);
    let msg = got.events[&99887766]["message"].as_str().unwrap();
    assert!(msg.starts_with("cmd.exe /c copy C:\\Users"), "{msg}");
    assert!(msg.ends_with("\\secrets.txt \\fileserver\\share"), "{msg}");
}

#[tokio::test]
async fn an_undecodable_event_batch_fails_only_the_event_that_is_broken() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    let broken = r#"{"sev.getSecurityEventsResponse":{"sev.return":{"eventId":2,"name":"truncated"#;
    let ok =
        json!({"sev.getSecurityEventsResponse": {"sev.return": {"eventId": 1, "name": "fine"}}});
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_partial_json(
            json!({"sev.getSecurityEvents": {"sev.ids": [1, 2]}}),
        ))
        .respond_with(json_response(broken))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_partial_json(
            json!({"sev.getSecurityEvents": {"sev.ids": [1]}}),
        ))
        .respond_with(json_response(&ok.to_string()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_partial_json(
            json!({"sev.getSecurityEvents": {"sev.ids": [2]}}),
        ))
        .respond_with(json_response(broken))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    let got = c.get_security_events(&[1, 2]).await;
    assert_eq!(got.events[&1]["name"], json!("fine"));
    assert!(
        matches!(*got.failed[&2], EsmError::Decode { .. }),
        "{:?}",
        got.failed
    );
    assert!(!got.failed.contains_key(&1));
    server.verify().await;
}

// ---- calls, plain dialect (ESM 7.9+) ----------------------------------------------------

#[tokio::test]
async fn plain_dialect_is_detected_from_the_login_answer() {
    let server = MockServer::start().await;
    let token = fixture_json("login-esm79.json")["loginResponse"]["return"]
        .as_str()
        .unwrap()
        .to_owned();
    mount_login(&server, fixture("login-esm79.json"), 1).await;
    Mock::given(method("POST"))
        .and(path(FIND_ALL_IDS))
        .and(body_json(json!({"findAllIds": {"authToken": token}})))
        .respond_with(json_response(&fixture("findAllIds-esm79.json")))
        .expect(1)
        .mount(&server)
        .await;
    let case = inner_case("getResourceById.json");
    Mock::given(method("POST"))
        .and(path(GET_BY_IDS))
        .and(body_json(
            json!({"getResourcesByIds": {"authToken": token, "ids": ["a", "b"]}}),
        ))
        .respond_with(json_response(
            &json!({"getResourcesByIdsResponse": {"return": [case.clone()]}}).to_string(),
        ))
        .expect(1)
        .mount(&server)
        .await;
    // "a" is not in the batch answer: asked for on its own; "b" likewise.
    Mock::given(method("POST"))
        .and(path(GET_BY_ID))
        .and(body_partial_json(
            json!({"getResourceById": {"authToken": token}}),
        ))
        .respond_with(json_response(
            &json!({"getResourceByIdResponse": {"return": case.clone()}}).to_string(),
        ))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_json(json!({"getSecurityEvents": {
            "authToken": token, "ids": [14457190769i64], "startMillis": -1, "endMillis": -1}})))
        .respond_with(json_response(
            &json!({"getSecurityEventsResponse": {"return": fixture_json("getSecurityEvents-one.json")["sev.getSecurityEventsResponse"]["sev.return"]}}).to_string(),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    assert_eq!(
        c.find_all_ids().await.unwrap(),
        ["12ax-uGgBABCWb2puJdY8ZA==", "1234DfGkBABCenF0601F2Ww=="]
    );
    assert_eq!(c.dialect().await, Some(Dialect::Plain));
    let cases = c.get_cases(&["a".into(), "b".into()]).await;
    assert!(cases.iter().all(|(_, r)| r.is_ok()), "{cases:?}");
    let ev = c.get_security_events(&[14457190769]).await;
    assert!(ev.events.contains_key(&14457190769));
    server.verify().await;
}

#[tokio::test]
async fn a_configured_dialect_wins_over_detection_and_answers_are_read_liberally() {
    let server = MockServer::start().await;
    // Prefixed login answer, but plain configured: requests are plain, prefixed answers still read.
    mount_login(&server, fixture("login.json"), 1).await;
    Mock::given(method("POST"))
        .and(path(FIND_ALL_IDS))
        .and(body_partial_json(json!({"findAllIds": {}})))
        .respond_with(json_response(&fixture("findAllIds.json")))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.dialect = ApiDialect::Plain;
    let c = client(cfg);
    assert_eq!(c.find_all_ids().await.unwrap().len(), 3);
    assert_eq!(c.dialect().await, Some(Dialect::Plain));
    server.verify().await;
}

#[tokio::test]
async fn logout_posts_the_token_in_a_form_once_and_is_a_no_op_without_a_session() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    Mock::given(method("POST"))
        .and(path(LOGOUT))
        .and(query_param("alt", "json"))
        .and(body_string_contains(format!("authToken={TOKEN}")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    c.logout().await.unwrap(); // never logged in: no request
    c.login().await.unwrap();
    c.logout().await.unwrap();
    c.logout().await.unwrap(); // already out: no request
    server.verify().await;
    assert_no_secret_in_urls(&server).await;
}

// ---- failures --------------------------------------------------------------------------

#[tokio::test]
async fn transient_statuses_are_retried_with_policy_waits() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    fail_then_answer(
        &server,
        ResponseTemplate::new(503),
        2,
        "findAllIds-single.json",
    )
    .await;
    let mut cfg = config(&server.uri());
    cfg.retry_min_wait = Duration::from_millis(2);
    cfg.retry_max_wait = Duration::from_millis(100);
    let c = client(cfg);
    assert_eq!(c.find_all_ids().await.unwrap().len(), 1);
    let stats = c.stats();
    let op = stats.operations["findAllIds"];
    assert_eq!((op.ok, op.retried, op.error), (1, 2, 0));
    // Equal jitter: attempt 1 waits within [1, 2] ms, attempt 2 within [2, 4] ms.
    assert!(
        stats.retry_wait >= Duration::from_millis(3)
            && stats.retry_wait <= Duration::from_millis(6),
        "{:?}",
        stats.retry_wait
    );
    server.verify().await;
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_cap() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    fail_then_answer(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "120"),
        1,
        "findAllIds.json",
    )
    .await;
    let mut cfg = config(&server.uri());
    cfg.retry_max_wait = Duration::from_millis(15);
    let c = client(cfg);
    c.find_all_ids().await.unwrap();
    // 120 s asked, capped at the configured 15 ms; without Retry-After it would be <= 1 ms.
    assert_eq!(c.stats().retry_wait, Duration::from_millis(15));
    server.verify().await;
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_error_is_typed() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    answer_find_all_ids(&server, ResponseTemplate::new(500), 3).await;
    let mut cfg = config(&server.uri());
    cfg.max_attempts = 3;
    let c = client(cfg);
    let e = c.find_all_ids().await.unwrap_err();
    assert!(
        matches!(
            e,
            EsmError::Status {
                status: 500,
                operation: "findAllIds"
            }
        ),
        "{e:?}"
    );
    assert!(e.is_transient());
    let op = c.stats().operations["findAllIds"];
    assert_eq!((op.ok, op.retried, op.error), (0, 2, 1));
    server.verify().await;
}

#[tokio::test]
async fn other_client_errors_fail_at_once() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    answer_find_all_ids(&server, ResponseTemplate::new(400), 1).await;
    let c = client(config(&server.uri()));
    let e = c.find_all_ids().await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(!e.is_transient());
    server.verify().await;
}

#[tokio::test]
async fn an_html_page_with_http_200_is_an_error_naming_the_exception() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(LOGIN))
        .respond_with(html_response(200, &fixture("error-login.html")))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(config(&server.uri()));
    let e = c.login().await.unwrap_err();
    assert!(
        matches!(
            e,
            EsmError::ErrorPage {
                status: 200,
                operation: "login",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("AuthenticationException: Login failed"),
        "{e}"
    );
    server.verify().await;
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(LOGIN))
        .respond_with(json_response(&prefixed_login(TOKEN)).set_delay(Duration::from_secs(5)))
        .expect(2)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.max_attempts = 2;
    cfg.request_timeout = Duration::from_millis(50);
    let c = client(cfg);
    let e = c.login().await.unwrap_err();
    assert!(
        matches!(
            e,
            EsmError::Transport {
                kind: TransportKind::Timeout,
                operation: "login",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_transient());
    server.verify().await;
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(&format!("http://127.0.0.1:{port}"));
    cfg.max_attempts = 3;
    let c = client(cfg);
    let e = c.login().await.unwrap_err();
    assert!(
        matches!(
            e,
            EsmError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{e:?}"
    );
    let op = c.stats().operations["login"];
    assert_eq!((op.retried, op.error), (2, 1));
}

#[tokio::test]
async fn a_refused_token_triggers_one_fresh_login_and_one_retry() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 2).await;
    fail_then_answer(&server, ResponseTemplate::new(401), 1, "findAllIds.json").await;
    let c = client(config(&server.uri()));
    assert_eq!(c.find_all_ids().await.unwrap().len(), 3);
    assert_eq!(c.stats().relogins, 1);
    server.verify().await;
}

#[tokio::test]
async fn a_body_saying_the_token_is_invalid_also_triggers_a_fresh_login() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 2).await;
    let page = "<html><body><p><b>Message</b> com.arcsight.coma.client.authentication.AuthenticationException: Token is invalid or has expired</p></body></html>";
    fail_then_answer(&server, html_response(500, page), 1, "findAllIds.json").await;
    let c = client(config(&server.uri()));
    assert_eq!(c.find_all_ids().await.unwrap().len(), 3);
    server.verify().await;
}

#[tokio::test]
async fn a_token_refused_twice_is_an_unauthorized_error() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 2).await;
    answer_find_all_ids(&server, ResponseTemplate::new(401), 2).await;
    let c = client(config(&server.uri()));
    let e = c.find_all_ids().await.unwrap_err();
    assert!(
        matches!(e, EsmError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    assert!(!e.is_transient());
    server.verify().await;
}

#[tokio::test]
async fn a_failed_event_batch_is_reported_for_each_of_its_ids() {
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1).await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_partial_json(
            json!({"sev.getSecurityEvents": {"sev.ids": [1, 2]}}),
        ))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .and(body_partial_json(
            json!({"sev.getSecurityEvents": {"sev.ids": [3]}}),
        ))
        .respond_with(json_response(
            &json!({"sev.getSecurityEventsResponse": {"sev.return": {"eventId": 3}}}).to_string(),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.max_attempts = 2;
    cfg.event_batch_size = 2;
    let c = client(cfg);
    let got = c.get_security_events(&[1, 2, 3]).await;
    assert!(got.events.contains_key(&3));
    assert_eq!(got.failed.len(), 2);
    assert!(Arc::ptr_eq(&got.failed[&1], &got.failed[&2]));
    assert_eq!(got.failed[&1].status(), Some(503));
    server.verify().await;
}

// ---- secrets ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_error_and_no_log_line_ever_shows_the_password_or_the_token() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut errors: Vec<EsmError> = Vec::new();

    // Login refused with a page that echoes the password.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(LOGIN))
        .respond_with(html_response(
            500,
            &format!("<html><body><p>com.x.AuthenticationException: bad password {PASSWORD} for {USER}</p></body></html>"),
        ))
        .mount(&server)
        .await;
    errors.push(client(config(&server.uri())).login().await.unwrap_err());

    // A login answer without a usable token.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(LOGIN))
        .respond_with(json_response(
            &json!({"log.loginResponse": {"log.return": {"t": TOKEN}}}).to_string(),
        ))
        .mount(&server)
        .await;
    errors.push(client(config(&server.uri())).login().await.unwrap_err());

    // Logged in; every call fails differently, pages echoing the token.
    let server = MockServer::start().await;
    mount_login(&server, prefixed_login(TOKEN), 1..).await;
    let echo = format!(
        "<html><body><p>java.lang.IllegalStateException: session {TOKEN} busy</p></body></html>"
    );
    Mock::given(method("POST"))
        .and(path(FIND_ALL_IDS))
        .respond_with(html_response(500, &echo))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GET_BY_IDS))
        .respond_with(
            ResponseTemplate::new(401).set_body_string(format!("token {TOKEN} is invalid")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(EVENTS))
        .respond_with(json_response(&format!("{{\"broken\": \"{TOKEN}")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(LOGOUT))
        .respond_with(ResponseTemplate::new(403).set_body_string(TOKEN))
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.max_attempts = 2;
    let c = client(cfg);
    errors.push(c.find_all_ids().await.unwrap_err());
    for (_, r) in c.get_cases(&["a".into(), "b".into()]).await {
        errors.push(r.unwrap_err());
    }
    for e in c.get_security_events(&[1]).await.failed.into_values() {
        errors.push((*e).clone());
    }
    errors.push(c.logout().await.unwrap_err());

    // Timeout and refused connection.
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(&prefixed_login(TOKEN)).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let mut cfg = config(&slow.uri());
    cfg.max_attempts = 1;
    cfg.request_timeout = Duration::from_millis(50);
    errors.push(client(cfg).login().await.unwrap_err());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config(&format!("http://127.0.0.1:{port}"));
    cfg.max_attempts = 1;
    errors.push(client(cfg).login().await.unwrap_err());

    // The paths above were all reached.
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            EsmError::ErrorPage { .. } => "page",
            EsmError::Decode { .. } => "decode",
            EsmError::Unauthorized { .. } => "unauthorized",
            EsmError::Status { .. } => "status",
            EsmError::Transport {
                kind: TransportKind::Timeout,
                ..
            } => "timeout",
            EsmError::Transport { .. } => "transport",
            _ => "other",
        })
        .collect();
    for k in [
        "page",
        "decode",
        "unauthorized",
        "status",
        "timeout",
        "transport",
    ] {
        assert!(kinds.contains(&k), "no {k} error among {kinds:?}");
    }
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(PASSWORD), "password in {text}");
            assert!(!text.contains(TOKEN), "token in {text}");
        }
    }
    // Error pages still name their exception, redacted.
    assert!(
        errors[0].to_string().contains("AuthenticationException"),
        "{}",
        errors[0]
    );

    let captured = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        captured.contains("ESM request"),
        "the capture saw no TRACE lines"
    );
    assert!(!captured.contains(PASSWORD), "password in logs");
    assert!(
        !captured.contains("S3cr3t-Pa55w0rd%21"),
        "encoded password in logs"
    );
    assert!(!captured.contains(TOKEN), "token in logs");
}

// ---- TLS -------------------------------------------------------------------------------

/// An HTTPS server answering every request with the login fixture.
async fn tls_server() -> (u16, String) {
    tls::start(Presents::LeafFromCa, fixture("login.json")).await
}

#[tokio::test]
async fn a_private_ca_file_is_trusted() {
    let (port, ca_pem) = tls_server().await;
    let dir = std::env::temp_dir().join(format!("esm-ca-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let base = format!("https://localhost:{port}");

    // Without the CA the certificate is refused...
    let mut cfg = config(&base);
    cfg.max_attempts = 1;
    let e = client(cfg.clone()).login().await.unwrap_err();
    assert!(matches!(e, EsmError::Transport { .. }), "{e:?}");

    // ...with it, the login goes through.
    cfg.ca_file = Some(ca_file.clone());
    client(cfg.clone()).login().await.unwrap();

    // Verification off: trusted without the CA too.
    cfg.ca_file = None;
    cfg.ssl_verify = false;
    client(cfg).login().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_ca_file_is_a_config_error() {
    let mut cfg = config("https://localhost:1");
    cfg.ca_file = Some(std::path::PathBuf::from("/nonexistent/ca.pem"));
    let e = EsmClient::new(cfg).unwrap_err();
    assert!(matches!(e, EsmError::Config { .. }), "{e:?}");
}

#[tokio::test]
async fn case_and_event_fetches_run_at_most_concurrency_at_a_time() {
    use esm_simulator::{Faults, SimConfig, Simulator};
    // The simulator records how many requests it answered at once; 30 ms each leaves time for
    // every permitted request to overlap.
    let sim = Simulator::start(SimConfig {
        cases: 24,
        events_per_case: 2,
        password: PASSWORD.into(),
        username: USER.into(),
        faults: Faults {
            latency: Duration::from_millis(30),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut cfg = config(sim.base_url().as_str());
    cfg.concurrency = 3;
    cfg.case_batch_size = 2;
    cfg.event_batch_size = 4;
    let c = client(cfg);
    let ids = c.find_all_ids().await.unwrap();
    let cases = c.get_cases(&ids).await;
    assert!(cases.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(sim.max_in_flight(), 3, "12 case batches, 3 at a time");
    let event_ids: Vec<i64> = ids
        .iter()
        .flat_map(|id| sim.case_event_ids(id).unwrap_or_default())
        .collect();
    let events = c.get_security_events(&event_ids).await;
    assert!(events.failed.is_empty());
    assert_eq!(
        sim.max_in_flight(),
        3,
        "event batches stay within the same bound"
    );
    sim.shutdown().await;
}
