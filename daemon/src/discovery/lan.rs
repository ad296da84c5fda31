//! LAN discovery with Syncthing's local discovery v4 (`discovery.local`):
//! a beacon on UDP 21027, as an IPv4 broadcast to every interface's
//! broadcast address and as IPv6 multicast to `ff12::8384` on every
//! interface, every 30 s and at once when a device we had not heard (or a
//! restarted one: a new instance ID) speaks up. What others announce is
//! kept 90 s, with unspecified hosts filled in from the packet's source
//! and port-0 addresses dropped (`proto::local_discovery::fill_in`).
//! Beside the beacons, an mDNS service (`_ferrosync._tcp.local.`, the only
//! use of mdns-sd) advertises our device ID and ports, and what other
//! ferrosync devices advertise goes into the same cache (Syncthing speaks
//! no mDNS: this helps where broadcasts are filtered but mDNS is not).
//! Addresses heard here are hints only: the TLS handshake decides who
//! answers.
//!
//! ```text
//! Lan::spawn ── one task: follows discovery.local; while on, binds the
//!               receivers, hears beacons and sends ours, and runs the
//!               mDNS daemon (its own thread, shut down when off)
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::local_discovery::{fill_in, Announce, MAX_PACKET, MULTICAST_V6, PORT};
use proto::DeviceId;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Notify};

use super::SourceStatus;
use crate::config::live::Live;

/// How often we announce.
const INTERVAL: Duration = Duration::from_secs(30);
/// How long what we heard is kept.
const LIFETIME: Duration = Duration::from_secs(90);
/// Announcements prompted by new devices are at least this far apart, so
/// a flood of made-up devices cannot make us flood the LAN.
const MIN_GAP: Duration = Duration::from_secs(1);
/// Devices kept at most (the oldest go first).
const MAX_HEARD: usize = 1024;

struct Heard {
    addresses: Vec<String>,
    instance: i64,
    at: Instant,
}

/// LAN discovery.
pub struct Lan {
    own: DeviceId,
    instance: i64,
    config: Live,
    addresses: watch::Receiver<Vec<String>>,
    heard: Mutex<HashMap<DeviceId, Heard>>,
    changed: watch::Sender<u64>,
    status: Mutex<SourceStatus>,
    prompt: Notify,
}

impl Lan {
    /// Announces `own` at the addresses `addresses` holds.
    pub fn new(own: DeviceId, config: Live, addresses: watch::Receiver<Vec<String>>) -> Arc<Self> {
        Arc::new(Self {
            own,
            // Positive, as Syncthing's (int63).
            instance: (rand::random::<u64>() >> 1) as i64,
            config,
            addresses,
            heard: Mutex::default(),
            changed: watch::channel(0).0,
            status: Mutex::default(),
            prompt: Notify::new(),
        })
    }

    /// Starts; the task ends when aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run())
    }

    /// Where `device` was heard, if within the last 90 s.
    pub fn addresses(&self, device: &DeviceId) -> Vec<String> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard
            .get(device)
            .filter(|h| h.at.elapsed() < LIFETIME)
            .map(|h| h.addresses.clone())
            .unwrap_or_default()
    }

    /// Every device heard within the last 90 s, with its addresses.
    pub fn heard(&self) -> Vec<(DeviceId, Vec<String>)> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard
            .iter()
            .filter(|(_, h)| h.at.elapsed() < LIFETIME)
            .map(|(d, h)| (*d, h.addresses.clone()))
            .collect()
    }

    /// Sees a new value whenever a device is heard at new addresses.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Whether beacons go out, and the last problem.
    pub fn status(&self) -> SourceStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, ok: bool, error: Option<String>) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = SourceStatus { ok, error };
    }

    async fn run(self: Arc<Self>) {
        let mut config = self.config.subscribe();
        loop {
            let on = config.borrow_and_update().discovery.local;
            if on {
                tokio::select! {
                    _ = self.serve() => {}
                    r = wait_off(&mut config) => if r.is_err() { return },
                }
            } else {
                self.set_status(false, Some("off (discovery.local)".into()));
                if config.changed().await.is_err() {
                    return;
                }
            }
        }
    }

    /// Hears and sends beacons, and runs mDNS, until the task is dropped.
    async fn serve(self: &Arc<Self>) {
        let _mdns = Mdns::start(self);
        self.beacons().await
    }

    /// Hears and sends beacons until the task is dropped.
    async fn beacons(&self) {
        let v4 = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await {
            Ok(s) => Some(s),
            Err(e) => {
                // Only one process per host hears IPv4 beacons (Syncthing
                // binds without SO_REUSEADDR): we still announce.
                tracing::warn!("LAN discovery cannot listen on UDP {PORT}: {e}");
                self.set_status(false, Some(format!("listening on UDP {PORT}: {e}")));
                None
            }
        };
        let v6 = bind_v6().await;
        let send4 = match std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|s| {
            s.set_broadcast(true)?;
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                self.set_status(false, Some(format!("opening a socket to announce: {e}")));
                return std::future::pending().await;
            }
        };
        let send6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).await.ok();
        if let Some(s) = &send6 {
            let _ = s.set_multicast_loop_v6(false);
        }
        let mut addresses = self.addresses.clone();
        let mut next = tokio::time::Instant::now();
        let mut last_sent: Option<tokio::time::Instant> = None;
        let (mut buf4, mut buf6) = (vec![0u8; MAX_PACKET], vec![0u8; MAX_PACKET]);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    let ours = addresses.borrow_and_update().clone();
                    self.announce(&send4, send6.as_ref(), &ours).await;
                    last_sent = Some(tokio::time::Instant::now());
                    next = tokio::time::Instant::now() + INTERVAL;
                }
                _ = self.prompt.notified() => {
                    let soonest = last_sent.map_or_else(tokio::time::Instant::now, |t| t + MIN_GAP);
                    next = next.min(soonest);
                }
                r = addresses.changed() => {
                    if r.is_ok() {
                        next = tokio::time::Instant::now();
                    }
                }
                r = recv(v4.as_ref(), &mut buf4) => {
                    if let Some((n, from)) = r {
                        self.hear(&buf4[..n], from);
                    }
                }
                r = recv(v6.as_ref(), &mut buf6) => {
                    if let Some((n, from)) = r {
                        self.hear(&buf6[..n], from);
                    }
                }
            }
        }
    }

    /// Sends our beacon on every interface.
    async fn announce(&self, v4: &UdpSocket, v6: Option<&UdpSocket>, addresses: &[String]) {
        if addresses.is_empty() {
            return;
        }
        let packet = Announce {
            id: self.own,
            addresses: addresses.to_vec(),
            instance_id: self.instance,
        }
        .encode();
        let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
        let mut broadcasts: Vec<Ipv4Addr> = interfaces
            .iter()
            .filter(|i| !i.is_loopback())
            // The directed broadcast from address and mask: if-addrs 0.13
            // reports a veth's own address as its broadcast address.
            .filter_map(|i| match &i.addr {
                if_addrs::IfAddr::V4(a) if a.prefixlen < 31 => {
                    Some(Ipv4Addr::from(u32::from(a.ip) | !u32::from(a.netmask)))
                }
                _ => None,
            })
            .collect();
        broadcasts.sort();
        broadcasts.dedup();
        if broadcasts.is_empty() {
            broadcasts.push(Ipv4Addr::BROADCAST);
        }
        let mut sent = 0;
        let mut last_error = None;
        tracing::trace!(?broadcasts, "LAN beacon to");
        for b in broadcasts {
            match v4.send_to(&packet, (b, PORT)).await {
                Ok(_) => sent += 1,
                Err(e) => last_error = Some(format!("broadcast to {b}: {e}")),
            }
        }
        if let Some(v6) = v6 {
            let mut indexes: Vec<u32> = interfaces
                .iter()
                .filter(|i| !i.is_loopback() && matches!(i.addr, if_addrs::IfAddr::V6(_)))
                .filter_map(|i| i.index)
                .collect();
            indexes.sort();
            indexes.dedup();
            for ix in indexes {
                let to = SocketAddrV6::new(MULTICAST_V6, PORT, 0, ix);
                match v6.send_to(&packet, to).await {
                    Ok(_) => sent += 1,
                    // A link whose IPv6 address is still tentative, say.
                    Err(e) => tracing::debug!("multicast on interface {ix}: {e}"),
                }
            }
        }
        tracing::trace!(sent, "LAN beacon");
        if sent > 0 {
            let listening = self
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .error
                .as_ref()
                .filter(|e| e.starts_with("listening"))
                .cloned();
            self.set_status(listening.is_none(), listening);
        } else {
            self.set_status(
                false,
                last_error.or(Some("no interface to announce on".into())),
            );
        }
    }

    /// Records where a device was heard; prompts our beacon if it is new
    /// (or restarted) and wakes the dial loops if it moved.
    /// `instance` is the beacon's; `None` (mDNS, which has none) keeps
    /// the one last heard.
    fn record(&self, id: DeviceId, instance: Option<i64>, addresses: Vec<String>) {
        if id == self.own || addresses.is_empty() {
            return;
        }
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let instance = instance
            .or_else(|| heard.get(&id).map(|h| h.instance))
            .unwrap_or(0);
        let known = heard
            .get(&id)
            .is_some_and(|h| h.instance == instance && h.at.elapsed() < LIFETIME);
        let moved = heard.get(&id).is_none_or(|h| h.addresses != addresses);
        if heard.len() >= MAX_HEARD && !heard.contains_key(&id) {
            if let Some(oldest) = heard.iter().min_by_key(|(_, h)| h.at).map(|(d, _)| *d) {
                heard.remove(&oldest);
            }
        }
        heard.insert(
            id,
            Heard {
                addresses: addresses.clone(),
                instance,
                at: Instant::now(),
            },
        );
        drop(heard);
        if !known {
            tracing::debug!(device = %id, ?addresses, "heard on the LAN");
            // Let it hear us at once, as Syncthing does.
            self.prompt.notify_one();
        }
        if moved {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Takes in one datagram.
    fn hear(&self, packet: &[u8], from: SocketAddr) {
        let a = match Announce::decode(packet) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%from, "not a beacon: {e}");
                return;
            }
        };
        if a.id == self.own {
            return;
        }
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        self.record(a.id, Some(a.instance_id), fill_in(&a.addresses, from));
    }
}

/// The mDNS service type ferrosync devices advertise.
const MDNS_SERVICE: &str = "_ferrosync._tcp.local.";

/// A running mDNS daemon: our service registered, others' browsed; shut
/// down on drop.
struct Mdns {
    daemon: mdns_sd::ServiceDaemon,
    browser: tokio::task::JoinHandle<()>,
}

impl Mdns {
    /// Registers our service (TXT: `id`, and the `tcp` and `quic` ports we
    /// listen on) and browses for others; `None` (logged) if mDNS cannot
    /// start here.
    fn start(lan: &Arc<Lan>) -> Option<Self> {
        let ports = |scheme: &str| {
            lan.addresses
                .borrow()
                .iter()
                .filter_map(|a| proto::addr::parse(a).ok())
                .find(|a| a.transport.as_str() == scheme)
                .and_then(|a| a.port)
        };
        let (tcp, quic) = (ports("tcp"), ports("quic"));
        let daemon = mdns_sd::ServiceDaemon::new()
            .map_err(|e| tracing::info!("mDNS is not available: {e}"))
            .ok()?;
        let id = lan.own.to_string();
        // A DNS label holds 63 bytes: the ID's first two groups name us.
        let instance = &id[..15];
        let mut props = vec![("id".to_string(), id.clone())];
        for (k, p) in [("tcp", tcp), ("quic", quic)] {
            if let Some(p) = p {
                props.push((k.to_string(), p.to_string()));
            }
        }
        let info = mdns_sd::ServiceInfo::new(
            MDNS_SERVICE,
            instance,
            &format!("{instance}.local."),
            "",
            tcp.or(quic).unwrap_or(proto::addr::DEFAULT_PORT),
            &props[..],
        )
        .map(mdns_sd::ServiceInfo::enable_addr_auto);
        if let Err(e) = info.and_then(|i| daemon.register(i)) {
            tracing::info!("mDNS: registering our service: {e}");
        }
        let events = match daemon.browse(MDNS_SERVICE) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::info!("mDNS: browsing: {e}");
                let _ = daemon.shutdown();
                return None;
            }
        };
        let lan = lan.clone();
        let browser = tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                if let mdns_sd::ServiceEvent::ServiceResolved(info) = event {
                    if let Some((id, addresses)) = advertised(&info) {
                        lan.record(id, None, addresses);
                    }
                }
            }
        });
        Some(Self { daemon, browser })
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        self.browser.abort();
        let _ = self.daemon.shutdown();
    }
}

/// The device and addresses a resolved mDNS service advertises.
fn advertised(info: &mdns_sd::ServiceInfo) -> Option<(DeviceId, Vec<String>)> {
    let id: DeviceId = info.get_property_val_str("id")?.parse().ok()?;
    let port = |k: &str| {
        info.get_property_val_str(k)
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
    };
    let mut out = Vec::new();
    for ip in info.get_addresses() {
        let ip = ip.to_canonical();
        // A link-local IPv6 address needs its interface, which a URL
        // cannot carry.
        let link_local_v6 = matches!(ip, std::net::IpAddr::V6(v6) if v6.is_unicast_link_local());
        if ip.is_loopback() || ip.is_unspecified() || link_local_v6 {
            continue;
        }
        for scheme in ["tcp", "quic"] {
            if let Some(p) = port(scheme) {
                out.push(format!("{scheme}://{}", SocketAddr::new(ip, p)));
            }
        }
    }
    out.sort();
    Some((id, out))
}

async fn wait_off(
    config: &mut watch::Receiver<Arc<crate::config::Config>>,
) -> Result<(), watch::error::RecvError> {
    loop {
        config.changed().await?;
        if !config.borrow_and_update().discovery.local {
            return Ok(());
        }
    }
}

/// `[::]:21027` joined to `ff12::8384` on every interface that has IPv6.
async fn bind_v6() -> Option<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).ok()?;
    s.set_only_v6(true).ok()?;
    s.set_reuse_address(true).ok()?;
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, PORT)).into())
        .map_err(|e| tracing::debug!("LAN discovery over IPv6: {e}"))
        .ok()?;
    let mut joined = 0;
    for i in if_addrs::get_if_addrs().unwrap_or_default() {
        if let (false, if_addrs::IfAddr::V6(_), Some(ix)) = (i.is_loopback(), &i.addr, i.index) {
            if s.join_multicast_v6(&MULTICAST_V6, ix).is_ok() {
                joined += 1;
            }
        }
    }
    if joined == 0 {
        return None;
    }
    s.set_nonblocking(true).ok()?;
    UdpSocket::from_std(s.into()).ok()
}

/// The next datagram on `socket`; never resolves without a socket.
async fn recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await.ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn beacons_are_heard_filled_in_and_own_ones_ignored() {
        let own = DeviceId::from_bytes([1; 32]);
        let (_tx, rx) = watch::channel(Vec::new());
        let lan = Lan::new(own, Live::new(Config::new_for("me")), rx);
        let mut changed = lan.changed();
        let peer = DeviceId::from_bytes([2; 32]);
        let beacon = |id, instance| {
            Announce {
                id,
                addresses: vec!["tcp://0.0.0.0:22000".into(), "tcp://0.0.0.0:0".into()],
                instance_id: instance,
            }
            .encode()
        };
        let from: SocketAddr = "198.18.0.7:50000".parse().expect("addr");
        lan.hear(&beacon(own, 1), from);
        assert!(lan.heard().is_empty(), "our own beacon");
        lan.hear(b"junk", from);
        lan.hear(&beacon(peer, 5), from);
        assert_eq!(lan.addresses(&peer), ["tcp://198.18.0.7:22000"]);
        assert!(changed.has_changed().expect("open"));
        changed.borrow_and_update();
        lan.hear(&beacon(peer, 5), from);
        assert!(!changed.has_changed().expect("open"), "nothing new");
    }
}
