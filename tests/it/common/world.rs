//! One connector deployment for end-to-end tests: the ESM simulator, a simulated platform
//! (every GraphQL document validated against the real schema), a throwaway queue on the real
//! RabbitMQ, and the daemon run in-process as one "process life" per `run()`
//! (`CONNECTOR_RUN_AND_TERMINATE=true`), with every log line captured at TRACE.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arcsight_incidents::convert::{ConvertOptions, Converter};
use arcsight_incidents::esm::model::{Case, SecurityEvent};
use arcsight_incidents::import::daemon::run_daemon;
use arcsight_incidents::metrics::ImportMetrics as Metrics;
use arcsight_incidents::settings::{Settings, Sources};
use arcsight_incidents::stix::StixObject;
use base64::Engine;
use connector_runtime::schedule::{Shutdown, shutdown_pair};
use esm_simulator::{SimConfig, Simulator};
use serde_json::Value;

use super::amqp::Topology;
use super::fake_platform::{FakePlatform, Work};
use super::logs::{Logs, capture};

pub const ESM_PASSWORD: &str = "Esm-Secret-Pa55-QUUX";
pub const OPENCTI_TOKEN: &str = "0pencti-token-XYZZY-8f2c";
pub const CONNECTOR_ID: &str = "0b3bd5a4-7c1e-4a55-9d0e-3f6f2a1c9e77";

/// One connector deployment: its ESM, its platform and its queue.
pub struct Env {
    pub sim: Simulator,
    pub platform: FakePlatform,
    pub topo: Topology,
    pub logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
    pub extra: Vec<(&'static str, String)>,
    pub unset: Vec<&'static str>,
    /// Overrides the 40 s ping interval (not an environment setting).
    pub ping_interval: Option<std::time::Duration>,
    /// Overrides the case-incident ids per verification call (not an environment setting).
    pub verify_batch: Option<usize>,
    /// Overrides the 30 s AMQP publish timeout (not an environment setting).
    pub amqp_timeout: Option<std::time::Duration>,
    /// The metrics every run reports to (one process's, across its runs).
    pub metrics: Metrics,
}

/// What one process life did, as seen from outside.
pub struct Run {
    pub succeeded: bool,
    /// One object per AMQP message, in queue order.
    pub objects: Vec<Value>,
    /// The works the platform saw created during this run.
    pub new_works: Vec<Work>,
}

impl Run {
    pub fn case_ids(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .filter(|o| o["type"] == "case-incident")
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn case_count(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o["type"] == "case-incident")
            .count()
    }
}

impl Env {
    pub async fn start(cases: usize, events_per_case: usize) -> Env {
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
        let platform = FakePlatform::start(OPENCTI_TOKEN, topo.registration_config(5672)).await;
        Env {
            sim,
            platform,
            topo,
            logs,
            _guard: guard,
            extra: Vec::new(),
            unset: Vec::new(),
            ping_interval: None,
            verify_batch: None,
            amqp_timeout: None,
            metrics: Metrics::new(),
        }
    }

    /// Drops a value set with `set`.
    pub fn clear(&mut self, name: &str) {
        self.extra.retain(|(n, _)| *n != name);
    }

    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.extra.retain(|(n, _)| *n != name);
        self.extra.push((name, value.into()));
    }

    pub fn settings(&self) -> Settings {
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

    pub async fn run(&self) -> Run {
        let (_trigger, shutdown) = shutdown_pair();
        self.run_with(shutdown).await
    }

    pub async fn run_with(&self, shutdown: Shutdown) -> Run {
        let works_before = self.platform.recorded(|r| r.works.len());
        let mut settings = self.settings();
        if let Some(every) = self.ping_interval {
            settings.connector.ping_interval = every;
        }
        if let Some(n) = self.verify_batch {
            settings.connector.verify_batch = n;
        }
        if let Some(t) = self.amqp_timeout {
            settings.connector.amqp_publish_timeout = t;
        }
        let succeeded = run_daemon(settings, self.metrics.clone(), shutdown)
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
                // The platform's worker consumes the message.
                self.platform.consume(body["work_id"].as_str(), objects);
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
    pub fn expected_objects(&self) -> BTreeMap<String, Value> {
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

    /// The last run's summary log line (`run finished`, `run finished with failed cases...` or
    /// `run failed`) and its fields.
    pub fn last_run_line(&self) -> Value {
        self.logs
            .text()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("run finished") || m == "run failed")
            })
            .expect("every run logs its summary line")
    }

    /// The case-incident ids of every case ESM holds now.
    pub fn all_case_incident_ids(&self) -> BTreeSet<String> {
        self.sim
            .case_ids()
            .iter()
            .map(|id| self.case_incident_id(id))
            .collect()
    }

    /// The case-incident id the converter gives an ESM case.
    pub fn case_incident_id(&self, esm_id: &str) -> String {
        let converter = Converter::new(ConvertOptions::default());
        let case = Case::from_value(&self.sim.case_json(esm_id).unwrap()).unwrap();
        match converter.convert_case(&case, &[]).pop() {
            Some(StixObject::CaseIncident(c)) => c.id,
            other => panic!("no case-incident last: {other:?}"),
        }
    }

    /// No secret in any log line, any request the simulator saw, or any platform call.
    pub fn assert_no_secret_leaked(&self) {
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

    pub async fn stop(self) {
        self.assert_no_secret_leaked();
        self.topo.drop_all().await;
        self.sim.shutdown().await;
    }
}

/// Objects by id.
pub fn by_id(objects: &[Value]) -> BTreeMap<String, Value> {
    objects
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_owned(), o.clone()))
        .collect()
}
