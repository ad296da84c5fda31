//! The running relay: identity, the one listener for both modes, the
//! registry of joined devices and pending sessions, and the status
//! listener.
//!
//! ```text
//! Server::bind ─┬─ accept loop ── a task per connection: first byte (within the
//!               │                 message timeout) picks the mode
//!               │    ├─ 0x16: protocol mode (TLS, ALPN bep-relay): join or connect
//!               │    └─ else: session mode: JoinSessionRequest, then a byte pipe
//!               └─ status listener (plain HTTP: /status JSON, /metrics)
//! all in one JoinSet, aborted by shutdown()
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use proto::relay::{code, Decoder, Message, HEADER_LEN, MAX_PAYLOAD};
use proto::DeviceId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// What to run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where to listen (both modes).
    pub listen: SocketAddr,
    /// Certificate and key.
    pub data: PathBuf,
    /// Where to serve `/status` and `/metrics`, if anywhere.
    pub status: Option<SocketAddr>,
    /// A token joining devices must present (empty: none).
    pub token: String,
    /// Sessions at once at most; more get `RelayFull`.
    pub max_sessions: usize,
    /// Joined devices at once at most; more get `RelayFull`.
    pub max_clients: usize,
    /// Bytes per second per session (0: no limit).
    pub per_session_rate: u64,
    /// Bytes per second over all sessions (0: no limit).
    pub global_rate: u64,
    /// How often joined devices are pinged (Syncthing: 1 min).
    pub ping_interval: Duration,
    /// Silence after which a connection is dropped (Syncthing: 2 min).
    pub network_timeout: Duration,
    /// Time to send the first message, and for both ends to join a
    /// session (Syncthing: 1 min).
    pub message_timeout: Duration,
}

impl RelayConfig {
    /// Syncthing's timings, no limits but 10,000 sessions and clients.
    pub fn new(listen: SocketAddr, data: PathBuf) -> Self {
        Self {
            listen,
            data,
            status: None,
            token: String::new(),
            max_sessions: 10_000,
            max_clients: 10_000,
            per_session_rate: 0,
            global_rate: 0,
            ping_interval: Duration::from_secs(60),
            network_timeout: Duration::from_secs(120),
            message_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters for status and metrics.
#[derive(Default)]
pub struct Counters {
    connections: AtomicU64,
    sessions_total: AtomicU64,
    bytes: AtomicU64,
    refused_full: AtomicU64,
    refused_token: AtomicU64,
    refused_unknown_key: AtomicU64,
    refused_not_found: AtomicU64,
    refused_protocol: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One key of a session waiting for its two ends.
struct Pending {
    created: Instant,
    /// Set when the end holding the *other* key has joined: where the end
    /// holding this key hands over its stream and early bytes.
    first: Option<oneshot::Sender<(TcpStream, Vec<u8>)>>,
    /// The other key of the same session.
    partner: [u8; 32],
}

/// The registry every connection shares.
struct State {
    config: RelayConfig,
    id: DeviceId,
    joined: Mutex<HashMap<DeviceId, mpsc::Sender<Message>>>,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
    active: AtomicU64,
    counters: Counters,
    started: Instant,
    global: Option<Bucket>,
}

/// A running relay.
pub struct Server {
    addr: SocketAddr,
    status_addr: Option<SocketAddr>,
    id: DeviceId,
    tasks: JoinSet<()>,
}

impl Server {
    /// Binds the listeners and starts serving.
    pub async fn bind(config: RelayConfig) -> anyhow::Result<Self> {
        let (cert_pem, key_pem, id) = load_or_create(&config.data)?;
        let tls = tls_config(&cert_pem, &key_pem)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let mut config = config;
        config.listen = addr;
        let status = config.status;
        let state = Arc::new(State {
            global: (config.global_rate > 0).then(|| Bucket::new(config.global_rate)),
            config,
            id,
            joined: Mutex::default(),
            pending: Mutex::default(),
            active: AtomicU64::new(0),
            counters: Counters::default(),
            started: Instant::now(),
        });
        let mut tasks = JoinSet::new();
        let status_addr = match status {
            Some(a) => {
                let l = TcpListener::bind(a)
                    .await
                    .with_context(|| format!("listening for status on {a}"))?;
                let bound = l.local_addr()?;
                tasks.spawn(crate::status::serve(l, StatusSource(state.clone())));
                Some(bound)
            }
            None => None,
        };
        tasks.spawn(accept_loop(
            listener,
            tokio_rustls::TlsAcceptor::from(tls),
            state.clone(),
        ));
        tasks.spawn(expire_loop(state));
        Ok(Self {
            addr,
            status_addr,
            id,
            tasks,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/status` and `/metrics` are served, if anywhere.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        self.status_addr
    }

    /// The relay's device ID.
    pub fn id(&self) -> DeviceId {
        self.id
    }

    /// The URI devices use: `relay://ADDR/?id=ID`.
    pub fn uri(&self) -> String {
        format!("relay://{}/?id={}", self.addr, self.id)
    }

    /// Stops serving.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// What the status endpoint reads.
#[derive(Clone)]
pub struct StatusSource(Arc<State>);

impl StatusSource {
    /// strelaysrv's `/status` fields (those that mean something here).
    pub fn json(&self) -> serde_json::Value {
        let s = &self.0;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &s.counters;
        serde_json::json!({
            "id": s.id.to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": s.started.elapsed().as_secs(),
            "numPendingSessionKeys": s.pending.lock().unwrap_or_else(|e| e.into_inner()).len(),
            "numActiveSessions": s.active.load(Ordering::Relaxed),
            "numConnections": get(&c.connections),
            "numProxies": s.joined.lock().unwrap_or_else(|e| e.into_inner()).len(),
            "bytesProxied": get(&c.bytes),
            "options": {
                "network-timeout": s.config.network_timeout.as_secs(),
                "ping-interval": s.config.ping_interval.as_secs(),
                "message-timeout": s.config.message_timeout.as_secs(),
                "per-session-rate": s.config.per_session_rate,
                "global-rate": s.config.global_rate,
                "max-sessions": s.config.max_sessions,
                "max-clients": s.config.max_clients,
                "pools": [],
                "provided-by": "",
            },
        })
    }

    /// The Prometheus text form.
    pub fn metrics(&self) -> String {
        let s = &self.0;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &s.counters;
        let joined = s.joined.lock().unwrap_or_else(|e| e.into_inner()).len();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in lines {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        metric(
            "ferrosync_relay_sessions",
            "gauge",
            "Sessions piping bytes now.",
            &[("", s.active.load(Ordering::Relaxed))],
        );
        metric(
            "ferrosync_relay_sessions_total",
            "counter",
            "Sessions whose ends both joined.",
            &[("", get(&c.sessions_total))],
        );
        metric(
            "ferrosync_relay_joined_clients",
            "gauge",
            "Devices joined (reachable through the relay).",
            &[("", joined as u64)],
        );
        metric(
            "ferrosync_relay_bytes_relayed_total",
            "counter",
            "Bytes piped between session ends.",
            &[("", get(&c.bytes))],
        );
        metric(
            "ferrosync_relay_connections_total",
            "counter",
            "Connections accepted.",
            &[("", get(&c.connections))],
        );
        metric(
            "ferrosync_relay_refusals_total",
            "counter",
            "Requests refused, by reason.",
            &[
                ("{reason=\"full\"}", get(&c.refused_full)),
                ("{reason=\"wrong_token\"}", get(&c.refused_token)),
                ("{reason=\"unknown_key\"}", get(&c.refused_unknown_key)),
                ("{reason=\"not_found\"}", get(&c.refused_not_found)),
                ("{reason=\"protocol\"}", get(&c.refused_protocol)),
            ],
        );
        out
    }
}

/// `cert.pem` and `key.pem` in `data`, made first if neither exists.
fn load_or_create(data: &Path) -> anyhow::Result<(String, String, DeviceId)> {
    let (cert, key) = (data.join("cert.pem"), data.join("key.pem"));
    if !cert.exists() && !key.exists() {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let g = proto::cert::generate("ferrosync-relay")?;
        write_new(&key, &g.key_pem, 0o600)?;
        write_new(&cert, &g.cert_pem, 0o644)?;
    }
    let cert_pem =
        std::fs::read_to_string(&cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem =
        std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?;
    let id = proto::cert::device_id_from_pem(&cert_pem)
        .with_context(|| format!("{} is not a certificate", cert.display()))?;
    Ok((cert_pem, key_pem, id))
}

/// The relay's device ID, from its certificate (made on first use).
pub fn id(data: &Path) -> anyhow::Result<DeviceId> {
    Ok(load_or_create(data)?.2)
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

fn tls_config(cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(proto::tls::PeerVerifier::new(
        provider.signature_verification_algorithms,
    ));
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    c.alpn_protocols = vec![proto::relay::ALPN.to_vec()];
    Ok(Arc::new(c))
}

async fn accept_loop(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, addr)) => {
                    bump(&state.counters.connections);
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(connection(tcp, addr, tls.clone(), state.clone()));
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One connection: its first byte (waited for here, on its own task, so
/// a silent client holds up no one) decides the mode.
async fn connection(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(state.config.message_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] == 0x16 {
        let stream = match tokio::time::timeout(state.config.message_timeout, tls.accept(tcp)).await
        {
            Ok(Ok(s)) => s,
            _ => return,
        };
        let Some(device) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| DeviceId::from_cert_der(c.as_ref()))
        else {
            return;
        };
        if let Err(e) = protocol(stream, addr, device, &state).await {
            tracing::debug!(%addr, %device, "protocol mode: {e}");
        }
    } else if let Err(e) = session(tcp, addr, &state).await {
        tracing::debug!(%addr, "session mode: {e}");
    }
}

/// Reads one message within `limit`.
async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    d: &mut Decoder,
    limit: Duration,
) -> std::io::Result<Message> {
    let mut buf = [0u8; HEADER_LEN + MAX_PAYLOAD];
    loop {
        match d.next_message() {
            Ok(Some(m)) => return Ok(m),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        let n = tokio::time::timeout(limit, s.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "silent"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        d.push(&buf[..n]);
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, m: &Message) -> std::io::Result<()> {
    let frame = m
        .encode()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    s.write_all(&frame).await?;
    s.flush().await
}

/// Protocol mode: a join (then pings and invitations until it leaves) or
/// a connect request (two invitations, then close).
async fn protocol<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    device: DeviceId,
    state: &Arc<State>,
) -> std::io::Result<()> {
    let mut d = Decoder::new();
    let c = &state.counters;
    match read_message(&mut s, &mut d, state.config.message_timeout).await? {
        Message::JoinRelayRequest { token } => {
            if !state.config.token.is_empty() && token != state.config.token {
                bump(&c.refused_token);
                return send(&mut s, &Message::response(code::WRONG_TOKEN)).await;
            }
            let (tx, mut rx) = mpsc::channel::<Message>(16);
            let refused = {
                let mut joined = state.joined.lock().unwrap_or_else(|e| e.into_inner());
                if joined.contains_key(&device) {
                    Some(Message::response(code::ALREADY_CONNECTED))
                } else if joined.len() >= state.config.max_clients {
                    bump(&c.refused_full);
                    Some(Message::RelayFull)
                } else {
                    joined.insert(device, tx);
                    None
                }
            };
            if let Some(m) = refused {
                return send(&mut s, &m).await;
            }
            let _leave = Leave(state.clone(), device);
            send(&mut s, &Message::response(code::SUCCESS)).await?;
            tracing::debug!(%addr, %device, "joined");
            let mut ping = tokio::time::interval(state.config.ping_interval);
            ping.tick().await;
            let mut heard = Instant::now();
            let mut buf = [0u8; HEADER_LEN + MAX_PAYLOAD];
            loop {
                tokio::select! {
                    _ = ping.tick() => {
                        if heard.elapsed() >= state.config.network_timeout {
                            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no pong"));
                        }
                        send(&mut s, &Message::Ping).await?;
                    }
                    Some(inv) = rx.recv() => send(&mut s, &inv).await?,
                    r = s.read(&mut buf) => {
                        let n = r?;
                        if n == 0 {
                            return Ok(());
                        }
                        heard = Instant::now();
                        d.push(&buf[..n]);
                        while let Some(m) = d
                            .next_message()
                            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
                        {
                            match m {
                                Message::Pong | Message::Ping => {}
                                other => {
                                    // A joined device that asks for more is
                                    // disconnected, as strelaysrv does.
                                    bump(&c.refused_protocol);
                                    let _ = send(&mut s, &Message::response(code::UNEXPECTED_MESSAGE)).await;
                                    return Err(std::io::Error::new(
                                        std::io::ErrorKind::InvalidData,
                                        format!("{other} from a joined device"),
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        Message::ConnectRequest { id } => {
            let Ok(target) = DeviceId::try_from(id.as_slice()) else {
                bump(&c.refused_protocol);
                return send(&mut s, &Message::response(code::NOT_FOUND)).await;
            };
            let Some(to_target) = state
                .joined
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&target)
                .cloned()
            else {
                bump(&c.refused_not_found);
                return send(&mut s, &Message::response(code::NOT_FOUND)).await;
            };
            let (ka, kb) = (rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>());
            let full = {
                let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
                let active = state.active.load(Ordering::Relaxed) as usize;
                let full = pending.len() / 2 + active >= state.config.max_sessions;
                if !full {
                    let now = Instant::now();
                    pending.insert(
                        ka,
                        Pending {
                            created: now,
                            first: None,
                            partner: kb,
                        },
                    );
                    pending.insert(
                        kb,
                        Pending {
                            created: now,
                            first: None,
                            partner: ka,
                        },
                    );
                }
                full
            };
            if full {
                bump(&c.refused_full);
                return send(&mut s, &Message::RelayFull).await;
            }
            let (address, port) = session_address(state);
            let invite =
                |from: DeviceId, key: [u8; 32], server_socket: bool| Message::SessionInvitation {
                    from: from.as_bytes().to_vec(),
                    key: key.to_vec(),
                    address: address.clone(),
                    port,
                    server_socket,
                };
            // The target's invitation is dropped if it cannot be queued
            // within a second (Syncthing's rule).
            let queued = tokio::time::timeout(
                Duration::from_secs(1),
                to_target.send(invite(device, kb, true)),
            )
            .await;
            if !matches!(queued, Ok(Ok(()))) {
                forget(state, &ka);
                bump(&c.refused_not_found);
                return send(&mut s, &Message::response(code::NOT_FOUND)).await;
            }
            send(&mut s, &invite(target, ka, false)).await
        }
        Message::Ping => send(&mut s, &Message::Pong).await,
        other => {
            bump(&c.refused_protocol);
            tracing::debug!(%addr, "unexpected {other}");
            send(&mut s, &Message::response(code::UNEXPECTED_MESSAGE)).await
        }
    }
}

/// Removes a device from the joined set when its connection ends.
struct Leave(Arc<State>, DeviceId);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0
            .joined
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// Forgets both keys of the session `key` belongs to.
fn forget(state: &State, key: &[u8; 32]) {
    let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pending.remove(key) {
        pending.remove(&p.partner);
    }
}

/// The address and port invitations name for session mode: empty when
/// the relay listens on every address (the client uses the one it used).
fn session_address(state: &State) -> (Vec<u8>, u16) {
    let l = state.config.listen;
    let address = match l.ip() {
        ip if ip.is_unspecified() => Vec::new(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    (address, l.port())
}

/// Session mode: a `JoinSessionRequest` with a key from an invitation.
/// The first end of a session waits for the second to hand it its stream;
/// the first end's task then pipes both. Each key is good once.
async fn session(mut tcp: TcpStream, addr: SocketAddr, state: &Arc<State>) -> std::io::Result<()> {
    let mut d = Decoder::new();
    let c = &state.counters;
    let m = read_message(&mut tcp, &mut d, state.config.message_timeout).await?;
    let Message::JoinSessionRequest { key } = m else {
        bump(&c.refused_protocol);
        return send(&mut tcp, &Message::response(code::UNEXPECTED_MESSAGE)).await;
    };
    let early = d.into_rest();
    let key: Option<[u8; 32]> = key.as_slice().try_into().ok();
    enum Role {
        Unknown,
        First(oneshot::Receiver<(TcpStream, Vec<u8>)>),
        Second(oneshot::Sender<(TcpStream, Vec<u8>)>),
    }
    let role = {
        let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
        match key.and_then(|k| pending.remove(&k)) {
            None => Role::Unknown,
            // The other end came first and left a way to reach it here.
            Some(Pending {
                first: Some(hand_over),
                ..
            }) => Role::Second(hand_over),
            Some(mine) => match pending.get_mut(&mine.partner) {
                Some(partner) => {
                    let (tx, rx) = oneshot::channel();
                    partner.first = Some(tx);
                    Role::First(rx)
                }
                // The session expired meanwhile.
                None => Role::Unknown,
            },
        }
    };
    match role {
        Role::Unknown => {
            bump(&c.refused_unknown_key);
            send(&mut tcp, &Message::response(code::NOT_FOUND)).await
        }
        Role::Second(hand_over) => {
            send(&mut tcp, &Message::response(code::SUCCESS)).await?;
            // If the first end is gone, dropping the stream closes it.
            let _ = hand_over.send((tcp, early));
            Ok(())
        }
        Role::First(rx) => {
            send(&mut tcp, &Message::response(code::SUCCESS)).await?;
            let (other, other_early) = tokio::time::timeout(state.config.message_timeout, rx)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "the other end never joined")
                })?
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "the session expired")
                })?;
            tracing::debug!(%addr, "session up");
            bump(&c.sessions_total);
            state.active.fetch_add(1, Ordering::Relaxed);
            let r = pipe(tcp, early, other, other_early, state).await;
            state.active.fetch_sub(1, Ordering::Relaxed);
            r
        }
    }
}

/// Pipes bytes both ways until either end closes or falls silent for the
/// network timeout, within the session's and the global rate limits.
async fn pipe(
    a: TcpStream,
    a_early: Vec<u8>,
    b: TcpStream,
    b_early: Vec<u8>,
    state: &Arc<State>,
) -> std::io::Result<()> {
    let session = (state.config.per_session_rate > 0)
        .then(|| Arc::new(Bucket::new(state.config.per_session_rate)));
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let one = copy(ar, bw, a_early, session.clone(), state);
    let other = copy(br, aw, b_early, session, state);
    // The first direction to end ends the session.
    tokio::select! {
        r = one => r,
        r = other => r,
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    early: Vec<u8>,
    session: Option<Arc<Bucket>>,
    state: &Arc<State>,
) -> std::io::Result<()> {
    let limits: Vec<&Bucket> = [session.as_deref(), state.global.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let mut buf = vec![0u8; 256 << 10];
    let mut n = early.len().min(buf.len());
    buf[..n].copy_from_slice(&early[..n]);
    loop {
        if n > 0 {
            if let Some(wait) = limits
                .iter()
                .map(|b| b.take(n))
                .max()
                .filter(|w| !w.is_zero())
            {
                tokio::time::sleep(wait).await;
            }
            to.write_all(&buf[..n]).await?;
            state.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        n = tokio::time::timeout(state.config.network_timeout, from.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
    }
}

/// Drops sessions whose ends did not both join within the message
/// timeout.
async fn expire_loop(state: Arc<State>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let limit = state.config.message_timeout;
        state
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, p| p.created.elapsed() < limit);
    }
}

/// A token bucket in bytes per second, shared by whoever holds it.
struct Bucket {
    rate: u64,
    inner: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            inner: Mutex::new((rate as f64, Instant::now())),
        }
    }

    /// How long to wait before sending `n` more bytes.
    fn take(&self, n: usize) -> Duration {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let rate = self.rate as f64;
        g.0 = (g.0 + now.duration_since(g.1).as_secs_f64() * rate).min(rate);
        g.1 = now;
        g.0 -= n as f64;
        if g.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-g.0 / rate)
        }
    }
}
