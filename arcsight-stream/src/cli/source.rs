//! The engine's ports in production: the live stream as its [`Source`], the platform's state
//! (through the runtime's one state writer) as its [`PositionStore`], and the failing-since
//! marks `/healthz` reads.

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
    failing: FailingSince,
}

impl LiveSource {
    /// Nothing is read before the first `restart` (or `recv`, from `initial`).
    pub fn new(cfg: StreamConfig, initial: Option<StreamPosition>, failing: FailingSince) -> Self {
        LiveSource {
            cfg,
            stream: None,
            initial,
            started: false,
            failing,
        }
    }

    fn start(&mut self, position: Option<StreamPosition>) {
        self.started = true;
        match LiveStream::start(self.cfg.clone(), position) {
            Ok(s) => self.stream = Some(s),
            // Only a client that cannot be built (a token that is not a header value): no
            // retry fixes it, and `recv` then says the source is over.
            Err(e) => {
                error!(error = %e, "the live stream reader cannot start");
                self.failing.failed(chrono::Utc::now().timestamp());
            }
        }
    }
}

impl Source for LiveSource {
    async fn recv(&mut self) -> Option<StreamItem> {
        if !self.started {
            let initial = self.initial.take();
            self.start(initial);
        }
        let item = self.stream.as_mut()?.recv().await?;
        match &item {
            StreamItem::Reconnecting { .. } => self.failing.failed(chrono::Utc::now().timestamp()),
            // Anything the platform sent: the stream works.
            StreamItem::Connected { .. }
            | StreamItem::Event { .. }
            | StreamItem::Heartbeat { .. }
            | StreamItem::TooLarge { .. }
            | StreamItem::Gap { .. } => self.failing.recovered(),
        }
        Some(item)
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
}
