//! Publishes 20,000 small messages with confirms to the local broker and prints the rate.
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest): `cargo bench --bench amqp_publish`.
//! `AMQP_BENCH_WINDOW` sets the confirm window (default 1024).

use std::time::{Duration, Instant};

use arcsight_incidents::delivery::{AmqpDelivery, AmqpOptions, split_bundle};
use arcsight_incidents::opencti::MqConnection;
use arcsight_incidents::stix::{Bundle, StixObject, ValueObservable};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

const MESSAGES: u32 = 20_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let window: usize = std::env::var("AMQP_BENCH_WINDOW")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1024);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (exchange, queue, routing) = (
        format!("bench.exchange.{suffix}"),
        format!("bench.queue.{suffix}"),
        format!("bench.routing.{suffix}"),
    );
    let admin = Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await?;
    let ch = admin.create_channel().await?;
    ch.exchange_declare(
        exchange.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        routing.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    let objects = (0..MESSAGES)
        .map(|i| {
            StixObject::Ipv4Addr(ValueObservable {
                spec_version: "2.1".into(),
                id: format!("ipv4-addr--{i:08}"),
                value: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                object_marking_refs: vec![],
                x_opencti_created_by_ref: None,
            })
        })
        .collect();
    let parts = split_bundle(&Bundle::new(objects));
    let mq = MqConnection {
        host: "127.0.0.1".into(),
        port: 5672,
        vhost: "/".into(),
        use_ssl: false,
        user: "guest".into(),
        pass: "guest".into(),
        push_exchange: exchange.clone(),
        push_routing: routing.clone(),
    };
    let opts = AmqpOptions {
        confirm_window: window,
        publish_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
    };
    let d = AmqpDelivery::connect(&mq, "bench-applicant", opts).await?;
    let start = Instant::now();
    let report = d.publish(&parts, Some("bench-work")).await;
    let elapsed = start.elapsed();
    d.close().await?;
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await?;
    admin.close(200, "bye".into()).await?;
    let report = report?;
    println!(
        "amqp_publish: {} messages ({} bytes) confirmed in {:.3}s with window {window}: {:.0} msg/s",
        report.messages,
        report.bytes,
        elapsed.as_secs_f64(),
        report.messages as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
