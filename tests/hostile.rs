//! Hostile and broken peers (issue 14), black box: a raw HTTP server in the test plays a
//! misbehaving ESM or platform (a 500 MB answer generated lazily, a redirect to another port,
//! a refused token, ids holding control characters, errors echoing the token in five
//! encodings), and each test asserts the memory bound, the requests made, the exit status and
//! that no form of any secret is shown.

// A test binary of its own: its memory bounds are read from this process's peak RSS, which
// the other black-box tests (in `tests/it`) would otherwise share.
#[path = "it/common/hostile_server.rs"]
mod hostile_server;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use arcsight_incidents::esm::{ApiDialect, EsmClient, EsmConfig, EsmError};
use arcsight_incidents::opencti::{OpenCtiClient, OpenCtiConfig, OpenCtiError};
use base64::Engine;
use hostile_server::{HostileServer, Reply, Request};
use secrecy::SecretString;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_arcsight-incidents");
const PASSWORD: &str = "Hostile-Pa55word-QUUX";
const TOKEN: &str = "hostile-token-FROB-7731";
const MIB: u64 = 1024 * 1024;
/// The hostile answer: far more than any limit, never allocated by the server.
const HUGE: u64 = 500 * MIB;

/// Held by every test that makes this process hold much memory, so the peak-memory
/// measurements (process-wide) see only their own test.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Every form of `secret` a hostile peer might echo: as is, upper-case, %-encoded,
/// HTML-entity-encoded and base64.
fn forms(secret: &str) -> Vec<String> {
    vec![
        secret.to_owned(),
        secret.to_uppercase(),
        secret.bytes().map(|b| format!("%{b:02X}")).collect(),
        secret.chars().map(|c| format!("&#{};", c as u32)).collect(),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

fn assert_no_secret(text: &str) {
    for secret in [PASSWORD, TOKEN] {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "a form of a secret ({form}) shown:\n{text}"
            );
        }
    }
}

fn esm_config(base: &str) -> EsmConfig {
    EsmConfig {
        dialect: ApiDialect::Prefixed,
        max_attempts: 2,
        retry_min_wait: Duration::from_millis(1),
        retry_max_wait: Duration::from_millis(2),
        request_timeout: Duration::from_secs(60),
        concurrency: 2,
        event_batch_size: 100,
        ..EsmConfig::new(
            url::Url::parse(base).unwrap(),
            "admin",
            SecretString::from(PASSWORD),
        )
    }
}

fn platform_config(base: &str) -> OpenCtiConfig {
    OpenCtiConfig {
        url: url::Url::parse(base).unwrap(),
        token: SecretString::from(TOKEN),
        ssl_verify: true,
        ca_files: Vec::new(),
        custom_headers: vec![("X-Proxy-Key".into(), "proxy-header-secret-9".into())],
        timeout: Duration::from_secs(60),
        max_response_bytes: 8 * MIB,
    }
}

fn login_answer() -> Reply {
    Reply::json(
        200,
        json!({"log.loginResponse": {"log.return": "esm-session-token-XYZ"}}),
    )
}

fn case(id: &str) -> serde_json::Value {
    json!({"resourceid": id, "name": "a case", "createdTimestamp": 1_700_000_000_000i64,
           "modifiedTimestamp": 1_700_000_000_000i64})
}

/// An ESM whose case batch and the case `big` answer 500 MB (`sized`: with a Content-Length,
/// else chunked), and whose other cases are normal.
fn huge_esm(sized: bool) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req: &Request| {
        if req.path.contains("LoginService/login") {
            login_answer()
        } else if req.path.contains("getResourcesByIds") {
            Reply::Huge { bytes: HUGE, sized }
        } else if req.path.contains("getResourceById") {
            if req.body.contains("\"big\"") {
                Reply::Huge { bytes: HUGE, sized }
            } else {
                Reply::json(
                    200,
                    json!({"cas.getResourceByIdResponse": {"cas.return": case("small")}}),
                )
            }
        } else if req.path.contains("getSecurityEvents") {
            Reply::Huge { bytes: HUGE, sized }
        } else {
            Reply::json(404, json!({}))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_mb_esm_answer_is_refused_while_streaming_and_never_downloaded_twice() {
    let _alone = MEMORY.lock().await;
    for sized in [false, true] {
        let server = HostileServer::start(huge_esm(sized)).await;
        let esm = EsmClient::new(esm_config(&server.url())).unwrap();
        let before = peak_rss();
        let got = esm.get_cases(&["big".into(), "small".into()]).await;
        let events = esm.get_security_events(&[1, 2]).await;
        let grown = peak_rss().saturating_sub(before);
        assert!(
            grown < 200 * MIB,
            "peak RSS grew by {} MB facing a 500 MB answer (sized: {sized})",
            grown / MIB
        );

        // The oversize batch was split: the big case alone fails, the other is read.
        assert_eq!(got.len(), 2);
        let err = got[0].1.as_ref().unwrap_err();
        assert!(
            matches!(err, EsmError::TooLarge { limit_mib: 64, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("64 MiB") && text.contains("ARCSIGHT_INCIDENTS_MAX_RESPONSE_MB"),
            "{text}"
        );
        assert_eq!(got[1].1.as_ref().unwrap()["resourceid"], "small");
        // Never re-downloaded whole: one batch request, then one request per case.
        assert_eq!(server.count("getResourcesByIds"), 1, "sized: {sized}");
        assert_eq!(server.count("getResourceById"), 2, "sized: {sized}");
        // The event batch too: one oversize batch, then each id alone (each oversize here).
        assert_eq!(server.count("getSecurityEvents"), 3, "sized: {sized}");
        assert!(events.events.is_empty());
        assert_eq!(events.failed.len(), 2);
        assert!(matches!(*events.failed[&1], EsmError::TooLarge { .. }));
        assert_no_secret(&format!("{got:?} {events:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_mb_platform_answer_is_refused_while_streaming() {
    let server = HostileServer::start(|_: &Request| Reply::Huge {
        bytes: HUGE,
        sized: false,
    })
    .await;
    let _alone = MEMORY.lock().await;
    let client = OpenCtiClient::new(platform_config(&server.url())).unwrap();
    let before = peak_rss();
    let err = client.health().await.unwrap_err();
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 200 * MIB, "peak RSS grew by {} MB", grown / MIB);
    assert!(
        matches!(err, OpenCtiError::TooLarge { limit_mib: 8, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("OPENCTI_MAX_RESPONSE_MB"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(server.count("/graphql"), 1);
}

#[tokio::test]
async fn a_case_with_a_50_mb_field_fails_alone() {
    let _alone = MEMORY.lock().await;
    let server = HostileServer::start(|req: &Request| {
        if req.path.contains("login") {
            login_answer()
        } else {
            let mut big = case("big");
            big["description"] = json!("x".repeat(50 * MIB as usize));
            Reply::json(
                200,
                json!({"cas.getResourcesByIdsResponse": {"cas.return": [big, case("small")]}}),
            )
        }
    })
    .await;
    let esm = EsmClient::new(esm_config(&server.url())).unwrap();
    let got = esm.get_cases(&["big".into(), "small".into()]).await;
    let err = got[0].1.as_ref().unwrap_err();
    assert!(matches!(err, EsmError::Oversized { .. }), "{err:?}");
    assert!(got[1].1.is_ok());
    assert_eq!(server.count("getResourcesByIds"), 1);
}

#[tokio::test]
async fn a_platform_redirect_is_not_followed() {
    let elsewhere = HostileServer::start(|_: &Request| Reply::json(200, json!({}))).await;
    let target = format!("{}/graphql", elsewhere.url());
    let server = HostileServer::start(move |_: &Request| Reply::Redirect {
        status: 307,
        location: target.clone(),
    })
    .await;
    let client = OpenCtiClient::new(platform_config(&server.url())).unwrap();
    let err = client.health().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("307") && text.contains("redirects are not followed"),
        "{text}"
    );
    assert_eq!(server.count("/graphql"), 1);
    assert_eq!(elsewhere.requests(), 0, "the redirect was followed");
    assert_no_secret(&format!("{err} {err:?}"));
}

/// Runs the binary with the connector's minimal settings plus `extra`, and a deadline.
fn run_bin(args: &[&str], extra: &[(&str, String)], deadline: Duration) -> (Output, Duration) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("CONNECTOR_ID", "6d3c2a3e-1f4b-4a57-9f0e-2b8f8f0d2c11")
        .env("ARCSIGHT_INCIDENTS_USERNAME", "admin")
        .env("ARCSIGHT_INCIDENTS_PASSWORD", PASSWORD)
        .env("OPENCTI_TOKEN", TOKEN)
        .env("OPENCTI_JSON_LOGGING", "false")
        .env("CONNECTOR_LOG_LEVEL", "info")
        .env("CONNECTOR_RUN_AND_TERMINATE", "true");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().unwrap();
    // Kill a run that does not end, so the test fails instead of hanging.
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_ends_the_run_at_once_with_status_1() {
    let answers: [(&str, Reply); 2] = [
        (
            "HTTP 401",
            Reply::json(401, json!({"errors": [{"message": "bad token"}]})),
        ),
        (
            "AUTH_REQUIRED",
            Reply::json(
                200,
                json!({"errors": [{"message": "You must be logged in to do this.",
                                   "extensions": {"code": "AUTH_REQUIRED"}}], "data": null}),
            ),
        ),
    ];
    for (what, reply) in answers {
        let platform = HostileServer::start(move |_: &Request| reply.clone()).await;
        let esm = HostileServer::start(|_: &Request| login_answer()).await;
        let (out, took) = tokio::task::spawn_blocking({
            let (p, e) = (platform.url(), esm.url());
            move || {
                run_bin(
                    &["run"],
                    &[("OPENCTI_URL", p), ("ARCSIGHT_INCIDENTS_API_BASE_URL", e)],
                    Duration::from_secs(60),
                )
            }
        })
        .await
        .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(took < Duration::from_secs(30), "{what}: took {took:?}");
        assert!(stderr.contains("OPENCTI_TOKEN"), "{what}: {stderr}");
        assert_eq!(platform.requests(), 1, "{what}: retried a refused token");
        assert_eq!(esm.requests(), 0, "{what}");
        assert_no_secret(&format!("{stderr}{}", text(&out.stdout)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_failed_when_the_platform_refuses_the_token() {
    let platform = HostileServer::start(|_: &Request| Reply::json(401, json!({}))).await;
    let esm = HostileServer::start(|_: &Request| login_answer()).await;
    let (out, _) = tokio::task::spawn_blocking({
        let (p, e) = (platform.url(), esm.url());
        move || {
            run_bin(
                &["check"],
                &[("OPENCTI_URL", p), ("ARCSIGHT_INCIDENTS_API_BASE_URL", e)],
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("platform") && l.contains("FAILED") && l.contains("401")),
        "{stdout}"
    );
    assert_eq!(platform.requests(), 1);
    assert_no_secret(&format!("{stdout}{}", text(&out.stderr)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_platform_ends_a_run_once_after_the_set_wait() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let esm = HostileServer::start(|_: &Request| login_answer()).await;
    let (out, took) = tokio::task::spawn_blocking({
        let e = esm.url();
        move || {
            run_bin(
                &["run"],
                &[
                    ("OPENCTI_URL", format!("http://127.0.0.1:{port}")),
                    ("ARCSIGHT_INCIDENTS_API_BASE_URL", e),
                    ("OPENCTI_UNREACHABLE_TIMEOUT", "2".into()),
                ],
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(stderr.contains("OPENCTI_UNREACHABLE_TIMEOUT"), "{stderr}");
    assert_eq!(esm.requests(), 0);
    assert_no_secret(&stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esm_ids_with_control_characters_cannot_forge_text_log_lines() {
    let ids = [
        "esc\u{1b}[2J\u{1b}]0;pwned\u{7}",
        "nul\u{0}byte",
        "cr\roverwrite",
        "lf\n2099-01-01T00:00:00Z ERROR forged line",
    ];
    let listed = json!({"cas.findAllIdsResponse": {"cas.return": ids}});
    let esm = HostileServer::start(move |req: &Request| {
        if req.path.contains("login") {
            login_answer()
        } else if req.path.contains("findAllIds") {
            Reply::json(200, listed.clone())
        } else if req.path.contains("logout") {
            Reply::json(200, json!({}))
        } else {
            // Every case fetch fails, so each id is logged with the failure.
            Reply::json(500, json!({}))
        }
    })
    .await;
    let (dir, out, _) = run_offline(
        esm.url(),
        "ctl",
        &[
            ("CONNECTOR_LOG_LEVEL", "warn".into()),
            ("ARCSIGHT_INCIDENTS_MAX_ATTEMPTS", "1".into()),
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = out.stderr.clone();
    let shown = text(&stderr);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    for byte in [0x1b, 0x00, b'\r', 0x07] {
        assert!(
            !stderr.contains(&byte),
            "raw byte {byte:#x} in the logs:\n{shown}"
        );
    }
    // Every line is one of ours: a timestamp, then a level; none starts with the forged text.
    for line in shown.lines() {
        let level = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            line.starts_with("20") && ["WARN", "ERROR", "INFO"].contains(&level),
            "a line that is not a log record: {line:?}\n{shown}"
        );
        assert!(!line.starts_with("2099"), "forged line: {line:?}");
    }
    // The ids are there, escaped, so an operator can still tell which case failed.
    assert!(shown.contains("nul\\u{0}byte"), "{shown}");
    assert!(shown.contains("lf\\n2099"), "{shown}");
    assert!(esm.count("getResourcesByIds") >= 1);
    assert_no_secret(&shown);
}

#[tokio::test]
async fn platform_errors_echoing_the_token_in_five_encodings_show_none() {
    for (i, form) in forms(TOKEN).into_iter().enumerate() {
        for status in [200u16, 400, 502] {
            let message = format!("invalid token {form} (case {i})");
            let body = if status == 502 {
                // A proxy page, echoing the request's header.
                Reply::Raw {
                    status,
                    content_type: "text/html",
                    body: format!("<html><body>Authorization: Bearer {form}</body></html>"),
                }
            } else {
                Reply::json(
                    status,
                    json!({"errors": [{"message": message, "extensions": {"code": "FORBIDDEN_ACCESS"}}]}),
                )
            };
            let server = HostileServer::start(move |_: &Request| body.clone()).await;
            let client = OpenCtiClient::new(platform_config(&server.url())).unwrap();
            let err = client.health().await.unwrap_err();
            let shown = format!("{err} {err:?}");
            assert_no_secret(&shown);
            assert!(!shown.contains("<html>"), "a body copied verbatim: {shown}");
            if status != 502 {
                // The code is kept: it says what went wrong without the body.
                assert!(shown.contains("FORBIDDEN_ACCESS"), "{shown}");
            }
            if status == 200 {
                assert!(err.is_auth(), "{shown}");
            }
            assert_eq!(server.requests(), 1);
        }
    }
}

#[test]
fn a_secret_pasted_into_the_wrong_setting_is_never_shown() {
    // The password's own setting is empty: nothing says the pasted text is a secret.
    let (out, _) = run_bin(
        &["check-settings"],
        &[
            ("ARCSIGHT_INCIDENTS_API_BASE_URL", "https://esm:8443".into()),
            ("OPENCTI_URL", "http://octi:8080".into()),
            ("ARCSIGHT_INCIDENTS_PASSWORD", String::new()),
            ("ARCSIGHT_INCIDENTS_SSL_VERIFY", PASSWORD.into()),
            ("ARCSIGHT_INCIDENTS_TLP_LEVEL", PASSWORD.to_lowercase()),
        ],
        Duration::from_secs(30),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ARCSIGHT_INCIDENTS_SSL_VERIFY:"),
        "{stderr}"
    );
    assert!(stderr.contains("ARCSIGHT_INCIDENTS_TLP_LEVEL:"), "{stderr}");
    assert!(stderr.contains("ARCSIGHT_INCIDENTS_PASSWORD:"), "{stderr}");
    assert_no_secret(&stderr);
    assert!(
        !stderr.to_lowercase().contains(&PASSWORD.to_lowercase()),
        "{stderr}"
    );

    // Set, and part of it pasted elsewhere: a value contained in a secret is not shown either.
    let (out, _) = run_bin(
        &["check-settings"],
        &[
            ("ARCSIGHT_INCIDENTS_API_BASE_URL", "https://esm:8443".into()),
            ("OPENCTI_URL", "http://octi:8080".into()),
            // (CONNECTOR_ID takes any string, as pycti does: a word list checks the value.)
            ("CONNECTOR_LOG_LEVEL", PASSWORD[..12].into()),
        ],
        Duration::from_secs(30),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CONNECTOR_LOG_LEVEL:"), "{stderr}");
    assert!(!stderr.contains(&PASSWORD[..12]), "{stderr}");
}

#[test]
fn a_mapping_where_a_secret_belongs_is_named_without_its_content() {
    let dir = std::env::temp_dir().join(format!("hostile-yml-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let yml = dir.join("config.yml");
    std::fs::write(
        &yml,
        format!("arcsight_incidents:\n  password:\n    value: \"{PASSWORD}\"\n  tlp_level: \"{PASSWORD}\"\n"),
    )
    .unwrap();
    let (out, _) = run_bin(
        &["--config", yml.to_str().unwrap(), "check-settings"],
        &[
            ("ARCSIGHT_INCIDENTS_API_BASE_URL", "https://esm:8443".into()),
            ("OPENCTI_URL", "http://octi:8080".into()),
            ("ARCSIGHT_INCIDENTS_PASSWORD", String::new()),
        ],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("arcsight_incidents.password holds a mapping"),
        "{stderr}"
    );
    assert_no_secret(&stderr);
}

#[test]
fn urls_with_a_query_or_fragment_are_refused_without_being_shown() {
    for (name, url) in [
        (
            "ARCSIGHT_INCIDENTS_API_BASE_URL",
            "https://esm:8443/?apikey=QKEY-998877",
        ),
        ("OPENCTI_URL", "http://octi:8080/#QKEY-998877"),
    ] {
        let mut env = vec![
            (
                "ARCSIGHT_INCIDENTS_API_BASE_URL",
                "https://esm:8443".to_owned(),
            ),
            ("OPENCTI_URL", "http://octi:8080".to_owned()),
        ];
        env.retain(|(k, _)| *k != name);
        env.push((name, url.to_owned()));
        let (out, _) = run_bin(&["check-settings"], &env, Duration::from_secs(30));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}: must not have a query")),
            "{stderr}"
        );
        assert!(!stderr.contains("QKEY-998877"), "{stderr}");
    }
}

#[test]
fn convert_reports_a_line_of_invalid_utf8_and_goes_on() {
    let dir = std::env::temp_dir().join(format!("hostile-cv-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("cases.jsonl");
    let mut bytes = b"{\"case\":{\"name\":\"a\"}}\n".to_vec();
    bytes.extend_from_slice(b"{\"case\":{\"name\":\"\xc3\x28\"}}\n");
    bytes.extend_from_slice(b"{\"case\":{\"name\":\"c\"}}\n");
    std::fs::write(&input, bytes).unwrap();
    let (out, _) = run_bin(
        &["convert", input.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "line 2: not valid UTF-8\n");
    assert_eq!(text(&out.stdout).lines().count(), 2);
}

#[test]
fn metrics_host_defaults_to_all_interfaces_as_pycti() {
    use arcsight_incidents::settings::{Settings, Sources};
    let env = |extra: &[(&str, &str)]| {
        let mut m: std::collections::HashMap<String, String> = [
            ("CONNECTOR_ID", "6d3c2a3e-1f4b-4a57-9f0e-2b8f8f0d2c11"),
            ("OPENCTI_URL", "http://octi:8080"),
            ("OPENCTI_TOKEN", TOKEN),
            ("ARCSIGHT_INCIDENTS_API_BASE_URL", "https://esm:8443"),
            ("ARCSIGHT_INCIDENTS_USERNAME", "admin"),
            ("ARCSIGHT_INCIDENTS_PASSWORD", PASSWORD),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_sources(&Sources::new(m, None).unwrap())
    };
    let s = env(&[]).unwrap();
    assert_eq!(s.connector.metrics.host.to_string(), "0.0.0.0");
    let s = env(&[("CONNECTOR_METRICS_HOST", "127.0.0.1")]).unwrap();
    assert_eq!(s.connector.metrics.host.to_string(), "127.0.0.1");
    let e = env(&[("CONNECTOR_METRICS_HOST", "not an address")]).unwrap_err();
    assert!(e.to_string().contains("CONNECTOR_METRICS_HOST"), "{e}");
}

#[test]
fn epoch_timestamps_render_as_python_computes_them() {
    // Expected values from CPython 3.11, the reference's rule run as is:
    // `datetime.fromtimestamp(n / 1000 if n > 1e12 else n, tz=timezone.utc)`, formatted
    // `%Y-%m-%dT%H:%M:%S.%f` cut to milliseconds. The float division and the microsecond
    // rounding (half to even) make some far-future milliseconds differ from the integer ones;
    // -1 is under 1e12, so seconds, in Python as here.
    let cases: [(serde_json::Value, &str); 9] = [
        (json!(-1), "1969-12-31T23:59:59.000Z"),
        (
            json!("1969-12-31T23:59:59.999Z"),
            "1969-12-31T23:59:59.999Z",
        ),
        (json!(1_000_000_000_001i64), "2001-09-09T01:46:40.001Z"),
        (json!(1_708_898_191_213i64), "2024-02-25T21:56:31.213Z"),
        (json!(14_920_339_938_960i64), "2442-10-22T02:52:18.959Z"),
        (json!(32_503_680_000_001i64), "3000-01-01T00:00:00.000Z"),
        (json!("32503680000001"), "3000-01-01T00:00:00.000Z"),
        (json!(215_192_146_929_020i64), "8789-03-02T20:22:09.019Z"),
        (json!(253_402_300_799_999i64), "9999-12-31T23:59:59.998Z"),
    ];
    let dir = std::env::temp_dir().join(format!("hostile-ts-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("cases.jsonl");
    let lines: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (ts, _))| {
            json!({"case": {"resourceid": format!("c{i}"), "name": "n", "createdTimestamp": ts},
                   "events": [{"eventId": i + 1, "endTime": ts}]})
            .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (out, _) = run_bin(
        &["convert", input.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let bundles: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bundles.len(), cases.len(), "{stdout}");
    for ((input, want), bundle) in cases.iter().zip(&bundles) {
        for kind in ["case-incident", "incident"] {
            let object = bundle["objects"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["type"] == kind)
                .unwrap_or_else(|| panic!("no {kind} for {input}: {bundle}"));
            assert_eq!(object["created"], *want, "{kind} for {input}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_that_times_out_is_a_warning_and_the_run_still_ends() {
    const SESSION: &str = "esm-session-token-XYZ";
    let esm = HostileServer::start(|req: &Request| {
        if req.path.contains("LoginService/logout") {
            Reply::Hang
        } else if req.path.contains("LoginService/login") {
            login_answer()
        } else if req.path.contains("findAllIds") {
            Reply::json(
                200,
                json!({"cas.findAllIdsResponse": {"cas.return": ["c1"]}}),
            )
        } else if req.path.contains("getResourcesByIds") {
            Reply::json(
                200,
                json!({"cas.getResourcesByIdsResponse": {"cas.return": [case("c1")]}}),
            )
        } else {
            Reply::json(404, json!({}))
        }
    })
    .await;
    let (dir, out, took) = run_offline(
        esm.url(),
        "lo",
        &[
            ("OPENCTI_JSON_LOGGING", "true".into()),
            ("ARCSIGHT_INCIDENTS_REQUEST_TIMEOUT", "2".into()),
            ("ARCSIGHT_INCIDENTS_MAX_ATTEMPTS", "1".into()),
        ],
    )
    .await;
    let bundles = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = text(&out.stderr);
    // The case was delivered and the run succeeded: a logout is ESM's housekeeping.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(bundles, 1, "{stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(esm.count("logout"), 1, "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let warned = lines.iter().find(|l| {
        l["level"] == "WARN" && l["message"].as_str().is_some_and(|m| m.contains("logout"))
    });
    let warned = warned.unwrap_or_else(|| panic!("no warning about the logout:\n{stderr}"));
    assert!(
        warned.to_string().contains("timed out"),
        "the warning does not say it timed out: {warned}"
    );
    assert_no_secret(&stderr);
    assert!(
        !stderr.contains(SESSION),
        "the ESM session token shown:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kb_case_id_fails_that_case_only_and_never_reaches_the_state() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let long_id = "L".repeat(100 * 1024);
    let listed = json!({"cas.findAllIdsResponse": {"cas.return": ["c1", long_id, "c2"]}});
    let carried = Arc::new(AtomicUsize::new(0));
    let esm = HostileServer::start({
        let carried = carried.clone();
        move |req: &Request| {
            if req.body.contains("LLLLLLLLLLLLLLLL") || req.path.contains("LLLLLLLLLLLLLLLL") {
                carried.fetch_add(1, Ordering::SeqCst);
            }
            if req.path.contains("LoginService/login") {
                login_answer()
            } else if req.path.contains("findAllIds") {
                Reply::json(200, listed.clone())
            } else if req.path.contains("getResourcesByIds") {
                let cases: Vec<_> = ["c1", "c2"]
                    .into_iter()
                    .filter(|id| req.body.contains(&format!("\"{id}\"")))
                    .map(case)
                    .collect();
                Reply::json(
                    200,
                    json!({"cas.getResourcesByIdsResponse": {"cas.return": cases}}),
                )
            } else {
                Reply::json(200, json!({}))
            }
        }
    })
    .await;
    let (dir, out, _) = run_offline(esm.url(), "id", &[]).await;
    let mut bundles = String::new();
    let mut state = None;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            state = Some(content);
        } else {
            bundles.push_str(&content);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = text(&out.stderr);
    // That case failed, so the run did; the two others were delivered.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for id in ["c1", "c2"] {
        assert!(
            bundles.contains(&format!("\"external_id\":\"{id}\"")),
            "{id} not delivered:\n{stderr}"
        );
    }
    assert!(
        !bundles.contains("LLLLLLLLLLLLLLLL"),
        "the long id was delivered"
    );
    let state = state.expect("the run saved its state");
    assert!(
        !state.contains("LLLLLLLLLLLLLLLL") && state.len() < 10 * 1024,
        "the long id went into the state ({} bytes)",
        state.len()
    );
    assert_eq!(
        carried.load(Ordering::SeqCst),
        0,
        "the long id was sent to ESM"
    );
    // Said, by size, and counted as a failure; the id itself is not copied into the logs.
    assert!(
        stderr.contains("far longer than any real one") && stderr.contains("102400"),
        "{stderr}"
    );
    assert!(stderr.contains("failed=1"), "{stderr}");
    assert!(
        !stderr.contains("LLLLLLLLLLLLLLLL"),
        "the long id was logged"
    );
    assert_no_secret(&stderr);
}

/// The connector as a daemon (a run an hour, offline into `dir`, JSON logs) against `esm`.
struct Daemon {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    logs: String,
}

impl Daemon {
    fn start(esm: &str, dir: &std::path::Path, extra: &[(&str, String)]) -> Daemon {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("run")
            .env_clear()
            .current_dir(std::env::temp_dir())
            .env("CONNECTOR_ID", "6d3c2a3e-1f4b-4a57-9f0e-2b8f8f0d2c11")
            .env("ARCSIGHT_INCIDENTS_API_BASE_URL", esm)
            .env("ARCSIGHT_INCIDENTS_USERNAME", "admin")
            .env("ARCSIGHT_INCIDENTS_PASSWORD", PASSWORD)
            .env("CONNECTOR_SEND_TO_QUEUE", "false")
            .env("CONNECTOR_SEND_TO_DIRECTORY", "true")
            .env("CONNECTOR_SEND_TO_DIRECTORY_PATH", dir)
            .env("CONNECTOR_DURATION_PERIOD", "PT1H")
            .env("CONNECTOR_LOG_LEVEL", "info")
            .env("OPENCTI_JSON_LOGGING", "true")
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        Daemon {
            child,
            lines,
            logs: String::new(),
        }
    }

    /// Reads the logs up to a line holding `text` (a minute at most).
    async fn wait_for(&mut self, text: &str) {
        let found = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.logs.push_str(&line);
                self.logs.push('\n');
                if line.contains(text) {
                    return true;
                }
            }
            false
        };
        let found = tokio::time::timeout(Duration::from_secs(60), found).await;
        assert!(
            matches!(found, Ok(true)),
            "no log line with {text}:\n{}",
            self.logs
        );
    }

    /// Every log line, once the process has ended.
    async fn rest(&mut self) -> &str {
        while let Some(line) = self.lines.next_line().await.unwrap() {
            self.logs.push_str(&line);
            self.logs.push('\n');
        }
        &self.logs
    }
}

/// The local address the process listens on at `port`, from the kernel's table
/// (`/proc/net/tcp`: hex address and port, state `0A` = listening).
fn listening_address(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (addr, p) = cols.get(1)?.split_once(':')?;
        if cols.get(3) != Some(&"0A") || u16::from_str_radix(p, 16).ok()? != port {
            return None;
        }
        let ip = u32::from_str_radix(addr, 16).ok()?;
        // The kernel prints the address in host byte order (little-endian here).
        Some(std::net::Ipv4Addr::from(ip.swap_bytes()).to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_server_binds_the_host_it_is_given() {
    let esm = HostileServer::start(|req: &Request| {
        if req.path.contains("LoginService/login") {
            login_answer()
        } else {
            Reply::json(200, json!({"cas.findAllIdsResponse": {"cas.return": []}}))
        }
    })
    .await;
    for (host, want) in [(None, "0.0.0.0"), (Some("127.0.0.1"), "127.0.0.1")] {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir =
            std::env::temp_dir().join(format!("hostile-mh-{}", uuid::Uuid::new_v4().simple()));
        let mut extra = vec![
            ("CONNECTOR_EXPOSE_METRICS", "true".to_owned()),
            ("CONNECTOR_METRICS_PORT", port.to_string()),
        ];
        if let Some(h) = host {
            extra.push(("CONNECTOR_METRICS_HOST", h.to_owned()));
        }
        // The metrics server is up before the first run.
        let mut daemon = Daemon::start(&esm.url(), &dir, &extra);
        daemon.wait_for("\"run finished\"").await;
        let bound = listening_address(port);
        daemon.child.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            bound.as_deref(),
            Some(want),
            "CONNECTOR_METRICS_HOST={host:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_during_a_hanging_logout_ends_the_daemon_within_docker_grace() {
    let esm = HostileServer::start(|req: &Request| {
        if req.path.contains("LoginService/logout") {
            Reply::Hang
        } else if req.path.contains("LoginService/login") {
            login_answer()
        } else {
            Reply::json(200, json!({"cas.findAllIdsResponse": {"cas.return": []}}))
        }
    })
    .await;
    let dir = std::env::temp_dir().join(format!("hostile-st-{}", uuid::Uuid::new_v4().simple()));
    // The default request timeout (30 s) and retries: the logout alone outlasts Docker's grace.
    let mut daemon = Daemon::start(&esm.url(), &dir, &[]);
    daemon.wait_for("\"cases listed\"").await;
    // The run's last step is the logout: wait until ESM holds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while esm.count("logout") == 0 {
        assert!(std::time::Instant::now() < deadline, "no logout request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = std::time::Instant::now();
    let pid = daemon.child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(60), daemon.child.wait())
        .await
        .expect("the daemon ends")
        .unwrap();
    let took = stopped.elapsed();
    let logs = daemon.rest().await.to_owned();
    let _ = std::fs::remove_dir_all(&dir);
    // Docker sends SIGKILL 10 s after SIGTERM.
    assert!(
        took < Duration::from_secs(8),
        "took {took:?} to stop:\n{logs}"
    );
    assert_eq!(status.code(), Some(0), "{logs}");
    let warned = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("logout timed out"))
        });
    assert!(warned, "no warning about the logout:\n{logs}");
    assert_no_secret(&logs);
    assert!(!logs.contains("esm-session-token-XYZ"), "{logs}");
}

/// A `run` against the ESM at `esm_url` that delivers to a fresh directory (no platform, no
/// broker), with `extra` settings: the directory, the output and how long the run took.
async fn run_offline(
    esm_url: String,
    tag: &str,
    extra: &[(&'static str, String)],
) -> (std::path::PathBuf, Output, Duration) {
    let dir = std::env::temp_dir().join(format!("hostile-{tag}-{}", uuid::Uuid::new_v4().simple()));
    let mut env = vec![
        ("ARCSIGHT_INCIDENTS_API_BASE_URL", esm_url),
        ("CONNECTOR_SEND_TO_QUEUE", "false".into()),
        ("CONNECTOR_SEND_TO_DIRECTORY", "true".into()),
        (
            "CONNECTOR_SEND_TO_DIRECTORY_PATH",
            dir.display().to_string(),
        ),
    ];
    env.extend(extra.iter().cloned());
    let (out, took) =
        tokio::task::spawn_blocking(move || run_bin(&["run"], &env, Duration::from_secs(60)))
            .await
            .unwrap();
    (dir, out, took)
}
