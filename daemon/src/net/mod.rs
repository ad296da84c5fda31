//! Authenticated byte streams to other devices (layer L1): TLS 1.3 over
//! TCP and QUIC, listening and dialing. The only module that knows quinn
//! and rustls. It proves who the peer is (the SHA-256 of its one
//! certificate, checked against its handshake signature) and hands over a
//! reader and a writer; what flows over them, and whether the device is
//! welcome, is the `peer` layer's business.
//!
//! ```text
//! Net::start ─┬─ tcp accept loop ──┐ one task per handshake (10 s limit)
//!             └─ quic accept loop ─┴──▶ mpsc::Receiver<Connection>
//!             └─ relay client (Net::relays): invitations ──▶ the same channel
//! Net::dial(url, expected ID) ──────────▶ Connection (or WrongDevice)
//!            relay://… ─ relay::dial: a session through the relay, TLS end to end
//! ```

mod admission;
pub mod https;
pub mod nat;
mod quic;
pub mod relay;
pub mod stun;
mod tcp;
mod tls;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::DeviceId;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::identity::Identity;

use proto::addr::{AddrError, Family};
pub use proto::addr::{Transport, DEFAULT_PORT};

/// How long a TCP connect, a TLS handshake, a QUIC handshake, or the wait
/// for a QUIC dialer's stream may take (Syncthing's limits).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections waiting for the consumer; beyond this, handshake
/// tasks wait, so a stalled consumer slows peers down instead of piling up.
const ACCEPT_QUEUE: usize = 16;

/// An authenticated connection: TLS 1.3 is done, the peer presented exactly
/// one certificate and proved it holds its key, and `device_id` is that
/// certificate's SHA-256. It is never our own ID.
///
/// Dropping everything closes it. Write with `write_all` then `flush`;
/// `shutdown` on the writer sends the end of the stream (TLS close_notify
/// and FIN; on QUIC, it also waits until the peer has acknowledged all data,
/// so a last message such as BEP `Close` is not lost when the connection is
/// dropped right after). The fields may be moved out separately: the
/// connection lives until the reader, the writer and this struct are all
/// gone.
pub struct Connection {
    /// Who the peer is.
    pub device_id: DeviceId,
    /// What carries the connection.
    pub transport: Transport,
    /// The peer's address (IPv4-mapped IPv6 addresses shown as IPv4).
    pub remote_addr: SocketAddr,
    /// Whether we dialed (on a relay: whether we are the TLS client).
    pub outgoing: bool,
    /// The relay carrying it (its URI), when relayed.
    pub relay: Option<String>,
    /// Bytes from the peer.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Bytes to the peer.
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// Keeps a QUIC connection's handle (and so the connection) alive.
    _quic: Option<quic::Keep>,
    /// An accepted connection's place among incoming handshakes: hold it
    /// until the peer has said who it is in BEP (its Hello), so
    /// connections that authenticate and then stay silent are bounded too.
    pub admitted: Option<Admitted>,
}

/// A place among incoming handshakes (see [`Connection::admitted`]);
/// freed when dropped.
pub struct Admitted {
    _ticket: admission::Ticket,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("device_id", &self.device_id)
            .field("transport", &self.transport)
            .field("remote_addr", &self.remote_addr)
            .field("outgoing", &self.outgoing)
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

/// Why listening or dialing failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The address is not a usable URL.
    #[error("bad address {url:?}: {reason}")]
    BadUrl {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The address does not parse (see `proto::addr`).
    #[error("bad address {0}")]
    Address(#[from] AddrError),
    /// A socket operation failed (bind, connect, resolve, ...).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The TLS handshake failed, or the peer's certificate was refused.
    #[error("TLS with {peer}: {reason}")]
    Tls {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The QUIC connection failed or was closed during setup.
    #[error("QUIC with {peer}: {reason}")]
    Quic {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The peer is another device than the one we meant to reach.
    #[error("the peer is device {got}, not the expected {expected}")]
    WrongDevice {
        /// The device we dialed for.
        expected: DeviceId,
        /// The device that answered.
        got: DeviceId,
    },
    /// The peer has our own certificate: we reached ourselves.
    #[error("{peer} is this device itself")]
    SelfConnection {
        /// The address that led back to us.
        peer: SocketAddr,
    },
    /// A step took longer than allowed.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The step.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// A relay refused, failed, or said something it should not.
    #[error("relay {relay}: {reason}")]
    Relay {
        /// The relay's `host:port`.
        relay: String,
        /// What happened.
        reason: String,
    },
    /// Our own certificate or key is unusable.
    #[error("our certificate or key is unusable: {0}")]
    Identity(String),
}

impl NetError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> NetError {
        let context = context.into();
        move |source| NetError::Io { context, source }
    }

    fn bad_url(url: &str, reason: impl Into<String>) -> NetError {
        NetError::BadUrl {
            url: url.to_string(),
            reason: reason.into(),
        }
    }
}

/// A parsed `scheme://host:port` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) transport: Transport,
    pub(crate) family: Family,
    /// The scheme as written (lowercased), kept for the URLs we report.
    pub(crate) scheme: String,
    /// Without brackets; empty means "any address" (listening only).
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Parses a listen or dial address (the grammar is `proto::addr`'s); a
/// missing port is [`DEFAULT_PORT`]. Relay addresses are not ours: the
/// relay client dials those.
pub(crate) fn parse_url(url: &str) -> Result<Target, NetError> {
    let a = proto::addr::parse(url)?;
    if a.transport == Transport::Relay {
        return Err(NetError::bad_url(
            url,
            "a relay address is not a direct listen or dial address",
        ));
    }
    Ok(Target {
        transport: a.transport,
        family: a.family,
        port: a.port_or_default(),
        scheme: a.scheme,
        host: a.host,
    })
}

/// The address to bind for a listen target, and whether an IPv6 socket
/// must refuse IPv4 (`tcp6`/`quic6`). An empty host binds every address:
/// dual-stack `[::]` for the plain schemes.
async fn listen_addr(t: &Target, url: &str) -> Result<(SocketAddr, bool), NetError> {
    let only_v6 = t.family == Family::V6;
    if t.host.is_empty() {
        let ip = match t.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Any | Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        return Ok((SocketAddr::new(ip, t.port), only_v6));
    }
    let addrs = resolve(t, url).await?;
    addrs
        .first()
        .map(|a| (*a, only_v6))
        .ok_or_else(|| NetError::bad_url(url, "the host has no address of the right family"))
}

/// The addresses of a target's host, filtered by the scheme's family.
async fn resolve(t: &Target, url: &str) -> Result<Vec<SocketAddr>, NetError> {
    if t.host.is_empty() {
        return Err(NetError::bad_url(url, "no host to connect to"));
    }
    if let Ok(ip) = t.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, t.port)]);
    }
    let found = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(NetError::io(format!("resolving {}", t.host)))?;
    let addrs: Vec<SocketAddr> = found.filter(|a| t.family.allows(a.ip())).collect();
    if addrs.is_empty() {
        return Err(NetError::bad_url(
            url,
            format!("{} has no address of the right family", t.host),
        ));
    }
    Ok(addrs)
}

/// `addr` with an IPv4-mapped IPv6 address (as a dual-stack socket
/// reports IPv4 peers) turned back into IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The device a finished handshake authenticated: exactly one certificate
/// (the verifiers already insisted; this is the check that does not depend
/// on them), hashed, and not ourselves.
fn peer_device(
    certs: Option<&[CertificateDer<'_>]>,
    my_id: DeviceId,
    peer: SocketAddr,
) -> Result<DeviceId, NetError> {
    let cert = match certs {
        Some([one]) => one,
        Some(certs) => {
            return Err(NetError::Tls {
                peer,
                reason: format!(
                    "peer presented {} certificates; exactly one is required",
                    certs.len()
                ),
            })
        }
        None => {
            return Err(NetError::Tls {
                peer,
                reason: "peer presented no certificate".into(),
            })
        }
    };
    let id = DeviceId::from_cert_der(cert);
    if id == my_id {
        return Err(NetError::SelfConnection { peer });
    }
    Ok(id)
}

/// What the accept loops share: who we are, how to greet, where to send
/// the result. Only the loops and their handshake tasks hold it, so the
/// channel closes once listening has stopped and the last handshake ended.
struct Acceptor {
    my_id: DeviceId,
    tls: Arc<rustls::ServerConfig>,
    tx: mpsc::Sender<Connection>,
    admission: Arc<admission::Admission>,
}

impl Acceptor {
    /// Runs one incoming handshake in its own task, so a slow or hostile
    /// peer delays nobody else; failures are logged at debug.
    fn spawn_handshake<F>(self: &Arc<Self>, transport: Transport, peer: SocketAddr, handshake: F)
    where
        F: std::future::Future<Output = Result<Connection, NetError>> + Send + 'static,
    {
        let Some(permit) = self.admission.admit(peer.ip()) else {
            tracing::debug!(%peer, %transport, "too many handshakes in progress; dropping");
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            match handshake.await {
                Ok(mut conn) => {
                    conn.admitted = Some(Admitted { _ticket: permit });
                    tracing::debug!(%peer, %transport, device = %conn.device_id, "accepted");
                    // A closed receiver means nobody wants connections any
                    // more; dropping this one closes it.
                    let _ = me.tx.send(conn).await;
                }
                Err(e) => tracing::debug!(%peer, %transport, "incoming connection refused: {e}"),
            }
        });
    }
}

/// Aborts listener tasks when dropped.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct Inner {
    my_id: DeviceId,
    tls: Arc<tls::TlsConfigs>,
    /// Where relayed incoming connections go: the accept channel, until
    /// `shutdown`.
    accept_tx: Mutex<Option<mpsc::Sender<Connection>>>,
    quic: quic::Endpoints,
    listen_urls: Vec<String>,
    /// TCP accept loops: aborted by `shutdown` (closing the listeners).
    tcp_tasks: Mutex<Tasks>,
    /// QUIC accept loops: they turn to refusing on `stop`, and end when
    /// the `Net` is dropped (their endpoints still carry our dials).
    _quic_tasks: Tasks,
    stop: watch::Sender<bool>,
    admission: Arc<admission::Admission>,
}

/// Listeners and the dialer for sync connections. Cheap to clone; the
/// listeners stop when the last clone is dropped or on [`Net::shutdown`].
#[derive(Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("device_id", &self.inner.my_id)
            .field("listen_urls", &self.inner.listen_urls)
            .finish_non_exhaustive()
    }
}

impl Net {
    /// Starts listeners for each URL in `listen` (`tcp://`, `tcp4://`,
    /// `tcp6://`, `quic://`, `quic4://`, `quic6://`; `host:port`, port 0
    /// lets the OS pick, an empty host means every address). Incoming
    /// connections, once authenticated, arrive on the returned channel. A
    /// QUIC listener also carries our outgoing QUIC connections (one UDP
    /// socket, as Syncthing does); without one, dialing uses a client-only
    /// endpoint on an ephemeral port.
    pub async fn start(
        identity: &Identity,
        listen: &[String],
    ) -> Result<(Net, mpsc::Receiver<Connection>), NetError> {
        let tls = tls::TlsConfigs::new(identity)?;
        let quic_configs = quic::Configs::new(&tls)?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let accept_tx = Mutex::new(Some(tx.clone()));
        let acceptor = Arc::new(Acceptor {
            my_id: identity.device_id,
            tls: tls.server.clone(),
            tx,
            admission: admission::Admission::new(),
        });
        let admission = acceptor.admission.clone();
        // Dropped (aborting what started) if a later listener fails.
        let mut tcp_tasks = Tasks::default();
        let mut quic_tasks = Tasks::default();
        let (stop, stopped) = watch::channel(false);
        let mut urls = Vec::new();
        let mut endpoints = Vec::new();
        for url in listen {
            let target = parse_url(url)?;
            let (addr, only_v6) = listen_addr(&target, url).await?;
            let bound = match target.transport {
                Transport::Tcp => {
                    let listener = tcp::bind(addr, only_v6)
                        .map_err(NetError::io(format!("listening on {url}")))?;
                    let bound = listener
                        .local_addr()
                        .map_err(NetError::io(format!("listening on {url}")))?;
                    tcp_tasks
                        .0
                        .push(tokio::spawn(tcp::accept_loop(listener, acceptor.clone())));
                    bound
                }
                Transport::Quic => {
                    let ep = quic_configs
                        .endpoint(addr, only_v6, true)
                        .map_err(NetError::io(format!("listening on {url}")))?;
                    let bound = ep.local;
                    quic_tasks.0.push(tokio::spawn(quic::accept_loop(
                        ep.endpoint.clone(),
                        acceptor.clone(),
                        stopped.clone(),
                    )));
                    endpoints.push(ep);
                    bound
                }
                Transport::Relay => unreachable!("parse_url refuses relay addresses"),
            };
            tracing::debug!(url = %url, %bound, "listening");
            urls.push(format!("{}://{}", target.scheme, canonical(bound)));
        }
        let inner = Inner {
            my_id: identity.device_id,
            tls: Arc::new(tls),
            accept_tx,
            quic: quic::Endpoints::new(quic_configs, endpoints),
            listen_urls: urls,
            tcp_tasks: Mutex::new(tcp_tasks),
            _quic_tasks: quic_tasks,
            stop,
            admission,
        };
        Ok((
            Net {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    /// This device's ID (the one every peer will see).
    pub fn device_id(&self) -> DeviceId {
        self.inner.my_id
    }

    /// The bound listen URLs with their real ports, e.g.
    /// `tcp://127.0.0.1:41234`, `quic://[::]:22000`.
    pub fn listen_urls(&self) -> Vec<String> {
        self.inner.listen_urls.clone()
    }

    /// Dials `url` (`tcp://host:port`, `quic://host:port`, ...; port 22000
    /// if absent) and returns the connection if the peer is `expect`, else
    /// [`NetError::WrongDevice`]. Each resolved address is tried in turn.
    ///
    /// QUIC: returns as soon as the stream is open locally; the peer only
    /// learns of the stream when the first bytes arrive, so write the BEP
    /// Hello at once (Syncthing waits 10 s for it).
    pub async fn dial(&self, url: &str, expect: DeviceId) -> Result<Connection, NetError> {
        if proto::addr::parse(url)?.transport == Transport::Relay {
            let uri = relay::RelayUri::parse(url)?;
            let conn = relay::dial(&uri, expect, &self.inner.tls, self.inner.my_id).await?;
            tracing::debug!(%url, device = %conn.device_id, "dialed through the relay");
            return check_expected(conn, expect);
        }
        let target = parse_url(url)?;
        let addrs = resolve(&target, url).await?;
        let mut last = None;
        for addr in addrs {
            let result = match target.transport {
                Transport::Tcp => tcp::dial(addr, &self.inner.tls.client, self.inner.my_id).await,
                Transport::Quic => self.inner.quic.dial(addr, self.inner.my_id, expect).await,
                Transport::Relay => unreachable!("parse_url refuses relay addresses"),
            };
            match result.and_then(|c| check_expected(c, expect)) {
                Ok(conn) => {
                    tracing::debug!(%url, device = %conn.device_id, "dialed");
                    // We dial configured devices only.
                    self.trust(conn.remote_addr.ip());
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::debug!(%url, %addr, "dial failed: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| NetError::bad_url(url, "no address to dial")))
    }

    /// Starts the relay client: it joins the relays in the live config's
    /// `relays` and sends the connections it is invited to down the
    /// accept channel. Stop it with [`relay::listen::Relays::stop`]
    /// before [`Net::shutdown`].
    pub fn relays(
        &self,
        config: crate::config::live::Live,
        https: https::Https,
    ) -> Arc<relay::listen::Relays> {
        let accept = self
            .inner
            .accept_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            // After shutdown nothing may arrive; a closed channel says so.
            .unwrap_or_else(|| mpsc::channel(1).0);
        let ctx = Arc::new(relay::Ctx {
            my_id: self.inner.my_id,
            tls: self.inner.tls.clone(),
        });
        relay::listen::spawn(ctx, https, config, accept)
    }

    /// Starts the STUN client on the QUIC listener that reaches IPv4
    /// (`None` without one): it learns the address our NAT maps the QUIC
    /// port to, from the live config's `stun` servers.
    pub fn stun(&self, config: crate::config::live::Live) -> Option<Arc<stun::Stun>> {
        let (socket, answers) = self.inner.quic.take_stun()?;
        Some(stun::spawn(socket, answers, config))
    }

    /// Remembers `source` as an address of a configured device: its
    /// handshakes may use places unknown sources cannot take.
    pub fn trust(&self, source: std::net::IpAddr) {
        self.inner.admission.trust(source);
    }

    /// Stops listening: TCP listeners close, QUIC endpoints refuse new
    /// connections (they still carry our dials). Connections already
    /// accepted or dialed, and handshakes in progress, carry on; the
    /// accept channel closes once those handshakes are done.
    pub fn shutdown(&self) {
        let mut tcp = self
            .inner
            .tcp_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        drop(std::mem::take(&mut *tcp));
        self.inner
            .accept_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.inner.stop.send_replace(true);
    }
}

/// Replaces what `tx` holds with `value`, waking its receivers only if
/// it changed (our addresses are re-announced on every wake-up).
pub(crate) fn publish<T: PartialEq>(tx: &watch::Sender<T>, value: T) {
    tx.send_if_modified(|old| {
        let changed = *old != value;
        *old = value;
        changed
    });
}

fn check_expected(conn: Connection, expect: DeviceId) -> Result<Connection, NetError> {
    if conn.device_id == expect {
        Ok(conn)
    } else {
        Err(NetError::WrongDevice {
            expected: expect,
            got: conn.device_id,
        })
    }
}
