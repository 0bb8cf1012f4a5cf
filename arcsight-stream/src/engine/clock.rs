//! The engine's idea of "now" (Unix ms), for the policy (`valid_until`) and the expiry wake-up.
//!
//! Timers that only space work out (flush delay, retry backoff, save debounce) use tokio's
//! clock; what the list must hold at a given time uses this one, so a test can move time to a
//! `valid_until` without waiting for it and without pausing tokio's clock (which would fire
//! the HTTP timeouts of the real ESM client at once).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The wall clock, or a clock a test moves by hand. Clones share it.
#[derive(Clone)]
pub struct Clock(Arc<Inner>);

enum Inner {
    System,
    Manual(watch::Sender<i64>),
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Inner::System => f.write_str("Clock::System"),
            Inner::Manual(t) => write!(f, "Clock::Manual({})", *t.borrow()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// The longest single sleep of the system clock: a wall clock moved (NTP, suspend) is noticed
/// within this.
const MAX_SLEEP: Duration = Duration::from_secs(30);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(Inner::System))
    }

    /// A clock that stays at `start_ms` until [`Clock::advance`] or [`Clock::set`].
    pub fn manual(start_ms: i64) -> Clock {
        Clock(Arc::new(Inner::Manual(watch::Sender::new(start_ms))))
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        match &*self.0 {
            Inner::System => chrono::Utc::now().timestamp_millis(),
            Inner::Manual(t) => *t.borrow(),
        }
    }

    pub fn now_unix(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves a manual clock forward (nothing for the system clock).
    pub fn advance(&self, by: Duration) {
        if let Inner::Manual(t) = &*self.0 {
            let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
            t.send_modify(|now| *now = now.saturating_add(by));
        }
    }

    /// Sets a manual clock (nothing for the system clock).
    pub fn set(&self, ms: i64) {
        if let Inner::Manual(t) = &*self.0 {
            t.send_replace(ms);
        }
    }

    /// Resolves once `now_ms() >= at_ms`.
    pub async fn sleep_until(&self, at_ms: i64) {
        match &*self.0 {
            Inner::System => loop {
                let left = at_ms.saturating_sub(self.now_ms());
                if left <= 0 {
                    return;
                }
                let d = Duration::from_millis(left as u64).min(MAX_SLEEP);
                tokio::time::sleep(d).await;
            },
            Inner::Manual(t) => {
                let mut rx = t.subscribe();
                // The sender lives as long as the clock, which this borrow keeps alive.
                let _ = rx.wait_for(|now| *now >= at_ms).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_moved_past_their_time() {
        let c = Clock::manual(1_000);
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep_until(1_500).await }
        });
        c.advance(Duration::from_millis(499));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        c.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(c.now_ms(), 1_500);
    }
}
