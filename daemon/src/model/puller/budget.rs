//! A pull pass's in-flight budget: KiB requested from peers and not yet
//! written. It starts where a LAN connection is full and grows with the
//! bandwidth-delay product it measures, so that a long link is not capped
//! at budget / round trip (4 MiB over 100 ms is 40 MB/s), up to a ceiling
//! that bounds the memory a pass holds in blocks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Where every pass starts: 4 MiB (32 blocks of 128 KiB) fills a LAN.
pub(super) const START_KIB: u32 = 4 << 10;
/// The most a pass may have in flight: what a peer serves a device at
/// once (our serving budget and Syncthing's, twice the largest block).
pub(super) const MAX_KIB: u32 = 32 << 10;
/// The shortest stretch a rate is measured over.
const MIN_WINDOW: Duration = Duration::from_millis(20);

/// The budget: permits of one KiB each, and how many there are.
pub(super) struct Budget {
    permits: Arc<Semaphore>,
    growth: Mutex<Growth>,
}

struct Growth {
    limit_kib: u32,
    /// The shortest time a block took from request to arrival: the round
    /// trip, plus one block on the wire.
    min_latency: Option<Duration>,
    window_start: Instant,
    window_kib: u64,
}

impl Budget {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(START_KIB as usize)),
            growth: Mutex::new(Growth {
                limit_kib: START_KIB,
                min_latency: None,
                window_start: Instant::now(),
                window_kib: 0,
            }),
        })
    }

    /// Waits for `kib` of budget (a block larger than the budget waits for
    /// all of it, so it is requested alone).
    pub(super) async fn acquire(&self, kib: u32) -> Result<OwnedSemaphorePermit, AcquireError> {
        let kib = kib.min(self.limit_kib());
        self.permits.clone().acquire_many_owned(kib).await
    }

    /// The budget now.
    pub(super) fn limit_kib(&self) -> u32 {
        self.growth.lock().map_or(START_KIB, |g| g.limit_kib)
    }

    /// Requests one file may keep open for blocks of `block_kib`: enough
    /// to fill the budget with that file alone.
    pub(super) fn requests_per_file(&self, block_kib: u32) -> usize {
        (self.limit_kib() / block_kib.max(1)).max(super::REQUESTS_PER_FILE as u32) as usize
    }

    /// A block of `kib` arrived `latency` after it was asked for. Once per
    /// measuring window (at least twice the round trip), the budget grows
    /// toward twice the bandwidth-delay product seen (rate over the window
    /// × shortest latency), at most doubling per window: while the budget
    /// is what limits, the rate follows it and it keeps doubling; once the
    /// link (or the disk, or the peer) limits, queues lengthen the
    /// latency, not the rate, and it stops.
    pub(super) fn arrived(&self, kib: u32, latency: Duration) {
        let Ok(mut g) = self.growth.lock() else {
            return;
        };
        let rtt = g.min_latency.map_or(latency, |m| m.min(latency));
        g.min_latency = Some(rtt);
        g.window_kib += u64::from(kib);
        let elapsed = g.window_start.elapsed();
        if elapsed < (rtt * 2).max(MIN_WINDOW) {
            return;
        }
        let bdp_kib = g.window_kib as f64 / elapsed.as_secs_f64() * rtt.as_secs_f64();
        let target = ((2.0 * bdp_kib) as u32).min(MAX_KIB);
        if target > g.limit_kib {
            let add = (target - g.limit_kib).min(g.limit_kib);
            self.permits.add_permits(add as usize);
            g.limit_kib += add;
            tracing::debug!(
                limit_kib = g.limit_kib,
                rtt_ms = rtt.as_millis() as u64,
                "in-flight budget grown to the measured bandwidth-delay product"
            );
        }
        g.window_start = Instant::now();
        g.window_kib = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_it_limits_and_stops_at_the_ceiling() {
        let b = Budget::new();
        // 100 ms latency, the whole budget arriving every round trip: the
        // rate is budget / RTT, so the product is the budget; it doubles.
        let rtt = Duration::from_millis(100);
        for _ in 0..10 {
            let limit = b.limit_kib();
            b.growth.lock().expect("lock").window_start = Instant::now() - rtt * 2;
            b.arrived(limit * 2, rtt);
        }
        assert_eq!(b.limit_kib(), MAX_KIB);
        assert_eq!(b.permits.available_permits(), MAX_KIB as usize);
    }

    #[test]
    fn does_not_grow_when_the_link_limits() {
        let b = Budget::new();
        // 1 ms round trip at 100 MB/s: a product of 100 KiB, far below
        // the start.
        b.arrived(128, Duration::from_millis(1));
        b.growth.lock().expect("lock").window_start = Instant::now() - Duration::from_millis(100);
        b.arrived(10_000, Duration::from_millis(40));
        assert_eq!(b.limit_kib(), START_KIB);
    }
}
