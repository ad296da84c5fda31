//! The server's counters, and their Prometheus text form for `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Request latency bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// What an announce came to.
#[derive(Debug, Clone, Copy)]
pub enum Announce {
    /// Stored.
    Success,
    /// No client certificate.
    NoCertificate,
    /// Bad body or no usable address.
    BadRequest,
    /// The store failed.
    InternalError,
}

/// What a lookup came to.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// Found.
    Success,
    /// Nothing stored for the device.
    NotFound,
    /// A malformed device ID.
    BadRequest,
    /// The store failed.
    InternalError,
}

/// Every counter, updated lock-free.
#[derive(Default)]
pub struct Metrics {
    announces: [AtomicU64; 4],
    lookups: [AtomicU64; 4],
    rate_limited: AtomicU64,
    too_large: AtomicU64,
    stun_answered: AtomicU64,
    stun_limited: AtomicU64,
    devices: AtomicU64,
    latency: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

impl Metrics {
    /// Counts an announce.
    pub fn announce(&self, r: Announce) {
        self.announces[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup.
    pub fn lookup(&self, r: Lookup) {
        self.lookups[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a STUN Binding request: answered, or refused by the limit.
    pub fn stun(&self, answered: bool) {
        let c = if answered {
            &self.stun_answered
        } else {
            &self.stun_limited
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused by the rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a body over the size limit.
    pub fn too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of devices stored.
    pub fn set_devices(&self, n: u64) {
        self.devices.store(n, Ordering::Relaxed);
    }

    /// Records how long a request took.
    pub fn observe(&self, took: Duration) {
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.latency[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP ferrosync_discovery_announces_total Announcements by result."
        );
        let _ = writeln!(s, "# TYPE ferrosync_discovery_announces_total counter");
        for (i, r) in ["success", "no_certificate", "bad_request", "internal_error"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                s,
                "ferrosync_discovery_announces_total{{result=\"{r}\"}} {}",
                get(&self.announces[i])
            );
        }
        let _ = writeln!(
            s,
            "# HELP ferrosync_discovery_stun_requests_total STUN Binding requests by result."
        );
        let _ = writeln!(s, "# TYPE ferrosync_discovery_stun_requests_total counter");
        for (r, c) in [
            ("answered", &self.stun_answered),
            ("rate_limited", &self.stun_limited),
        ] {
            let _ = writeln!(
                s,
                "ferrosync_discovery_stun_requests_total{{result=\"{r}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            s,
            "# HELP ferrosync_discovery_lookups_total Lookups by result."
        );
        let _ = writeln!(s, "# TYPE ferrosync_discovery_lookups_total counter");
        for (i, r) in ["success", "not_found", "bad_request", "internal_error"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                s,
                "ferrosync_discovery_lookups_total{{result=\"{r}\"}} {}",
                get(&self.lookups[i])
            );
        }
        let _ = writeln!(s, "# HELP ferrosync_discovery_refusals_total Requests refused before they reached the store.");
        let _ = writeln!(s, "# TYPE ferrosync_discovery_refusals_total counter");
        let _ = writeln!(
            s,
            "ferrosync_discovery_refusals_total{{reason=\"rate_limited\"}} {}",
            get(&self.rate_limited)
        );
        let _ = writeln!(
            s,
            "ferrosync_discovery_refusals_total{{reason=\"too_large\"}} {}",
            get(&self.too_large)
        );
        let _ = writeln!(s, "# HELP ferrosync_discovery_devices Devices with an unexpired announcement (as of the last purge).");
        let _ = writeln!(s, "# TYPE ferrosync_discovery_devices gauge");
        let _ = writeln!(s, "ferrosync_discovery_devices {}", get(&self.devices));
        let _ = writeln!(
            s,
            "# HELP ferrosync_discovery_request_seconds Time to answer a request."
        );
        let _ = writeln!(s, "# TYPE ferrosync_discovery_request_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "ferrosync_discovery_request_seconds_bucket{{le=\"{b}\"}} {}",
                get(&self.latency[i])
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            s,
            "ferrosync_discovery_request_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "ferrosync_discovery_request_seconds_sum {}",
            get(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(s, "ferrosync_discovery_request_seconds_count {count}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_form() {
        let m = Metrics::default();
        m.announce(Announce::Success);
        m.lookup(Lookup::NotFound);
        m.lookup(Lookup::NotFound);
        m.observe(Duration::from_micros(300));
        let t = m.render();
        assert!(
            t.contains("ferrosync_discovery_announces_total{result=\"success\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("ferrosync_discovery_lookups_total{result=\"not_found\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("ferrosync_discovery_request_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("ferrosync_discovery_request_seconds_bucket{le=\"0.00025\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("ferrosync_discovery_request_seconds_count 1\n"),
            "{t}"
        );
    }
}
