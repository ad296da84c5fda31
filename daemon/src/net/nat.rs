//! Port mappings on the home router (UPnP IGD), the only module that knows
//! igd-next. While `nat` is on, the listen ports (TCP and QUIC's UDP) are
//! mapped on the gateway to our LAN address, the same external port when
//! the router allows it (another when it does not), renewed at half the
//! lease, and announced as the router's external address; they are
//! removed when the daemon stops or `nat` is turned off.
//!
//! ```text
//! spawn ── task (follows config.nat): search (SSDP) → map each port → announce
//!            └─ every LEASE/2: map again (a router that rebooted forgets) · on stop: remove
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::aio::Gateway;
use igd_next::{PortMappingProtocol, SearchOptions};
use proto::addr::Transport;
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
    /// The gateway's address, once found.
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

impl Mapping {
    fn protocol(&self) -> PortMappingProtocol {
        match self.transport {
            Transport::Quic => PortMappingProtocol::UDP,
            _ => PortMappingProtocol::TCP,
        }
    }
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
    let mut mapped: Option<(Gateway<Tokio>, Vec<Mapping>)> = None;
    loop {
        let on = cfg.borrow_and_update().nat && !ports.is_empty();
        let wait = if !on {
            if let Some((gw, maps)) = mapped.take() {
                remove(&gw, &maps).await;
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
    if let Some((gw, maps)) = mapped {
        remove(&gw, &maps).await;
    }
}

/// Finds the gateway (or reuses it) and maps every port, keeping the
/// external ports of an earlier round.
async fn map(
    nat: &Nat,
    ports: &[(Transport, u16)],
    earlier: Option<(Gateway<Tokio>, Vec<Mapping>)>,
) -> Result<(Gateway<Tokio>, Vec<Mapping>), String> {
    let (gw, earlier) = match earlier {
        Some((gw, maps)) => (gw, maps),
        None => {
            let gw = search_gateway(SearchOptions {
                timeout: Some(SEARCH_TIMEOUT),
                ..SearchOptions::default()
            })
            .await
            .map_err(|e| format!("no UPnP gateway answered: {e}"))?;
            (gw, Vec::new())
        }
    };
    let local = local_ip(gw.addr).map_err(|e| format!("our address towards the gateway: {e}"))?;
    let external_ip = gw
        .get_external_ip()
        .await
        .map_err(|e| format!("the gateway's external address: {e}"))?;
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
        let to = SocketAddr::new(local, port);
        let lease = LEASE.as_secs() as u32;
        if let Err(e) = gw
            .add_port(m.protocol(), wanted, to, lease, DESCRIPTION)
            .await
        {
            tracing::debug!(%transport, port, "mapping the same port failed ({e}); asking for any");
            m.external_port = gw
                .add_any_port(m.protocol(), to, lease, DESCRIPTION)
                .await
                .map_err(|e| format!("mapping {transport} port {port}: {e}"))?;
        }
        external.push(format!(
            "{}://{}",
            transport.as_str(),
            SocketAddr::new(external_ip, m.external_port)
        ));
        maps.push(m);
    }
    tracing::info!(gateway = %gw.addr, ?external, "ports mapped on the router");
    nat.set(|s| {
        s.gateway = Some(gw.addr.to_string());
        s.external = external;
        s.error = None;
    });
    Ok((gw, maps))
}

async fn remove(gw: &Gateway<Tokio>, maps: &[Mapping]) {
    for m in maps {
        match gw.remove_port(m.protocol(), m.external_port).await {
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
