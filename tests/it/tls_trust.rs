//! TLS as operators of the Python connector configure it: a RabbitMQ behind a TLS listener
//! with a private CA (and client certificates), reached through `MQ_USE_SSL_*`; a platform
//! behind a private CA, reached through `OPENCTI_CA_FILE`, `REQUESTS_CA_BUNDLE`, a path as
//! `OPENCTI_SSL_VERIFY`, or `SSL_CERT_FILE`. Verification is on unless turned off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use arcsight_incidents::delivery::{AmqpDelivery, AmqpOptions, MqTls, Sink, split_bundle};
use arcsight_incidents::opencti::{MqConnection, OpenCtiClient};
use arcsight_incidents::settings::{Settings, Sources};
use arcsight_incidents::stix::{Bundle, Identity, StixObject};

use crate::common::amqp::{Topology, mq};
use crate::common::fake_platform::FakePlatform;
use crate::common::tls_proxy::{self, Pki, encrypted_key_pem};

const TOKEN: &str = "tls-token-XYZZY";

fn base_env() -> HashMap<String, String> {
    crate::common::env::required(TOKEN, "esm-password")
}

fn settings(extra: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
    let mut env = base_env();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::from_sources(&Sources::new(env, None).unwrap()).map_err(|e| e.lines())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "arcsight-tls-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// The local broker, reached as `localhost` through the TLS proxy on `port`.
fn tls_mq(topo: &Topology, port: u16) -> MqConnection {
    MqConnection {
        host: "localhost".into(),
        port,
        use_ssl: true,
        ..mq(&topo.exchange, &topo.routing)
    }
}

/// Connects with `tls`, publishes one object and returns how many messages reached the real
/// broker's queue; the error text when the connection fails.
async fn publish_one(topo: &Topology, port: u16, tls: MqTls) -> Result<usize, String> {
    let opts = AmqpOptions {
        tls,
        connect_timeout: std::time::Duration::from_secs(10),
        ..AmqpOptions::default()
    };
    let mut d = AmqpDelivery::connect(&tls_mq(topo, port), "applicant", opts)
        .await
        .map_err(|e| e.to_string())?;
    let parts = split_bundle(&Bundle::new(vec![StixObject::Identity(
        Identity::arcsight_author(),
    )]));
    d.publish(&parts, None).await.map_err(|e| e.to_string())?;
    d.close().await.map_err(|e| e.to_string())?;
    Ok(topo.drain().await.len())
}

fn broker() -> SocketAddr {
    "127.0.0.1:5672".parse().unwrap()
}

#[tokio::test]
async fn a_tls_broker_with_a_private_ca_is_trusted_through_mq_use_ssl_ca_and_only_then() {
    let pki = Pki::new("broker CA");
    let proxy = tls_proxy::start(broker(), &pki, None).await;
    let topo = Topology::new().await;

    // Verification is on by default: an unknown CA is refused.
    let err = publish_one(&topo, proxy.port, MqTls::default())
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // MQ_USE_SSL_CA as PEM text (pycti's "memory certificate") and as a file's path.
    let dir = temp_dir("mq-ca");
    let ca_path = write(&dir, "ca.pem", &pki.ca_pem());
    for value in [pki.ca_pem(), ca_path] {
        let s = settings(&[("MQ_USE_SSL_CA", &value)]).unwrap();
        assert!(s.mq_tls.verify, "verification stays on");
        assert_eq!(publish_one(&topo, proxy.port, s.mq_tls).await, Ok(1));
    }

    // pycti's default: no verification at all.
    let s = settings(&[("MQ_USE_SSL_REJECT_UNAUTHORIZED", "false")]).unwrap();
    assert_eq!(publish_one(&topo, proxy.port, s.mq_tls).await, Ok(1));

    // Another CA's certificate is still refused with MQ_USE_SSL_CA set.
    let other = Pki::new("another CA");
    let s = settings(&[("MQ_USE_SSL_CA", &other.ca_pem())]).unwrap();
    assert!(publish_one(&topo, proxy.port, s.mq_tls).await.is_err());

    topo.drop_all().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_broker_that_asks_for_a_client_certificate_gets_mq_use_ssl_cert_and_key() {
    let server_pki = Pki::new("broker CA");
    let client_pki = Pki::new("client CA");
    let proxy = tls_proxy::start(broker(), &server_pki, Some(&client_pki)).await;
    let topo = Topology::new().await;
    let dir = temp_dir("mq-client");
    let client = client_pki.leaf(&["arcsight-incidents"]);
    let cert_path = write(&dir, "client.pem", &client.cert_pem);
    let key_path = write(&dir, "client.key", &client.key.serialize_pem());
    let encrypted = encrypted_key_pem(&client.key, "s3cret passphrase");
    let encrypted_path = write(&dir, "client-encrypted.key", &encrypted);
    let ca = server_pki.ca_pem();

    // Without a client certificate the listener refuses the connection.
    let s = settings(&[("MQ_USE_SSL_CA", &ca)]).unwrap();
    assert!(publish_one(&topo, proxy.port, s.mq_tls).await.is_err());

    // Paths, PEM text, and an encrypted key with its passphrase.
    let key_pem = client.key.serialize_pem();
    for (cert, key, pass) in [
        (cert_path.as_str(), key_path.as_str(), None),
        (client.cert_pem.as_str(), key_pem.as_str(), None),
        (
            cert_path.as_str(),
            encrypted_path.as_str(),
            Some("s3cret passphrase"),
        ),
    ] {
        let mut extra = vec![
            ("MQ_USE_SSL_CA", ca.as_str()),
            ("MQ_USE_SSL_CERT", cert),
            ("MQ_USE_SSL_KEY", key),
        ];
        if let Some(p) = pass {
            extra.push(("MQ_USE_SSL_PASSPHRASE", p));
        }
        let s = settings(&extra).unwrap();
        assert_eq!(
            publish_one(&topo, proxy.port, s.mq_tls).await,
            Ok(1),
            "{key}"
        );
    }

    // A wrong or missing passphrase stops the connector at start-up, naming the setting and
    // never the key or the passphrase.
    for pass in [Some("wrong"), None] {
        let mut extra = vec![
            ("MQ_USE_SSL_CERT", cert_path.as_str()),
            ("MQ_USE_SSL_KEY", encrypted.as_str()),
        ];
        if let Some(p) = pass {
            extra.push(("MQ_USE_SSL_PASSPHRASE", p));
        }
        let lines = settings(&extra).unwrap_err();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("MQ_USE_SSL_KEY: "), "{lines:?}");
        assert!(!lines[0].contains("ENCRYPTED") && !lines[0].contains("wrong"));
    }
    // A certificate without its key.
    let lines = settings(&[("MQ_USE_SSL_CERT", &cert_path)]).unwrap_err();
    assert_eq!(
        lines,
        ["MQ_USE_SSL_KEY: is required when MQ_USE_SSL_CERT is set"]
    );

    topo.drop_all().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// The simulated platform behind a TLS proxy with a private CA; the platform's https URL.
async fn tls_platform(pki: &Pki) -> (FakePlatform, tls_proxy::TlsProxy, String) {
    let platform = FakePlatform::start(TOKEN, serde_json::json!({})).await;
    let proxy = tls_proxy::start(platform.addr, pki, None).await;
    let url = format!("https://localhost:{}", proxy.port);
    (platform, proxy, url)
}

async fn health(s: &Settings) -> Result<String, String> {
    let client =
        OpenCtiClient::new(s.opencti.client_config().unwrap()).map_err(|e| e.to_string())?;
    client.health().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_platform_behind_a_private_ca_is_reached_with_the_ca_operators_already_give() {
    let pki = Pki::new("platform CA");
    let (_platform, _proxy, url) = tls_platform(&pki).await;
    let dir = temp_dir("platform");
    let ca_path = write(&dir, "platform-ca.pem", &pki.ca_pem());

    // Verification on by default: refused.
    let s = settings(&[("OPENCTI_URL", &url)]).unwrap();
    assert!(s.opencti.ssl_verify);
    let err = health(&s).await.unwrap_err();
    assert!(!err.contains(TOKEN), "{err}");

    for extra in [
        ("OPENCTI_CA_FILE", ca_path.as_str()),
        // requests (under pycti) reads it; so do we.
        ("REQUESTS_CA_BUNDLE", ca_path.as_str()),
        // pycti passes OPENCTI_SSL_VERIFY to requests as `verify=`: a path verifies with it.
        ("OPENCTI_SSL_VERIFY", ca_path.as_str()),
    ] {
        let s = settings(&[("OPENCTI_URL", &url), extra]).unwrap();
        assert!(s.opencti.ssl_verify, "{extra:?}");
        assert!(
            health(&s).await.is_ok(),
            "{extra:?}: {:?}",
            health(&s).await
        );
    }

    // Verification off, as pycti's default.
    let s = settings(&[("OPENCTI_URL", &url), ("OPENCTI_SSL_VERIFY", "false")]).unwrap();
    assert!(health(&s).await.is_ok());

    // A CA file that does not exist is a settings problem, named.
    let lines = settings(&[("OPENCTI_CA_FILE", "/nonexistent/ca.pem")]).unwrap_err();
    assert_eq!(
        lines,
        ["OPENCTI_CA_FILE: /nonexistent/ca.pem is not a readable file"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn ssl_cert_file_replaces_the_os_store_as_for_openssl() {
    let pki = Pki::new("platform CA");
    let (_platform, _proxy, url) = tls_platform(&pki).await;
    let dir = temp_dir("ssl-cert-file");
    let ca_path = write(&dir, "store.pem", &pki.ca_pem());
    let run = |file: Option<String>| {
        let (dir, url) = (dir.clone(), url.clone());
        tokio::task::spawn_blocking(move || platform_check_line(&dir, &url, file.as_deref()))
    };
    let without = run(None).await.unwrap();
    assert!(without.contains("FAILED"), "{without}");
    let with = run(Some(ca_path)).await.unwrap();
    assert!(with.contains("OK"), "{with}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The `platform` line of `arcsight-incidents check` against `url`, with `SSL_CERT_FILE` when
/// given (ESM is unreachable on purpose: only the platform's line matters here).
fn platform_check_line(dir: &std::path::Path, url: &str, ssl_cert_file: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_arcsight-incidents"));
    cmd.arg("check").env_clear().current_dir(dir);
    for (k, v) in base_env() {
        cmd.env(k, v);
    }
    cmd.env("OPENCTI_URL", url)
        .env("ARCSIGHT_INCIDENTS_API_BASE_URL", "http://127.0.0.1:9")
        .env("ARCSIGHT_INCIDENTS_MAX_ATTEMPTS", "1");
    if let Some(f) = ssl_cert_file {
        cmd.env("SSL_CERT_FILE", f);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find(|l| l.starts_with("platform"))
        .unwrap_or_else(|| panic!("no platform line:\n{stdout}"))
        .to_owned()
}
