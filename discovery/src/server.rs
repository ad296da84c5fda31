//! The running server: its identity (a certificate made on first use in
//! the data directory, whose device ID clients pin with `?id=`), the TLS
//! listener, the metrics listener and the purge timer.
//!
//! ```text
//! Server::bind ─┬─ accept loop ── a task per connection (TLS handshake, then HTTP/1.1)
//!               ├─ metrics listener (plain HTTP, /metrics)
//!               └─ purge timer (expired records out, the devices gauge)
//! all in one JoinSet, aborted by shutdown()
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use proto::DeviceId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::http::{self, App, Peer};
use crate::limit::{Limiter, RateLimit};
use crate::metrics::Metrics;
use crate::store::{Store, StoreConfig};

/// A TLS handshake (or the request head after it) must finish this soon.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often expired records are removed.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (HTTPS).
    pub listen: SocketAddr,
    /// The certificate, key and (with sled) the announcements.
    pub data: PathBuf,
    /// Which store.
    pub store: StoreConfig,
    /// Where to serve `/metrics` (plain HTTP), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The per-IP request limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Plain HTTP for a reverse proxy at this address (see [`crate::proxy`]).
    pub behind_proxy: Option<std::net::IpAddr>,
    /// Where to answer STUN Binding requests (UDP), if anywhere.
    pub stun: Option<SocketAddr>,
}

/// The server's identity, made in `data` on first use.
pub struct Identity {
    /// Its certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// The certificate's device ID (the `?id=` value).
    pub id: DeviceId,
}

impl Identity {
    /// Loads `cert.pem` and `key.pem` from `data`, creating both first if
    /// neither exists.
    pub fn load_or_create(data: &Path) -> anyhow::Result<Self> {
        let (cert, key) = (data.join("cert.pem"), data.join("key.pem"));
        if !cert.exists() && !key.exists() {
            std::fs::create_dir_all(data)
                .with_context(|| format!("creating {}", data.display()))?;
            let g = proto::cert::generate("ferrosync-discovery")?;
            write_new(&key, &g.key_pem, 0o600)?;
            write_new(&cert, &g.cert_pem, 0o644)?;
        }
        let cert_pem = std::fs::read_to_string(&cert)
            .with_context(|| format!("reading {}", cert.display()))?;
        let key_pem =
            std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
        let id = proto::cert::device_id_from_pem(&cert_pem)
            .with_context(|| format!("{} is not a certificate", cert.display()))?;
        Ok(Self {
            cert_pem,
            key_pem,
            id,
        })
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stun_addr: Option<SocketAddr>,
    id: DeviceId,
    proxied: bool,
    store: Store,
    tasks: JoinSet<()>,
}

impl Server {
    /// Opens the store, binds the listeners and starts serving.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        let identity = Identity::load_or_create(&config.data)?;
        let tls = tls_config(&identity)?;
        let store = Store::open(&config.store, &config.data)
            .await
            .context("opening the store")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());
        let app = Arc::new(App {
            store: store.clone(),
            metrics: metrics.clone(),
            limiter: config.rate_limit.map(Limiter::new),
            proxy: config.behind_proxy,
        });
        let mut tasks = JoinSet::new();
        let metrics_addr = match config.metrics {
            Some(a) => {
                let l = TcpListener::bind(a)
                    .await
                    .with_context(|| format!("listening for metrics on {a}"))?;
                let bound = l.local_addr()?;
                let m = metrics.clone();
                let router = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let m = m.clone();
                        async move {
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4",
                                )],
                                m.render(),
                            )
                        }
                    }),
                );
                tasks.spawn(async move {
                    if let Err(e) = axum::serve(l, router).await {
                        tracing::warn!("metrics listener: {e}");
                    }
                });
                Some(bound)
            }
            None => None,
        };
        let stun_addr = match config.stun {
            Some(a) => {
                let socket = tokio::net::UdpSocket::bind(a)
                    .await
                    .with_context(|| format!("listening for STUN on {a}"))?;
                let bound = socket.local_addr()?;
                tasks.spawn(crate::stun::serve(
                    socket,
                    config.rate_limit.map(Limiter::new),
                    metrics.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        let tls = config
            .behind_proxy
            .is_none()
            .then(|| tokio_rustls::TlsAcceptor::from(tls));
        tasks.spawn(accept_loop(listener, tls, http::router(app)));
        tasks.spawn(purge_loop(store.clone(), metrics));
        Ok(Self {
            addr,
            metrics_addr,
            stun_addr,
            id: identity.id,
            proxied: config.behind_proxy.is_some(),
            store,
            tasks,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where STUN is answered (UDP), if anywhere.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.stun_addr
    }

    /// The server's device ID (what clients pin).
    pub fn id(&self) -> DeviceId {
        self.id
    }

    /// The URL to put in a client's `discovery.global` (Syncthing's
    /// `globalAnnounceServers`), with the server pinned by `?id=`.
    /// Behind a proxy: `http://ADDR/`, where the proxy sends requests.
    pub fn url(&self) -> String {
        if self.proxied {
            format!("http://{}/", self.addr)
        } else {
            format!("https://{}/?id={}", self.addr, self.id)
        }
    }

    /// Stops serving and makes the store durable.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
        if let Err(e) = self.store.flush().await {
            tracing::warn!("flushing the store: {e}");
        }
    }
}

fn tls_config(identity: &Identity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert = CertificateDer::from_pem_slice(identity.cert_pem.as_bytes())
        .context("the server certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).context("the server key")?;
    // Picked explicitly: with ring and aws-lc-rs both in the dependency
    // graph the process-default provider is ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A certificate is asked for but not required: lookups carry none.
    let verifier = Arc::new(proto::tls::PeerVerifier::optional(
        provider.signature_verification_algorithms,
    ));
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(connection(tcp, addr, tls.clone(), router.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One connection: the TLS handshake (each on its own task, so a silent
/// client holds up no one), then HTTP/1.1 with keep-alive; plain HTTP
/// behind a proxy.
async fn connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
) {
    let Some(tls) = tls else {
        serve_http(TokioIo::new(tcp), Peer { addr, device: None }, router).await;
        return;
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            return;
        }
    };
    let device = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| DeviceId::from_cert_der(c.as_ref()));
    serve_http(TokioIo::new(stream), Peer { addr, device }, router).await;
}

/// HTTP/1.1 on an established stream, every request tagged with `peer`.
async fn serve_http<S>(io: TokioIo<S>, peer: Peer, router: axum::Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer);
            tower::ServiceExt::oneshot(router.clone(), req)
        });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(16 << 10)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%addr, "connection: {e}");
    }
}

async fn purge_loop(store: Store, metrics: Arc<Metrics>) {
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.purge()).await {
            Ok(Ok(Some(n))) => metrics.set_devices(n),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("purging expired records: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(PURGE_EVERY).await;
    }
}
