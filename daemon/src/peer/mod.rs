//! BEP sessions: one per connected device. A session exchanges Hellos,
//! ClusterConfigs and indexes, serves the peer's block requests, and
//! carries ours. [`Peers`] is the registry the rest of the daemon asks
//! "who is connected, and can you fetch this block?".
//!
//! ```text
//! daemon ── accepted/dialled Link ──▶ Peers::run_link ─┬─ writer task (frames out, pings)
//!                                                      ├─ one index sender per shared folder
//!                                                      └─ reader loop (this task): ends the session
//! ```
//! A session ends when either side closes, on a protocol error (logged
//! with its reason), or when it is replaced by a better connection.

mod index_send;
pub mod serve;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proto::message::{BlockInfo, ErrorCode, Message, Request, Response};
use proto::{DeviceId, Name};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use crate::config::live::Live;
use crate::config::{Config, FolderConfig};
use crate::events::Events;
use crate::index::Index;
use crate::scanner::ignore::Ignores;

/// An authenticated byte stream to a device, as the network hands it over.
pub struct Link {
    /// The peer's verified device ID.
    pub device_id: DeviceId,
    /// `tcp`, `quic` or `relay`.
    pub transport: &'static str,
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// Whether we dialled.
    pub outgoing: bool,
    /// The relay's URI, when relayed.
    pub relay: Option<String>,
    /// Bytes from the peer.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Bytes to the peer.
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// Keeps transport state (e.g. a QUIC connection) alive for the session.
    pub keepalive: Option<Box<dyn std::any::Any + Send>>,
    /// Held until the peer's Hello has arrived (an incoming connection's
    /// place among handshakes in progress).
    pub until_hello: Option<Box<dyn std::any::Any + Send>>,
}

/// A device that connected but is not configured.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    /// Its ID.
    pub id: DeviceId,
    /// The name it gave in its Hello.
    pub name: String,
    /// Where it connected from.
    pub address: String,
    /// When it was last seen.
    pub seen: SystemTime,
}

/// A folder a configured device offered that we do not share with it.
#[derive(Debug, Clone)]
pub struct PendingFolder {
    /// The folder ID it offered.
    pub id: String,
    /// Its label there.
    pub label: String,
    /// The device that offered it.
    pub device: DeviceId,
    /// When it was last offered.
    pub seen: SystemTime,
}

/// A live session, as others see it.
#[derive(Clone)]
pub struct SessionHandle {
    /// The peer.
    pub device: DeviceId,
    /// The peer's address.
    pub address: SocketAddr,
    /// The transport carrying it.
    pub transport: &'static str,
    /// Whether we dialled.
    pub outgoing: bool,
    /// The relay's URI, when relayed.
    pub relay: Option<String>,
    out: mpsc::Sender<Outgoing>,
    inflight: Arc<Mutex<Inflight>>,
    next_id: Arc<AtomicI32>,
    /// Set when the session should end (replaced, or shutting down).
    closing: Arc<tokio::sync::Notify>,
    /// Set when the folders shared with this device changed: the session
    /// sends a new ClusterConfig on the live connection.
    reconfigure: Arc<tokio::sync::Notify>,
    /// When the session started.
    pub since: SystemTime,
}

/// What crossed the wire with one device, over every session since the
/// daemon started (counters for metrics; rates for the GUI).
#[derive(Default)]
pub struct DeviceStats {
    /// Bytes read from the device's connections.
    pub received_bytes: AtomicU64,
    /// Bytes written to them.
    pub sent_bytes: AtomicU64,
    /// BEP messages received.
    pub received_messages: AtomicU64,
    /// BEP messages sent.
    pub sent_messages: AtomicU64,
    /// The last rate sample.
    sample: Mutex<Option<RateSample>>,
}

/// When a rate was measured, the byte counters (in, out) then, and the
/// rates it gave.
#[derive(Clone, Copy)]
struct RateSample {
    at: std::time::Instant,
    rx: u64,
    tx: u64,
    rates: (f64, f64),
}

/// The shortest window a rate is measured over; asked more often, the
/// last rate is answered again.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl DeviceStats {
    /// Bytes per second received and sent, over the time since the last
    /// sample of at least [`RATE_WINDOW`] (0 at the first).
    pub fn rates(&self) -> (f64, f64) {
        let (now, rx, tx) = (
            std::time::Instant::now(),
            self.received_bytes.load(Ordering::Relaxed),
            self.sent_bytes.load(Ordering::Relaxed),
        );
        let mut s = self.sample.lock().unwrap_or_else(|e| e.into_inner());
        let rates = match *s {
            Some(last) if now - last.at < RATE_WINDOW => return last.rates,
            Some(last) => {
                let secs = (now - last.at).as_secs_f64();
                (
                    rx.saturating_sub(last.rx) as f64 / secs,
                    tx.saturating_sub(last.tx) as f64 / secs,
                )
            }
            None => (0.0, 0.0),
        };
        *s = Some(RateSample {
            at: now,
            rx,
            tx,
            rates,
        });
        rates
    }
}

/// A message for a session's writer, with whatever budget it holds until
/// it is written (a served block keeps its share of the device's serving
/// budget until its bytes are on the wire, not merely queued).
pub struct Outgoing {
    msg: Message,
    _held: Option<session::ServeBudget>,
}

impl From<Message> for Outgoing {
    fn from(msg: Message) -> Self {
        Self { msg, _held: None }
    }
}

/// Our requests waiting for their answers. Once the session has ended no
/// request waits: every waiter is failed at once, and new ones are refused.
#[derive(Default)]
struct Inflight {
    waiting: HashMap<i32, oneshot::Sender<Response>>,
    closed: bool,
}

/// Takes a request's waiter out of the session's table when dropped.
struct Forget<'a> {
    handle: &'a SessionHandle,
    id: i32,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.handle.forget(self.id);
    }
}

/// Why a block request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The session ended before the answer came.
    #[error("connection to {0} closed")]
    Closed(DeviceId),
    /// The peer answered with an error code.
    #[error("{0} answered {1:?}")]
    Refused(DeviceId, ErrorCode),
    /// No answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(DeviceId, Duration),
}

/// How long a block request may take before it is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl SessionHandle {
    /// Asks the peer for a block and waits for the data. The block's weak
    /// hash (0: none) lets the peer check what it read cheaply.
    pub async fn request(
        &self,
        folder: &str,
        name: &Name,
        block: &BlockInfo,
        block_no: i32,
    ) -> Result<Bytes, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if w.closed {
                return Err(RequestError::Closed(self.device));
            }
            w.waiting.insert(id, tx);
        }
        let req = Message::Request(Request {
            id,
            folder: folder.to_string(),
            name: name.clone(),
            offset: block.offset,
            size: block.size,
            hash: Some(block.hash),
            from_temporary: false,
            weak_hash: block.weak_hash,
            block_no,
        });
        // Whatever ends this call (an answer, an error, the caller dropping
        // it) takes the waiter out, so none outlives its request.
        let _waiter = Forget { handle: self, id };
        // The send is inside the time limit too: a writer stuck on a peer
        // that stopped reading must not hold the caller.
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            if self.out.send(req.into()).await.is_err() {
                return Err(RequestError::Closed(self.device));
            }
            match rx.await {
                Ok(r) if r.code == ErrorCode::NoError => Ok(r.data),
                Ok(r) => Err(RequestError::Refused(self.device, r.code)),
                Err(_) => Err(RequestError::Closed(self.device)),
            }
        })
        .await
        .unwrap_or(Err(RequestError::Timeout(self.device, REQUEST_TIMEOUT)))
    }

    /// Fails every waiting request and refuses new ones (the session ended).
    fn fail_waiting(&self) {
        let mut w = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        w.closed = true;
        w.waiting.clear();
    }

    /// Hands a Response to the request waiting for it, if one still does.
    fn answer(&self, resp: Response) {
        let waiter = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(&resp.id);
        // An answer to a request we gave up on is harmless.
        if let Some(w) = waiter {
            let _ = w.send(resp);
        }
    }

    fn forget(&self, id: i32) {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .remove(&id);
    }

    /// Ends the session with a Close carrying `reason`.
    pub fn close(&self, reason: &str) {
        let _ = self.out.try_send(
            Message::Close(proto::message::Close {
                reason: reason.to_string(),
            })
            .into(),
        );
        self.closing.notify_one();
    }
}

/// Every session of this daemon, and the devices that asked to connect.
pub struct Peers {
    /// This device.
    pub own: DeviceId,
    /// The configuration sessions follow; replaced whole on reload.
    config: Live,
    /// The index.
    pub index: Index,
    sessions: Mutex<HashMap<DeviceId, SessionHandle>>,
    pending: Mutex<Vec<PendingDevice>>,
    pending_folders: Mutex<Vec<PendingFolder>>,
    /// Each folder's ignore patterns as its runner last loaded them: what
    /// the puller skips and the block server refuses.
    ignores: Mutex<HashMap<String, Arc<Ignores>>>,
    /// Told whenever a session starts or ends (pullers wait for peers).
    pub changed: tokio::sync::watch::Sender<u64>,
    /// What happened, for the API's event stream.
    pub events: Events,
    stats: Mutex<HashMap<DeviceId, Arc<DeviceStats>>>,
}

impl Peers {
    /// A registry with no sessions.
    pub fn new(own: DeviceId, config: Live, index: Index) -> Arc<Self> {
        Arc::new(Self {
            own,
            config,
            index,
            sessions: Mutex::default(),
            pending: Mutex::default(),
            pending_folders: Mutex::default(),
            ignores: Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
            events: Events::default(),
            stats: Mutex::default(),
        })
    }

    /// The traffic counters of `device` (made at first use).
    pub fn stats(&self, device: &DeviceId) -> Arc<DeviceStats> {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(*device)
            .or_default()
            .clone()
    }

    /// The configuration now in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Replaces the configuration. Sessions of removed devices are closed;
    /// those whose shared folders changed send a new ClusterConfig on the
    /// live connection (as Syncthing does), so a transfer in progress goes
    /// on.
    pub fn set_config(&self, new: Config) {
        let old = self.config.replace(new);
        let new = self.config();
        let shares = |c: &Config, d: &DeviceId| -> Vec<(String, std::path::PathBuf)> {
            c.folders
                .iter()
                .filter(|f| f.devices.contains(d))
                .map(|f| (f.id.clone(), f.path.clone()))
                .collect()
        };
        for s in self.sessions() {
            if new.device(&s.device).is_none() {
                s.close("device removed");
            } else if shares(&old, &s.device) != shares(&new, &s.device) {
                s.reconfigure.notify_one();
            }
        }
    }

    /// Records the ignore patterns a folder's runner loaded (at a scan).
    pub fn set_ignores(&self, folder: &str, ignores: Arc<Ignores>) {
        self.ignores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(folder.to_string(), ignores);
    }

    /// A folder's ignore patterns: as its last scan loaded them, else read
    /// from its root now. An error (an unreadable or invalid `.stignore`)
    /// means nothing of the folder may be pulled or served.
    pub fn ignores(&self, folder: &FolderConfig) -> Result<Arc<Ignores>, String> {
        if let Some(i) = self
            .ignores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&folder.id)
        {
            return Ok(i.clone());
        }
        let loaded = Arc::new(Ignores::load(&folder.path).map_err(|e| e.to_string())?);
        self.set_ignores(&folder.id, loaded.clone());
        Ok(loaded)
    }

    /// The session with `device`, if connected.
    pub fn session(&self, device: &DeviceId) -> Option<SessionHandle> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device)
            .cloned()
    }

    /// All live sessions.
    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Devices that connected without being configured.
    pub fn pending(&self) -> Vec<PendingDevice> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Folders configured devices offered that we do not share with them
    /// (those since shared are left out).
    pub fn pending_folders(&self) -> Vec<PendingFolder> {
        let config = self.config();
        let mut p = self
            .pending_folders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.retain(|f| {
            config.device(&f.device).is_some()
                && !config
                    .ignored_folders
                    .iter()
                    .any(|i| i.matches(&f.device, &f.id))
                && !config
                    .folder(&f.id)
                    .is_some_and(|c| c.devices.contains(&f.device))
        });
        p.clone()
    }

    fn record_pending_folder(&self, device: DeviceId, id: &str, label: &str) {
        if self
            .config()
            .ignored_folders
            .iter()
            .any(|i| i.matches(&device, id))
        {
            return;
        }
        tracing::info!(%device, folder = id, label, "device offers a folder we do not share with it; recorded as pending");
        let mut p = self
            .pending_folders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.retain(|f| !(f.device == device && f.id == id));
        p.push(PendingFolder {
            id: id.to_string(),
            label: label.to_string(),
            device,
            seen: SystemTime::now(),
        });
        drop(p);
        self.events.emit(
            "PendingFoldersChanged",
            serde_json::json!({ "device": device.to_string(), "folder": id }),
        );
    }

    /// Forgets a pending folder offer (dismissed, or accepted).
    pub fn dismiss_pending_folder(&self, device: &DeviceId, id: &str) -> bool {
        let mut p = self
            .pending_folders
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = p.len();
        p.retain(|f| !(f.device == *device && f.id == id));
        let gone = p.len() != before;
        drop(p);
        if gone {
            self.events
                .emit("PendingFoldersChanged", serde_json::json!({}));
        }
        gone
    }

    /// Forgets a pending device (dismissed, ignored or accepted).
    pub fn dismiss_pending(&self, device: &DeviceId) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let before = p.len();
        p.retain(|d| d.id != *device);
        let gone = p.len() != before;
        drop(p);
        if gone {
            self.events
                .emit("PendingDevicesChanged", serde_json::json!({}));
        }
        gone
    }

    fn record_pending(&self, id: DeviceId, name: &str, address: SocketAddr) {
        if self.config().ignored_devices.contains(&id) {
            tracing::debug!(device = %id, %address, "ignored device connected; refused");
            return;
        }
        tracing::info!(device = %id, %address, name, "unknown device connected; recorded as pending");
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|d| d.id != id);
        p.push(PendingDevice {
            id,
            name: name.to_string(),
            address: address.to_string(),
            seen: SystemTime::now(),
        });
        drop(p);
        self.events.emit(
            "PendingDevicesChanged",
            serde_json::json!({ "device": id.to_string(), "name": name, "address": address.to_string() }),
        );
    }

    /// Ends every session (at shutdown).
    pub fn close_all(&self, reason: &str) {
        for s in self.sessions() {
            s.close(reason);
        }
    }

    /// Runs a connection to its end: Hello, then (for a configured device)
    /// a BEP session.
    pub async fn run_link(self: Arc<Self>, link: Link) {
        let (device, addr) = (link.device_id, link.remote_addr);
        // An established session logs its own end; this covers the Hello.
        if let Err(e) = session::run(self.clone(), link).await {
            tracing::debug!(%device, %addr, "connection ended: {e}");
        }
    }

    /// Registers a session, settling duplicates: the preferred transport
    /// wins, then the connection whose dialler has the lower device ID, so
    /// both ends keep the same one.
    fn register(&self, handle: SessionHandle) -> bool {
        let prefer = self.config().transport.prefer;
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = map.get(&handle.device) {
            let key = |s: &SessionHandle| {
                let dialler = if s.outgoing { self.own } else { s.device };
                (prefer.rank(s.transport), dialler)
            };
            if key(old) <= key(&handle) {
                return false;
            }
            old.close("replacing connection");
        }
        let data = serde_json::json!({
            "device": handle.device.to_string(),
            "address": handle.address.to_string(),
            "transport": handle.transport,
        });
        map.insert(handle.device, handle);
        drop(map);
        self.changed.send_modify(|n| *n += 1);
        self.events.emit("DeviceConnected", data);
        true
    }

    fn unregister(&self, handle: &SessionHandle) {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&handle.device)
            .is_some_and(|s| Arc::ptr_eq(&s.closing, &handle.closing))
        {
            map.remove(&handle.device);
            drop(map);
            self.changed.send_modify(|n| *n += 1);
            self.events.emit(
                "DeviceDisconnected",
                serde_json::json!({ "device": handle.device.to_string() }),
            );
        }
    }
}
