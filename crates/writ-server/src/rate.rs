//! Per-principal rate limits on the decision routes: a token bucket per
//! principal (`--rate-limit` requests a second, bursts of `--rate-burst`).
//! A request over it is refused 429 with `Retry-After` before anything is
//! decided or logged (a flood must not fill the log), and counted in
//! `writ_rate_limited_total`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests a second each principal may make on the decision routes, by
/// default (a burst of twice as many).
pub const RATE_LIMIT_DEFAULT: u32 = 1000;

/// Buckets kept at most; past that, full ones are forgotten (a full bucket
/// is the same as none).
const BUCKETS_MAX: usize = 100_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by principal.
#[derive(Debug)]
pub struct Limiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// `per_sec` 0: no limit.
    pub fn new(per_sec: u32, burst: u32) -> Limiter {
        Limiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether limits apply at all.
    pub fn enabled(&self) -> bool {
        self.per_sec > 0.0
    }

    /// Take one request for `who`; `Err(wait)` when the bucket is empty,
    /// with how long until it holds one again.
    pub fn take(&self, who: &str) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= BUCKETS_MAX && !buckets.contains_key(who) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
        }
        let b = buckets.entry(who.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let l = Limiter::new(10, 5);
        for _ in 0..5 {
            assert!(l.take("a").is_ok());
        }
        let wait = l.take("a").unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another principal has its own bucket.
        assert!(l.take("b").is_ok());
        std::thread::sleep(Duration::from_millis(120));
        assert!(l.take("a").is_ok());
        assert!(Limiter::new(0, 0).take("a").is_ok());
    }
}
