//! Publishes 20,000 small messages with confirms to the local broker and prints the rate.
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest): `cargo bench --bench amqp_publish`.
//! `AMQP_BENCH_WINDOW` sets the confirm window (default 1024).

#[allow(dead_code)]
#[path = "../tests/it/common/amqp.rs"]
mod amqp;

use std::time::{Duration, Instant};

use arcsight_incidents::delivery::{AmqpDelivery, AmqpOptions, Sink, split_bundle};
use arcsight_incidents::stix::{Bundle, StixObject, ValueObservable};

use amqp::{Topology, mq};

const MESSAGES: u32 = 20_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let window: usize = std::env::var("AMQP_BENCH_WINDOW")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1024);
    let topo = Topology::new().await;

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
    let opts = AmqpOptions {
        confirm_window: window,
        publish_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(10),
        ..AmqpOptions::default()
    };
    let mut d =
        AmqpDelivery::connect(&mq(&topo.exchange, &topo.routing), "bench-applicant", opts).await?;
    let start = Instant::now();
    let report = d.publish(&parts, Some("bench-work")).await;
    let elapsed = start.elapsed();
    d.close().await?;
    topo.drop_all().await;
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
