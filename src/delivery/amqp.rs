//! Queue protocol `amqp`: one message per object, published with confirms to the exchange
//! the platform's workers consume.

use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{
    AsyncTcpStream, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    Event, PublisherConfirm,
};
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, error, info};

use super::split::{SplitBundle, split_bundle, split_count};
use super::{DeliveryError, DeliveryReport, Sink};
use crate::metrics::ImportMetrics as Metrics;
use crate::opencti::MqConnection;
use crate::stix::Bundle;

/// The AMQP frame size we ask for (the broker may lower it, never raise it).
const FRAME_MAX: u32 = 32 * 1024;

/// Longest wait for a channel's or the connection's close-ok.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Tuning of the AMQP delivery.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// Messages published but not yet confirmed, at most. One round trip per message (what
    /// pycti does) caps throughput at 1/RTT; a window keeps the broker busy while bounding
    /// what a failure leaves in doubt.
    pub confirm_window: usize,
    /// How long to wait for one publish to be accepted and for its confirmation.
    pub publish_timeout: Duration,
    /// How long to wait for the TCP/TLS/AMQP handshake.
    pub connect_timeout: Duration,
    /// How long a publish waits for a broker that blocked the connection (`connection.blocked`,
    /// a memory or disk alarm) to unblock it. The publish timeout does not run meanwhile: the
    /// broker reads nothing, so no confirmation can come, and waiting is all we can do.
    pub blocked_timeout: Duration,
    /// Trust and identity when the connection is TLS.
    pub tls: MqTls,
}

/// The broker's TLS (`MQ_USE_SSL_*`, with pycti's meaning), used when the connection is TLS
/// (`use_ssl` from the platform or `MQ_USE_SSL`).
#[derive(Debug, Clone)]
pub struct MqTls {
    /// `MQ_USE_SSL_CA`: trusted besides the bundled public roots and the OS store.
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// `MQ_USE_SSL_CERT` and `_KEY`: a client certificate.
    pub(crate) identity: Option<crate::tls::Identity>,
    /// `MQ_USE_SSL_REJECT_UNAUTHORIZED`: verify the broker's certificate (on by default,
    /// unlike pycti).
    pub verify: bool,
}

impl Default for MqTls {
    fn default() -> Self {
        MqTls {
            ca_certs: Vec::new(),
            identity: None,
            verify: true,
        }
    }
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            confirm_window: 1024,
            publish_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            blocked_timeout: Duration::from_secs(60),
            tls: MqTls::default(),
        }
    }
}

/// The AMQP message body pycti publishes (see the protocol reference, "Sending bundles").
#[derive(Serialize)]
struct Envelope<'a> {
    bundle_type: &'static str,
    applicant_id: &'a str,
    action_sequence: u64,
    entities_types: [&'a str; 0],
    content: String,
    update: bool,
    draft_id: Option<&'a str>,
    work_id: Option<&'a str>,
}

/// The body of message number `action_sequence` (1-based) carrying `part`.
pub fn message_body(
    applicant_id: &str,
    action_sequence: u64,
    part: &SplitBundle,
    work_id: Option<&str>,
) -> Vec<u8> {
    let env = Envelope {
        bundle_type: "QUEUE_BUNDLE",
        applicant_id,
        action_sequence,
        entities_types: [],
        content: base64::engine::general_purpose::STANDARD.encode(part.json.as_bytes()),
        update: false,
        draft_id: None,
        work_id,
    };
    // Only strings, integers and booleans: serialising into memory has no failure path.
    serde_json::to_vec(&env).expect("envelope always serialises")
}

/// The platform's broker, reached through a fresh connection per run: [`Sink::open`] connects
/// (one connection, one confirm-mode channel) and [`Sink::close`] closes it, so no connection
/// is held idle between runs and one the broker dropped is never reused.
pub struct AmqpDelivery {
    mq: MqConnection,
    applicant_id: String,
    opts: AmqpOptions,
    /// `Some` between `open` and `close`.
    connected: Option<Connected>,
    /// Where `connection.blocked` is counted; `None` for `check`.
    metrics: Option<Metrics>,
}

/// What one run holds open.
struct Connected {
    channel: Channel,
    link: Link,
}

/// The connection, and what ends it.
struct Link {
    connection: Connection,
    socket: SocketKiller,
    /// The broker's reason while it blocks the connection, `None` otherwise.
    blocked: watch::Receiver<Option<String>>,
    /// Turns the connection's events into `blocked`; it ends with the connection.
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    /// Dropping lapin's `Connection` does not stop lapin: its I/O thread then sends
    /// connection.close and waits for close-ok, and a broker that reads nothing never answers,
    /// so that thread and its socket would live forever. Unless the connection closed
    /// cleanly, shut the socket down: the thread reads the end of the stream and exits.
    fn drop(&mut self) {
        if !self.connection.status().closed() {
            self.socket.kill();
        }
        self.watcher.abort();
    }
}

impl Connected {
    /// Awaits `fut` for at most the publish timeout, not counting the time the broker blocks
    /// the connection: a blocked broker reads nothing, so the wait for it to unblock is
    /// bounded by `blocked_timeout` instead (in all, however often it blocks: a broker that
    /// flaps cannot hold us longer) and fails as [`DeliveryError::Blocked`]. On either bound
    /// the socket is shut down: the connection is dropped without the close handshake, which
    /// a broker that does not read would never answer.
    async fn bounded<T>(
        &self,
        fut: impl Future<Output = T>,
        opts: &AmqpOptions,
        on_timeout: impl FnOnce() -> DeliveryError,
    ) -> Result<T, DeliveryError> {
        use tokio::time::Instant;
        let mut fut = std::pin::pin!(fut);
        let mut blocked = self.link.blocked.clone();
        let mut deadline = Instant::now() + opts.publish_timeout;
        let mut blocked_budget = opts.blocked_timeout;
        loop {
            let reason = blocked.borrow_and_update().clone();
            if let Some(reason) = reason {
                let since = Instant::now();
                let unblocked = async { blocked.wait_for(Option::is_none).await.is_ok() };
                tokio::select! {
                    out = &mut fut => return Ok(out),
                    r = tokio::time::timeout(blocked_budget, unblocked) => {
                        if !matches!(r, Ok(true)) {
                            self.link.socket.kill();
                            return Err(DeliveryError::Blocked {
                                reason,
                                after: opts.blocked_timeout,
                            });
                        }
                    }
                }
                let spent = since.elapsed();
                blocked_budget = blocked_budget.saturating_sub(spent);
                deadline += spent;
                continue;
            }
            tokio::select! {
                out = &mut fut => return Ok(out),
                () = tokio::time::sleep_until(deadline) => {
                    self.link.socket.kill();
                    return Err(on_timeout());
                }
                changed = blocked.changed() => {
                    if changed.is_err() {
                        // The watcher ended: no more news of blocking, only the timeout.
                        return match tokio::time::timeout_at(deadline, fut).await {
                            Ok(out) => Ok(out),
                            Err(_) => {
                                self.link.socket.kill();
                                Err(on_timeout())
                            }
                        };
                    }
                }
            }
        }
    }
}

/// A duplicate of the connection's socket, to end it whatever lapin is waiting for.
#[derive(Clone, Default)]
struct SocketKiller {
    socket: Arc<Mutex<Option<std::net::TcpStream>>>,
    killed: Arc<AtomicBool>,
}

impl SocketKiller {
    /// Keeps a duplicate of `tcp` (lapin connects again through the same closure on a
    /// retry: the latest socket is the one in use).
    fn keep(&self, fd: std::os::fd::OwnedFd) {
        *self.socket.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::net::TcpStream::from(fd));
    }

    /// Shuts the socket down both ways: lapin's reads and writes fail at once.
    fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        if let Some(s) = self
            .socket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

/// Follows the connection's `connection.blocked` / `unblocked` into a watch: logged once at
/// error with the broker's reason, at info when it ends, counted and shown as a gauge.
fn watch_blocked(
    connection: &Connection,
    metrics: Option<Metrics>,
) -> (watch::Receiver<Option<String>>, tokio::task::JoinHandle<()>) {
    use futures_core::Stream;
    // Blocked before we listened (the broker blocks at the first publish, so unlikely): the
    // reason is lost, the state is not.
    let initial = connection
        .status()
        .blocked()
        .then(|| "unknown (blocked before we listened)".to_owned());
    let (tx, rx) = watch::channel(None::<String>);
    let events = connection.events_listener();
    let task = tokio::spawn(async move {
        // Dropped when the task ends or is aborted with the connection.
        let _guard = BlockedGauge(metrics.clone());
        let mut events = std::pin::pin!(events);
        let blocked = |reason: Option<String>| {
            let was = tx.borrow().is_some();
            match (&reason, was) {
                (Some(reason), false) => {
                    error!(
                        reason = %reason,
                        "RabbitMQ blocked the connection (a resource alarm): publishing waits until it unblocks"
                    );
                    if let Some(m) = &metrics {
                        m.broker_blocked_total.inc();
                        m.broker_blocked.set(1);
                    }
                }
                (None, true) => {
                    info!("RabbitMQ unblocked the connection");
                    if let Some(m) = &metrics {
                        m.broker_blocked.set(0);
                    }
                }
                _ => {}
            }
            // Only changes wake the publishes that wait on it.
            tx.send_if_modified(|now| {
                let changed = now.is_some() != reason.is_some();
                *now = reason;
                changed
            });
        };
        if initial.is_some() {
            blocked(initial);
        }
        while let Some(event) = std::future::poll_fn(|cx| events.as_mut().poll_next(cx)).await {
            match event {
                Event::ConnectionBlocked(reason) => blocked(Some(reason)),
                Event::ConnectionUnblocked => blocked(None),
                _ => {}
            }
        }
    });
    (rx, task)
}

/// Clears the "broker blocked" gauge when the connection's watcher ends (the connection is
/// gone: a new one reports for itself).
struct BlockedGauge(Option<Metrics>);

impl Drop for BlockedGauge {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            m.broker_blocked.set(0);
        }
    }
}

impl std::fmt::Debug for AmqpDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpDelivery")
            .field("exchange", &self.mq.push_exchange)
            .field("routing_key", &self.mq.push_routing)
            .field("opts", &self.opts)
            .field("connected", &self.connected.is_some())
            .finish_non_exhaustive()
    }
}

impl AmqpDelivery {
    /// A sink for the broker in `mq`; connects nothing until [`Sink::open`].
    pub(crate) fn new(
        mq: MqConnection,
        applicant_id: impl Into<String>,
        opts: AmqpOptions,
    ) -> Self {
        AmqpDelivery {
            mq,
            applicant_id: applicant_id.into(),
            opts: AmqpOptions {
                confirm_window: opts.confirm_window.max(1),
                ..opts
            },
            connected: None,
            metrics: None,
        }
    }

    /// Counts `connection.blocked` episodes in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// `AmqpDelivery::new` then [`Sink::open`]: a sink ready to publish.
    pub async fn connect(
        mq: &MqConnection,
        applicant_id: &str,
        opts: AmqpOptions,
    ) -> Result<Self, DeliveryError> {
        let mut delivery = AmqpDelivery::new(mq.clone(), applicant_id, opts);
        delivery.open().await?;
        Ok(delivery)
    }

    /// Connects (TLS when `use_ssl`), opens a channel and turns publisher confirms on.
    async fn connect_channel(&self) -> Result<Connected, DeliveryError> {
        let (mq, opts) = (&self.mq, &self.opts);
        let password = mq.pass.expose_secret();
        let connect_err = |reason: String| DeliveryError::Connect {
            host: mq.host.clone(),
            port: mq.port,
            // lapin does not echo credentials today; this keeps it so if that ever changes.
            reason: if password.is_empty() {
                reason
            } else {
                reason.replace(password, "[redacted]")
            },
        };
        // Built field by field rather than parsed from a string, so that a password or vhost
        // with `@`, `/` or `%` needs no escaping and can never be misread.
        let uri = AMQPUri {
            scheme: if mq.use_ssl {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: mq.user.clone(),
                    password: password.to_owned(),
                },
                host: mq.host.clone(),
                port: mq.port,
            },
            vhost: mq.vhost.clone(),
            query: AMQPQueryString {
                connection_timeout: Some(
                    opts.connect_timeout
                        .as_millis()
                        .try_into()
                        .unwrap_or(u64::MAX),
                ),
                // lapin keeps a send and a receive buffer of 32 frames each: at RabbitMQ's
                // default 128 KiB frames that is 8 MiB of memory, most of a run's peak at
                // 2,000 cases. Our messages weigh about a kilobyte; a larger one is simply
                // split into more frames.
                frame_max: Some(FRAME_MAX),
                ..AMQPQueryString::default()
            },
        };
        let props = ConnectionProperties::default()
            .with_connection_name(concat!("arcsight-incidents/", env!("CARGO_PKG_VERSION")).into());
        // We connect the socket ourselves (plain or TLS) and keep a duplicate of it: on a
        // timeout the connection must end without the close handshake, and only shutting the
        // socket down stops lapin's I/O thread (see `Connected`'s `Drop`).
        let socket = SocketKiller::default();
        let connect = async {
            // Our own TLS set-up: lapin's cannot turn verification off
            // (MQ_USE_SSL_REJECT_UNAUTHORIZED=false) nor take an encrypted client key.
            let connector = if mq.use_ssl {
                let tls = &opts.tls;
                let config =
                    crate::tls::client_config(&tls.ca_certs, tls.verify, tls.identity.as_ref())
                        .map_err(std::io::Error::other)?;
                Some(lapin::tcp::RustlsConnector::from(config))
            } else {
                None
            };
            let runtime = lapin::runtime::default_runtime()?;
            let socket = socket.clone();
            Connection::connector(
                uri,
                runtime,
                async move |uri, runtime| {
                    let host = uri.authority.host.clone();
                    let addrs: Vec<std::net::SocketAddr> =
                        tokio::net::lookup_host((host.as_str(), uri.authority.port))
                            .await?
                            .collect();
                    let tcp = AsyncTcpStream::connect(&runtime, addrs).await?;
                    if let AsyncTcpStream::Plain(s) = &tcp {
                        socket.keep(s.get_ref().as_fd().try_clone_to_owned()?);
                    }
                    Ok(match &connector {
                        Some(connector) => tcp.into_rustls(connector, &host).await?,
                        None => tcp,
                    })
                },
                props,
            )
            .await
        };
        let connection = tokio::time::timeout(opts.connect_timeout, connect)
            .await
            .map_err(|_| {
                socket.kill();
                connect_err(format!("no answer within {:?}", opts.connect_timeout))
            })?
            .map_err(|e| {
                socket.kill();
                connect_err(e.to_string())
            })?;
        let (blocked, watcher) = watch_blocked(&connection, self.metrics.clone());
        // From here on, dropping `link` ends the connection whatever happens.
        let link = Link {
            connection,
            socket,
            blocked,
            watcher,
        };
        let connection = &link.connection;
        // Bounded like every step against the broker: one that stops reading never answers.
        let step = opts.publish_timeout;
        let no_answer = |operation| DeliveryError::Channel {
            operation,
            reason: format!("no answer within {step:?}"),
        };
        let channel = tokio::time::timeout(step, connection.create_channel())
            .await
            .map_err(|_| no_answer("channel.open"))?
            .map_err(|e| DeliveryError::Channel {
                operation: "channel.open",
                reason: e.to_string(),
            })?;
        tokio::time::timeout(
            step,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|_| no_answer("confirm.select"))?
        .map_err(|e| DeliveryError::Channel {
            operation: "confirm.select",
            reason: e.to_string(),
        })?;
        info!(
            host = %mq.host,
            port = mq.port,
            vhost = %mq.vhost,
            tls = mq.use_ssl,
            frame_max = connection.configuration().frame_max(),
            "connected to RabbitMQ"
        );
        Ok(Connected { channel, link })
    }

    /// Publishes already split parts in order, `action_sequence` 1..=N.
    pub async fn publish(
        &self,
        parts: &[SplitBundle],
        work_id: Option<&str>,
    ) -> Result<DeliveryReport, DeliveryError> {
        let Some(connected) = &self.connected else {
            return Err(DeliveryError::Channel {
                operation: "basic.publish",
                reason: "the connection is not open".into(),
            });
        };
        let total = parts.len() as u64;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_encoding("utf-8".into())
            .with_content_type("application/json".into());
        // Mandatory: an unroutable message comes back (basic.return) instead of vanishing.
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut pending: VecDeque<(u64, PublisherConfirm)> =
            VecDeque::with_capacity(self.opts.confirm_window.min(parts.len()));
        let mut confirmed = 0u64;
        let mut bytes = 0u64;
        for (i, part) in parts.iter().enumerate() {
            let seq = i as u64 + 1;
            // A full window: wait for the oldest confirmation before publishing more.
            while pending.len() >= self.opts.confirm_window {
                let Some((s, c)) = pending.pop_front() else {
                    break;
                };
                self.settle(s, c, confirmed, total).await?;
                confirmed += 1;
            }
            let body = message_body(&self.applicant_id, seq, part, work_id);
            bytes += body.len() as u64;
            let publish = connected.channel.basic_publish(
                self.mq.push_exchange.as_str().into(),
                self.mq.push_routing.as_str().into(),
                options,
                &body,
                props.clone(),
            );
            let after = self.opts.publish_timeout;
            let confirm = match connected
                .bounded(publish, &self.opts, || DeliveryError::Timeout {
                    action_sequence: seq,
                    after,
                })
                .await?
            {
                Ok(confirm) => confirm,
                Err(e) => {
                    // The channel is usually closing because the broker refused an earlier
                    // message (e.g. 404 NOT_FOUND, no such exchange): that earlier message's
                    // confirmation carries the reason an operator needs, so report it first.
                    while let Some((s, c)) = pending.pop_front() {
                        self.settle(s, c, confirmed, total).await?;
                        confirmed += 1;
                    }
                    return Err(DeliveryError::Publish {
                        action_sequence: seq,
                        confirmed,
                        total,
                        reason: e.to_string(),
                    });
                }
            };
            pending.push_back((seq, confirm));
        }
        while let Some((s, c)) = pending.pop_front() {
            self.settle(s, c, confirmed, total).await?;
            confirmed += 1;
        }
        debug!(messages = total, bytes, "bundle published and confirmed");
        Ok(DeliveryReport {
            messages: total,
            bytes,
            path: None,
        })
    }

    /// Waits for one confirmation and turns anything but a clean ack into an error.
    async fn settle(
        &self,
        seq: u64,
        confirm: PublisherConfirm,
        confirmed: u64,
        total: u64,
    ) -> Result<(), DeliveryError> {
        let Some(connected) = &self.connected else {
            return Err(DeliveryError::Channel {
                operation: "basic.publish",
                reason: "the connection is not open".into(),
            });
        };
        let after = self.opts.publish_timeout;
        let outcome = connected
            .bounded(confirm, &self.opts, || DeliveryError::Timeout {
                action_sequence: seq,
                after,
            })
            .await?
            .map_err(|e| DeliveryError::Publish {
                action_sequence: seq,
                confirmed,
                total,
                reason: e.to_string(),
            })?;
        match outcome {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(DeliveryError::Unroutable {
                action_sequence: seq,
                exchange: self.mq.push_exchange.clone(),
                routing_key: self.mq.push_routing.clone(),
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.to_string(),
            }),
            Confirmation::Nack(_) => Err(DeliveryError::Nack {
                action_sequence: seq,
            }),
            Confirmation::NotRequested => Err(DeliveryError::Channel {
                operation: "confirm.select",
                reason: "publisher confirms are off on this channel".into(),
            }),
        }
    }
}

impl Sink for AmqpDelivery {
    /// A fresh connection for this run (one left open by a run that was not closed is
    /// dropped).
    async fn open(&mut self) -> Result<(), DeliveryError> {
        self.connected = None;
        self.connected = Some(self.connect_channel().await?);
        Ok(())
    }

    /// The number of messages `bundle` will make.
    fn expectations(&self, bundle: &Bundle) -> u64 {
        split_count(bundle)
    }

    /// Splits and publishes `bundle`; succeeds only when the broker acked every message.
    async fn deliver(
        &mut self,
        bundle: &Bundle,
        work_id: Option<&str>,
    ) -> Result<DeliveryReport, DeliveryError> {
        let parts = split_bundle(bundle);
        self.publish(&parts, work_id).await
    }

    /// Closes the channel and the connection; errors are reported, but the run's outcome
    /// does not depend on them (every message was already confirmed or the run failed).
    /// Each close-ok is awaited at most [`CLOSE_TIMEOUT`]: a broker that stopped reading (a
    /// memory or disk alarm, a stalled proxy) never answers, and the handshake then adds
    /// nothing. On a timeout the connection is dropped as it is.
    async fn close(&mut self) -> Result<(), DeliveryError> {
        let Some(connected) = self.connected.take() else {
            return Ok(());
        };
        let close_err = |operation, e: lapin::Error| DeliveryError::Channel {
            operation,
            reason: e.to_string(),
        };
        let timed_out = |operation| DeliveryError::Channel {
            operation,
            reason: format!("no close-ok within {CLOSE_TIMEOUT:?}; connection dropped"),
        };
        if connected.link.socket.killed() {
            // A timeout already dropped the connection and was reported.
            return Ok(());
        }
        if let Some(reason) = connected.link.blocked.borrow().clone() {
            // A blocked broker reads nothing: no close-ok would come.
            return Err(DeliveryError::Channel {
                operation: "connection.close",
                reason: format!("the broker blocks the connection ({reason}); dropped as it is"),
            });
        }
        if connected.channel.status().connected() {
            tokio::time::timeout(CLOSE_TIMEOUT, connected.channel.close(200, "bye".into()))
                .await
                .map_err(|_| timed_out("channel.close"))?
                .map_err(|e| close_err("channel.close", e))?;
        }
        if connected.link.connection.status().connected() {
            tokio::time::timeout(
                CLOSE_TIMEOUT,
                connected.link.connection.close(200, "bye".into()),
            )
            .await
            .map_err(|_| timed_out("connection.close"))?
            .map_err(|e| close_err("connection.close", e))?;
        }
        Ok(())
    }
}
