//! The daemon end to end: the ESM simulator, a simulated OpenCTI platform (every GraphQL
//! document validated against the real schema) and the real RabbitMQ on 127.0.0.1:5672.
//!
//! Each `run()` is one process life with `CONNECTOR_RUN_AND_TERMINATE=true`: the state the next
//! run starts from is the one the platform kept, as after a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arcsight_incidents::convert::{ConvertOptions, Converter};
use arcsight_incidents::esm::model::{Case, SecurityEvent};
use arcsight_incidents::metrics::Metrics;
use arcsight_incidents::settings::{Settings, Sources};
use arcsight_incidents::simulator::{Faults, SimConfig, Simulator};
use arcsight_incidents::stix::StixObject;
use arcsight_incidents::sync::daemon::run_daemon;
use arcsight_incidents::sync::schedule::{Shutdown, shutdown_pair};
use base64::Engine;
use serde_json::{Value, json};

use common::amqp::Topology;
use common::fake_platform::FakePlatform;
use common::logs::{Logs, capture};

const ESM_PASSWORD: &str = "Esm-Secret-Pa55-QUUX";
const OPENCTI_TOKEN: &str = "0pencti-token-XYZZY-8f2c";
const CONNECTOR_ID: &str = "0b3bd5a4-7c1e-4a55-9d0e-3f6f2a1c9e77";

/// One connector deployment: its ESM, its platform and its queue.
struct Env {
    sim: Simulator,
    platform: FakePlatform,
    topo: Topology,
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
    extra: Vec<(&'static str, String)>,
    unset: Vec<&'static str>,
}

/// What one process life did, as seen from outside.
struct Run {
    succeeded: bool,
    /// One object per AMQP message, in queue order.
    objects: Vec<Value>,
    /// The works the platform saw created during this run.
    new_works: Vec<common::fake_platform::Work>,
}

impl Run {
    fn case_ids(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .filter(|o| o["type"] == "case-incident")
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn case_count(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o["type"] == "case-incident")
            .count()
    }
}

impl Env {
    async fn start(cases: usize, events_per_case: usize) -> Env {
        let (logs, guard) = capture();
        let sim = Simulator::start(SimConfig {
            cases,
            events_per_case,
            password: ESM_PASSWORD.into(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let topo = Topology::new().await;
        let platform = FakePlatform::start(OPENCTI_TOKEN, Self::mq_config(&topo, 5672)).await;
        Env {
            sim,
            platform,
            topo,
            logs,
            _guard: guard,
            extra: Vec::new(),
            unset: Vec::new(),
        }
    }

    /// What `registerConnector` answers: the broker and the push exchange and routing key.
    fn mq_config(topo: &Topology, port: u16) -> Value {
        json!({
            "connection": {"host": "127.0.0.1", "port": port, "vhost": "/", "use_ssl": false,
                           "user": "guest", "pass": "guest"},
            "listen": "listen", "listen_routing": "listen_routing", "listen_exchange": "amq.direct",
            "push": topo.queue, "push_routing": topo.routing, "push_exchange": topo.exchange,
        })
    }

    fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.extra.retain(|(n, _)| *n != name);
        self.extra.push((name, value.into()));
    }

    fn settings(&self) -> Settings {
        let mut env: HashMap<String, String> = [
            ("OPENCTI_URL", self.platform.url()),
            ("OPENCTI_TOKEN", OPENCTI_TOKEN.into()),
            ("CONNECTOR_ID", CONNECTOR_ID.into()),
            ("CONNECTOR_RUN_AND_TERMINATE", "true".into()),
            ("CONNECTOR_LOG_LEVEL", "debug".into()),
            (
                "ARCSIGHT_INCIDENTS_API_BASE_URL",
                self.sim.base_url().to_string(),
            ),
            ("ARCSIGHT_INCIDENTS_USERNAME", "admin".into()),
            ("ARCSIGHT_INCIDENTS_PASSWORD", ESM_PASSWORD.into()),
            ("ARCSIGHT_INCIDENTS_RETRY_MIN_WAIT", "0".into()),
            ("ARCSIGHT_INCIDENTS_RETRY_MAX_WAIT", "0".into()),
            ("ARCSIGHT_INCIDENTS_PAGE_SIZE", "4".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in &self.extra {
            env.insert((*k).to_owned(), v.clone());
        }
        for k in &self.unset {
            env.remove(*k);
        }
        Settings::from_sources(&Sources::new(env, None).unwrap()).unwrap()
    }

    async fn run(&self) -> Run {
        let (_trigger, shutdown) = shutdown_pair();
        self.run_with(shutdown).await
    }

    async fn run_with(&self, shutdown: Shutdown) -> Run {
        let works_before = self.platform.recorded(|r| r.works.len());
        let succeeded = run_daemon(self.settings(), Metrics::new(), shutdown)
            .await
            .expect("the daemon starts");
        let objects = self
            .topo
            .drain()
            .await
            .into_iter()
            .map(|(body, props)| {
                assert_eq!(props.delivery_mode(), &Some(2), "persistent messages");
                assert_eq!(body["applicant_id"], "user--connector-applicant");
                let content = base64::engine::general_purpose::STANDARD
                    .decode(body["content"].as_str().unwrap())
                    .unwrap();
                let bundle: Value = serde_json::from_slice(&content).unwrap();
                let objects = bundle["objects"].as_array().unwrap();
                assert_eq!(objects.len(), 1, "one object per message");
                objects[0].clone()
            })
            .collect();
        let new_works = self.platform.recorded(|r| r.works[works_before..].to_vec());
        Run {
            succeeded,
            objects,
            new_works,
        }
    }

    /// What the converter makes of the simulator's current data set, by id.
    fn expected_objects(&self) -> BTreeMap<String, Value> {
        let converter = Converter::new(ConvertOptions::default());
        let mut out = BTreeMap::new();
        for id in self.sim.case_ids() {
            let case = Case::from_value(&self.sim.case_json(&id).unwrap()).unwrap();
            let events: Vec<SecurityEvent> = self
                .sim
                .events_json(&case.event_ids)
                .iter()
                .filter_map(SecurityEvent::from_value)
                .collect();
            let objects = converter
                .convert_case(&case, &events)
                .into_iter()
                .chain(converter.common_objects());
            for o in objects {
                out.insert(o.id().to_owned(), serde_json::to_value(&o).unwrap());
            }
        }
        out
    }

    /// The case-incident id the converter gives an ESM case.
    fn case_incident_id(&self, esm_id: &str) -> String {
        let converter = Converter::new(ConvertOptions::default());
        let case = Case::from_value(&self.sim.case_json(esm_id).unwrap()).unwrap();
        match converter.convert_case(&case, &[]).pop() {
            Some(StixObject::CaseIncident(c)) => c.id,
            other => panic!("no case-incident last: {other:?}"),
        }
    }

    /// No secret in any log line, any request the simulator saw, or any platform call.
    fn assert_no_secret_leaked(&self) {
        let tokens = self.sim.issued_tokens();
        assert!(!tokens.is_empty());
        let mut secrets: Vec<&str> = vec![ESM_PASSWORD, OPENCTI_TOKEN];
        secrets.extend(tokens.iter().map(String::as_str));
        self.logs.assert_free_of(&secrets);
        for line in self.sim.request_log() {
            for s in &secrets {
                assert!(!line.contains(s), "a secret in a requested URL: {line}");
            }
        }
        assert_eq!(self.platform.recorded(|r| r.unauthorised), 0);
        assert!(
            self.platform
                .recorded(|r| r.invalid_documents.clone())
                .is_empty(),
            "every document sent validates against the schema"
        );
    }

    async fn stop(self) {
        self.assert_no_secret_leaked();
        self.topo.drop_all().await;
        self.sim.shutdown().await;
    }
}

fn by_id(objects: &[Value]) -> BTreeMap<String, Value> {
    objects
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), o.clone()))
        .collect()
}

#[tokio::test]
async fn a_first_import_delivers_the_converters_objects_then_a_second_run_sends_nothing() {
    let env = Env::start(13, 3).await;
    let first = env.run().await;
    assert!(first.succeeded);
    assert_eq!(first.case_count(), 13, "each case exactly once");
    assert_eq!(by_id(&first.objects), env.expected_objects());
    // x_opencti_seq: dependencies first within each page, so every reference points back.
    let mut seen = BTreeSet::new();
    for o in &first.objects {
        for r in o["object_refs"].as_array().into_iter().flatten() {
            assert!(
                seen.contains(r.as_str().unwrap()),
                "{r} sent after its container"
            );
        }
        seen.insert(o["id"].as_str().unwrap().to_owned());
    }
    // One work, expecting exactly the messages published, closed without error.
    assert_eq!(first.new_works.len(), 1);
    let work = &first.new_works[0];
    assert_eq!(work.expectations, first.objects.len() as u64);
    let (message, in_error) = work.processed.clone().expect("work closed");
    assert!(!in_error, "{message}");
    assert!(env.sim.active_sessions() == 0, "logged out of ESM");

    let second = env.run().await;
    assert!(second.succeeded);
    assert!(second.objects.is_empty(), "nothing changed, nothing sent");
    assert!(second.new_works.is_empty(), "no work when nothing changed");
    // Listing and reading cases only: no event fetch.
    env.stop().await;
}

#[tokio::test]
async fn max_cases_spreads_the_import_over_runs_without_skipping_any_case() {
    let mut env = Env::start(10, 1).await;
    env.set("ARCSIGHT_INCIDENTS_MAX_CASES", "3");
    let mut delivered = BTreeSet::new();
    for run in 0..4 {
        let r = env.run().await;
        assert!(r.succeeded);
        let ids = r.case_ids();
        assert_eq!(ids.len(), if run < 3 { 3 } else { 1 }, "run {run}");
        assert!(delivered.is_disjoint(&ids), "a case sent twice");
        delivered.extend(ids);
    }
    let all: BTreeSet<String> = env
        .sim
        .case_ids()
        .iter()
        .map(|id| env.case_incident_id(id))
        .collect();
    assert_eq!(delivered, all, "ceil(10 / 3) = 4 runs deliver every case");
    assert!(env.run().await.objects.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn a_modified_case_is_delivered_again_with_its_new_content_and_the_same_id() {
    let env = Env::start(6, 2).await;
    assert!(env.run().await.succeeded);
    let target = env.sim.case_ids()[2].clone();
    let before = env
        .expected_objects()
        .remove(&env.case_incident_id(&target))
        .unwrap();
    assert!(env.sim.add_events(&target, 2));
    let r = env.run().await;
    assert!(r.succeeded);
    let cases: Vec<&Value> = r
        .objects
        .iter()
        .filter(|o| o["type"] == "case-incident")
        .collect();
    assert_eq!(cases.len(), 1, "only the modified case is sent");
    assert_eq!(cases[0]["id"], before["id"], "same case-incident id");
    let refs = |v: &Value| v["object_refs"].as_array().unwrap().len();
    assert!(refs(cases[0]) > refs(&before), "the new events are in it");
    assert_eq!(
        cases[0],
        &env.expected_objects()[before["id"].as_str().unwrap()]
    );
    env.stop().await;
}

#[tokio::test]
async fn an_operators_state_reset_leads_to_a_full_reimport() {
    let env = Env::start(5, 1).await;
    assert_eq!(env.run().await.case_count(), 5);
    assert!(env.platform.recorded(|r| r.connector_state.is_some()));
    assert_eq!(
        env.run().await.case_count(),
        0,
        "the state survived the restart"
    );
    env.platform.update(|r| r.connector_state = None);
    assert_eq!(env.run().await.case_count(), 5);
    env.stop().await;
}

#[tokio::test]
async fn a_broker_that_refuses_connections_leaves_the_state_where_it_was() {
    let env = Env::start(4, 1).await;
    assert_eq!(env.run().await.case_count(), 4);
    let new_cases = env.sim.add_cases(2);
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let saved = env.platform.recorded(|r| r.connector_state.clone());
    env.platform
        .update(|r| r.mq = Env::mq_config(&env.topo, closed_port));
    let failed = env.run().await;
    assert!(!failed.succeeded);
    assert!(failed.objects.is_empty());
    assert_eq!(env.platform.recorded(|r| r.connector_state.clone()), saved);

    env.platform
        .update(|r| r.mq = Env::mq_config(&env.topo, 5672));
    let r = env.run().await;
    assert!(r.succeeded);
    let expected: BTreeSet<String> = new_cases
        .iter()
        .map(|id| env.case_incident_id(id))
        .collect();
    assert_eq!(
        r.case_ids(),
        expected,
        "the two new cases, once the broker is back"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_platform_error_on_work_add_fails_the_run_and_the_next_run_delivers() {
    let env = Env::start(3, 1).await;
    env.platform.update(|r| r.fail.push(("workAdd".into(), 1)));
    let failed = env.run().await;
    assert!(!failed.succeeded);
    assert!(
        failed.objects.is_empty(),
        "nothing published without a work"
    );
    let r = env.run().await;
    assert!(r.succeeded);
    assert_eq!(r.case_count(), 3);
    env.stop().await;
}

#[tokio::test]
async fn a_fault_mix_converges_to_a_complete_import_and_nothing_is_sent_twice_in_a_run() {
    let env = Env::start(24, 3).await;
    env.sim.set_faults(Faults {
        error_503_ratio: 0.15,
        rate_limit_every: Some(7),
        retry_after_secs: 0,
        token_max_uses: Some(5),
        malformed_every: Some(4),
        html_200_every: Some(11),
        ..Faults::default()
    });
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs = 0;
    while delivered.len() < 24 {
        runs += 1;
        assert!(
            runs <= 8,
            "not converged after 8 runs: {} of 24",
            delivered.len()
        );
        let r = env.run().await;
        assert_eq!(
            r.case_count(),
            r.case_ids().len(),
            "a case sent twice in run {runs}"
        );
        for id in r.case_ids() {
            *delivered.entry(id).or_default() += 1;
        }
    }
    let counters = env.sim.counters();
    for fault in [
        "fault.503",
        "fault.429",
        "fault.malformed",
        "fault.token_expired",
    ] {
        assert!(
            counters.get(fault).copied().unwrap_or(0) > 0,
            "{fault} never happened: {counters:?}"
        );
    }
    // Once faults stop, a run finds nothing left and everything delivered is current.
    env.sim.set_faults(Faults::default());
    let last = env.run().await;
    assert!(last.succeeded);
    assert!(last.objects.is_empty(), "everything was already delivered");
    env.stop().await;
}

#[tokio::test]
async fn a_stop_request_mid_run_keeps_the_confirmed_pages_and_the_next_run_finishes() {
    let env = Env::start(12, 1).await;
    env.sim.set_faults(Faults {
        latency: std::time::Duration::from_millis(20),
        ..Faults::default()
    });
    let (trigger, shutdown) = shutdown_pair();
    let stop = async {
        // The first page is confirmed and its state saved: stop now, as SIGTERM would.
        env.platform.pinged().await;
        trigger.trigger();
    };
    let (first, ()) = tokio::join!(env.run_with(shutdown), stop);
    assert!(!first.succeeded, "a stopped run is not a success");
    let sent = first.case_ids();
    assert!(!sent.is_empty() && sent.len() < 12, "{} cases", sent.len());
    let work = first.new_works[0].processed.clone().expect("work closed");
    assert!(work.1, "the work is closed in error: {}", work.0);
    assert_eq!(env.sim.active_sessions(), 0, "logged out of ESM");

    env.sim.set_faults(Faults::default());
    let rest = env.run().await;
    assert!(rest.succeeded);
    let all: BTreeSet<String> = sent.union(&rest.case_ids()).cloned().collect();
    assert_eq!(all.len(), 12, "every case delivered across the two runs");
    // At most the page in flight (4 cases) is sent again.
    assert!(sent.intersection(&rest.case_ids()).count() <= 4);
    env.stop().await;
}

/// The bundle files in `dir` (not the state file), and the case-incidents they hold.
fn directory_cases(dir: &std::path::Path) -> (usize, Vec<String>) {
    let mut files = 0;
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        files += 1;
        let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for o in file["bundle"]["objects"].as_array().unwrap() {
            if o["type"] == "case-incident" {
                cases.push(o["id"].as_str().unwrap().to_owned());
            }
        }
    }
    (files, cases)
}

#[tokio::test]
async fn with_no_platform_it_previews_into_a_directory_and_remembers_what_it_wrote() {
    let mut env = Env::start(5, 2).await;
    let dir = std::env::temp_dir().join(format!(
        "arcsight-offline-{}",
        uuid::Uuid::new_v4().simple()
    ));
    env.unset = vec!["OPENCTI_URL", "OPENCTI_TOKEN"];
    env.set("CONNECTOR_SEND_TO_QUEUE", "false");
    env.set("CONNECTOR_SEND_TO_DIRECTORY", "true");
    env.set("CONNECTOR_SEND_TO_DIRECTORY_PATH", dir.to_string_lossy());
    let first = env.run().await;
    assert!(first.succeeded);
    assert!(first.objects.is_empty(), "nothing goes to the queue");
    let (files, cases) = directory_cases(&dir);
    assert_eq!((files, cases.len()), (2, 5), "two pages of at most 4 cases");
    assert!(dir.join(".arcsight-incidents-state.json").is_file());
    assert!(
        env.platform.recorded(|r| r.operations.is_empty()),
        "the platform is never called"
    );

    // A new process: the state file says everything was written.
    assert!(env.run().await.succeeded);
    assert_eq!(directory_cases(&dir).0, 2, "nothing new to write");

    let target = env.sim.case_ids()[1].clone();
    env.sim.touch_case(&target);
    assert!(env.run().await.succeeded);
    let (files, cases) = directory_cases(&dir);
    assert_eq!(files, 3);
    assert_eq!(
        cases
            .iter()
            .filter(|c| **c == env.case_incident_id(&target))
            .count(),
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
    env.stop().await;
}

#[tokio::test]
async fn a_broker_nack_fails_the_run_without_advancing_the_state() {
    let env = Env::start(6, 1).await;
    // A second, full queue on the same routing key: the broker nacks what it cannot hold.
    let full = common::amqp::Topology::refusing_after(0).await;
    full.ch
        .queue_bind(
            full.queue.as_str().into(),
            env.topo.exchange.as_str().into(),
            env.topo.routing.as_str().into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let failed = env.run().await;
    assert!(!failed.succeeded);
    assert!(failed.new_works[0].processed.as_ref().is_some_and(|p| p.1));
    let state_after_failure = env.platform.recorded(|r| r.connector_state.clone());
    assert!(
        !state_after_failure
            .clone()
            .unwrap_or_default()
            .contains("watermark"),
        "nothing recorded as delivered: {state_after_failure:?}"
    );

    full.drop_all().await;
    let r = env.run().await;
    assert!(r.succeeded);
    assert_eq!(
        r.case_count(),
        6,
        "every case is sent again once the broker accepts"
    );
    assert_ne!(
        env.platform.recorded(|r| r.connector_state.clone()),
        state_after_failure
    );
    env.stop().await;
}

#[tokio::test]
async fn a_run_is_skipped_while_the_platforms_queue_is_over_the_threshold() {
    let mut env = Env::start(3, 1).await;
    env.set("CONNECTOR_QUEUE_THRESHOLD", "1");
    env.platform
        .update(|r| r.queue_messages_size = 2 * 1024 * 1024);
    let skipped = env.run().await;
    assert!(skipped.objects.is_empty() && skipped.new_works.is_empty());
    assert_eq!(
        env.sim.counters().get("login"),
        None,
        "ESM is not even asked"
    );

    env.platform.update(|r| r.queue_messages_size = 0);
    assert_eq!(env.run().await.case_count(), 3);
    env.stop().await;
}
