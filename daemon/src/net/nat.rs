//! Port mappings on the home router: UPnP IGD (the only module that knows
//! igd-next), else NAT-PMP (`proto::natpmp`) at the default gateway. While
//! `nat` is on, the listen ports (TCP and QUIC's UDP) are mapped on the
//! router to our LAN address, the same external port when the router
//! allows it (another when it does not), renewed at half the lease, and
//! announced as the router's external address; they are removed when the
//! daemon stops or `nat` is turned off.
//!
//! ```text
//! spawn ── task (follows config.nat): find (SSDP search, else NAT-PMP) → map each port → announce
//!            └─ every LEASE/2: map again (a router that rebooted forgets) · on stop: remove
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{PortMappingProtocol, SearchOptions};
use proto::addr::Transport;
use proto::natpmp;
use tokio::sync::watch;

use crate::config::live::Live;

/// The lease asked for (Syncthing's 60 minutes).
const LEASE: Duration = Duration::from_secs(3600);
/// How long the gateway search may take.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Between searches while no gateway answers.
const RETRY: Duration = Duration::from_secs(60);
/// What the mapping is called on the router.
const DESCRIPTION: &str = "ferrosync";

/// What port mapping achieved, for status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatState {
    /// The router found, and how we speak to it (`UPnP IGD at …`,
    /// `NAT-PMP at …`).
    pub gateway: Option<String>,
    /// The addresses the mappings make us reachable at.
    pub external: Vec<String>,
    /// What went wrong last.
    pub error: Option<String>,
}

/// One mapped listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    transport: Transport,
    local_port: u16,
    external_port: u16,
}

/// The router, and how we speak to it.
enum Router {
    Upnp(Gateway<Tokio>),
    /// The gateway's NAT-PMP address.
    Pmp(SocketAddr),
}

impl Router {
    /// A UPnP IGD that answers the SSDP search, else the default gateway
    /// if it answers NAT-PMP.
    async fn find() -> Result<Self, String> {
        let upnp = search_gateway(SearchOptions {
            timeout: Some(SEARCH_TIMEOUT),
            ..SearchOptions::default()
        })
        .await;
        let upnp_err = match upnp {
            Ok(gw) => return Ok(Self::Upnp(gw)),
            Err(e) => e.to_string(),
        };
        let gw = default_gateway()
            .map(|ip| SocketAddr::new(IpAddr::V4(ip), natpmp::PORT))
            .ok_or_else(|| format!("no UPnP gateway answered ({upnp_err}) and no default route"))?;
        let r = Self::Pmp(gw);
        r.external_ip()
            .await
            .map_err(|e| format!("no UPnP gateway answered ({upnp_err}); NAT-PMP at {gw}: {e}"))?;
        Ok(r)
    }

    fn describe(&self) -> String {
        match self {
            Self::Upnp(gw) => format!("UPnP IGD at {}", gw.addr),
            Self::Pmp(gw) => format!("NAT-PMP at {gw}"),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::Upnp(gw) => gw.addr,
            Self::Pmp(gw) => *gw,
        }
    }

    async fn external_ip(&self) -> Result<IpAddr, String> {
        match self {
            Self::Upnp(gw) => gw.get_external_ip().await.map_err(|e| e.to_string()),
            Self::Pmp(gw) => {
                pmp(*gw, &natpmp::external_address_request(), |p| {
                    natpmp::parse_external_address(p).map(IpAddr::V4)
                })
                .await
            }
        }
    }

    /// Maps `to` (our address and port), at `wanted` outside if the
    /// router lets us; the port it gave.
    async fn map(&self, m: &Mapping, to: SocketAddr, wanted: u16) -> Result<u16, String> {
        let lease = LEASE.as_secs() as u32;
        match self {
            Self::Upnp(gw) => {
                let protocol = upnp_protocol(m.transport);
                match gw.add_port(protocol, wanted, to, lease, DESCRIPTION).await {
                    Ok(()) => Ok(wanted),
                    Err(e) => {
                        tracing::debug!(transport = %m.transport, port = m.local_port,
                            "mapping the same port failed ({e}); asking for any");
                        gw.add_any_port(protocol, to, lease, DESCRIPTION)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            }
            Self::Pmp(gw) => {
                let protocol = pmp_protocol(m.transport);
                let req = natpmp::map_request(protocol, m.local_port, wanted, lease);
                pmp(*gw, &req, |p| natpmp::parse_map(p, protocol))
                    .await
                    .map(|granted| granted.external_port)
            }
        }
    }

    async fn unmap(&self, m: &Mapping) -> Result<(), String> {
        match self {
            Self::Upnp(gw) => gw
                .remove_port(upnp_protocol(m.transport), m.external_port)
                .await
                .map_err(|e| e.to_string()),
            Self::Pmp(gw) => {
                let protocol = pmp_protocol(m.transport);
                let req = natpmp::map_request(protocol, m.local_port, 0, 0);
                pmp(*gw, &req, |p| natpmp::parse_map(p, protocol))
                    .await
                    .map(|_| ())
            }
        }
    }
}

fn upnp_protocol(t: Transport) -> PortMappingProtocol {
    match t {
        Transport::Quic => PortMappingProtocol::UDP,
        _ => PortMappingProtocol::TCP,
    }
}

fn pmp_protocol(t: Transport) -> natpmp::Protocol {
    match t {
        Transport::Quic => natpmp::Protocol::Udp,
        _ => natpmp::Protocol::Tcp,
    }
}

/// One NAT-PMP request and its answer: sent again after 250 ms, doubling,
/// four times in all (RFC 6886 retries nine times; a router that has not
/// answered in four seconds is not going to).
async fn pmp<T>(
    gw: SocketAddr,
    request: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, natpmp::PmpError>,
) -> Result<T, String> {
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(gw).await.map_err(|e| e.to_string())?;
    let mut wait = Duration::from_millis(250);
    let mut buf = [0u8; 64];
    for _ in 0..4 {
        socket.send(request).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(got) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            let n = got.map_err(|e| e.to_string())?;
            match parse(&buf[..n]) {
                Ok(v) => return Ok(v),
                Err(natpmp::PmpError::Refused(code)) => {
                    return Err(format!("the gateway refused (NAT-PMP result {code})"))
                }
                // An answer to an earlier request: wait on.
                Err(natpmp::PmpError::Unexpected) => {}
            }
        }
        wait *= 2;
    }
    Err("no NAT-PMP answer".to_string())
}

/// The IPv4 default gateway, from the kernel's routing table.
fn default_gateway() -> Option<std::net::Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"00000000") {
            return None;
        }
        // Hex in host (little-endian) byte order.
        let g = u32::from_str_radix(f.get(2)?, 16).ok()?;
        (g != 0).then(|| std::net::Ipv4Addr::from(g.to_le_bytes()))
    })
}

/// The running port mapper.
pub struct Nat {
    state: Mutex<NatState>,
    external: watch::Sender<Vec<String>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Nat {
    /// Where the mappings make us reachable.
    pub fn external(&self) -> watch::Receiver<Vec<String>> {
        self.external.subscribe()
    }

    /// For status.
    pub fn status(&self) -> NatState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Removes the mappings (waiting up to a few seconds for the router)
    /// and stops.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("the router did not confirm removing our port mappings within 5 s");
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut NatState)) {
        let external = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s);
            s.external.clone()
        };
        crate::net::publish(&self.external, external);
    }
}

/// Starts mapping the ports of `listen_urls` (the bound listeners) while
/// the live config's `nat` is on.
pub fn spawn(listen_urls: &[String], config: Live) -> Arc<Nat> {
    let ports: Vec<(Transport, u16)> = listen_urls
        .iter()
        .filter_map(|u| proto::addr::parse(u).ok())
        .filter(|a| a.transport != Transport::Relay)
        .filter_map(|a| Some((a.transport, a.port?)))
        .filter(|(_, p)| *p != 0)
        .collect();
    let nat = Arc::new(Nat {
        state: Mutex::new(NatState::default()),
        external: watch::channel(Vec::new()).0,
        stop: watch::channel(false).0,
        task: Mutex::new(None),
    });
    let task = tokio::spawn(run(nat.clone(), ports, config));
    *nat.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    nat
}

async fn run(nat: Arc<Nat>, ports: Vec<(Transport, u16)>, config: Live) {
    let mut cfg = config.subscribe();
    let mut stop = nat.stop.subscribe();
    let mut mapped: Option<(Router, Vec<Mapping>)> = None;
    loop {
        let on = cfg.borrow_and_update().nat && !ports.is_empty();
        let wait = if !on {
            if let Some((router, maps)) = mapped.take() {
                remove(&router, &maps).await;
            }
            nat.set(|s| *s = NatState::default());
            None
        } else {
            match map(&nat, &ports, mapped.take()).await {
                Ok(m) => {
                    mapped = Some(m);
                    Some(LEASE / 2)
                }
                Err(e) => {
                    tracing::debug!("port mapping: {e}");
                    nat.set(|s| {
                        s.error = Some(e);
                        s.external.clear();
                    });
                    Some(RETRY)
                }
            }
        };
        tokio::select! {
            r = cfg.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    if let Some((router, maps)) = mapped {
        remove(&router, &maps).await;
    }
}

/// Finds the router (or reuses it) and maps every port, keeping the
/// external ports of an earlier round.
async fn map(
    nat: &Nat,
    ports: &[(Transport, u16)],
    earlier: Option<(Router, Vec<Mapping>)>,
) -> Result<(Router, Vec<Mapping>), String> {
    let (router, earlier) = match earlier {
        Some(e) => e,
        None => (Router::find().await?, Vec::new()),
    };
    let local =
        local_ip(router.addr()).map_err(|e| format!("our address towards the router: {e}"))?;
    let external_ip = router
        .external_ip()
        .await
        .map_err(|e| format!("the router's external address: {e}"))?;
    let mut maps = Vec::new();
    let mut external = Vec::new();
    for &(transport, port) in ports {
        let wanted = earlier
            .iter()
            .find(|m| m.transport == transport && m.local_port == port)
            .map_or(port, |m| m.external_port);
        let mut m = Mapping {
            transport,
            local_port: port,
            external_port: wanted,
        };
        m.external_port = router
            .map(&m, SocketAddr::new(local, port), wanted)
            .await
            .map_err(|e| format!("mapping {transport} port {port}: {e}"))?;
        external.push(format!(
            "{}://{}",
            transport.as_str(),
            SocketAddr::new(external_ip, m.external_port)
        ));
        maps.push(m);
    }
    tracing::info!(router = %router.describe(), ?external, "ports mapped on the router");
    nat.set(|s| {
        s.gateway = Some(router.describe());
        s.external = external;
        s.error = None;
    });
    Ok((router, maps))
}

async fn remove(router: &Router, maps: &[Mapping]) {
    for m in maps {
        match router.unmap(m).await {
            Ok(()) => {
                tracing::debug!(transport = %m.transport, port = m.external_port, "port mapping removed")
            }
            Err(e) => {
                tracing::debug!(transport = %m.transport, port = m.external_port, "removing a port mapping: {e}")
            }
        }
    }
}

/// The address this host uses to reach `gateway` (what the mapping must
/// point at): a connected UDP socket's local address, no packet sent.
fn local_ip(gateway: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if gateway.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.connect(gateway)?;
    Ok(s.local_addr()?.ip())
}
