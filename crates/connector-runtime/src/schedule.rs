//! Scheduling and shutdown: runs spaced by the period (measured from the end of the previous
//! run), and a stop on SIGTERM/SIGINT that abandons the run in flight.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// A shutdown flag every task can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending side: `trigger()` asks everything to stop.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

/// A new shutdown pair.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is triggered (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means every trigger was dropped: nobody can ask us to stop any more, so
        // this future must never resolve.
        if self.rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Triggers `trigger` on SIGTERM or SIGINT (Ctrl-C).
pub fn on_signals(trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stop requested: abandoning the run in flight");
        trigger.trigger();
    });
}

/// Runs `f` unless shutdown comes first; `None` when it was abandoned.
pub async fn unless_shutdown<T>(shutdown: &mut Shutdown, f: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.wait() => None,
        v = f => Some(v),
    }
}

/// Sleeps `d` unless shutdown comes first; `false` when shutdown interrupted the sleep.
pub async fn sleep_unless_shutdown(shutdown: &mut Shutdown, d: Duration) -> bool {
    unless_shutdown(shutdown, tokio::time::sleep(d))
        .await
        .is_some()
}

/// Runs `run` at once, then again `period` after each run *ends* (as pycti schedules: a slow
/// run is never overlapped by the next one), until shutdown; only once when `period` is `None`.
/// Returns the last run's outcome.
pub async fn repeat(
    period: Option<Duration>,
    shutdown: &mut Shutdown,
    mut run: impl AsyncFnMut() -> bool,
) -> bool {
    loop {
        let ok = run().await;
        let Some(period) = period else {
            return ok;
        };
        if shutdown.is_triggered() || !sleep_unless_shutdown(shutdown, period).await {
            return ok;
        }
    }
}

/// Calls `tick` every `interval` (the first time one interval from now) until shutdown.
/// (`FnMut` returning a future rather than an async closure: the pinger is spawned, and
/// async closures' futures cannot yet be proven `Send`.)
pub async fn every<F: Future<Output = ()>>(
    interval: Duration,
    mut shutdown: Shutdown,
    mut tick: impl FnMut() -> F,
) {
    while sleep_unless_shutdown(&mut shutdown, interval).await {
        tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn runs_start_one_period_after_the_previous_run_ended() {
        let (trigger, mut shutdown) = shutdown_pair();
        let t0 = Instant::now();
        let mut starts = Vec::new();
        let ok = repeat(Some(Duration::from_secs(10)), &mut shutdown, async || {
            starts.push(t0.elapsed().as_secs());
            // Each run takes 3 s.
            tokio::time::sleep(Duration::from_secs(3)).await;
            if starts.len() == 3 {
                trigger.trigger();
            }
            true
        })
        .await;
        assert!(ok);
        assert_eq!(starts, [0, 13, 26]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_period_there_is_one_run_and_its_outcome_is_returned() {
        let (_trigger, mut shutdown) = shutdown_pair();
        let mut runs = 0;
        let ok = repeat(None, &mut shutdown, async || {
            runs += 1;
            false
        })
        .await;
        assert_eq!((runs, ok), (1, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_wait_ends_the_schedule_at_once() {
        let (trigger, mut shutdown) = shutdown_pair();
        let t0 = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            trigger.trigger();
        });
        let mut runs = 0;
        repeat(Some(Duration::from_secs(900)), &mut shutdown, async || {
            runs += 1;
            true
        })
        .await;
        stopper.await.unwrap();
        assert_eq!(runs, 1);
        assert_eq!(t0.elapsed().as_secs(), 5, "did not wait out the period");
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_come_every_interval_until_shutdown() {
        let (trigger, shutdown) = shutdown_pair();
        let t0 = Instant::now();
        let mut ticks = Vec::new();
        every(Duration::from_secs(40), shutdown, || {
            ticks.push(t0.elapsed().as_secs());
            if ticks.len() == 3 {
                trigger.trigger();
            }
            async {}
        })
        .await;
        assert_eq!(ticks, [40, 80, 120]);
    }

    #[tokio::test]
    async fn sleep_is_cut_short_by_shutdown() {
        let (trigger, mut shutdown) = shutdown_pair();
        let waiter = tokio::spawn(async move {
            sleep_unless_shutdown(&mut shutdown, Duration::from_secs(3600)).await
        });
        trigger.trigger();
        assert!(!waiter.await.unwrap());
    }

    #[tokio::test]
    async fn sleep_completes_without_shutdown() {
        let (_trigger, mut shutdown) = shutdown_pair();
        assert!(sleep_unless_shutdown(&mut shutdown, Duration::from_millis(5)).await);
    }

    #[tokio::test]
    async fn abandoned_work_is_dropped() {
        let (trigger, mut shutdown) = shutdown_pair();
        trigger.trigger();
        let r = unless_shutdown(&mut shutdown, std::future::pending::<u8>()).await;
        assert_eq!(r, None);
        assert!(shutdown.is_triggered());
    }
}
