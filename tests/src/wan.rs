//! The internet in a box: a lab whose WAN segment holds a server host
//! running `ferrosync-discovery` (HTTPS on 8443, STUN on 3478) and
//! `ferrosync-relay` (22067, status and metrics on 22070), for tests and
//! benchmarks that put devices behind NAT routers on it.

use std::net::SocketAddr;

use crate::netns::{Host, Lab, Segment};
use crate::servers::{DiscoveryProcess, RelayProcess};

/// The lab, its WAN, and the servers on it.
pub struct Wan {
    /// The servers (stopped on drop) before the lab (deleted on drop).
    pub disco: DiscoveryProcess,
    /// The relay.
    pub relay: RelayProcess,
    /// Where the relay serves `/status` and `/metrics`.
    pub relay_status: SocketAddr,
    /// Where the discovery server answers STUN.
    pub stun: SocketAddr,
    /// The server host.
    pub server: Host,
    /// The WAN segment.
    pub segment: Segment,
    /// The namespaces.
    pub lab: Lab,
    _disco_data: tempfile::TempDir,
}

impl Wan {
    /// A new lab with its WAN and servers; `None` where labs cannot be
    /// made (see [`Lab::new`]).
    pub fn new() -> Option<Self> {
        let mut lab = Lab::new()?;
        let mut segment = lab.segment();
        let server = lab.host(&mut segment, "srv");
        let data = tempfile::tempdir().expect("tempdir");
        let stun: SocketAddr = format!("{}:3478", server.ip).parse().expect("addr");
        let disco = DiscoveryProcess::start(
            data.path(),
            &format!("{}:8443", server.ip),
            Some(&server),
            &["--stun", &stun.to_string()],
        );
        let relay_status: SocketAddr = format!("{}:22070", server.ip).parse().expect("addr");
        let relay = RelayProcess::start(
            &format!("{}:22067", server.ip),
            Some(&server),
            &["--status", &relay_status.to_string()],
        );
        Some(Self {
            disco,
            relay,
            relay_status,
            stun,
            server,
            segment,
            lab,
            _disco_data: data,
        })
    }

    /// A host behind a NAT router of its own (see [`Lab::nat`]): the
    /// router, then the host.
    pub fn behind_nat(&mut self, name: &str) -> (Host, Host) {
        let (router, mut lan) = self.lab.nat(&mut self.segment, &format!("{name}nat"));
        let host = self.lab.host(&mut lan, name);
        (router, host)
    }

    /// A host behind a router ready for miniupnpd (see
    /// [`Lab::upnp_nat`]): the router, its LAN's third octet, the host.
    pub fn behind_upnp(&mut self, name: &str) -> (Host, u8, Host) {
        let (router, mut lan) = self.lab.upnp_nat(&mut self.segment, &format!("{name}nat"));
        let host = self.lab.host(&mut lan, name);
        (router, lan.n, host)
    }

    /// A host on the WAN itself.
    pub fn host(&mut self, name: &str) -> Host {
        self.lab.host(&mut self.segment, name)
    }

    /// The relay's counters: (sessions piping now, sessions ever).
    pub fn relay_sessions(&self) -> Option<(u64, u64)> {
        let text = ureq::get(&format!("http://{}/metrics", self.relay_status))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
        };
        Some((
            value("ferrosync_relay_sessions")?,
            value("ferrosync_relay_sessions_total")?,
        ))
    }

    /// Drops UDP forwarded by `router` (`block`), or lets it pass again.
    pub fn block_udp(router: &Host, block: bool) {
        let op = if block { "-I" } else { "-D" };
        let out = router
            .command("iptables")
            .args([op, "FORWARD", "-p", "udp", "-j", "DROP"])
            .output()
            .expect("iptables");
        assert!(out.status.success(), "iptables {op}: {out:?}");
    }
}
