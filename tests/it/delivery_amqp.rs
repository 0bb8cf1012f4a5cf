//! AMQP delivery against the real RabbitMQ on 127.0.0.1:5672 (guest/guest). Each test
//! declares its own exchange and queue (random names) and deletes them at the end.

use std::time::Duration;

use arcsight_incidents::delivery::{AmqpDelivery, AmqpOptions, DeliveryError, Sink};
use arcsight_incidents::stix::{
    Bundle, CaseIncident, Identity, Incident, Relationship, StixObject, Tlp, ValueObservable,
};
use base64::Engine;
use serde_json::Value;

use crate::common;

use common::amqp::{Topology, mq};

fn opts(window: usize) -> AmqpOptions {
    AmqpOptions {
        confirm_window: window,
        publish_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        ..AmqpOptions::default()
    }
}

const AUTHOR: &str = "identity--author";
const INCIDENT: &str = "incident--1";
const IP: &str = "ipv4-addr--1";
const REL: &str = "relationship--1";
const CASE: &str = "case-incident--1";

/// Listed out of dependency order on purpose, with two dangling references.
fn bundle() -> Bundle {
    let marking = Tlp::Amber.marking();
    let mut author = Identity::arcsight_author();
    author.id = AUTHOR.into();
    let refs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let case = CaseIncident {
        spec_version: "2.1".into(),
        id: CASE.into(),
        created_by_ref: Some(AUTHOR.into()),
        created: "2024-01-01T00:00:00.000Z".into(),
        modified: "2024-01-01T00:00:00.000Z".into(),
        name: "case".into(),
        description: None,
        severity: None,
        priority: None,
        external_references: vec![],
        // `incident--missing` is not in the bundle: the reference must be dropped.
        object_refs: refs(&[INCIDENT, REL, "incident--missing"]),
        object_marking_refs: refs(&[marking.id.as_str()]),
    };
    let rel = |id: &str, target: &str| Relationship {
        spec_version: "2.1".into(),
        id: id.into(),
        created_by_ref: Some(AUTHOR.into()),
        created: None,
        modified: None,
        relationship_type: "related-to".into(),
        source_ref: INCIDENT.into(),
        target_ref: target.into(),
        object_marking_refs: refs(&[marking.id.as_str()]),
    };
    let incident = Incident {
        spec_version: "2.1".into(),
        id: INCIDENT.into(),
        created_by_ref: Some(AUTHOR.into()),
        created: "2024-01-01T00:00:00.000Z".into(),
        modified: "2024-01-01T00:00:00.000Z".into(),
        name: "incident".into(),
        description: None,
        first_seen: None,
        last_seen: None,
        external_references: vec![],
        object_marking_refs: refs(&[marking.id.as_str()]),
        incident_type: Some("alert".into()),
        severity: None,
        source: None,
    };
    let ip = ValueObservable {
        spec_version: "2.1".into(),
        id: IP.into(),
        value: "10.0.0.1".into(),
        object_marking_refs: refs(&[marking.id.as_str()]),
        x_opencti_created_by_ref: Some(AUTHOR.into()),
    };
    Bundle::with_id(
        "bundle--7d3f1f4e-0c1e-4a53-9a57-0a0c4bb2f0a1".into(),
        vec![
            StixObject::CaseIncident(case),
            StixObject::Relationship(rel(REL, IP)),
            // Its target is absent: this relationship must not be sent.
            StixObject::Relationship(rel("relationship--dangling", "ipv4-addr--absent")),
            StixObject::Incident(incident),
            StixObject::Ipv4Addr(ip),
            StixObject::Identity(author),
            StixObject::MarkingDefinition(marking),
        ],
    )
}

#[tokio::test]
async fn a_bundle_round_trips_through_the_broker_in_dependency_order() {
    let t = Topology::new().await;
    let marking_id = Tlp::Amber.marking_id();
    // nb_deps by the protocol's rule (1 + the sum over referenced objects in the bundle):
    // author 1, marking 1; incident and ip reference both: 3 each; the relationship
    // references author, marking, incident, ip: 1+1+1+3+3 = 9; the case references author,
    // marking, incident, relationship: 1+1+1+3+9 = 15. Equal depths keep bundle order
    // (incident before ip, author before marking).
    let expected: Vec<(&str, u64)> = vec![
        (AUTHOR, 1),
        (marking_id, 1),
        (INCIDENT, 3),
        (IP, 3),
        (REL, 9),
        (CASE, 15),
    ];
    let b = bundle();
    // A window smaller than the message count: confirms overlap and are settled in turn.
    let mut d = AmqpDelivery::connect(&mq(&t.exchange, &t.routing), "applicant-88ec", opts(2))
        .await
        .unwrap();
    assert_eq!(d.expectations(&b), expected.len() as u64);
    let report = d.deliver(&b, Some("work-42")).await.unwrap();
    assert_eq!(report.messages, expected.len() as u64);
    d.close().await.unwrap();

    let messages = t.drain().await;
    assert_eq!(messages.len(), expected.len());
    let mut total_bytes = 0;
    for (i, ((body, props), (want_id, want_seq))) in messages.iter().zip(&expected).enumerate() {
        total_bytes += serde_json::to_vec(body).unwrap().len();
        assert_eq!(body["bundle_type"], "QUEUE_BUNDLE");
        assert_eq!(body["applicant_id"], "applicant-88ec");
        assert_eq!(body["action_sequence"], (i + 1) as u64);
        assert_eq!(body["entities_types"], serde_json::json!([]));
        assert_eq!(body["update"], false);
        assert!(body["draft_id"].is_null());
        assert_eq!(body["work_id"], "work-42");
        assert_eq!(props.delivery_mode(), &Some(2));
        assert_eq!(
            props.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            props.content_encoding().as_ref().map(|s| s.as_str()),
            Some("utf-8")
        );
        let content = base64::engine::general_purpose::STANDARD
            .decode(body["content"].as_str().unwrap())
            .unwrap();
        let split: Value = serde_json::from_slice(&content).unwrap();
        assert_eq!(split["type"], "bundle");
        assert_eq!(
            split["id"],
            b.id.as_str(),
            "every split bundle keeps the run's bundle id"
        );
        assert_eq!(split["spec_version"], "2.1");
        assert_eq!(split["x_opencti_seq"], *want_seq, "{want_id}");
        let objects = split["objects"].as_array().unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0]["id"], *want_id);
        // No reference to anything outside the bundle survives.
        let text = objects[0].to_string();
        assert!(
            !text.contains("missing") && !text.contains("absent"),
            "{text}"
        );
    }
    assert_eq!(
        report.bytes, total_bytes as u64,
        "bytes are the message bodies"
    );
    // The sent case kept its references to what is in the bundle.
    let case: Value = {
        let content = base64::engine::general_purpose::STANDARD
            .decode(messages[5].0["content"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&content).unwrap()
    };
    assert_eq!(
        case["objects"][0]["object_refs"],
        serde_json::json!([INCIDENT, REL])
    );
    t.drop_all().await;
}

#[tokio::test]
async fn a_missing_exchange_fails_the_delivery() {
    let t = Topology::new().await;
    let missing = format!("{}.missing", t.exchange);
    let mut d = AmqpDelivery::connect(&mq(&missing, &t.routing), "a", opts(8))
        .await
        .unwrap();
    let err = d.deliver(&bundle(), Some("w")).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Publish { .. }), "{err:?}");
    assert!(
        err.to_string().contains("NOT_FOUND") || err.to_string().contains("404"),
        "{err}"
    );
    let _ = d.close().await;
    assert!(t.drain().await.is_empty());
    t.drop_all().await;
}

#[tokio::test]
async fn an_unroutable_key_fails_the_delivery() {
    let t = Topology::new().await;
    let mut d = AmqpDelivery::connect(&mq(&t.exchange, "no-queue-bound-to-this"), "a", opts(8))
        .await
        .unwrap();
    let err = d.deliver(&bundle(), Some("w")).await.unwrap_err();
    match &err {
        DeliveryError::Unroutable {
            action_sequence,
            reply_code,
            ..
        } => {
            assert_eq!(*action_sequence, 1, "the first message already fails");
            assert_eq!(*reply_code, 312, "AMQP NO_ROUTE");
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    assert!(!err.is_transient());
    d.close().await.unwrap();
    t.drop_all().await;
}

#[tokio::test]
async fn an_unreachable_broker_fails_fast_with_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut conn = mq("x", "y");
    conn.port = port;
    // A generous timeout: a refused connection must not wait for it.
    let err = AmqpDelivery::connect(
        &conn,
        "a",
        AmqpOptions {
            connect_timeout: Duration::from_secs(60),
            ..opts(1)
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DeliveryError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[tokio::test]
async fn refused_credentials_fail_without_leaking_the_password() {
    let mut conn = mq("x", "y");
    conn.pass = "wrong-password-1234".into();
    let err = AmqpDelivery::connect(&conn, "a", opts(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Connect { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-password-1234"), "{text}");
}

#[tokio::test]
async fn a_message_the_broker_refuses_fails_the_delivery() {
    // The queue takes two messages and the broker nacks the rest (reject-publish).
    let t = Topology::refusing_after(2).await;
    let mut d = AmqpDelivery::connect(&mq(&t.exchange, &t.routing), "a", opts(8))
        .await
        .unwrap();
    let err = d.deliver(&bundle(), Some("w")).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Nack { action_sequence: 3 }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "RabbitMQ refused message 3 (nack)");
    let _ = d.close().await;
    assert_eq!(t.drain().await.len(), 2);
    t.drop_all().await;
}

#[tokio::test]
async fn a_message_far_larger_than_one_frame_arrives_whole() {
    // The connection asks for small frames (32 KiB, to keep lapin's buffers small): an
    // incident with a description near the 1 MiB field limit is split into dozens of body
    // frames and must reach the queue intact.
    let t = Topology::new().await;
    let description: String = (0..900_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut b = bundle();
    for o in &mut b.objects {
        if let StixObject::Incident(i) = o {
            i.description = Some(description.clone());
        }
    }
    let mut d = AmqpDelivery::connect(&mq(&t.exchange, &t.routing), "applicant-big", opts(8))
        .await
        .unwrap();
    d.deliver(&b, None).await.unwrap();
    d.close().await.unwrap();
    let messages = t.drain().await;
    let incident = messages
        .iter()
        .map(|(body, _)| {
            let content = base64::engine::general_purpose::STANDARD
                .decode(body["content"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice::<Value>(&content).unwrap()
        })
        .find(|split| split["objects"][0]["id"] == INCIDENT)
        .expect("the incident's message");
    assert_eq!(
        incident["objects"][0]["description"].as_str().map(str::len),
        Some(description.len())
    );
    assert_eq!(incident["objects"][0]["description"], description.as_str());
    t.drop_all().await;
}
