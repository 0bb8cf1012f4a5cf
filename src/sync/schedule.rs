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

#[cfg(test)]
mod tests {
    use super::*;

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
