//! The Active List service against the ESM simulator (both dialects) and, for answers the
//! simulator never gives, a scripted ESM: batching, a token refused mid-batch, an outage, HTML
//! with 200, an unknown list or column, and no secret in any error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use esm_client::active_lists::{ActiveListConfig, ActiveListError, ActiveLists, WriteReport};
use esm_client::{EsmClient, EsmConfig, EsmError, SettingNames};
use esm_simulator::{ActiveListConfig as SimList, Dialect, Faults, SimConfig, Simulator};
use secrecy::SecretString;

const PASSWORD: &str = "pw-Xq81-secret";
/// With the characters a URL would have to encode.
const LIST: &str = "HL+gxUvkwBABCRvFGFq5Z/g==";
const DIALECTS: [Dialect; 2] = [Dialect::Prefixed, Dialect::Plain];

async fn sim(dialect: Dialect, fields: &[&str]) -> Simulator {
    Simulator::start(SimConfig {
        dialect,
        password: PASSWORD.into(),
        active_lists: vec![SimList::new(LIST, fields)],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// Quick retries (the waits are the client's own, not the test's synchronisation).
fn config(base: url::Url, max_attempts: u32, concurrency: usize) -> EsmConfig {
    EsmConfig {
        max_attempts,
        retry_min_wait: Duration::from_millis(1),
        retry_max_wait: Duration::from_millis(5),
        concurrency,
        ..EsmConfig::new(base, "admin", SecretString::from(PASSWORD))
    }
}

fn service(cfg: EsmConfig, batch_size: usize) -> (EsmClient, ActiveLists) {
    let client = EsmClient::new(cfg).expect("client");
    let lists = client.active_lists(ActiveListConfig { batch_size });
    (client, lists)
}

fn values(prefix: &str, n: usize) -> Vec<Vec<String>> {
    (0..n).map(|i| vec![format!("{prefix}{i:05}")]).collect()
}

fn sorted(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.sort();
    rows
}

fn write_calls(sim: &Simulator, op: &str) -> Vec<usize> {
    sim.active_list_calls()
        .into_iter()
        .filter(|c| c.operation == op && c.list_id == LIST)
        .map(|c| c.entries)
        .collect()
}

#[tokio::test]
async fn add_get_delete_round_trip_in_both_dialects() {
    for dialect in DIALECTS {
        let sim = sim(dialect, &["value", "type"]).await;
        let (_, lists) = service(config(sim.base_url(), 2, 4), 500);
        let rows: Vec<Vec<String>> = [
            ["198.51.100.1", "ipv4-addr"],
            ["evil.example.com", "domain-name"],
            ["d41d8cd98f00b204e9800998ecf8427e", "file"],
        ]
        .iter()
        .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
        .collect();
        let report = lists
            .add_entries(LIST, &["value", "type"], rows.clone())
            .await;
        assert!(report.is_complete(), "{dialect:?}: {report:?}");
        assert_eq!(report.written, 3);
        assert_eq!(sim.active_list_entries(LIST), Some(sorted(rows.clone())));

        let info = lists.get_list(LIST).await.expect("list described");
        assert_eq!(info.id, LIST);
        assert_eq!(info.fields, ["value", "type"]);
        assert_eq!(info.key_fields, ["value"]);
        assert_eq!(info.capacity, Some(10_000));
        assert_eq!(info.entry_count, Some(3), "{dialect:?}");

        let entries = lists.get_entries(LIST).await.expect("entries read");
        assert_eq!(entries.columns, ["value", "type"]);
        assert_eq!(sorted(entries.rows.clone()), sorted(rows.clone()));

        // Delete by key, the column alone; the one left is a single row (a bare object).
        let gone = vec![rows[0][..1].to_vec(), rows[2][..1].to_vec()];
        let report = lists.delete_entries(LIST, &["value"], gone).await;
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(sim.active_list_entries(LIST), Some(vec![rows[1].clone()]));
        let entries = lists.get_entries(LIST).await.expect("one entry read");
        assert_eq!(entries.rows, vec![rows[1].clone()], "{dialect:?}");

        let report = lists
            .delete_entries(LIST, &["value"], vec![rows[1][..1].to_vec()])
            .await;
        assert!(report.is_complete());
        let entries = lists.get_entries(LIST).await.expect("empty list read");
        assert!(entries.rows.is_empty(), "{dialect:?}: {entries:?}");
    }
}

#[tokio::test]
async fn one_column_list_round_trip_reads_bare_strings() {
    for dialect in DIALECTS {
        let sim = sim(dialect, &["value"]).await;
        let (_, lists) = service(config(sim.base_url(), 2, 4), 500);
        let report = lists.add_entries(LIST, &["value"], values("v", 1)).await;
        assert!(report.is_complete(), "{report:?}");
        let entries = lists.get_entries(LIST).await.expect("entries read");
        assert_eq!(entries.rows, values("v", 1), "{dialect:?}");
        assert_eq!(entries.values("value").collect::<Vec<_>>(), ["v00000"]);
    }
}

#[tokio::test]
async fn a_thousand_values_cost_one_request_per_batch_with_bounded_concurrency() {
    for dialect in DIALECTS {
        let sim = sim(dialect, &["value"]).await;
        let batch = 128;
        let concurrency = 2;
        let (_, lists) = service(config(sim.base_url(), 2, concurrency), batch);
        let rows = values("ioc-", 1000);
        let report = lists.add_entries(LIST, &["value"], rows.clone()).await;
        assert!(report.is_complete(), "{report:?}");
        let expected_requests = 1000_usize.div_ceil(batch);
        assert_eq!(report.batches, expected_requests);
        let calls = write_calls(&sim, "addEntries");
        assert_eq!(calls.len(), expected_requests, "{dialect:?}: {calls:?}");
        assert!(calls.iter().all(|n| *n <= batch), "{calls:?}");
        assert_eq!(calls.iter().sum::<usize>(), 1000);
        assert_eq!(sim.active_list_entries(LIST), Some(sorted(rows.clone())));
        assert!(
            sim.max_in_flight() <= concurrency as u64,
            "{} requests at once",
            sim.max_in_flight()
        );

        let report = lists.delete_entries(LIST, &["value"], rows).await;
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(write_calls(&sim, "deleteEntries").len(), expected_requests);
        assert_eq!(sim.active_list_entries(LIST), Some(vec![]));
    }
}

#[tokio::test]
async fn a_token_expiring_mid_batch_relogs_once_and_completes() {
    for dialect in DIALECTS {
        let sim = sim(dialect, &["value"]).await;
        // Each token serves 5 calls: the 6th of 10 batches is refused.
        sim.set_faults(Faults {
            token_max_uses: Some(5),
            ..Faults::default()
        });
        // One attempt: the refused batches can only succeed through the fresh login.
        let (client, lists) = service(config(sim.base_url(), 1, 4), 100);
        let rows = values("t", 1000);
        let report = lists.add_entries(LIST, &["value"], rows.clone()).await;
        assert!(report.is_complete(), "{dialect:?}: {report:?}");
        assert_eq!(sim.active_list_entries(LIST), Some(sorted(rows)));
        assert_eq!(client.stats().relogins, 1, "{dialect:?}");
        assert_eq!(sim.counters().get("login").copied(), Some(2));
        assert_eq!(write_calls(&sim, "addEntries").len(), 10);
    }
}

#[tokio::test]
async fn an_outage_fails_transiently_with_exactly_the_values_of_the_failed_batches() {
    for dialect in DIALECTS {
        let sim = sim(dialect, &["value"]).await;
        let (client, lists) = service(config(sim.base_url(), 2, 4), 100);
        client.login().await.expect("login");
        sim.set_faults(Faults {
            outage: true,
            ..Faults::default()
        });
        let rows = values("o", 250);
        let report = lists.add_entries(LIST, &["value"], rows.clone()).await;
        assert_eq!(report.written, 0);
        assert_eq!(report.failed.len(), 3, "{dialect:?}");
        assert!(
            report.failed.iter().all(|f| f.error.is_transient()),
            "{report:?}"
        );
        let failed: Vec<Vec<String>> = report.failed_rows().cloned().collect();
        assert_eq!(sorted(failed.clone()), sorted(rows.clone()));

        // Retrying exactly what failed, once ESM is back, completes the list.
        sim.set_faults(Faults::default());
        let report = lists.add_entries(LIST, &["value"], failed).await;
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(sim.active_list_entries(LIST), Some(sorted(rows)));
    }
}

#[tokio::test]
async fn failed_batches_report_their_own_values_and_only_theirs() {
    let sim = sim(Dialect::Prefixed, &["value"]).await;
    sim.set_faults(Faults {
        write_error_every: Some(2),
        ..Faults::default()
    });
    // One request at a time and no retry: batches 2 and 4 of 5 fail.
    let (_, lists) = service(config(sim.base_url(), 1, 1), 10);
    let rows = values("w", 50);
    let report: WriteReport = lists.add_entries(LIST, &["value"], rows.clone()).await;
    assert_eq!(report.batches, 5);
    assert_eq!(report.written, 30);
    let failed: Vec<Vec<String>> = report.failed_rows().cloned().collect();
    let stored = sim.active_list_entries(LIST).expect("list");
    assert_eq!(failed.len(), 20, "{report:?}");
    assert!(failed.iter().all(|r| !stored.contains(r)));
    let mut all = stored;
    all.extend(failed);
    assert_eq!(sorted(all), rows);
}

#[tokio::test]
async fn html_with_200_is_an_error_for_reads() {
    for dialect in DIALECTS {
        let sim = sim(dialect, &["value"]).await;
        let (client, lists) = service(config(sim.base_url(), 1, 4), 100);
        client.login().await.expect("login");
        sim.set_faults(Faults {
            html_200_every: Some(1),
            ..Faults::default()
        });
        let e = lists
            .get_entries(LIST)
            .await
            .expect_err("HTML is no entry list");
        assert!(
            matches!(
                e,
                ActiveListError::Esm(EsmError::ErrorPage { status: 200, .. })
            ),
            "{e:?}"
        );
        let e = lists
            .get_list(LIST)
            .await
            .expect_err("HTML is no description");
        assert!(
            matches!(
                e,
                ActiveListError::Esm(EsmError::ErrorPage { status: 200, .. })
            ),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_list_or_column_is_a_clear_error_and_not_retried() {
    for dialect in DIALECTS {
        let sim = sim(dialect, &["value", "type"]).await;
        let (_, lists) = service(config(sim.base_url(), 4, 4), 100);
        let info = lists
            .check_list(LIST, "value")
            .await
            .expect("list and column exist");
        assert_eq!(info.fields, ["value", "type"]);

        let e = lists
            .check_list("no-such-list==", "value")
            .await
            .expect_err("unknown");
        assert_eq!(
            e,
            ActiveListError::NotFound {
                list_id: "no-such-list==".into()
            },
            "{dialect:?}"
        );
        assert!(e.to_string().contains("no-such-list=="), "{e}");
        // Asked once: retrying an unknown id would only repeat the answer.
        let asked = sim
            .active_list_calls()
            .into_iter()
            .filter(|c| c.list_id == "no-such-list==")
            .count();
        assert_eq!(asked, 1);

        let e = lists
            .check_list(LIST, "ip")
            .await
            .expect_err("unknown column");
        match &e {
            ActiveListError::UnknownColumn { column, fields, .. } => {
                assert_eq!(column, "ip");
                assert_eq!(fields, &["value", "type"]);
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("\"ip\"") && text.contains("value, type"),
            "{text}"
        );
        assert!(!e.is_transient());

        let report = lists
            .add_entries("no-such-list==", &["value"], values("x", 3))
            .await;
        assert_eq!(report.failed.len(), 1);
        assert!(matches!(
            report.failed[0].error,
            ActiveListError::NotFound { .. }
        ));
        assert_eq!(report.failed[0].rows, values("x", 3));
    }
}

// ---- a scripted ESM ---------------------------------------------------------------------

/// The token the scripted ESM hands out.
const TOKEN: &str = "tok-9bQ2fLx0Zr7Kp4Wd8Yh1Nc3Vm6Ts5Ej.";

#[derive(Clone)]
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
}

/// Login answers a prefixed token; every other call gets the scripted answer.
async fn scripted(answer: Answer) -> (url::Url, Arc<Mutex<Answer>>) {
    let shared = Arc::new(Mutex::new(answer));
    let state = Arc::clone(&shared);
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let state = Arc::clone(&state);
        async move {
            if uri.path().ends_with("/LoginService/login") {
                let body = format!(r#"{{"log.loginResponse":{{"log.return":"{TOKEN}"}}}}"#);
                return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            }
            let a = state.lock().expect("lock").clone();
            let mut resp: Response = (a.status, a.body).into_response();
            if let Ok(v) = header::HeaderValue::from_str(a.content_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}").parse().expect("url"), shared)
}

fn answer(status: u16, content_type: &'static str, body: &str) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).expect("status"),
        content_type,
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn a_write_counts_only_on_the_documented_answer() {
    let (base, script) = scripted(answer(204, "text/plain", "")).await;
    let (_, lists) = service(config(base, 1, 4), 100);
    let cases = [
        (answer(204, "text/plain", ""), true),
        (answer(200, "application/json", ""), true),
        (
            answer(200, "application/json", r#"{"act.addEntriesResponse":""}"#),
            true,
        ),
        (
            answer(
                200,
                "text/html",
                "<html><body><h1>Service temporarily unavailable</h1></body></html>",
            ),
            false,
        ),
        // An HTML page served as something else is still a page.
        (
            answer(
                200,
                "text/plain",
                "<!DOCTYPE html><html><body>Login</body></html>",
            ),
            false,
        ),
        (
            answer(200, "application/json", r#"{"status":"queued"}"#),
            false,
        ),
        (answer(200, "application/json", "{not json"), false),
        (answer(202, "text/plain", ""), false),
    ];
    for (a, ok) in cases {
        let label = format!("{} {} {:?}", a.status, a.content_type, a.body);
        *script.lock().expect("lock") = a;
        let report = lists.add_entries(LIST, &["value"], values("h", 3)).await;
        assert_eq!(report.is_complete(), ok, "{label}: {report:?}");
        if !ok {
            assert_eq!(
                report.failed_rows().cloned().collect::<Vec<_>>(),
                values("h", 3)
            );
        }
    }
}

#[tokio::test]
async fn no_password_or_token_in_any_error() {
    // A page that echoes the request's secrets, as a verbose ESM or proxy error can.
    let page = format!(
        "<html><body><p>java.lang.IllegalStateException: session {TOKEN} of admin/{PASSWORD} rejected</p></body></html>"
    );
    let (base, _script) = scripted(answer(500, "text/html", &page)).await;
    let (_, lists) = service(config(base, 1, 4), 100);
    let mut texts = Vec::new();
    let report = lists.add_entries(LIST, &["value"], values("s", 2)).await;
    let f = report.failed.first().expect("failed batch");
    assert!(matches!(
        f.error,
        ActiveListError::Esm(EsmError::ErrorPage { .. })
    ));
    texts.push(format!("{} {:?}", f.error, f.error));
    let e = lists.get_entries(LIST).await.expect_err("page");
    texts.push(format!("{e} {e:?}"));
    let e = lists.check_list(LIST, "value").await.expect_err("page");
    texts.push(format!("{e} {e:?}"));

    // And the simulator's failures: outage, HTML with 200, unknown list, unknown column.
    let sim = sim(Dialect::Plain, &["value"]).await;
    let (client, lists) = service(config(sim.base_url(), 1, 4), 100);
    client.login().await.expect("login");
    for faults in [
        Faults {
            outage: true,
            ..Faults::default()
        },
        Faults {
            html_200_every: Some(1),
            ..Faults::default()
        },
        Faults::default(),
    ] {
        sim.set_faults(faults);
        if let Err(e) = lists.get_entries(LIST).await {
            texts.push(format!("{e} {e:?}"));
        }
        for f in lists
            .add_entries(LIST, &["nope"], values("s", 1))
            .await
            .failed
        {
            texts.push(format!("{} {:?}", f.error, f.error));
        }
        if let Err(e) = lists.check_list("no-such==", "value").await {
            texts.push(format!("{e} {e:?}"));
        }
    }
    assert!(texts.len() >= 8, "{texts:?}");
    let mut secrets = sim.issued_tokens();
    secrets.push(TOKEN.to_owned());
    secrets.push(PASSWORD.to_owned());
    for t in &texts {
        for s in &secrets {
            assert!(!t.contains(s.as_str()), "a secret in: {t}");
        }
    }
    // The scripted page's message survives, redacted: the redaction is what kept it clean.
    assert!(texts[0].contains("IllegalStateException"), "{}", texts[0]);
}

/// The shared client's messages name the settings of the connector using it: an answer over
/// the limit tells the stream connector's operator to raise its own setting, not the import's.
#[tokio::test]
async fn an_oversized_answer_names_the_connector_s_own_setting() {
    let big = format!(
        r#"{{"act.getEntriesResponse":{{"act.return":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let (base, _script) = scripted(answer(200, "application/json", &big)).await;
    let names = SettingNames {
        ssl_verify: "ARCSIGHT_SSL_VERIFY",
        ca_file: None,
        max_response_mb: "ARCSIGHT_MAX_RESPONSE_MB",
    };
    let cfg = EsmConfig {
        max_response_bytes: 1 << 20,
        setting_names: names,
        ..config(base, 1, 1)
    };
    let (_client, lists) = service(cfg, 10);
    let err = lists.get_entries(LIST).await.unwrap_err();
    assert!(
        matches!(
            err,
            ActiveListError::Esm(EsmError::TooLarge { limit_mib: 1, .. })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("ARCSIGHT_MAX_RESPONSE_MB"), "{text}");
    assert!(!text.contains("ARCSIGHT_INCIDENTS"), "{text}");
}
