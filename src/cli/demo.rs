//! `arcsight-incidents demo`: one full import from the embedded ESM simulator into a directory,
//! with no platform and nothing to configure, then a summary a person can read.
//!
//! It runs the same code as the daemon (`import::run_once`, the real ESM client over HTTP, the
//! real converter, the directory delivery); only the platform is replaced by a local tracker.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;

use crate::convert::{ConvertOptions, Converter};
use crate::delivery::{DirectoryDelivery, DirectoryIdentity};
use crate::esm::{EsmClient, EsmConfig};
use crate::import::adapters::LocalTracker;
use crate::import::ports::SharedState;
use crate::import::run::{RunConfig, RunReport, run_once};
use crate::import::state::State;
use crate::stix::Tlp;
use esm_simulator::{SimConfig, Simulator};

/// Options of `demo`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DemoArgs {
    /// Cases in the simulated ESM.
    #[arg(long, default_value_t = 25)]
    pub(crate) cases: usize,
    /// Events of most cases.
    #[arg(long, default_value_t = 4)]
    pub(crate) events_per_case: usize,
    /// Seed of the simulated data set.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Where to write the bundles (default: a new directory under the system's temp dir).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// What the demo did, from the files it wrote (not from the run's own counters).
#[derive(Debug, Default)]
pub(crate) struct DemoSummary {
    pub(crate) report: RunReport,
    pub(crate) out: PathBuf,
    pub(crate) files: Vec<PathBuf>,
    /// Objects written, by STIX type.
    pub(crate) by_type: BTreeMap<String, usize>,
    /// One case rendered for people.
    pub(crate) sample: Option<String>,
}

/// Runs the demo and returns what it wrote.
pub(crate) async fn run(args: &DemoArgs) -> Result<DemoSummary, String> {
    let sim = Simulator::start(SimConfig {
        cases: args.cases,
        events_per_case: args.events_per_case,
        seed: args.seed,
        ..SimConfig::default()
    })
    .await
    .map_err(|e| format!("starting the ESM simulator failed: {e}"))?;
    let out = match &args.out {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!(
            "arcsight-incidents-demo-{}",
            uuid::Uuid::new_v4().simple()
        )),
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    let esm = EsmClient::new(EsmConfig {
        retry_min_wait: Duration::from_millis(200),
        retry_max_wait: Duration::from_secs(5),
        ..EsmConfig::new(
            sim.base_url(),
            SimConfig::default().username,
            SecretString::from(SimConfig::default().password),
        )
    })
    .map_err(|e| format!("ESM client: {e}"))?;
    let converter = Converter::new(ConvertOptions {
        tlp: Tlp::Amber,
        import_observables: true,
    });
    let mut sinks = [DirectoryDelivery::new(
        out.clone(),
        0,
        DirectoryIdentity {
            applicant_id: None,
            connector_id: "demo".into(),
            name: "ArcSight Incidents".into(),
            scope: vec!["arcsight".into()],
            validate_before_import: false,
        },
    )];
    let state = SharedState::new(State::default());
    let cfg = RunConfig {
        max_cases: usize::MAX,
        page_size: 10,
        fetch_chunk: 400,
        friendly_name: "demo".into(),
        verify_period: None,
        verify_batch: 500,
        progress: None,
    };
    let report = run_once(
        &esm,
        &mut sinks,
        &LocalTracker::in_memory(),
        &converter,
        &state,
        &cfg,
        None,
    )
    .await;
    sim.shutdown().await;
    let mut summary = summarise(&out)?;
    summary.report = report;
    Ok(summary)
}

/// Reads back every file in `out` and counts what it holds.
pub(crate) fn summarise(out: &Path) -> Result<DemoSummary, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut by_type = BTreeMap::new();
    let mut objects: HashMap<String, Value> = HashMap::new();
    let mut first_case: Option<Value> = None;
    for f in &files {
        let text = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let file: Value =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        let list = file
            .pointer("/bundle/objects")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{}: no bundle.objects", f.display()))?;
        for o in list {
            let t = o["type"].as_str().unwrap_or("?").to_owned();
            *by_type.entry(t.clone()).or_insert(0) += 1;
            if t == "case-incident"
                && first_case.is_none()
                && o["object_refs"].as_array().is_some_and(|r| r.len() > 1)
            {
                first_case = Some(o.clone());
            }
            if let Some(id) = o["id"].as_str() {
                objects.insert(id.to_owned(), o.clone());
            }
        }
    }
    let sample = first_case.map(|c| render_case(&c, &objects));
    Ok(DemoSummary {
        report: RunReport::default(),
        out: out.to_owned(),
        files,
        by_type,
        sample,
    })
}

fn render_case(case: &Value, objects: &HashMap<String, Value>) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = format!(
        "case \"{}\"  severity {}  priority {}\n",
        s(&case["name"]),
        s(&case["severity"]),
        s(&case["priority"])
    );
    for r in case["object_refs"].as_array().into_iter().flatten() {
        let Some(o) = r.as_str().and_then(|id| objects.get(id)) else {
            continue;
        };
        if o["type"] == "incident" {
            out.push_str(&format!(
                "  incident \"{}\"  ({}, first seen {})\n",
                s(&o["name"]),
                s(&o["severity"]),
                s(&o["first_seen"])
            ));
        }
    }
    out
}

/// Prints the summary for a person.
pub(crate) fn print(summary: &DemoSummary, mut w: impl Write) -> std::io::Result<()> {
    let n = |t: &str| summary.by_type.get(t).copied().unwrap_or(0);
    let observables: usize = summary
        .by_type
        .iter()
        .filter(|(t, _)| {
            !matches!(
                t.as_str(),
                "incident" | "case-incident" | "relationship" | "identity" | "marking-definition"
            )
        })
        .map(|(_, c)| c)
        .sum();
    let r = &summary.report;
    writeln!(
        w,
        "Imported {} of {} cases from the simulated ESM in {:.2} s{}",
        r.cases_delivered,
        r.cases_seen,
        r.seconds,
        match &r.error {
            Some(e) => format!(" (stopped: {e})"),
            None => String::new(),
        }
    )?;
    writeln!(w, "  case-incidents  {}", n("case-incident"))?;
    writeln!(w, "  incidents       {}", n("incident"))?;
    writeln!(w, "  observables     {observables}")?;
    writeln!(w, "  relationships   {}", n("relationship"))?;
    writeln!(
        w,
        "  files written   {} in {}",
        summary.files.len(),
        summary.out.display()
    )?;
    if let Some(sample) = &summary.sample {
        writeln!(w, "\nOne of them:\n{sample}")?;
    }
    Ok(())
}
