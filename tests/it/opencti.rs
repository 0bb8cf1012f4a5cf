//! The platform client against a simulated platform (wiremock) and the platform's schema.

use std::time::Duration;

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use arcsight_incidents::opencti::{
    ConnectorInfo, ConnectorRegistration, ConnectorType, DOCUMENTS, MqOverrides, OpenCtiClient,
    OpenCtiConfig, OpenCtiError, TransportKind,
};
use chrono::TimeZone;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "0d5c4d6e-token-never-in-errors";

fn schema() -> Valid<Schema> {
    let sdl = crate::common::data::read(crate::common::data::SCHEMA);
    Schema::parse_and_validate(sdl, "opencti.graphql").expect("the platform schema is valid")
}

fn client_for(server: &MockServer, base_suffix: &str) -> OpenCtiClient {
    let url = url::Url::parse(&format!("{}{base_suffix}", server.uri())).unwrap();
    OpenCtiClient::new(OpenCtiConfig {
        url,
        token: SecretString::from(TOKEN),
        ssl_verify: true,
        ca_files: vec![],
        custom_headers: vec![("X-Tenant".into(), "blue".into())],
        timeout: Duration::from_secs(5),
        max_response_bytes: 8 * 1024 * 1024,
    })
    .unwrap()
}

/// A mock that only answers requests carrying the token and the given operation.
fn platform(operation_fragment: &str) -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(QueryContains(operation_fragment.to_owned()))
}

struct QueryContains(String);
impl wiremock::Match for QueryContains {
    fn matches(&self, request: &wiremock::Request) -> bool {
        serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|v| v.get("query")?.as_str().map(|q| q.contains(&self.0)))
            .unwrap_or(false)
    }
}

fn info() -> ConnectorInfo {
    ConnectorInfo {
        run_and_terminate: false,
        buffering: false,
        queue_threshold: 500.0,
        queue_messages_size: 0.0,
        next_run_datetime: Some(chrono::Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()),
        last_run_datetime: None,
    }
}

#[test]
fn every_document_validates_against_the_platform_schema() {
    let schema = schema();
    assert!(
        DOCUMENTS.len() >= 9,
        "health, register, ping, 4 work calls, push, queue"
    );
    for (i, doc) in DOCUMENTS.iter().enumerate() {
        if let Err(e) =
            ExecutableDocument::parse_and_validate(&schema, *doc, format!("doc{i}.graphql"))
        {
            panic!("document {i} does not validate:\n{}\n{doc}", e.errors);
        }
    }
}

/// Variables are not checked by document validation: compare the input objects the client
/// actually sends with the input types of the schema.
#[tokio::test]
async fn input_objects_use_only_fields_the_schema_declares() {
    let schema = schema();
    let fields_of = |ty: &str| -> Vec<String> {
        schema
            .get_input_object(ty)
            .unwrap_or_else(|| panic!("{ty} is in the schema"))
            .fields
            .keys()
            .map(|k| k.to_string())
            .collect()
    };
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": null, "errors": [{"message": "x"}]})),
        )
        .mount(&server)
        .await;
    let client = client_for(&server, "");
    let reg = ConnectorRegistration {
        id: "c1".into(),
        name: "ArcSight Incidents".into(),
        connector_type: ConnectorType::ExternalImport,
        scope: vec!["incident".into()],
    };
    let _ = client.register(&reg).await;
    let _ = client.ping("c1", Some("{}".into()), &info()).await;
    let requests = server.received_requests().await.unwrap();
    let vars: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["variables"].clone())
        .collect();
    for (obj, ty) in [
        (&vars[0]["input"], "RegisterConnectorInput"),
        (&vars[1]["connectorInfo"], "ConnectorInfoInput"),
    ] {
        let allowed = fields_of(ty);
        let sent = obj
            .as_object()
            .unwrap_or_else(|| panic!("{ty} sent as an object"));
        for key in sent.keys() {
            assert!(allowed.contains(key), "{ty} has no field {key}");
        }
    }
}

/// The stream connector registers through the same call with its own type (the literal was
/// `EXTERNAL_IMPORT` before the type became a parameter).
#[tokio::test]
async fn register_declares_the_type_it_is_given() {
    let server = MockServer::start().await;
    platform("registerConnector")
        .and(body_partial_json(
            json!({"variables": {"input": {"id": "s1", "type": "STREAM"}}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": null})))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server, "");
    let _ = client
        .register(&ConnectorRegistration {
            id: "s1".into(),
            name: "ArcSight Stream".into(),
            connector_type: ConnectorType::Stream,
            scope: vec!["indicator".into()],
        })
        .await;
    server.verify().await;
}

#[tokio::test]
async fn health_sends_token_user_agent_and_custom_headers_to_one_graphql_path() {
    let server = MockServer::start().await;
    platform("about")
        .and(header(
            "user-agent",
            concat!("arcsight-incidents/", env!("CARGO_PKG_VERSION")),
        ))
        .and(header("x-tenant", "blue"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"about": {"version": "6.8.12"}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    // A trailing slash must not produce `//graphql` (the mock only answers `/graphql`).
    let client = client_for(&server, "/");
    assert_eq!(client.health().await.unwrap(), "6.8.12");
    server.verify().await;
}

#[tokio::test]
async fn register_declares_an_external_import_and_returns_the_broker() {
    let server = MockServer::start().await;
    platform("registerConnector")
        .and(body_partial_json(json!({"variables": {"input": {
            "id": "5c7e3b0a-connector", "name": "ArcSight Incidents", "type": "EXTERNAL_IMPORT",
            "scope": ["incident", "case-incident"], "auto": false,
            "only_contextual": false, "playbook_compatible": false}}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"registerConnector": {
            "id": "5c7e3b0a-connector",
            "connector_state": "{\"last_case_modified\": 1700000000000}",
            "connector_state_timestamp": "2026-12-01T10:00:00.000Z",
            "config": {
                "connection": {"host": "rabbitmq", "vhost": "/", "use_ssl": false, "port": 5672,
                               "user": "opencti", "pass": "mq-secret"},
                "listen": "listen_5c7e3b0a-connector", "listen_routing": "listen_routing_5c7e3b0a-connector",
                "listen_exchange": "amqp.connector.exchange",
                "push": "push_5c7e3b0a-connector", "push_routing": "push_routing_5c7e3b0a-connector",
                "push_exchange": "amqp.worker.exchange"},
            "connector_user_id": "88ec0c6a-user"}}})))
        .expect(1)
        .mount(&server)
        .await;
    let client = client_for(&server, "");
    let reg = client
        .register(&ConnectorRegistration {
            id: "5c7e3b0a-connector".into(),
            name: "ArcSight Incidents".into(),
            connector_type: ConnectorType::ExternalImport,
            scope: vec!["incident".into(), "case-incident".into()],
        })
        .await
        .unwrap();
    assert_eq!(reg.connector_user_id, "88ec0c6a-user");
    assert_eq!(
        reg.connector_state.as_deref(),
        Some("{\"last_case_modified\": 1700000000000}")
    );
    assert_eq!(
        reg.state_timestamp.as_deref(),
        Some("2026-12-01T10:00:00.000Z")
    );
    let mut mq = reg.mq;
    assert_eq!(
        (mq.host.as_str(), mq.port, mq.vhost.as_str(), mq.use_ssl),
        ("rabbitmq", 5672, "/", false)
    );
    assert_eq!(mq.push_exchange, "amqp.worker.exchange");
    assert_eq!(mq.push_routing, "push_routing_5c7e3b0a-connector");
    assert!(
        !format!("{mq:?}").contains("mq-secret"),
        "the MQ password is not in Debug"
    );
    mq.apply_overrides(&MqOverrides {
        host: Some("10.1.2.3".into()),
        port: Some(5671),
        use_ssl: Some(true),
        pass: Some("override".into()),
        ..MqOverrides::default()
    });
    assert_eq!(
        (mq.host.as_str(), mq.port, mq.use_ssl, mq.user.as_str()),
        ("10.1.2.3", 5671, true, "opencti")
    );
    assert_eq!(mq.pass.expose_secret(), "override");
    server.verify().await;
}

#[tokio::test]
async fn ping_sends_state_and_info_and_returns_the_reset_mark_not_the_state() {
    let server = MockServer::start().await;
    platform("pingConnector")
        .and(body_partial_json(
            json!({"variables": {"id": "c1", "state": "{\"a\":1}", "connectorInfo": {
            "run_and_terminate": false, "buffering": false, "queue_threshold": 500.0,
            "queue_messages_size": 0.0, "next_run_datetime": "2026-03-04T05:06:07Z",
            "last_run_datetime": null}}}),
        ))
        .and(SelectsNoState)
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"pingConnector": {
            "id": "c1", "connector_state_timestamp": "2026-12-07T08:00:00.000Z",
            "connector_info": null}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let answer = client_for(&server, "")
        .ping("c1", Some("{\"a\":1}".into()), &info())
        .await
        .unwrap();
    assert_eq!(
        answer.state_timestamp.as_deref(),
        Some("2026-12-07T08:00:00.000Z")
    );
    server.verify().await;
}

/// The query does not select `connector_state` itself (its echo is the whole state).
struct SelectsNoState;
impl wiremock::Match for SelectsNoState {
    fn matches(&self, request: &wiremock::Request) -> bool {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let query = body["query"].as_str().unwrap_or_default();
        !query
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == "connector_state")
    }
}

#[tokio::test]
async fn a_registration_whose_state_is_beyond_the_answer_limit_is_read_whole() {
    // 9 MiB of state, beyond the 8 MiB every other answer may take.
    let state = format!("{{\"version\":2,\"ledger\":\"{}\"}}", "A".repeat(9 << 20));
    let server = MockServer::start().await;
    platform("registerConnector")
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"registerConnector": {
            "id": "c1", "connector_state": state, "connector_state_timestamp": null,
            "config": {
                "connection": {"host": "rabbitmq", "vhost": "/", "use_ssl": false, "port": 5672,
                               "user": "opencti", "pass": "mq-secret"},
                "listen": null, "listen_routing": null, "listen_exchange": null,
                "push": "push_c1", "push_routing": "push_routing_c1",
                "push_exchange": "amqp.worker.exchange"},
            "connector_user_id": "88ec0c6a-user"}}}),
        ))
        .mount(&server)
        .await;
    platform("healthCheck")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"about": {"version": "x".repeat(9 << 20)}}})),
        )
        .mount(&server)
        .await;
    let client = client_for(&server, "");
    let reg = client
        .register(&ConnectorRegistration {
            id: "c1".into(),
            name: "ArcSight Incidents".into(),
            connector_type: ConnectorType::ExternalImport,
            scope: vec!["case-incident".into()],
        })
        .await
        .unwrap();
    assert_eq!(reg.connector_state.as_deref(), Some(state.as_str()));
    // Every other answer keeps the configured limit.
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, OpenCtiError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn work_lifecycle_calls_send_the_documented_variables() {
    let server = MockServer::start().await;
    platform("workAdd(")
        .and(body_partial_json(
            json!({"variables": {"connectorId": "c1", "friendlyName": "run 1"}}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"workAdd": {"id": "work-1"}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    platform("addExpectations(")
        .and(body_partial_json(
            json!({"variables": {"id": "work-1", "expectations": 7}}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"workEdit": {"addExpectations": "work-1"}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    platform("toProcessed")
        .and(body_partial_json(
            json!({"variables": {"id": "work-1", "message": "done", "inError": true}}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"workEdit": {"toProcessed": "work-1"}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client_for(&server, "");
    let work = c.work_add("c1", "run 1").await.unwrap();
    assert_eq!(work, "work-1");
    c.work_add_expectations(&work, 7).await.unwrap();
    c.work_to_processed(&work, "done", true).await.unwrap();
    server.verify().await;
}

#[tokio::test]
async fn bundle_push_and_queue_details() {
    let server = MockServer::start().await;
    let bundle = r#"{"type":"bundle","id":"bundle--1","objects":[]}"#;
    platform("stixBundlePush(")
        .and(body_partial_json(
            json!({"variables": {"connectorId": "c1", "bundle": bundle, "work_id": "w"}}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"stixBundlePush": true}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    platform("connector_queue_details")
        .and(body_partial_json(json!({"variables": {"id": "c1"}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"connector": {
            "id": "c1", "connector_queue_details": {"messages_number": 12.0, "messages_size": 524288000.0}}}})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client_for(&server, "");
    c.stix_bundle_push("c1", bundle, Some("w")).await.unwrap();
    let q = c.queue_details("c1").await.unwrap();
    assert_eq!(
        (q.messages_number, q.messages_size),
        (12, 500 * 1024 * 1024)
    );
    server.verify().await;
}

#[tokio::test]
async fn graphql_errors_are_typed_and_carry_no_token() {
    let server = MockServer::start().await;
    // What the platform answers to a bad token: HTTP 200 with an errors array.
    platform("workAdd(")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "errors": [{"message": "You must be logged in to do this.", "name": "AUTH_REQUIRED",
                        "extensions": {"code": "AUTH_REQUIRED"}}],
            "data": {"workAdd": null}})))
        .mount(&server)
        .await;
    platform("about")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "errors": [{"message": "Lock timeout", "extensions": {"code": "LOCK_ERROR"}}], "data": null})))
        .mount(&server)
        .await;
    let c = client_for(&server, "");
    let err = c.work_add("c1", "x").await.unwrap_err();
    match &err {
        OpenCtiError::GraphQl { operation, errors } => {
            assert_eq!(*operation, "workAdd");
            assert_eq!(errors[0].code.as_deref(), Some("AUTH_REQUIRED"));
        }
        other => panic!("expected a GraphQL error, got {other:?}"),
    }
    assert!(!err.is_transient());
    let err = c.health().await.unwrap_err();
    assert!(err.is_transient(), "a lock error is worth a retry: {err}");
    for text in [err.to_string(), format!("{err:?}"), format!("{c:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
    }
}

#[tokio::test]
async fn non_200_answers_are_typed_and_redact_an_echoed_token() {
    let server = MockServer::start().await;
    platform("about")
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_string(format!("upstream down; saw Bearer {TOKEN}")),
        )
        .mount(&server)
        .await;
    platform("workAdd(")
        .respond_with(ResponseTemplate::new(401).set_body_string("nope"))
        .mount(&server)
        .await;
    let c = client_for(&server, "");
    let err = c.health().await.unwrap_err();
    assert!(
        matches!(err, OpenCtiError::Status { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(!err.to_string().contains(TOKEN) && !format!("{err:?}").contains(TOKEN));
    // The body is never copied (issue 14): only the status, and a GraphQL error's code and
    // message when the body holds one.
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert!(!err.to_string().contains("upstream down"), "{err}");
    let err = c.work_add("c1", "x").await.unwrap_err();
    assert!(
        matches!(err, OpenCtiError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_unreachable_platform_is_a_transient_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = OpenCtiClient::new(OpenCtiConfig {
        url: url::Url::parse(&format!("http://user:pw-in-url@127.0.0.1:{port}/?k=secret")).unwrap(),
        token: SecretString::from(TOKEN),
        ssl_verify: false,
        ca_files: vec![],
        custom_headers: vec![],
        timeout: Duration::from_secs(5),
        max_response_bytes: 8 * 1024 * 1024,
    })
    .unwrap();
    let err = c.health().await.unwrap_err();
    assert!(
        matches!(
            err,
            OpenCtiError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    let text = format!("{err} {err:?}");
    for secret in [TOKEN, "pw-in-url", "k=secret"] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn an_invalid_custom_header_is_a_config_error_without_its_value() {
    let err = OpenCtiClient::new(OpenCtiConfig {
        url: url::Url::parse("http://octi").unwrap(),
        token: SecretString::from(TOKEN),
        ssl_verify: true,
        ca_files: vec![],
        custom_headers: vec![("X-Key".into(), "bad\nvalue-secret".into())],
        timeout: Duration::from_secs(5),
        max_response_bytes: 8 * 1024 * 1024,
    })
    .unwrap_err();
    assert!(matches!(err, OpenCtiError::Config { .. }));
    assert!(!err.to_string().contains("value-secret"));
}
