//! `arcsight-incidents check`: what an operator runs before (or instead of) starting the
//! daemon. One line per check, `OK` or `FAILED` with the reason; never a secret.

use connector_runtime::check::{Check, Outcome, host_of};
// The CLI prints through these (`check::print`, `check::status_word`).
pub(crate) use connector_runtime::check::{print, status_word};
use std::time::Duration;

use secrecy::SecretString;

use crate::delivery::{AmqpDelivery, AmqpOptions, Sink};
use crate::esm::EsmClient;
use crate::opencti::{MqConnection, OpenCtiClient};
use crate::settings::Settings;

/// Runs every check against the settings' ESM, platform and broker.
pub(crate) async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![Check::new("settings", Outcome::Ok("valid".into()))];
    checks.extend(check_esm(settings).await);
    checks.push(check_platform(settings).await);
    checks.push(check_broker(settings).await);
    checks
}

async fn check_esm(settings: &Settings) -> Vec<Check> {
    let mut cfg = settings.esm.client.clone();
    // An operator is waiting: one attempt, a short timeout.
    cfg.max_attempts = 1;
    cfg.request_timeout = cfg.request_timeout.min(Duration::from_secs(15));
    let esm = match EsmClient::new(cfg) {
        Ok(c) => c,
        Err(e) => return vec![Check::new("esm login", Outcome::Failed(e.to_string()))],
    };
    let mut out = Vec::new();
    if let Err(e) = esm.login().await {
        out.push(Check::new("esm login", Outcome::Failed(e.to_string())));
        return out;
    }
    let dialect = match esm.dialect().await {
        Some(d) => format!("{d:?}").to_lowercase(),
        None => "unknown".into(),
    };
    out.push(Check::new(
        "esm login",
        Outcome::Ok(format!(
            "logged in to {} (JSON dialect: {dialect})",
            host_of(&settings.esm.client.base_url)
        )),
    ));
    out.push(Check::new(
        "esm cases",
        match esm.find_all_ids().await {
            Ok(ids) => Outcome::Ok(format!("{} cases", ids.len())),
            Err(e) => Outcome::Failed(e.to_string()),
        },
    ));
    out.push(Check::new(
        "esm logout",
        match esm.logout().await {
            Ok(()) => Outcome::Ok("session closed".into()),
            Err(e) => Outcome::Failed(e.to_string()),
        },
    ));
    out
}

async fn check_platform(settings: &Settings) -> Check {
    let Some(cfg) = settings.opencti.client_config() else {
        return Check::new(
            "platform",
            Outcome::Skipped("no OPENCTI_URL (offline mode)".into()),
        );
    };
    let outcome = match OpenCtiClient::new(cfg) {
        Ok(client) => match client.health().await {
            Ok(version) => Outcome::Ok(format!("OpenCTI {version}")),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    };
    Check::new("platform", outcome)
}

async fn check_broker(settings: &Settings) -> Check {
    if !settings.connector.send_to_queue
        || settings.connector.queue_protocol != crate::settings::QueueProtocol::Amqp
    {
        return Check::new(
            "broker",
            Outcome::Skipped("bundles do not go through RabbitMQ with these settings".into()),
        );
    }
    // Without MQ_HOST, the broker's address is only known once the platform registers the
    // connector, which a check must not do.
    if settings.mq.host.is_none() {
        return Check::new(
            "broker",
            Outcome::Skipped(
                "its address comes from the platform at registration; set MQ_HOST to check it"
                    .into(),
            ),
        );
    }
    // RabbitMQ's defaults, then the MQ_* settings exactly as the daemon applies them.
    let mut mq = MqConnection {
        host: String::new(),
        port: 5672,
        vhost: "/".into(),
        use_ssl: false,
        user: "guest".into(),
        pass: SecretString::from("guest"),
        push_exchange: String::new(),
        push_routing: String::new(),
    };
    mq.apply_overrides(&settings.mq);
    let opts = AmqpOptions {
        connect_timeout: Duration::from_secs(10),
        tls: settings.mq_tls.clone(),
        ..AmqpOptions::default()
    };
    let outcome = match AmqpDelivery::connect(&mq, "check", opts).await {
        Ok(mut conn) => {
            let _ = conn.close().await;
            Outcome::Ok(format!("connected to {}:{}", mq.host, mq.port))
        }
        Err(e) => Outcome::Failed(e.to_string()),
    };
    Check::new("broker", outcome)
}
