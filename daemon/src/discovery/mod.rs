//! Where a device can be reached: the [`Finder`] gathers candidate
//! addresses for a device from every source, each tagged with where it
//! came from: the device's static addresses in the config first, then what
//! LAN discovery heard, then what the global discovery servers answered.
//! Candidates are hints only: the TLS handshake decides who answers.
//!
//! - [`lan`]: Syncthing's local discovery beacons
//! - [`global`]: the global discovery client (announce, lookup)

pub mod global;
pub mod lan;

use std::fmt;
use std::sync::Arc;

use proto::addr::{Address, Transport};
use proto::DeviceId;

use crate::config::live::Live;
use crate::config::TransportPrefer;

/// Where a candidate address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The device's addresses in the config.
    Static,
    /// Heard on the LAN (Syncthing beacons, mDNS).
    Lan,
    /// Answered by a global discovery server.
    Global,
}

impl Source {
    /// The name used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Lan => "lan",
            Self::Global => "global",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a discovery source (a server, the LAN beacon) fares, for status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Whether its last attempt worked.
    pub ok: bool,
    /// What went wrong last, if the last attempt failed.
    pub error: Option<String>,
}

/// One address to try for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// A sync address (`tcp://…`, `quic://…`, `relay://…`).
    pub url: String,
    /// Where it came from.
    pub source: Source,
    /// Its transport (for ordering and status).
    pub transport: Transport,
}

/// Gathers candidates from every source.
#[derive(Clone)]
pub struct Finder {
    config: Live,
    lan: Option<Arc<lan::Lan>>,
    global: Option<Arc<global::Global>>,
}

impl Finder {
    /// A finder that reads static addresses from the live config.
    pub fn new(config: Live) -> Self {
        Self {
            config,
            lan: None,
            global: None,
        }
    }

    /// Also offers what LAN discovery heard of `dynamic` devices.
    pub fn with_lan(mut self, lan: Arc<lan::Lan>) -> Self {
        self.lan = Some(lan);
        self
    }

    /// Sees a new value when a source learns new addresses (the LAN hears a
    /// device), so dial loops need not wait out their backoff.
    pub fn changed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.lan.as_ref().map(|l| l.changed())
    }

    /// Also asks the global discovery servers about `dynamic` devices.
    pub fn with_global(mut self, global: Arc<global::Global>) -> Self {
        self.global = Some(global);
        self
    }

    /// Every address to try for `device`, best first: by source (static,
    /// LAN, global), then the preferred transport, each address once.
    pub async fn candidates(&self, device: &DeviceId) -> Vec<Candidate> {
        let config = self.config.get();
        let mut out = Vec::new();
        if let Some(d) = config.device(device) {
            for a in &d.addresses {
                push(&mut out, a, Source::Static);
            }
        }
        let dynamic = self.is_dynamic(device);
        if let Some(l) = self.lan.as_ref().filter(|_| dynamic) {
            for a in l.addresses(device) {
                push(&mut out, &a, Source::Lan);
            }
        }
        if let Some(g) = self.global.as_ref().filter(|_| dynamic) {
            for a in g.lookup(device).await {
                push(&mut out, &a, Source::Global);
            }
        }
        order(&mut out, config.transport.prefer);
        out
    }

    /// [`Finder::candidates`] with nothing cached: the servers are asked
    /// again (for what a device announced a moment ago).
    pub async fn fresh(&self, device: &DeviceId) -> Vec<Candidate> {
        self.failed(device);
        self.candidates(device).await
    }

    /// None of `device`'s candidates could be dialled: what discovery
    /// said of it is looked up again next time.
    pub fn failed(&self, device: &DeviceId) {
        if let Some(g) = &self.global {
            g.forget(device);
        }
    }

    /// Whether `device` is to be found by discovery (an address of its is
    /// `dynamic`, the default for a device added by ID alone).
    pub fn is_dynamic(&self, device: &DeviceId) -> bool {
        self.config.get().device(device).is_some_and(|d| {
            d.addresses
                .iter()
                .any(|a| matches!(proto::addr::parse_address(a), Ok(Address::Dynamic)))
        })
    }
}

/// Adds `url` if it is a dialable sync address not already there.
fn push(out: &mut Vec<Candidate>, url: &str, source: Source) {
    let Ok(Address::Url(a)) = proto::addr::parse_address(url) else {
        return;
    };
    if out.iter().any(|c| c.url == url) {
        return;
    }
    out.push(Candidate {
        url: url.to_string(),
        source,
        transport: a.transport,
    });
}

/// Sorts relays last, then by source, then transport preference, keeping
/// the order within.
fn order(out: &mut [Candidate], prefer: TransportPrefer) {
    out.sort_by_key(|c| {
        (
            c.transport == Transport::Relay,
            c.source,
            prefer.rank(c.transport.as_str()),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DeviceConfig};

    fn device(addresses: &[&str]) -> (DeviceId, Config) {
        let id = DeviceId::from_bytes([5; 32]);
        let mut c = Config::new_for("me");
        c.devices.push(DeviceConfig {
            id,
            name: String::new(),
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
        });
        (id, c)
    }

    #[test]
    fn static_addresses_come_preferred_transport_first_dynamic_skipped() {
        let (id, c) = device(&[
            "quic://192.0.2.1:22000",
            "dynamic",
            "tcp://192.0.2.1:22000",
            "tcp://192.0.2.1:22000",
        ]);
        let f = Finder::new(Live::new(c));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let urls: Vec<_> = rt
            .block_on(f.candidates(&id))
            .into_iter()
            .map(|c| c.url)
            .collect();
        assert_eq!(urls, ["tcp://192.0.2.1:22000", "quic://192.0.2.1:22000"]);
        assert!(f.is_dynamic(&id));
        assert!(rt
            .block_on(f.candidates(&DeviceId::from_bytes([6; 32])))
            .is_empty());
    }
}
