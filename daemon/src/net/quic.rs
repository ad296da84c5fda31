//! QUIC (quinn) endpoints: each one UDP socket that both listens and dials,
//! as Syncthing's does (its peers see our dials come from our listen
//! port, which is what NAT mappings and its address learning expect). A
//! connection carries exactly one bidirectional stream, opened by the
//! dialer; the listener gives it [`HANDSHAKE_TIMEOUT`] to show up.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use proto::DeviceId;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use quinn::{EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::CertificateDer;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWrite;
use tokio::sync::watch;

use super::stun::StunSocket;
use super::tls::{TlsConfigs, ALPN};
use super::{canonical, peer_device, Acceptor, Connection, NetError, Transport, HANDSHAKE_TIMEOUT};

/// UDP socket buffers we ask for: the ~208 KiB default drops 0.1–1% of
/// packets at full speed on loopback, 4 MiB does not. Linux caps the
/// request at `net.core.rmem_max`/`wmem_max` (and reports double).
const UDP_BUFFER: usize = 4 << 20;
/// Syncthing's idle timeout; its keep-alive runs at half of it.
const IDLE_TIMEOUT_MS: u32 = 30_000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// One stream carries everything, so its window is most of the
/// connection's; both are large enough for a LAN's bandwidth-delay product.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
const SEND_WINDOW: u64 = 16 << 20;
/// Application error code Syncthing closes with when the dialer opened no
/// stream in time.
const NO_STREAM: u32 = 1;

/// Keeps a QUIC connection's handle inside a [`Connection`].
pub(super) struct Keep {
    _conn: quinn::Connection,
}

/// The quinn configs (one transport config for both roles).
pub(super) struct Configs {
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
}

impl Configs {
    pub(super) fn new(tls: &TlsConfigs) -> Result<Self, NetError> {
        let mut transport = TransportConfig::default();
        transport
            .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
            .keep_alive_interval(Some(KEEP_ALIVE))
            .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
            .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
            .send_window(SEND_WINDOW)
            // Loss-based control (quinn's default, Cubic) collapses on a
            // lossy long link: 1 % loss over 100 ms moved 180 KB/s
            // (bench-wan). BBR paces to the measured bottleneck instead,
            // as the kernel's TCP does where it is the default.
            .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
            // BEP uses the dialer's one bidirectional stream; a peer has
            // no business opening more, and no datagrams (Syncthing
            // advertises none either).
            .max_concurrent_bidi_streams(VarInt::from_u32(1))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .datagram_receive_buffer_size(None);
        let transport = Arc::new(transport);

        let no_suite = |e: quinn::crypto::rustls::NoInitialCipherSuite| {
            NetError::Identity(format!("QUIC needs TLS_AES_128_GCM_SHA256: {e}"))
        };
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(tls.server.clone()).map_err(no_suite)?,
        ));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(tls.client.clone()).map_err(no_suite)?,
        ));
        client.transport_config(transport);
        // QUIC v1: what Syncthing 1.19.2 (quic-go 0.29) and 2.x accept; it
        // does not speak RFC 9369 v2.
        client.version(1);
        Ok(Self { server, client })
    }

    /// An endpoint on a new UDP socket bound to `addr`, listening if
    /// `listen`, always able to dial.
    pub(super) fn endpoint(
        &self,
        addr: SocketAddr,
        only_v6: bool,
        listen: bool,
    ) -> io::Result<Bound> {
        let runtime = Arc::new(quinn::TokioRuntime);
        let socket = quinn::Runtime::wrap_udp_socket(&*runtime, udp_socket(addr, only_v6)?)?;
        let (socket, stun_answers) = StunSocket::wrap(socket);
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            EndpointConfig::default(),
            listen.then(|| self.server.clone()),
            socket.clone(),
            runtime,
        )?;
        endpoint.set_default_client_config(self.client.clone());
        let local = endpoint.local_addr()?;
        Ok(Bound {
            endpoint,
            local,
            only_v6,
            stun: Mutex::new(Some((socket, stun_answers))),
        })
    }
}

/// A UDP socket with big buffers (see [`UDP_BUFFER`]). A refused size is
/// not an error: QUIC works with any buffer, just with more loss.
fn udp_socket(addr: SocketAddr, only_v6: bool) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(only_v6)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(UDP_BUFFER) {
        tracing::debug!(%addr, "setting SO_RCVBUF: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(UDP_BUFFER) {
        tracing::debug!(%addr, "setting SO_SNDBUF: {e}");
    }
    tracing::debug!(
        %addr,
        requested = UDP_BUFFER,
        recv = ?socket.recv_buffer_size().ok(),
        send = ?socket.send_buffer_size().ok(),
        "UDP socket buffers granted by the kernel"
    );
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// An endpoint and what its socket is bound to.
pub(super) struct Bound {
    pub(super) endpoint: quinn::Endpoint,
    pub(super) local: SocketAddr,
    only_v6: bool,
    /// The socket's STUN side, until a STUN client takes it.
    stun: Mutex<Option<StunSide>>,
}

/// A socket's STUN side: to send Binding requests, and the answers.
pub(super) type StunSide = (
    Arc<StunSocket>,
    tokio::sync::mpsc::Receiver<(SocketAddr, Vec<u8>)>,
);

impl Bound {
    fn can_reach(&self, target: SocketAddr) -> bool {
        can_reach(self.local, self.only_v6, target)
    }
}

/// Whether packets from a socket bound to `local` can reach `target`: the
/// family must fit (a dual-stack `[::]` reaches IPv4 too), and a socket
/// bound to loopback only reaches loopback, one bound to another specific
/// address only non-loopback.
fn can_reach(local: SocketAddr, only_v6: bool, target: SocketAddr) -> bool {
    let local = local.ip();
    let target = target.ip().to_canonical();
    let family = match (local, target) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => true,
        (IpAddr::V6(l), IpAddr::V4(_)) => !only_v6 && l.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    };
    family && (local.is_unspecified() || local.is_loopback() == target.is_loopback())
}

/// The listening endpoints, and a client-only one made when none of them
/// can reach a target.
pub(super) struct Endpoints {
    configs: Configs,
    listening: Vec<Bound>,
    client: Mutex<Option<Arc<Bound>>>,
}

impl Endpoints {
    /// The STUN side of the listening socket that reaches IPv4 (what NATs
    /// map), once.
    pub(super) fn take_stun(&self) -> Option<StunSide> {
        self.listening
            .iter()
            .filter(|b| b.can_reach(SocketAddr::from(([192, 0, 2, 1], 1))))
            .find_map(|b| b.stun.lock().unwrap_or_else(|e| e.into_inner()).take())
    }

    pub(super) fn new(configs: Configs, mut listening: Vec<Bound>) -> Self {
        // Syncthing prefers a socket bound to every address for dialing:
        // it reaches anything its family allows.
        listening.sort_by_key(|b| !b.local.ip().is_unspecified());
        Self {
            configs,
            listening,
            client: Mutex::new(None),
        }
    }

    fn pick(&self, target: SocketAddr) -> Result<quinn::Endpoint, NetError> {
        if let Some(b) = self.listening.iter().find(|b| b.can_reach(target)) {
            return Ok(b.endpoint.clone());
        }
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let bound = match &*client {
            Some(b) => b.clone(),
            None => {
                // Dual-stack where the host has IPv6, else IPv4 only.
                let b = self
                    .configs
                    .endpoint(
                        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
                        false,
                        false,
                    )
                    .or_else(|_| {
                        self.configs.endpoint(
                            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                            false,
                            false,
                        )
                    })
                    .map_err(NetError::io("creating a QUIC client socket"))?;
                tracing::debug!(local = %b.local, "QUIC client-only endpoint");
                let b = Arc::new(b);
                *client = Some(b.clone());
                b
            }
        };
        if bound.can_reach(target) {
            Ok(bound.endpoint.clone())
        } else {
            Err(NetError::Quic {
                peer: target,
                reason: format!(
                    "no QUIC socket of ours can reach it (ours: {})",
                    bound.local
                ),
            })
        }
    }

    /// Connects to `addr`, checks the peer is `expect` (before opening the
    /// stream, so a wrong device learns nothing more), opens the stream.
    pub(super) async fn dial(
        &self,
        addr: SocketAddr,
        my_id: DeviceId,
        expect: DeviceId,
    ) -> Result<Connection, NetError> {
        let peer = canonical(addr);
        let endpoint = self.pick(addr)?;
        // The server name is the IP: no SNI, like Syncthing's dials to IP
        // addresses; our verifier does not look at it.
        let connecting = endpoint
            .connect(addr, &addr.ip().to_canonical().to_string())
            .map_err(|e| quic_error(peer, e))?;
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| timeout(format!("QUIC handshake with {peer}")))?
            .map_err(|e| quic_error(peer, e))?;
        let device_id = match authenticate(&conn, my_id, peer) {
            Ok(id) if id == expect => id,
            Ok(got) => {
                conn.close(VarInt::from_u32(0), b"wrong device");
                return Err(NetError::WrongDevice {
                    expected: expect,
                    got,
                });
            }
            Err(e) => {
                conn.close(VarInt::from_u32(0), b"refused");
                return Err(e);
            }
        };
        // Opening is local (the peer allows streams in its transport
        // parameters); the peer sees the stream with our first bytes.
        let (send, recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.open_bi())
            .await
            .map_err(|_| timeout(format!("opening a QUIC stream to {peer}")))?
            .map_err(|e| quic_error(peer, e))?;
        Ok(connection(conn, send, recv, peer, device_id, true))
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        // Connections may outlive the Net (quinn keeps the socket until
        // they close); new ones must not be accepted with nobody to take
        // them.
        for b in &self.listening {
            b.endpoint.set_server_config(None);
        }
    }
}

/// Accepts until aborted (or the endpoint is closed); each handshake runs
/// in its own task. Once `stop` turns true it lets go of the acceptor (so
/// the accept channel can close) and refuses newcomers with
/// CONNECTION_REFUSED, which a dialer notices at once; an endpoint without
/// a server config would stay silent and make dialers wait for their
/// timeout. The endpoint lives on for our dials.
pub(super) async fn accept_loop(
    endpoint: quinn::Endpoint,
    acceptor: Arc<Acceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut acceptor = Some(acceptor);
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { return };
                let peer = canonical(incoming.remote_address());
                match &acceptor {
                    Some(a) => {
                        let my_id = a.my_id;
                        a.spawn_handshake(Transport::Quic, peer, accept_one(incoming, peer, my_id));
                    }
                    None => {
                        tracing::debug!(%peer, "refusing a QUIC connection: not listening");
                        incoming.refuse();
                    }
                }
            }
            changed = stop.changed(), if acceptor.is_some() => {
                if changed.is_err() || *stop.borrow() {
                    acceptor = None;
                }
            }
        }
    }
}

async fn accept_one(
    incoming: quinn::Incoming,
    peer: SocketAddr,
    my_id: DeviceId,
) -> Result<Connection, NetError> {
    let connecting = incoming.accept().map_err(|e| quic_error(peer, e))?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| timeout(format!("QUIC handshake with {peer}")))?
        .map_err(|e| quic_error(peer, e))?;
    let device_id = match authenticate(&conn, my_id, peer) {
        Ok(id) => id,
        Err(e) => {
            conn.close(VarInt::from_u32(0), b"refused");
            return Err(e);
        }
    };
    // quinn (like quic-go) shows a stream only once data arrives on it: a
    // BEP dialer writes its Hello at once.
    let (send, recv) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => return Err(quic_error(peer, e)),
        Err(_) => {
            conn.close(VarInt::from_u32(NO_STREAM), b"no stream");
            return Err(timeout(format!("waiting for {peer} to open a QUIC stream")));
        }
    };
    Ok(connection(conn, send, recv, peer, device_id, false))
}

/// ALPN `bep/1.0` (mandatory on QUIC, as for Syncthing) and the peer's one
/// certificate.
fn authenticate(
    conn: &quinn::Connection,
    my_id: DeviceId,
    peer: SocketAddr,
) -> Result<DeviceId, NetError> {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN) {
        return Err(NetError::Quic {
            peer,
            reason: "the peer did not negotiate ALPN bep/1.0".into(),
        });
    }
    let certs = conn
        .peer_identity()
        .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok());
    peer_device(certs.as_deref().map(Vec::as_slice), my_id, peer)
}

fn connection(
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    peer: SocketAddr,
    device_id: DeviceId,
    outgoing: bool,
) -> Connection {
    Connection {
        device_id,
        transport: Transport::Quic,
        remote_addr: peer,
        outgoing,
        reader: Box::new(recv),
        writer: Box::new(Writer { send, acked: None }),
        _quic: Some(Keep { _conn: conn }),
        relay: None,
        admitted: None,
    }
}

type Acked = Pin<Box<dyn Future<Output = Result<Option<VarInt>, quinn::StoppedError>> + Send>>;

/// The send half, with a `shutdown` that waits until the peer has
/// acknowledged everything. Plain quinn finishes the stream and returns at
/// once; dropping the connection right after (as one does after a BEP
/// `Close`) would then discard data still in flight.
struct Writer {
    send: quinn::SendStream,
    acked: Option<Acked>,
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let acked = this.acked.get_or_insert_with(|| {
            // An error means the stream is already finished or reset;
            // `stopped` then reports which.
            let _ = this.send.finish();
            Box::pin(this.send.stopped())
        });
        match acked.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(())),
            Poll::Ready(Ok(Some(code))) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("the peer stopped reading (code {code})"),
            ))),
            // The peer closed the connection: it has read what it wanted.
            Poll::Ready(Err(quinn::StoppedError::ConnectionLost(
                quinn::ConnectionError::ApplicationClosed(_),
            ))) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, e)))
            }
        }
    }
}

fn quic_error(peer: SocketAddr, e: impl std::fmt::Display) -> NetError {
    NetError::Quic {
        peer,
        reason: e.to_string(),
    }
}

fn timeout(what: String) -> NetError {
    NetError::Timeout {
        what,
        after: HANDSHAKE_TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_buffers_are_granted() {
        let socket = udp_socket("127.0.0.1:0".parse().expect("addr"), false).expect("socket");
        let s = socket2::SockRef::from(&socket);
        let (recv, send) = (
            s.recv_buffer_size().expect("rcvbuf"),
            s.send_buffer_size().expect("sndbuf"),
        );
        eprintln!("UDP buffers: asked {UDP_BUFFER}, got recv {recv}, send {send}");
        assert!(recv > 0 && send > 0);
    }

    fn bound(local: &str, only_v6: bool) -> (SocketAddr, bool) {
        (local.parse().expect("addr"), only_v6)
    }

    #[test]
    fn reachability_follows_family_and_scope() {
        let cases = [
            (bound("0.0.0.0:1", false), "127.0.0.1:2", true),
            (bound("0.0.0.0:1", false), "[::1]:2", false),
            (bound("[::]:1", false), "127.0.0.1:2", true),
            (bound("[::]:1", true), "127.0.0.1:2", false),
            (bound("[::]:1", true), "[::1]:2", true),
            (bound("127.0.0.1:1", false), "127.0.0.1:2", true),
            (bound("127.0.0.1:1", false), "192.0.2.1:2", false),
            (bound("192.0.2.5:1", false), "127.0.0.1:2", false),
            (bound("192.0.2.5:1", false), "198.51.100.1:2", true),
            (bound("[::1]:1", false), "127.0.0.1:2", false),
        ];
        for ((local, only_v6), target, want) in cases {
            let reach = can_reach(local, only_v6, target.parse().expect("target"));
            assert_eq!(reach, want, "{local} (v6only {only_v6}) -> {target}");
        }
    }
}
