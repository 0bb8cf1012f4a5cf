//! Converter throughput on the simulator's data set: events per second for the full
//! conversion of cases (ids, observables, relationships) and the serialisation of the bundle,
//! on one core. Goal: >= 100,000 events/s.
//!
//! `cargo bench --bench convert`

use std::hint::black_box;

use arcsight_incidents::convert::{ConvertOptions, Converter};
use arcsight_incidents::esm::model::{Case, SecurityEvent};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use esm_simulator::dataset;
use serde_json::Value;

const CASES: usize = 200;
const EVENTS_PER_CASE: usize = 5;

/// Raw answers as ESM sends them: each case with its events.
fn raw() -> Vec<(Value, Vec<Value>)> {
    let data = dataset(7, CASES, EVENTS_PER_CASE);
    data.case_ids()
        .iter()
        .map(|id| {
            let case = data.case_json(id).expect("case");
            let events = data.events_json(&data.case_event_ids(id).unwrap_or_default());
            (case, events)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let raw = raw();
    let events: usize = raw.iter().map(|(_, e)| e.len()).sum();
    let decoded: Vec<(Case, Vec<SecurityEvent>)> = raw
        .iter()
        .map(|(c, e)| {
            (
                Case::from_value(c).expect("case decodes"),
                e.iter().filter_map(SecurityEvent::from_value).collect(),
            )
        })
        .collect();
    let converter = Converter::new(ConvertOptions::default());

    let mut g = c.benchmark_group("convert");
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("cases to serialised bundles (observables on)", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (case, events) in &decoded {
                let bundle = converter.case_bundle(case, events);
                bytes += serde_json::to_vec(&bundle).expect("serialises").len();
            }
            black_box(bytes)
        })
    });
    g.bench_function("ESM JSON to serialised bundles (decoding included)", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (case, events) in &raw {
                let case = Case::from_value(case).expect("case decodes");
                let events: Vec<SecurityEvent> = events
                    .iter()
                    .filter_map(SecurityEvent::from_value)
                    .collect();
                let bundle = converter.case_bundle(&case, &events);
                bytes += serde_json::to_vec(&bundle).expect("serialises").len();
            }
            black_box(bytes)
        })
    });
    let no_observables = Converter::new(ConvertOptions {
        import_observables: false,
        ..ConvertOptions::default()
    });
    g.bench_function("cases to serialised bundles (observables off)", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for (case, events) in &decoded {
                let bundle = no_observables.case_bundle(case, events);
                bytes += serde_json::to_vec(&bundle).expect("serialises").len();
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
