//! The GraphQL platform and its live stream on one simulated platform, as a stream connector
//! uses them: registration with the state, pings, an operator's reset from the UI, and the
//! stream on the same URL and token.

use std::time::Duration;

use opencti_client::stream::{LiveStream, StreamConfig, StreamItem, StreamPosition};
use opencti_client::{
    ConnectorInfo, ConnectorRegistration, ConnectorType, OpenCtiClient, OpenCtiConfig,
};
use platform_simulator::{FakePlatform, IndicatorSpec};
use secrecy::SecretString;

const TOKEN: &str = "platform-and-stream-token";

fn info() -> ConnectorInfo {
    ConnectorInfo {
        run_and_terminate: false,
        buffering: false,
        queue_threshold: 500.0,
        queue_messages_size: 0.0,
        next_run_datetime: None,
        last_run_datetime: None,
    }
}

#[tokio::test]
async fn a_stream_connector_registers_pings_its_position_and_sees_a_reset() {
    let p = FakePlatform::start_with_stream("127.0.0.1:0".parse().unwrap(), TOKEN, "live", 5)
        .await
        .unwrap();
    p.live.set_heartbeat(Some(Duration::from_millis(50)));
    let url = url::Url::parse(&p.url()).unwrap();
    let client = OpenCtiClient::new(OpenCtiConfig {
        url: url.clone(),
        token: SecretString::from(TOKEN),
        ssl_verify: true,
        ca_files: Vec::new(),
        custom_headers: Vec::new(),
        timeout: Duration::from_secs(10),
        max_response_bytes: 1 << 20,
    })
    .unwrap();
    let reg = ConnectorRegistration {
        id: "c0ffee00-0000-4000-8000-000000000001".into(),
        name: "ArcSight stream".into(),
        connector_type: ConnectorType::Stream,
        scope: vec!["indicator".into()],
    };
    let r = client.register(&reg).await.unwrap();
    assert_eq!(r.connector_state, None, "a first run");

    // A first run reads the seeded indicators through recovery.
    let first = StreamPosition::first_run(chrono::Utc::now());
    let mut s = LiveStream::start(
        StreamConfig::new(url.clone(), SecretString::from(TOKEN), "live"),
        Some(first.clone()),
    )
    .unwrap();
    let mut last = String::new();
    let mut n = 0;
    while n < 5 {
        let item = tokio::time::timeout(Duration::from_secs(10), s.recv())
            .await
            .expect("recovery in time")
            .unwrap();
        if let StreamItem::Event { id, data, .. } = item {
            if data.contains("\"type\":\"indicator\"") {
                n += 1;
                last = id;
            }
        }
    }
    s.shutdown().await;
    assert_eq!(p.live.counters().recovered_sent, 5);

    // The position goes to the platform in pycti's keys, and comes back at registration.
    let mut state = serde_json::json!({});
    StreamPosition {
        start_from: Some(last.clone()),
        recover_until: first.recover_until.clone(),
    }
    .write_to(&mut state);
    let t0 = client
        .ping(&reg.id, Some(state.to_string()), &info())
        .await
        .unwrap()
        .state_timestamp;
    let r = client.register(&reg).await.unwrap();
    let back: serde_json::Value =
        serde_json::from_str(r.connector_state.as_deref().unwrap()).unwrap();
    assert_eq!(
        StreamPosition::from_state(&back).unwrap().start_from,
        Some(last)
    );

    // An operator's reset: empty at once for a restarted connector, and the next ping says so.
    p.reset_state_from_ui();
    assert_eq!(client.register(&reg).await.unwrap().connector_state, None);
    let t1 = client
        .ping(&reg.id, Some(state.to_string()), &info())
        .await
        .unwrap()
        .state_timestamp;
    assert_ne!(t0, t1, "the reset's mark moved");
    assert_eq!(
        p.recorded(|r| r.connector_state.clone()),
        Some(String::new())
    );
    // The stream still answers on the same port; the GraphQL documents were all valid.
    p.live.create_indicator(IndicatorSpec::ipv4("203.0.113.7"));
    assert!(p.recorded(|r| r.invalid_documents.is_empty()));
}
