//! TLS over TCP: the listener's accept loop and the dialer. Sockets get
//! TCP_NODELAY (BEP writes whole messages and waits for answers) and keep
//! the kernel's buffer autotuning, which beats any fixed size on loopback
//! and LANs alike.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::DeviceId;
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tls::ALPN;
use super::{canonical, peer_device, Acceptor, Connection, NetError, Transport, HANDSHAKE_TIMEOUT};

/// How long the accept loop backs off after an accept error (typically
/// running out of file descriptors), instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A listening socket on `addr`. `only_v6` keeps an IPv6 socket from also
/// taking IPv4 (`tcp6://`); otherwise `[::]` is dual-stack.
pub(super) fn bind(addr: SocketAddr, only_v6: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(only_v6)?;
    }
    // Restarting must not wait for old connections' TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts until aborted; each handshake runs in its own task.
/// How long an accepted TCP connection may stay silent before its TLS
/// ClientHello.
const PRE_HELLO: Duration = Duration::from_secs(3);

pub(super) async fn accept_loop(listener: TcpListener, acceptor: Arc<Acceptor>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a TCP connection: {e}");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let tls = TlsAcceptor::from(acceptor.tls.clone());
        let my_id = acceptor.my_id;
        acceptor.spawn_handshake(Transport::Tcp, peer, async move {
            accept_one(stream, canonical(peer), tls, my_id).await
        });
    }
}

async fn accept_one(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    my_id: DeviceId,
) -> Result<Connection, NetError> {
    set_nodelay(&stream, peer);
    // A client speaks first (its ClientHello follows the TCP handshake at
    // once): a connection silent for this long holds its place no longer.
    tokio::time::timeout(PRE_HELLO, stream.readable())
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("TLS ClientHello from {peer}"),
            after: PRE_HELLO,
        })?
        .map_err(NetError::io(format!("waiting for {peer}")))?;
    server_handshake(stream, peer, tls, my_id).await
}

/// The TLS server side on a connected stream (an accepted one, or a
/// relayed pipe whose invitation says we are the server).
pub(super) async fn server_handshake(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    my_id: DeviceId,
) -> Result<Connection, NetError> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream))
        .await
        .map_err(|_| timeout(peer))?
        .map_err(|e| tls_error(peer, e))?;
    connection(stream.into(), peer, my_id, false)
}

/// Connects to `addr` and runs the TLS handshake as client. The caller
/// checks the device ID against the one it wanted.
pub(super) async fn dial(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    my_id: DeviceId,
) -> Result<Connection, NetError> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| NetError::Timeout {
            what: format!("TCP connect to {addr}"),
            after: HANDSHAKE_TIMEOUT,
        })?
        .map_err(NetError::io(format!("connecting to {addr}")))?;
    let peer = canonical(addr);
    set_nodelay(&stream, peer);
    client_handshake(stream, peer, config, my_id).await
}

/// The TLS client side on a connected stream (a dialled one, or a
/// relayed pipe whose invitation says we are the client).
pub(super) async fn client_handshake(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    my_id: DeviceId,
) -> Result<Connection, NetError> {
    // An IP-address server name makes rustls send no SNI, like
    // Syncthing's TCP dialer; our verifier ignores the name anyway.
    let name = ServerName::IpAddress(peer.ip().into());
    let connector = TlsConnector::from(config.clone());
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
        .await
        .map_err(|_| timeout(peer))?
        .map_err(|e| tls_error(peer, e))?;
    connection(stream.into(), peer, my_id, true)
}

/// The connection a finished handshake (either role) gives: the peer's
/// device ID from its certificate, and the stream split in two.
fn connection(
    stream: tokio_rustls::TlsStream<TcpStream>,
    peer: SocketAddr,
    my_id: DeviceId,
    outgoing: bool,
) -> Result<Connection, NetError> {
    let (_, session) = stream.get_ref();
    let device_id = peer_device(session.peer_certificates(), my_id, peer)?;
    note_alpn(session.alpn_protocol(), peer);
    let (reader, writer) = tokio::io::split(stream);
    Ok(Connection {
        device_id,
        transport: Transport::Tcp,
        remote_addr: peer,
        outgoing,
        reader: Box::new(reader),
        writer: Box::new(writer),
        _quic: None,
        relay: None,
        admitted: None,
    })
}

pub(super) fn set_nodelay(stream: &TcpStream, peer: SocketAddr) {
    // Without it a small message (a Ping, a Request) can sit in Nagle's
    // buffer waiting for an ACK that is itself delayed.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "setting TCP_NODELAY: {e}");
    }
}

/// Syncthing only logs a missing ALPN on TCP; so do we.
fn note_alpn(alpn: Option<&[u8]>, peer: SocketAddr) {
    if alpn != Some(ALPN) {
        tracing::debug!(%peer, "peer did not negotiate bep/1.0");
    }
}

fn timeout(peer: SocketAddr) -> NetError {
    NetError::Timeout {
        what: format!("TLS handshake with {peer}"),
        after: HANDSHAKE_TIMEOUT,
    }
}

fn tls_error(peer: SocketAddr, e: io::Error) -> NetError {
    // tokio-rustls reports TLS alerts and protocol errors as io::Error
    // wrapping a rustls::Error; either way the message says what happened.
    NetError::Tls {
        peer,
        reason: e.to_string(),
    }
}
