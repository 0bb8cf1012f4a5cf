//! `arcsight-incidents simulate-esm`: runs the simulator until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::{ActiveListConfig, Dialect, Faults, SimConfig, SimError, Simulator};

/// Options of `simulate-esm`.
#[derive(clap::Args, Debug)]
pub struct SimulateEsmArgs {
    /// Port to listen on; 0 picks a free one (the URL printed on stdout tells which).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Number of cases.
    #[arg(long, default_value_t = 100)]
    pub cases: usize,
    /// Events of most cases (every tenth case has none, every tenth has one).
    #[arg(long, default_value_t = 5)]
    pub events_per_case: usize,
    /// Seed of the data set: the same seed serves the same answers.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// JSON key style: `prefixed` (ESM <= 7.8, `cas.` keys) or `plain` (7.9+).
    #[arg(long, default_value = "prefixed", value_parser = parse_dialect)]
    pub dialect: Dialect,
    /// Serve HTTPS with a throwaway CA (see --ca-out).
    #[arg(long)]
    pub tls: bool,
    /// Where to write the CA certificate (PEM) clients should trust, with --tls.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// Address to listen on (loopback by default: the admin endpoints need no token).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Accepted user name.
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Accepted password (default: $SIM_ESM_PASSWORD, else "password"; a flag shows in `ps`).
    #[arg(long)]
    pub password: Option<String>,
    /// Make getResourcesByIds answer like an ESM without it (clients must fall back).
    #[arg(long)]
    pub no_batch_api: bool,
    /// Delay before each answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of requests (0..=1) answered 503.
    #[arg(long, default_value_t = 0.0)]
    pub error_503_ratio: f64,
    /// Answer every Nth request 429 with Retry-After.
    #[arg(long)]
    pub rate_limit_every: Option<u64>,
    /// Retry-After seconds sent with a 429.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
    /// Tokens expire after this many calls.
    #[arg(long)]
    pub token_max_uses: Option<u64>,
    /// Send every Nth data answer that has a backslash as invalid JSON.
    #[arg(long)]
    pub malformed_every: Option<u64>,
    /// Replace every Nth data answer by an HTML error page with HTTP 200.
    #[arg(long)]
    pub html_200_every: Option<u64>,
    /// Cut every Nth data answer in the middle (HTTP 200).
    #[arg(long)]
    pub truncate_every: Option<u64>,
    /// Active List and write-fault options (boxed: they would make the connector's
    /// subcommand enum, which flattens these options, lopsided).
    #[command(flatten)]
    pub active_list: Box<ActiveListArgs>,
}

/// Options of the served Active List and of the faults of its writes.
#[derive(clap::Args, Debug)]
pub struct ActiveListArgs {
    /// Serve an (empty) Active List with this resource id.
    #[arg(long)]
    pub active_list_id: Option<String>,
    /// Its fields, comma-separated; the first is the key.
    #[arg(long, default_value = "value", value_delimiter = ',')]
    pub active_list_columns: Vec<String>,
    /// Its capacity: a new key beyond it evicts a random entry.
    #[arg(long, default_value_t = 10_000)]
    pub active_list_capacity: usize,
    /// Its entries' time to live in seconds (0: never expire).
    #[arg(long, default_value_t = 0)]
    pub active_list_ttl_secs: u64,
    /// Fail every Nth Active List write with an HTTP 500 page.
    #[arg(long)]
    pub write_error_every: Option<u64>,
    /// Delay each Active List write, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub write_delay_ms: u64,
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    match s.to_ascii_lowercase().as_str() {
        "prefixed" | "7.8" => Ok(Dialect::Prefixed),
        "plain" | "7.9" => Ok(Dialect::Plain),
        other => Err(format!(
            "unknown dialect {other:?} (expected prefixed or plain)"
        )),
    }
}

impl SimulateEsmArgs {
    /// The simulator configuration these options describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            cases: self.cases,
            events_per_case: self.events_per_case,
            seed: self.seed,
            dialect: self.dialect,
            tls: self.tls,
            username: self.username.clone(),
            password: self
                .password
                .clone()
                .or_else(|| std::env::var("SIM_ESM_PASSWORD").ok())
                .unwrap_or_else(|| "password".into()),
            bind: self.bind,
            port: self.port,
            faults: Faults {
                latency: Duration::from_millis(self.latency_ms),
                error_503_ratio: self.error_503_ratio,
                rate_limit_every: self.rate_limit_every,
                retry_after_secs: self.retry_after_secs,
                token_max_uses: self.token_max_uses,
                malformed_every: self.malformed_every,
                html_200_every: self.html_200_every,
                truncate_every: self.truncate_every,
                outage: false,
                write_error_every: self.active_list.write_error_every,
                write_delay: Duration::from_millis(self.active_list.write_delay_ms),
            },
            batch_api: !self.no_batch_api,
            active_lists: self
                .active_list
                .active_list_id
                .iter()
                .map(|id| ActiveListConfig {
                    id: id.clone(),
                    name: format!("Simulated list {id}"),
                    fields: self.active_list.active_list_columns.clone(),
                    capacity: self.active_list.active_list_capacity,
                    ttl: (self.active_list.active_list_ttl_secs > 0)
                        .then(|| Duration::from_secs(self.active_list.active_list_ttl_secs)),
                })
                .collect(),
        }
    }
}

/// Starts the simulator, prints its base URL as the only stdout line, and serves until Ctrl-C
/// or SIGTERM.
pub async fn run(args: SimulateEsmArgs) -> Result<(), SimError> {
    let sim = Simulator::start(args.config()).await?;
    if let (Some(path), Some(pem)) = (&args.ca_out, sim.ca_pem()) {
        std::fs::write(path, pem).map_err(|source| SimError::Io {
            operation: "write the CA certificate",
            source,
        })?;
    }
    {
        // Scripts wait for this line, so flush it at once.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", sim.base_url()).map_err(|source| SimError::Io {
            operation: "print the base URL",
            source,
        })?;
        out.flush().map_err(|source| SimError::Io {
            operation: "print the base URL",
            source,
        })?;
    }
    wait_for_stop().await?;
    tracing::info!("ESM simulator stopping");
    sim.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop() -> Result<(), SimError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|source| SimError::Io {
        operation: "listen for SIGTERM",
        source,
    })?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|source| SimError::Io { operation: "listen for Ctrl-C", source }),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_stop() -> Result<(), SimError> {
    tokio::signal::ctrl_c()
        .await
        .map_err(|source| SimError::Io {
            operation: "listen for Ctrl-C",
            source,
        })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: SimulateEsmArgs,
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let w = Wrapper::parse_from(["x"]);
        let cfg = w.args.config();
        assert_eq!(
            (cfg.port, cfg.cases, cfg.events_per_case, cfg.seed),
            (0, 100, 5, 42)
        );
        assert_eq!(cfg.dialect, Dialect::Prefixed);
        assert_eq!(cfg.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(cfg.faults, Faults::default());
        assert!(cfg.batch_api && !cfg.tls);
        assert!(cfg.active_lists.is_empty());
    }

    #[test]
    fn active_list_flags_make_a_list() {
        let w = Wrapper::parse_from([
            "x",
            "--active-list-id",
            "HL+1/a==",
            "--active-list-columns",
            "value,type",
            "--active-list-capacity",
            "50",
            "--active-list-ttl-secs",
            "60",
        ]);
        let lists = w.args.config().active_lists;
        assert_eq!(lists.len(), 1);
        assert_eq!(lists[0].id, "HL+1/a==");
        assert_eq!(lists[0].fields, ["value", "type"]);
        assert_eq!(lists[0].capacity, 50);
        assert_eq!(lists[0].ttl, Some(Duration::from_secs(60)));
    }

    #[test]
    fn fault_flags_reach_the_config() {
        let w = Wrapper::parse_from([
            "x",
            "--dialect",
            "plain",
            "--latency-ms",
            "5",
            "--error-503-ratio",
            "0.25",
            "--rate-limit-every",
            "3",
            "--token-max-uses",
            "7",
            "--malformed-every",
            "2",
            "--html-200-every",
            "4",
        ]);
        let f = w.args.config().faults;
        assert_eq!(w.args.dialect, Dialect::Plain);
        assert_eq!(f.latency, Duration::from_millis(5));
        assert_eq!(f.error_503_ratio, 0.25);
        assert_eq!(
            (
                f.rate_limit_every,
                f.token_max_uses,
                f.malformed_every,
                f.html_200_every
            ),
            (Some(3), Some(7), Some(2), Some(4))
        );
    }
}
