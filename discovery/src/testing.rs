//! For tests (feature `test-utils`): a server on loopback with its data in
//! a temporary directory, and an HTTPS client that can present a device
//! certificate and send whatever a test wants, well-formed or not.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use proto::DeviceId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::store::StoreConfig;
use crate::{Server, ServerConfig};

/// A running test server and the directory it keeps its data in.
pub struct TestServer {
    /// The server.
    pub server: Server,
    /// Its data directory (removed on drop).
    pub dir: tempfile::TempDir,
}

/// A server on `127.0.0.1:0` with sled, metrics on another loopback port
/// and no rate limit.
pub async fn spawn() -> TestServer {
    spawn_with(|_| {}).await
}

/// The same, with `edit` applied to the config first.
pub async fn spawn_with(edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data: dir.path().to_path_buf(),
        store: StoreConfig::Sled,
        metrics: Some("127.0.0.1:0".parse().expect("addr")),
        rate_limit: None,
        behind_proxy: None,
        stun: None,
    };
    edit(&mut config);
    let server = Server::bind(config).await.expect("bind");
    TestServer { server, dir }
}

/// A device certificate and key (PEM) to present.
pub struct ClientCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Key PEM.
    pub key_pem: String,
    /// Its device ID.
    pub id: DeviceId,
}

impl ClientCert {
    /// A new device identity.
    pub fn generate() -> Self {
        let g = proto::cert::generate("syncthing").expect("cert");
        Self {
            cert_pem: g.cert_pem,
            key_pem: g.key_pem,
            id: g.device_id,
        }
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The device ID of the certificate the server presented.
    pub server_id: DeviceId,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A keep-alive HTTPS connection to a server (any global discovery v3
/// server: ours or Syncthing's).
pub struct Connection {
    send: hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>,
    /// The device ID of the certificate the server presented.
    pub server_id: DeviceId,
}

impl Connection {
    /// Connects, presenting `cert` if given.
    pub async fn open(addr: SocketAddr, cert: Option<&ClientCert>) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(proto::tls::PeerVerifier::new(
            provider.signature_verification_algorithms,
        ));
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match cert {
            Some(c) => builder.with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes())?],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())?,
            )?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("discovery")?, tcp)
            .await
            .context("TLS")?;
        let server_id = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| DeviceId::from_cert_der(c.as_ref()))
            .context("no server certificate")?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Self { send, server_id })
    }

    /// Sends one request on the connection; `headers` are added as they
    /// are.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "discovery");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send.ready().await?;
        let resp = self
            .send
            .send_request(req.body(Full::new(bytes::Bytes::from(body)))?)
            .await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok(Reply {
            status,
            headers,
            body,
            server_id: self.server_id,
        })
    }
}

/// Sends one request over a new TLS connection, presenting `cert` if
/// given; `headers` are added as they are.
pub async fn request(
    addr: SocketAddr,
    cert: Option<&ClientCert>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<Reply> {
    Connection::open(addr, cert)
        .await?
        .request(method, path, headers, body)
        .await
}

/// Announces `addresses` as `cert`'s device.
pub async fn announce(
    addr: SocketAddr,
    cert: &ClientCert,
    addresses: &[&str],
) -> anyhow::Result<Reply> {
    let body = serde_json::json!({ "addresses": addresses }).to_string();
    request(
        addr,
        Some(cert),
        "POST",
        "/v2/",
        &[("content-type", "application/json")],
        body.into_bytes(),
    )
    .await
}

/// Looks `device` up.
pub async fn lookup(addr: SocketAddr, device: &DeviceId) -> anyhow::Result<Reply> {
    request(
        addr,
        None,
        "GET",
        &format!("/v2/?device={device}"),
        &[],
        Vec::new(),
    )
    .await
}
