//! The retry policy: how long to wait before attempt `n + 1`.
//!
//! A plain value so the waits can be checked without sleeping: the client asks it for a delay
//! and passes the jitter in, so tests can fix the jitter and read the exact wait.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Exponential backoff with jitter, honouring `Retry-After` up to the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub(crate) max_attempts: u32,
    /// The nominal wait after the first failed attempt.
    pub(crate) min_wait: Duration,
    /// No wait is longer, whatever the attempt or the server's `Retry-After`.
    pub(crate) max_wait: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    ///
    /// Without `Retry-After`: the nominal wait `min_wait * 2^(attempt-1)`, capped at `max_wait`,
    /// scaled into `[nominal/2, nominal]` by `jitter` in `[0, 1]` ("equal jitter": spreads
    /// clients that failed together, yet never waits less than half the nominal wait).
    /// With `Retry-After`: exactly what the server asked, capped at `max_wait`; no jitter,
    /// since the server already said when it wants us back.
    pub(crate) fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_wait);
        }
        let exp = attempt.saturating_sub(1).min(30);
        let nominal = self
            .min_wait
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_wait)
            .min(self.max_wait);
        let j = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        nominal.mul_f64(0.5 + 0.5 * j)
    }

    /// May attempt `attempt` (1-based) be followed by another?
    pub(crate) fn allows_retry_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }
}

/// `Retry-After` as seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`), relative
/// to `now`. A date in the past means "now"; anything unreadable is ignored.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// A small xorshift generator for jitter: retry spreading needs no cryptographic quality, and
/// a seedable source keeps the client testable.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded; a zero seed is replaced (xorshift would stay at zero).
    pub fn seeded(seed: u64) -> Jitter {
        Jitter(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Seeded from the OS random source (via a v4 UUID).
    pub(crate) fn from_entropy() -> Jitter {
        let r = uuid::Uuid::new_v4().as_u128();
        Jitter::seeded((r as u64) ^ ((r >> 64) as u64))
    }

    /// The next value in `[0, 1)`.
    pub(crate) fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> RetryPolicy {
        // The defaults: 4 attempts, 1 s first wait, 30 s cap.
        RetryPolicy {
            max_attempts: 4,
            min_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_is_capped() {
        let p = defaults();
        assert_eq!(p.delay(1, None, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(1, None, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay(2, None, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay(3, None, 1.0), Duration::from_secs(4));
        assert_eq!(p.delay(3, None, 0.5), Duration::from_secs(3));
        // 2^5 = 32 s > 30 s cap.
        assert_eq!(p.delay(6, None, 1.0), Duration::from_secs(30));
        assert_eq!(p.delay(6, None, 0.0), Duration::from_secs(15));
        assert_eq!(p.delay(1000, None, 1.0), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = defaults();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7)), 0.0),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600)), 0.0),
            Duration::from_secs(30)
        );
        assert_eq!(p.delay(3, Some(Duration::ZERO), 1.0), Duration::ZERO);
    }

    #[test]
    fn attempts_are_bounded() {
        let p = defaults();
        assert!(p.allows_retry_after(1));
        assert!(p.allows_retry_after(3));
        assert!(!p.allows_retry_after(4));
        let one = RetryPolicy {
            max_attempts: 1,
            ..p
        };
        assert!(!one.allows_retry_after(1));
    }

    #[test]
    fn retry_after_formats() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn jitter_stays_in_unit_interval() {
        let mut j = Jitter::seeded(0);
        for _ in 0..1000 {
            let x = j.next_unit();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
