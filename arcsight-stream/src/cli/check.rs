//! `arcsight-stream check`: what an operator runs before (or instead of) starting the
//! connector. One line per check, `OK` or `FAILED` with the reason; never a secret.

use connector_runtime::check::{Check, Outcome, host_of};
// The CLI prints through these (`check::print`, `check::status_word`).
pub(crate) use connector_runtime::check::{print, status_word};
use std::time::Duration;

use esm_client::EsmClient;
use esm_client::active_lists::ActiveListConfig;
use opencti_client::OpenCtiClient;
use opencti_client::stream::{LiveStream, StreamItem};

use crate::settings::Settings;

/// An operator is waiting: no check takes longer than this.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs every check against the settings' ESM, platform and live stream.
pub(crate) async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![Check::new("settings", Outcome::Ok("valid".into()))];
    checks.extend(check_esm(settings).await);
    checks.push(check_platform(settings).await);
    checks.push(check_stream(settings).await);
    checks
}

async fn check_esm(settings: &Settings) -> Vec<Check> {
    let mut cfg = settings.esm.client.clone();
    cfg.max_attempts = 1;
    cfg.request_timeout = cfg.request_timeout.min(CHECK_TIMEOUT);
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
    let lists = esm.active_lists(ActiveListConfig {
        batch_size: settings.esm.batch_size,
    });
    out.push(Check::new(
        "esm list",
        match crate::engine::check(&lists, &super::run::engine_config(settings)).await {
            Ok(info) => Outcome::Ok(format!(
                "Active List {:?}{} has the column {:?}{}",
                settings.esm.list_id,
                info.name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                settings.esm.value_column,
                info.entry_count
                    .map(|n| format!(", {n} entries"))
                    .unwrap_or_default(),
            )),
            Err(e) => Outcome::Failed(super::run::list_error(e).to_string()),
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
    let outcome = match OpenCtiClient::new(settings.platform.client.clone()) {
        Ok(client) => match tokio::time::timeout(CHECK_TIMEOUT, client.health()).await {
            Ok(Ok(version)) => Outcome::Ok(format!("OpenCTI {version}")),
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    };
    Check::new("platform", outcome)
}

/// Opens the live stream (live events only: nothing is recovered) and waits for the
/// platform's `connected` event.
async fn check_stream(settings: &Settings) -> Check {
    let mut cfg = settings.stream_config();
    cfg.backoff_initial = CHECK_TIMEOUT;
    let id = &settings.connector.live_stream.id;
    let outcome = match LiveStream::start(cfg, None) {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(mut stream) => {
            let first = tokio::time::timeout(CHECK_TIMEOUT, async {
                loop {
                    match stream.recv().await {
                        Some(StreamItem::Connected { .. } | StreamItem::Heartbeat { .. }) => {
                            return Ok(());
                        }
                        Some(StreamItem::Reconnecting { reason, .. }) => {
                            return Err(reason.to_string());
                        }
                        Some(_) => continue,
                        None => return Err("the stream ended".to_owned()),
                    }
                }
            })
            .await;
            stream.shutdown().await;
            match first {
                Ok(Ok(())) => Outcome::Ok(format!("live stream {id:?} connected")),
                Ok(Err(reason)) => Outcome::Failed(reason),
                Err(_) => Outcome::Failed(format!(
                    "live stream {id:?}: no answer within {} s",
                    CHECK_TIMEOUT.as_secs()
                )),
            }
        }
    };
    Check::new("live stream", outcome)
}
