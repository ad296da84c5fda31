//! For tests (feature `test-utils`): a relay on loopback with its data in
//! a temporary directory, and a relay protocol client that can say
//! anything, well-formed or not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::relay::{Decoder, Message, HEADER_LEN, MAX_PAYLOAD};
use proto::DeviceId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{RelayConfig, Server};

/// A running test relay and its data directory.
pub struct TestRelay {
    /// The relay.
    pub server: Server,
    /// Its data directory (removed on drop).
    pub dir: tempfile::TempDir,
}

/// A relay on `127.0.0.1:0` with a status listener, `edit` applied to its
/// config first.
pub async fn spawn_with(edit: impl FnOnce(&mut RelayConfig)) -> TestRelay {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = RelayConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        dir.path().to_path_buf(),
    );
    c.status = Some("127.0.0.1:0".parse().expect("addr"));
    edit(&mut c);
    TestRelay {
        server: Server::bind(c).await.expect("bind"),
        dir,
    }
}

/// A relay with default settings.
pub async fn spawn() -> TestRelay {
    spawn_with(|_| {}).await
}

/// A device identity.
pub struct Device {
    cert_pem: String,
    key_pem: String,
    /// Its ID.
    pub id: DeviceId,
}

impl Device {
    /// A new identity.
    pub fn generate() -> Self {
        let g = proto::cert::generate("syncthing").expect("cert");
        Self {
            cert_pem: g.cert_pem,
            key_pem: g.key_pem,
            id: g.device_id,
        }
    }
}

/// A connection speaking relay messages over any stream.
pub struct Conn<S> {
    stream: S,
    decoder: Decoder,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Sends a message.
    pub async fn send(&mut self, m: &Message) -> std::io::Result<()> {
        self.send_raw(&m.encode().expect("encodable")).await
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next message; an error if the stream ends or breaks the
    /// protocol, or nothing comes within `limit`.
    pub async fn recv(&mut self, limit: Duration) -> std::io::Result<Message> {
        let mut buf = [0u8; HEADER_LEN + MAX_PAYLOAD];
        loop {
            if let Some(m) = self
                .decoder
                .next_message()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                return Ok(m);
            }
            let n = tokio::time::timeout(limit, self.stream.read(&mut buf))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "nothing came"))??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// The stream, with what was read past the last message.
    pub fn into_inner(self) -> (S, Vec<u8>) {
        (self.stream, self.decoder.into_rest())
    }
}

/// Protocol mode: TLS with ALPN `bep-relay`, presenting `device`.
pub async fn protocol(
    addr: SocketAddr,
    device: &Device,
) -> std::io::Result<Conn<tokio_rustls::client::TlsStream<TcpStream>>> {
    let other = |e: rustls::Error| std::io::Error::other(e);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(proto::tls::PeerVerifier::new(
        provider.signature_verification_algorithms,
    ));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(device.cert_pem.as_bytes())
                .map_err(std::io::Error::other)?],
            PrivateKeyDer::from_pem_slice(device.key_pem.as_bytes())
                .map_err(std::io::Error::other)?,
        )
        .map_err(other)?;
    config.alpn_protocols = vec![proto::relay::ALPN.to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::try_from("relay").map_err(std::io::Error::other)?,
            tcp,
        )
        .await?;
    Ok(Conn {
        stream: tls,
        decoder: Decoder::new(),
    })
}

/// Protocol mode as `device`, with a `JoinRelayRequest` carrying `token`
/// sent; returns the connection and the relay's answer.
pub async fn join(
    addr: SocketAddr,
    device: &Device,
    token: &str,
) -> std::io::Result<(Conn<tokio_rustls::client::TlsStream<TcpStream>>, Message)> {
    let mut c = protocol(addr, device).await?;
    c.send(&Message::JoinRelayRequest {
        token: token.to_string(),
    })
    .await?;
    let answer = c.recv(Duration::from_secs(30)).await?;
    Ok((c, answer))
}

/// Session mode: a plain connection (send `JoinSessionRequest` on it).
pub async fn session(addr: SocketAddr) -> std::io::Result<Conn<TcpStream>> {
    Ok(Conn {
        stream: TcpStream::connect(addr).await?,
        decoder: Decoder::new(),
    })
}

/// One session's two ends, and the joined device's protocol connection,
/// which must stay open: strelaysrv ends a device's sessions when it
/// leaves.
pub struct SessionPair {
    /// The joined device's end.
    pub joined: TcpStream,
    /// The asking device's end.
    pub dialer: TcpStream,
    /// The joined device's connection in protocol mode.
    pub control: Conn<tokio_rustls::client::TlsStream<TcpStream>>,
}

/// Sets up one session as devices do (a new device joins, another asks
/// for a session with it, both join with their keys).
pub async fn session_pair(addr: SocketAddr) -> std::io::Result<SessionPair> {
    let (a, b) = (Device::generate(), Device::generate());
    let t = Duration::from_secs(30);
    let (mut joined, answer) = join(addr, &a, "").await?;
    expect_success(answer)?;
    let mut dialer = protocol(addr, &b).await?;
    dialer
        .send(&Message::ConnectRequest {
            id: a.id.as_bytes().to_vec(),
        })
        .await?;
    let key = |m: Message| match m {
        Message::SessionInvitation { key, .. } => Ok(key),
        other => Err(std::io::Error::other(format!(
            "expected an invitation, got {other}"
        ))),
    };
    let kb = key(dialer.recv(t).await?)?;
    let ka = key(joined.recv(t).await?)?;
    let mut ends = Vec::new();
    for k in [ka, kb] {
        let mut s = session(addr).await?;
        s.send(&Message::JoinSessionRequest { key: k }).await?;
        expect_success(s.recv(t).await?)?;
        ends.push(s.into_inner().0);
    }
    let dialer_end = ends.pop().ok_or_else(|| std::io::Error::other("no end"))?;
    let joined_end = ends.pop().ok_or_else(|| std::io::Error::other("no end"))?;
    Ok(SessionPair {
        joined: joined_end,
        dialer: dialer_end,
        control: joined,
    })
}

fn expect_success(m: Message) -> std::io::Result<()> {
    match m {
        Message::Response { code: 0, .. } => Ok(()),
        other => Err(std::io::Error::other(format!("refused: {other:?}"))),
    }
}
