//! One-shot HTTPS requests for the global discovery client (and relay
//! pools, which may also be plain HTTP): HTTP/1.1 over
//! TLS 1.3 (1.2 allowed towards CA-verified servers), our device
//! certificate presented when asked for (an announce is authenticated by
//! it). A server is either pinned by its device ID (`?id=`, checked after
//! the handshake and before a byte of the request is sent, unlike
//! Syncthing, which checks after the answer), verified against the public
//! CAs, or, when the user says `insecure`, not verified at all.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use proto::DeviceId;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::tls::{cert_and_key, provider};
use super::NetError;
use crate::identity::Identity;

/// Largest answer body read.
const MAX_BODY: usize = 256 << 10;

/// How a server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trust {
    /// Its certificate must hash to this device ID.
    Pinned(DeviceId),
    /// A chain to a public CA, for the host name.
    Public,
    /// Anything (`insecure`).
    Anything,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Retry-After` or `Reannounce-After` style headers, lowercased names.
    pub headers: Vec<(String, String)>,
    /// The body (at most 256 KiB).
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value as whole seconds, if it is one.
    pub fn seconds(&self, name: &str) -> Option<u64> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
    }
}

/// The client: TLS configs built once from our identity.
#[derive(Clone)]
pub struct Https {
    any_cert: Arc<ClientConfig>,
    public: Arc<ClientConfig>,
}

impl Https {
    /// Configs that present `identity`'s certificate.
    pub fn new(identity: &Identity) -> Result<Self, NetError> {
        let (cert, key) = cert_and_key(identity)?;
        let err = |e: rustls::Error| NetError::Identity(e.to_string());
        let provider = provider();
        let verifier = Arc::new(proto::tls::PeerVerifier::new(
            provider.signature_verification_algorithms,
        ));
        let mut any_cert = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(err)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![cert.clone()], key.clone_key())
            .map_err(err)?;
        any_cert.alpn_protocols = vec![b"http/1.1".to_vec()];
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut public = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .map_err(err)?;
        public.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            any_cert: Arc::new(any_cert),
            public: Arc::new(public),
        })
    }

    /// Sends one request to `url` (`https://host[:port]/path?query`, or
    /// plain `http://` where no secret is at stake, such as a relay pool's
    /// public list) and reads the answer, all within `timeout`.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        trust: Trust,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Reply, NetError> {
        let bad = |reason: &str| NetError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("not an https:// or http:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) =
            split_host_port(authority, default_port).ok_or_else(|| bad("bad host or port"))?;
        let work = async {
            let io = |e: std::io::Error| NetError::Io {
                context: format!("connecting to {authority}"),
                source: e,
            };
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(io)?;
            let peer = tcp.peer_addr().map_err(io)?;
            let exchange = Exchange {
                method,
                authority,
                path: &path,
                body,
                peer,
            };
            if !tls {
                return exchange.run(tcp).await;
            }
            let config = match trust {
                Trust::Public => self.public.clone(),
                Trust::Pinned(_) | Trust::Anything => self.any_cert.clone(),
            };
            let name = ServerName::try_from(host.clone()).map_err(|_| bad("bad host name"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| NetError::Tls {
                    peer,
                    reason: e.to_string(),
                })?;
            if let Trust::Pinned(want) = trust {
                super::tls::check_pinned(tls.get_ref().1, want, peer, "the server")?;
            }
            exchange.run(tls).await
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| NetError::Io {
                context: format!("{method} {url}"),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            })?
    }
}

/// One HTTP/1.1 request and its answer on a connected stream.
struct Exchange<'a> {
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    body: Option<Vec<u8>>,
    peer: std::net::SocketAddr,
}

impl Exchange<'_> {
    async fn run<S>(self, stream: S) -> Result<Reply, NetError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let http = |e: hyper::Error| NetError::Tls {
            peer,
            reason: format!("HTTP: {e}"),
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let conn = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("host", self.authority)
            .header(
                "user-agent",
                concat!("ferrosync/", env!("CARGO_PKG_VERSION")),
            );
        if self.body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(self.body.unwrap_or_default())))
            .map_err(|e| NetError::BadUrl {
                url: self.path.to_string(),
                reason: e.to_string(),
            })?;
        let resp = send.send_request(req).await.map_err(http)?;
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
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| NetError::Tls {
                peer,
                reason: format!("reading the answer: {e}"),
            })?
            .to_bytes()
            .to_vec();
        conn.abort();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (`default` port if none).
fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None if !authority.is_empty() => Some((authority.to_string(), default)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split() {
        assert_eq!(
            split_host_port("198.51.100.1:8443", 443),
            Some(("198.51.100.1".into(), 8443))
        );
        assert_eq!(
            split_host_port("discovery.example.org", 443),
            Some(("discovery.example.org".into(), 443))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]:9", 443),
            Some(("2001:db8::1".into(), 9))
        );
        assert_eq!(
            split_host_port("[2001:db8::1]", 443),
            Some(("2001:db8::1".into(), 443))
        );
        assert_eq!(split_host_port("2001:db8::1", 443), None);
        assert_eq!(split_host_port("host:notaport", 443), None);
        assert_eq!(split_host_port("", 443), None);
    }
}
