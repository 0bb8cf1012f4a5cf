//! The engine's ports in production: the live stream as its [`Source`], the platform's state
//! (through the runtime's one state writer) as its [`PositionStore`], and ESM's failing-since
//! mark before the engine runs (the engine keeps its own once it does).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use connector_runtime::platform::{Saved, SharedState, StateWriter};
use esm_client::EsmClient;
use opencti_client::stream::{LiveStream, StreamConfig, StreamItem, StreamPosition};
use tracing::error;

use crate::engine::{PositionStore, Source, StreamState};

/// Since when something has been failing: Unix seconds, 0 while it works. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct FailingSince(Arc<AtomicI64>);

impl FailingSince {
    /// It failed at `now_unix` (the first failure of a run of them is kept).
    pub fn failed(&self, now_unix: i64) {
        let _ = self
            .0
            .compare_exchange(0, now_unix.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// It worked.
    pub fn recovered(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// For how long it has been failing as of `now_unix`; `None` while it works.
    pub fn failing_for(&self, now_unix: i64) -> Option<Duration> {
        let since = self.0.load(Ordering::Relaxed);
        (since > 0).then(|| Duration::from_secs(now_unix.saturating_sub(since).max(0) as u64))
    }
}

/// The live stream, started on the engine's first [`Source::restart`] (it decides where to
/// start) and restarted from the position it gives: the running reader is shut down (its
/// connection closed) and a new one follows the stream from there.
pub struct LiveSource {
    cfg: StreamConfig,
    stream: Option<LiveStream>,
    /// Where to start if `recv` comes before any `restart` (the state's position).
    initial: Option<StreamPosition>,
    started: bool,
}

impl LiveSource {
    /// Nothing is read before the first `restart` (or `recv`, from `initial`).
    pub fn new(cfg: StreamConfig, initial: Option<StreamPosition>) -> Self {
        LiveSource {
            cfg,
            stream: None,
            initial,
            started: false,
        }
    }

    fn start(&mut self, position: Option<StreamPosition>) {
        self.started = true;
        match LiveStream::start(self.cfg.clone(), position) {
            Ok(s) => self.stream = Some(s),
            // Only a client that cannot be built (a token that is not a header value): no
            // retry fixes it, and `recv` then says the source is over.
            Err(e) => error!(error = %e, "the live stream reader cannot start"),
        }
    }
}

impl Source for LiveSource {
    async fn recv(&mut self) -> Option<StreamItem> {
        if !self.started {
            let initial = self.initial.take();
            self.start(initial);
        }
        self.stream.as_mut()?.recv().await
    }

    async fn restart(&mut self, position: StreamPosition) {
        if let Some(running) = self.stream.take() {
            running.shutdown().await;
        }
        self.initial = None;
        self.start(Some(position));
    }
}

/// The position saved in the platform: a ping with the shared state, through the one writer
/// the pinger also uses, so the platform never gets an older state after a newer one.
pub struct PlatformStore {
    pub writer: Arc<StateWriter>,
    pub state: Arc<SharedState<StreamState>>,
}

impl PositionStore for PlatformStore {
    async fn save(&self) -> Result<bool, String> {
        match self.writer.ping(&self.state).await {
            Ok(Saved::Kept) => Ok(false),
            Ok(Saved::Reset) => Ok(true),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Whether ESM calls fail, from the client's own counters: failed attempts since the last
/// look and no success mark it failing; a success clears it.
#[derive(Debug)]
pub struct EsmWatch {
    esm: EsmClient,
    failing: FailingSince,
    seen_ok: u64,
    seen_failed: u64,
}

impl EsmWatch {
    pub fn new(esm: EsmClient, failing: FailingSince) -> Self {
        EsmWatch {
            esm,
            failing,
            seen_ok: 0,
            seen_failed: 0,
        }
    }

    /// Looks at the counters at `now_unix`.
    pub fn tick(&mut self, now_unix: i64) {
        let (mut ok, mut failed) = (0, 0);
        for s in self.esm.stats().operations.values() {
            ok += s.ok;
            failed += s.error + s.retried;
        }
        if ok > self.seen_ok {
            self.failing.recovered();
        } else if failed > self.seen_failed {
            self.failing.failed(now_unix);
        }
        (self.seen_ok, self.seen_failed) = (ok, failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_mark_keeps_the_first_failure_until_it_recovers() {
        let f = FailingSince::default();
        assert_eq!(f.failing_for(100), None);
        f.failed(100);
        f.failed(150);
        assert_eq!(f.failing_for(160), Some(Duration::from_secs(60)));
        f.recovered();
        assert_eq!(f.failing_for(200), None);
        f.failed(300);
        assert_eq!(f.failing_for(301), Some(Duration::from_secs(1)));
    }

    /// A live stream server on loopback: each connection's request line is sent on `seen`;
    /// the first `refuse` connections get a 500, the others `connected` then silence.
    async fn stream_server(
        refuse: usize,
    ) -> (url::Url, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut sock, _)) = listener.accept().await {
                n += 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let len = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..len]).into_owned();
                    let _ = tx.send(head.lines().next().unwrap_or("").to_owned());
                    if n <= refuse {
                        let _ = sock
                            .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: connected\ndata: {}\n\n")
                        .await;
                    // Held open until the client closes it.
                    let _ = sock.read(&mut buf).await;
                });
            }
        });
        (url, rx)
    }

    fn position(id: &str) -> StreamPosition {
        StreamPosition {
            start_from: Some(id.to_owned()),
            recover_until: None,
        }
    }

    #[tokio::test]
    async fn a_restart_follows_the_stream_again_from_the_position_given() {
        let (url, mut seen) = stream_server(0).await;
        let cfg = StreamConfig::new(url, secrecy::SecretString::from("t0ken"), "live-1");
        let mut source = LiveSource::new(cfg, Some(position("1-0")));
        source.restart(position("5-0")).await;
        assert!(matches!(
            source.recv().await,
            Some(StreamItem::Connected { .. })
        ));
        let first = seen.recv().await.unwrap();
        assert!(first.starts_with("GET /stream/live-1?from=5-0 "), "{first}");

        source.restart(position("9-0")).await;
        assert!(matches!(
            source.recv().await,
            Some(StreamItem::Connected { .. })
        ));
        let second = seen.recv().await.unwrap();
        assert!(
            second.starts_with("GET /stream/live-1?from=9-0 "),
            "{second}"
        );
    }

    #[tokio::test]
    async fn without_a_restart_the_first_recv_starts_from_the_initial_position() {
        let (url, mut seen) = stream_server(1).await;
        let mut cfg = StreamConfig::new(url, secrecy::SecretString::from("t0ken"), "live-1");
        cfg.backoff_initial = Duration::from_millis(10);
        cfg.backoff_max = Duration::from_millis(20);
        let mut source = LiveSource::new(cfg, Some(position("3-0")));
        // Refused first: reported (the engine marks the stream failing on it), then connected.
        assert!(matches!(
            source.recv().await,
            Some(StreamItem::Reconnecting { .. })
        ));
        assert!(
            seen.recv()
                .await
                .unwrap()
                .starts_with("GET /stream/live-1?from=3-0 ")
        );
        assert!(matches!(
            source.recv().await,
            Some(StreamItem::Connected { .. })
        ));
    }
}
