//! STUN on the QUIC socket (`proto::stun`): learns the address a NAT maps
//! our QUIC listen port to, so peers can dial it (and, dialling each other
//! while relayed, punch through both NATs). The socket quinn drives is
//! wrapped: STUN packets (first two bits zero and the magic cookie; QUIC
//! packets never look so) are taken out before quinn sees them, and
//! Binding requests leave from the same port, so the mapping learnt is
//! the one QUIC uses.
//!
//! ```text
//! StunSocket (wraps quinn's socket) ── STUN answers ──▶ mpsc ──▶ Stun client task
//! Stun client (follows config.stun): every 90 s (5 s doubling while unanswered) ask each server; the same
//!   mapping from all ⇒ announce quic://EXTERNAL; different ones (symmetric NAT) ⇒ nothing
//! ```

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use proto::stun;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::{mpsc, watch};

use crate::config::live::Live;

/// STUN packets buffered for the client; more are dropped (a flood of
/// them must not grow memory).
const QUEUE: usize = 64;
/// Between rounds of Binding requests (they also keep the mapping alive).
const INTERVAL: Duration = Duration::from_secs(90);
/// After a round with no answer: this, doubling up to [`INTERVAL`].
const RETRY: Duration = Duration::from_secs(5);
/// How long a server may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// quinn's socket with STUN taken out of its way.
pub(super) struct StunSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    answers: mpsc::Sender<(SocketAddr, Vec<u8>)>,
}

impl fmt::Debug for StunSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StunSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl StunSocket {
    /// Wraps `inner`; STUN packets arriving on it go to the returned
    /// receiver.
    pub(super) fn wrap(
        inner: Arc<dyn AsyncUdpSocket>,
    ) -> (Arc<Self>, mpsc::Receiver<(SocketAddr, Vec<u8>)>) {
        let (answers, rx) = mpsc::channel(QUEUE);
        (Arc::new(Self { inner, answers }), rx)
    }

    /// Sends one datagram from the QUIC port (a Binding request).
    async fn send(&self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: bytes,
            segment_size: None,
            src_ip: None,
        };
        let mut poller = self.inner.clone().create_io_poller();
        loop {
            match self.inner.try_send(&transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await?
                }
                r => return r,
            }
        }
    }
}

impl AsyncUdpSocket for StunSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            // Keep the QUIC datagrams, in order, at the front.
            let mut kept = 0;
            for i in 0..n {
                let m = meta[i];
                let single = m.len == m.stride;
                if single && stun::is_stun(&bufs[i][..m.len]) {
                    // Full: the client is behind; this answer is lost,
                    // as a datagram may be.
                    let _ = self.answers.try_send((m.addr, bufs[i][..m.len].to_vec()));
                    continue;
                }
                if kept != i {
                    let (front, back) = bufs.split_at_mut(i);
                    front[kept][..m.len].copy_from_slice(&back[0][..m.len]);
                    meta[kept] = m;
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // Only STUN: read on (or register the waker with the socket).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// What STUN found, for status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StunState {
    /// Our QUIC port as the servers see it, when they agree.
    pub external: Option<String>,
    /// What went wrong last (no answer, symmetric NAT, ...).
    pub error: Option<String>,
}

/// The running STUN client.
pub struct Stun {
    state: Mutex<StunState>,
    external: watch::Sender<Vec<String>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Stun {
    /// The `quic://` address to announce, when known.
    pub fn external(&self) -> watch::Receiver<Vec<String>> {
        self.external.subscribe()
    }

    /// For status.
    pub fn status(&self) -> StunState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops asking.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }

    fn set(&self, external: Option<SocketAddr>, error: Option<String>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = StunState {
            external: external.map(|a| a.to_string()),
            error,
        };
        let urls: Vec<String> = external
            .map(|a| format!("quic://{a}"))
            .into_iter()
            .collect();
        crate::net::publish(&self.external, urls);
    }
}

impl Drop for Stun {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts asking the live config's `stun` servers about `socket`.
pub(super) fn spawn(
    socket: Arc<StunSocket>,
    answers: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    config: Live,
) -> Arc<Stun> {
    let stun = Arc::new(Stun {
        state: Mutex::new(StunState::default()),
        external: watch::channel(Vec::new()).0,
        task: Mutex::new(None),
    });
    let task = tokio::spawn(run(stun.clone(), socket, answers, config));
    *stun.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    stun
}

async fn run(
    stun: Arc<Stun>,
    socket: Arc<StunSocket>,
    mut answers: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    config: Live,
) {
    let mut cfg = config.subscribe();
    let mut retry = RETRY;
    loop {
        let servers = cfg.borrow_and_update().stun.clone();
        let wait = if servers.is_empty() {
            stun.set(None, None);
            None
        } else {
            let (external, error) = round(&socket, &mut answers, &servers).await;
            let wait = if external.is_some() {
                retry = RETRY;
                INTERVAL
            } else {
                let w = retry;
                retry = (retry * 2).min(INTERVAL);
                w
            };
            if let Some(e) = &error {
                tracing::debug!("STUN: {e}");
            } else {
                tracing::debug!(?external, "STUN");
            }
            stun.set(external, error);
            Some(wait)
        };
        tokio::select! {
            r = cfg.changed() => if r.is_err() { return },
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Asks every server once; the mapping, if they agree on one.
async fn round(
    socket: &StunSocket,
    answers: &mut mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    servers: &[String],
) -> (Option<SocketAddr>, Option<String>) {
    let mut seen: Vec<SocketAddr> = Vec::new();
    let mut errors = Vec::new();
    for server in servers {
        match ask(socket, answers, server).await {
            Ok(a) => seen.push(a),
            Err(e) => errors.push(format!("{server}: {e}")),
        }
    }
    seen.dedup();
    match seen.as_slice() {
        [] => (None, Some(errors.join("; "))),
        [one] => (Some(*one), None),
        _ => (
            None,
            Some(format!(
                "the servers saw different mappings ({seen:?}): a symmetric NAT, whose ports cannot be punched"
            )),
        ),
    }
}

/// One Binding request to `server` (`host:port`) and its answer.
async fn ask(
    socket: &StunSocket,
    answers: &mut mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    server: &str,
) -> Result<SocketAddr, String> {
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let to = tokio::net::lookup_host(server)
        .await
        .map_err(|e| format!("resolving: {e}"))?
        // A dual-stack socket reaches IPv4 only through mapped addresses.
        .find(|a| local.is_ipv6() || a.is_ipv4())
        .ok_or("no address of our socket's family")?;
    let to = match (local, to) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => to,
    };
    let tx: stun::TxId = rand::random();
    socket
        .send(to, &stun::binding_request(&tx))
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let wait = async {
        while let Some((_, bytes)) = answers.recv().await {
            // Late answers to earlier requests are skipped.
            if let Ok(a) = stun::parse_binding_response(&bytes, &tx) {
                return Ok(SocketAddr::new(a.ip().to_canonical(), a.port()));
            }
        }
        Err("the socket closed".to_string())
    };
    tokio::time::timeout(ANSWER_TIMEOUT, wait)
        .await
        .map_err(|_| format!("no answer within {ANSWER_TIMEOUT:?}"))?
}
