//! The per-IP request limit: a token bucket per source address. A client
//! over its rate is answered 429 with a `Retry-After` instead of costing
//! the store a request (stdiscosrv has no limit of its own).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked at most; beyond that, full buckets are forgotten first.
const MAX_TRACKED: usize = 100_000;

/// `--rate-limit`: requests per second per IP, with a burst of ten
/// seconds' worth (at least 10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: f64,
}

impl RateLimit {
    /// `per_second` sustained, ten seconds' worth at once.
    pub fn per_second(per_second: f64) -> Self {
        Self {
            per_second,
            burst: (per_second * 10.0).max(10.0),
        }
    }
}

/// The buckets.
pub struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Limiter {
    /// No source has used anything yet.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `ip`'s bucket: `Ok` if allowed, else how long
    /// until one more would be.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let RateLimit { per_second, burst } = self.limit;
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= MAX_TRACKED && !b.contains_key(&ip) {
            b.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (tokens, at) = b.entry(ip).or_insert((burst, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate_per_source() {
        let l = Limiter::new(RateLimit::per_second(2.0));
        let (a, b): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("ip"),
            "192.0.2.2".parse().expect("ip"),
        );
        let t = Instant::now();
        for _ in 0..20 {
            assert!(l.check(a, t).is_ok());
        }
        let wait = l.check(a, t).expect_err("over the burst");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(l.check(b, t).is_ok(), "another source has its own bucket");
        assert!(l.check(a, t + Duration::from_millis(500)).is_ok());
        assert!(l.check(a, t + Duration::from_millis(500)).is_err());
    }
}
