//! Black-box tests of the simulated ActiveListService over HTTP (stream-arcsight.md 3.3, 3.4,
//! 3.6, 5.2): both dialects, the entry encoding, upsert, random eviction at capacity, TTL,
//! error pages, and the fault knobs on Active List calls.

use std::time::Duration;

use esm_simulator::{ActiveListCall, ActiveListConfig, Dialect, Faults, SimConfig, Simulator};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LOGIN: &str = "/www/core-service/rest/LoginService/login";
const ACT: &str = "/www/manager-service/rest/ActiveListService/";
const PASSWORD: &str = "s3cr3t-pw";
/// A real-looking resource id, with the characters a GET must encode.
const LIST: &str = "HL+gxUvkwBABCRvFGFq5Z/g==";

struct Esm {
    sim: Simulator,
    http: reqwest::Client,
    /// `act.` or `` (the request and answer key prefix of the dialect).
    p: &'static str,
    token: String,
}

fn list(fields: &[&str], capacity: usize, ttl: Option<Duration>) -> ActiveListConfig {
    ActiveListConfig {
        capacity,
        ttl,
        ..ActiveListConfig::new(LIST, fields)
    }
}

impl Esm {
    async fn start(dialect: Dialect, lists: Vec<ActiveListConfig>, faults: Faults) -> Esm {
        let sim = Simulator::start(SimConfig {
            dialect,
            password: PASSWORD.into(),
            active_lists: lists,
            faults,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let mut esm = Esm {
            sim,
            http: reqwest::Client::new(),
            p: match dialect {
                Dialect::Prefixed => "act.",
                Dialect::Plain => "",
            },
            token: String::new(),
        };
        esm.token = esm.login().await;
        esm
    }

    /// A login in a POST JSON body, read in the dialect's keys.
    async fn login(&self) -> String {
        let (outer, ret) = if self.p.is_empty() {
            ("loginResponse", "return")
        } else {
            ("log.loginResponse", "log.return")
        };
        let v: Value = self
            .http
            .post(format!(
                "{}{}?alt=json",
                self.sim.base_url().as_str().trim_end_matches('/'),
                LOGIN
            ))
            .json(&json!({"log.login": {"log.login": "admin", "log.password": PASSWORD}}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        v[outer][ret].as_str().expect("token").to_owned()
    }

    fn url(&self, op: &str) -> String {
        format!(
            "{}{ACT}{op}?alt=json",
            self.sim.base_url().as_str().trim_end_matches('/')
        )
    }

    /// `{"<p>op": {"<p>authToken": t, "<p>resourceId": id, ...extra}}`.
    fn body(&self, op: &str, token: &str, id: &str, extra: Option<Value>) -> Value {
        let p = self.p;
        let mut inner = json!({format!("{p}authToken"): token, format!("{p}resourceId"): id});
        if let Some(e) = extra {
            inner[format!("{p}entryList")] = e;
        }
        json!({format!("{p}{op}"): inner})
    }

    async fn call_as(
        &self,
        op: &str,
        token: &str,
        id: &str,
        extra: Option<Value>,
    ) -> reqwest::Response {
        self.http
            .post(self.url(op))
            .json(&self.body(op, token, id, extra))
            .send()
            .await
            .expect("sent")
    }

    async fn call(&self, op: &str, extra: Option<Value>) -> reqwest::Response {
        self.call_as(op, &self.token, LIST, extra).await
    }

    async fn write(&self, op: &str, columns: &[&str], rows: &[&[&str]]) -> reqwest::Response {
        let entries: Vec<Value> = rows.iter().map(|r| json!({"entry": r})).collect();
        self.call(op, Some(json!({"columns": columns, "entryList": entries})))
            .await
    }

    /// The `return` object of a read, in the dialect's keys.
    async fn read(&self, op: &str) -> Value {
        let resp = self.call(op, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.expect("json");
        let p = self.p;
        v[format!("{p}{op}Response")][format!("{p}return")].clone()
    }
}

/// Rows of a `getEntries` answer, accepting ESM's bare one-element forms.
fn rows(ret: &Value) -> Vec<Vec<String>> {
    let as_list = |v: &Value| match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    as_list(&ret["entryList"])
        .iter()
        .map(|e| {
            as_list(&e["entry"])
                .iter()
                .map(|s| s.as_str().expect("string").to_owned())
                .collect()
        })
        .collect()
}

fn s(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|v| (*v).to_owned()).collect())
        .collect()
}

#[tokio::test]
async fn add_get_delete_round_trip_in_both_dialects() {
    for dialect in [Dialect::Prefixed, Dialect::Plain] {
        let esm = Esm::start(
            dialect,
            vec![list(&["value", "type"], 100, None)],
            Faults::default(),
        )
        .await;
        let res = esm.read("getResourceById").await;
        assert_eq!(res["fieldNames"], json!(["value", "type"]), "{dialect:?}");
        assert_eq!(res["capacity"], json!(100));
        assert_eq!(res["entryCount"], json!(0));

        // Columns in another order than the list's: each value lands in its field.
        let r = esm
            .write(
                "addEntries",
                &["type", "value"],
                &[
                    &["ipv4-addr", "198.51.100.1"],
                    &["domain-name", "evil.example.com"],
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let ret = esm.read("getEntries").await;
        assert_eq!(ret["columns"], json!(["value", "type"]));
        let want = s(&[
            &["198.51.100.1", "ipv4-addr"],
            &["evil.example.com", "domain-name"],
        ]);
        let mut got = rows(&ret);
        got.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got, want_sorted);
        assert_eq!(esm.read("getResourceById").await["entryCount"], json!(2));

        let r = esm
            .write(
                "deleteEntries",
                &["value", "type"],
                &[&["198.51.100.1", "ipv4-addr"]],
            )
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let ret = esm.read("getEntries").await;
        // One row: a bare object, as ESM renders a one-element list.
        assert!(ret["entryList"].is_object(), "{ret}");
        assert_eq!(rows(&ret), s(&[&["evil.example.com", "domain-name"]]));
        assert_eq!(
            esm.sim.active_list_entries(LIST),
            Some(s(&[&["evil.example.com", "domain-name"]]))
        );

        let r = esm.call("clearEntries", None).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let ret = esm.read("getEntries").await;
        assert!(
            ret.get("entryList").is_none(),
            "empty list has no entryList: {ret}"
        );

        let ops: Vec<(String, usize)> = esm
            .sim
            .active_list_calls()
            .into_iter()
            .map(|c: ActiveListCall| (c.operation, c.entries))
            .collect();
        assert!(ops.contains(&("addEntries".into(), 2)), "{ops:?}");
        assert!(ops.contains(&("deleteEntries".into(), 1)), "{ops:?}");
        assert_eq!(esm.sim.counters().get("activeList.addEntries"), Some(&1));
        esm.sim.shutdown().await;
    }
}

#[tokio::test]
async fn one_column_lists_render_a_bare_string_and_get_works_with_an_encoded_id() {
    let esm = Esm::start(
        Dialect::Prefixed,
        vec![list(&["value"], 10, None)],
        Faults::default(),
    )
    .await;
    // As the Python connector writes: no `?alt=json`, one value per request.
    let r = esm
        .http
        .post(format!(
            "{}{ACT}addEntries",
            esm.sim.base_url().as_str().trim_end_matches('/')
        ))
        .json(
            &json!({"act.addEntries": {"act.authToken": esm.token, "act.resourceId": LIST,
            "act.entryList": {"columns": ["value"], "entryList": [{"entry": ["198.51.100.7"]}]}}}),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v: Value = esm
        .http
        .get(esm.url("getEntries"))
        .query(&[("resourceId", LIST), ("authToken", esm.token.as_str())])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let ret = &v["act.getEntriesResponse"]["act.return"];
    assert_eq!(ret["columns"], json!("value"));
    assert_eq!(ret["entryList"], json!({"entry": "198.51.100.7"}));
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn adding_an_existing_key_updates_it() {
    let esm = Esm::start(
        Dialect::Plain,
        vec![list(&["value", "type"], 10, None)],
        Faults::default(),
    )
    .await;
    esm.write("addEntries", &["value", "type"], &[&["a.example", "old"]])
        .await;
    esm.write(
        "addEntries",
        &["value", "type"],
        &[&["a.example", "new"], &["a.example", "newer"]],
    )
    .await;
    assert_eq!(
        esm.sim.active_list_entries(LIST),
        Some(s(&[&["a.example", "newer"]]))
    );
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn a_full_list_evicts_random_entries_and_stays_at_capacity() {
    let mut survivors = Vec::new();
    for _ in 0..2 {
        let esm = Esm::start(
            Dialect::Prefixed,
            vec![list(&["value"], 5, None)],
            Faults::default(),
        )
        .await;
        let values: Vec<String> = (0..12).map(|i| format!("10.0.0.{i}")).collect();
        for v in &values {
            let r = esm.write("addEntries", &["value"], &[&[v.as_str()]]).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
        let left = esm.sim.active_list_entries(LIST).expect("list");
        assert_eq!(left.len(), 5);
        assert_eq!(esm.read("getResourceById").await["entryCount"], json!(5));
        assert_eq!(esm.sim.active_list_evictions(LIST), Some(7));
        assert!(left.iter().all(|r| values.contains(&r[0])));
        // The last one added always survives its own add; random eviction means the
        // survivors are not simply the newest five.
        assert!(left.iter().any(|r| r[0] == "10.0.0.11"));
        let newest: Vec<Vec<String>> = (7..12).map(|i| vec![format!("10.0.0.{i}")]).collect();
        let mut sorted_newest = newest.clone();
        sorted_newest.sort();
        assert_ne!(left, sorted_newest, "eviction is random, not FIFO");
        survivors.push(left);
        esm.sim.shutdown().await;
    }
    assert_eq!(survivors[0], survivors[1], "same seed, same evictions");
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let ttl = Duration::from_secs(3600);
    let esm = Esm::start(
        Dialect::Prefixed,
        vec![list(&["value"], 10, Some(ttl))],
        Faults::default(),
    )
    .await;
    esm.write("addEntries", &["value"], &[&["old.example"]])
        .await;
    esm.sim.advance_clock(Duration::from_secs(1800));
    esm.write("addEntries", &["value"], &[&["new.example"]])
        .await;
    assert_eq!(esm.read("getResourceById").await["timeToLive"], json!(3600));
    esm.sim.advance_clock(Duration::from_secs(1801));
    assert_eq!(rows(&esm.read("getEntries").await), s(&[&["new.example"]]));
    esm.sim.advance_clock(Duration::from_secs(1800));
    assert!(esm.read("getEntries").await.get("entryList").is_none());
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_list_and_an_unknown_column_are_error_pages() {
    let esm = Esm::start(
        Dialect::Prefixed,
        vec![list(&["value"], 10, None)],
        Faults::default(),
    )
    .await;
    for op in ["getResourceById", "getEntries", "addEntries"] {
        let r = esm
            .call_as(
                op,
                &esm.token,
                "no-such-list==",
                Some(json!({"columns": "value", "entryList": {"entry": "x"}})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR, "{op}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .contains("html")
        );
        let text = r.text().await.expect("body");
        assert!(
            text.contains("ResourceNotFoundException") && text.contains("no-such-list=="),
            "{text}"
        );
    }
    let r = esm.write("addEntries", &["nope"], &[&["x"]]).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(esm.sim.active_list_entries(LIST), Some(vec![]));
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn a_bad_token_is_refused_and_changes_nothing() {
    let esm = Esm::start(
        Dialect::Plain,
        vec![list(&["value"], 10, None)],
        Faults::default(),
    )
    .await;
    let extra = json!({"columns": ["value"], "entryList": [{"entry": ["x.example"]}]});
    let r = esm
        .call_as("addEntries", "forged-token.", LIST, Some(extra.clone()))
        .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("AuthenticationException")
    );
    let r = esm.call_as("addEntries", "", LIST, Some(extra)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(esm.sim.active_list_entries(LIST), Some(vec![]));
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn a_token_expires_in_the_middle_of_a_batch_of_writes() {
    let faults = Faults {
        token_max_uses: Some(2),
        ..Faults::default()
    };
    let esm = Esm::start(Dialect::Prefixed, vec![list(&["value"], 10, None)], faults).await;
    let mut statuses = Vec::new();
    for v in ["a", "b", "c"] {
        statuses.push(esm.write("addEntries", &["value"], &[&[v]]).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::NO_CONTENT,
            StatusCode::NO_CONTENT,
            StatusCode::INTERNAL_SERVER_ERROR
        ]
    );
    assert_eq!(
        esm.sim.active_list_entries(LIST),
        Some(s(&[&["a"], &["b"]]))
    );
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn every_nth_write_fails_and_changes_nothing() {
    let faults = Faults {
        write_error_every: Some(2),
        ..Faults::default()
    };
    let esm = Esm::start(Dialect::Prefixed, vec![list(&["value"], 10, None)], faults).await;
    let mut statuses = Vec::new();
    for v in ["a", "b", "c", "d"] {
        statuses.push(esm.write("addEntries", &["value"], &[&[v]]).await.status());
    }
    // Reads are not writes: they neither fail nor count.
    assert_eq!(esm.call("getEntries", None).await.status(), StatusCode::OK);
    let r = esm.write("deleteEntries", &["value"], &[&["a"]]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        statuses,
        [
            StatusCode::NO_CONTENT,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::NO_CONTENT,
            StatusCode::INTERNAL_SERVER_ERROR
        ]
    );
    assert_eq!(esm.sim.active_list_entries(LIST), Some(s(&[&["c"]])));
    assert_eq!(esm.sim.counters().get("fault.write_error"), Some(&2));
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn an_outage_answers_503_until_cleared() {
    let esm = Esm::start(
        Dialect::Prefixed,
        vec![list(&["value"], 10, None)],
        Faults::default(),
    )
    .await;
    esm.sim.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    assert_eq!(
        esm.write("addEntries", &["value"], &[&["a"]])
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        esm.call("getEntries", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    esm.sim.set_faults(Faults::default());
    assert_eq!(
        esm.write("addEntries", &["value"], &[&["a"]])
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(esm.sim.active_list_entries(LIST), Some(s(&[&["a"]])));
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn a_slow_write_outlasts_a_client_timeout() {
    let faults = Faults {
        write_delay: Duration::from_secs(30),
        ..Faults::default()
    };
    let esm = Esm::start(Dialect::Prefixed, vec![list(&["value"], 10, None)], faults).await;
    // Reads are not delayed.
    assert_eq!(esm.call("getEntries", None).await.status(), StatusCode::OK);
    let err = esm
        .http
        .post(esm.url("addEntries"))
        .timeout(Duration::from_millis(200))
        .json(&esm.body(
            "addEntries",
            &esm.token,
            LIST,
            Some(json!({"columns": "value", "entryList": {"entry": "a"}})),
        ))
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn rate_limits_and_corrupt_answers_apply_to_active_list_calls() {
    let faults = Faults {
        rate_limit_every: Some(3),
        retry_after_secs: 7,
        ..Faults::default()
    };
    // The login was request 1.
    let esm = Esm::start(Dialect::Prefixed, vec![list(&["value"], 10, None)], faults).await;
    assert_eq!(
        esm.write("addEntries", &["value"], &[&["C:\\temp\\x"]])
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = esm.call("getEntries", None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");

    esm.sim.set_faults(Faults {
        html_200_every: Some(1),
        ..Faults::default()
    });
    let r = esm.call("getEntries", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.expect("body").starts_with("<!doctype html>"));

    esm.sim.set_faults(Faults {
        malformed_every: Some(1),
        ..Faults::default()
    });
    let r = esm.call("getEntries", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.bytes().await.expect("body");
    assert!(
        serde_json::from_slice::<Value>(&body).is_err(),
        "invalid JSON"
    );
    esm.sim.shutdown().await;
}

#[tokio::test]
async fn admins_change_lists_directly() {
    let esm = Esm::start(Dialect::Plain, vec![], Faults::default()).await;
    assert_eq!(esm.sim.active_list_entries(LIST), None);
    esm.sim
        .create_active_list(list(&["value", "owner"], 3, None));
    assert!(
        esm.sim
            .add_active_list_entries(LIST, &s(&[&["x", "admin"], &["y", "opencti"]]))
    );
    assert!(
        !esm.sim
            .add_active_list_entries(LIST, &s(&[&["too", "many", "fields"]]))
    );
    assert_eq!(
        esm.sim.remove_active_list_entries(LIST, &["x", "nope"]),
        Some(1)
    );
    assert_eq!(rows(&esm.read("getEntries").await), s(&[&["y", "opencti"]]));
    let v: Value = esm
        .http
        .post(esm.url("findAllIds"))
        .json(&json!({"findAllIds": {"authToken": esm.token}}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(v["findAllIdsResponse"]["return"], json!(LIST));
    esm.sim.shutdown().await;
}
