//! One BEP session: Hello, ClusterConfig, then indexes, requests and pings
//! until either side closes. Protocol errors end the session with a logged
//! reason; nothing a peer sends can panic it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use proto::frame::{self, FrameError};
use proto::message::{ClusterConfig, Compression, Folder, FolderDevice, Hello, Message};
use proto::DeviceId;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::{index_send, serve, Inflight, Link, Outgoing, Peers, SessionHandle};
use crate::config::FolderType;
use crate::index::LOCAL;

/// Both Hellos must be exchanged within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// Send a Ping when nothing was written for this long.
const PING_EVERY: Duration = Duration::from_secs(45);
/// Drop the connection when nothing was read for this long.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Messages queued for the writer before senders wait.
const OUT_QUEUE: usize = 256;
/// Bytes (in KiB) of a device's requests being served or waiting to be
/// written, per session: Syncthing's default (twice the largest block).
/// Requests wait for budget before the disk is read.
const SERVE_KIB: u32 = 32 << 10;
/// A device's requests accepted and not yet answered on the wire; past
/// this its next messages are not read until some are. An honest peer
/// keeps far fewer in flight (its own byte budget bounds them).
const SERVE_REQUESTS: usize = 1024;
/// A write that makes no progress for this long ends the session: the
/// peer stopped reading.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Bytes written per time-limited step (so a slow link that moves is not
/// a stalled one).
const WRITE_STEP: usize = 64 << 10;

/// What a request being served holds until its answer is written: a slot
/// and its bytes of the device's serving budget.
pub struct ServeBudget {
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The byte stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not valid BEP.
    #[error("protocol error: {0}")]
    Frame(#[from] FrameError),
    /// The peer broke a rule of the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer said goodbye.
    #[error("closed by remote: {0}")]
    Closed(String),
    /// Nothing arrived for too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::DbError),
}

fn our_hello(peers: &Peers, known: bool) -> Hello {
    Hello {
        // Like Syncthing, tell our name only to devices we know.
        device_name: if known {
            peers.config().name.clone()
        } else {
            String::new()
        },
        client_name: "ferrosync".to_string(),
        client_version: format!("v{}", env!("CARGO_PKG_VERSION")),
        ..Hello::default()
    }
}

/// Runs a link to its end.
pub async fn run(peers: Arc<Peers>, link: Link) -> Result<(), SessionError> {
    let Link {
        device_id,
        transport,
        remote_addr,
        outgoing,
        relay,
        mut reader,
        mut writer,
        keepalive: _keepalive,
        until_hello,
    } = link;
    let known = peers.config().device(&device_id).is_some();
    // Both sides send their Hello at once; the QUIC dialler must write
    // first anyway for its stream to exist at the other end.
    writer
        .write_all(&frame::encode_hello(&our_hello(&peers, known)))
        .await?;
    writer.flush().await?;
    let mut buf = BytesMut::with_capacity(64 << 10);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, async {
        loop {
            if let Some(h) = frame::decode_hello(&mut buf)? {
                return Ok::<_, SessionError>(h);
            }
            if reader.read_buf(&mut buf).await? == 0 {
                return Err(SessionError::Closed("before Hello".into()));
            }
        }
    })
    .await
    .map_err(|_| SessionError::Timeout("no Hello"))??;
    drop(until_hello);
    if !known {
        peers.record_pending(device_id, &hello.device_name, remote_addr);
        // Like Syncthing: close without a BEP Close.
        let _ = writer.shutdown().await;
        return Ok(());
    }
    tracing::info!(device = %device_id, %remote_addr, transport, client = %hello.client_name,
        version = %hello.client_version, name = %hello.device_name, "connected");

    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(OUT_QUEUE);
    let handle = SessionHandle {
        device: device_id,
        address: remote_addr,
        transport,
        outgoing,
        relay,
        out: out_tx.clone(),
        inflight: Arc::new(Mutex::new(Inflight::default())),
        next_id: Arc::new(AtomicI32::new(0)),
        closing: Arc::new(tokio::sync::Notify::new()),
        reconfigure: Arc::new(tokio::sync::Notify::new()),
        since: std::time::SystemTime::now(),
    };
    if !peers.register(handle.clone()) {
        tracing::info!(device = %device_id, "already connected through a preferred connection; closing this one");
        let mut bytes = Vec::new();
        frame::encode_message_into(
            &Message::Close(proto::message::Close {
                reason: "replacing connection".into(),
            }),
            Compression::Metadata,
            &mut bytes,
        );
        let _ = writer.write_all(&bytes).await;
        let _ = writer.shutdown().await;
        return Ok(());
    }
    let stats = peers.stats(&device_id);
    let writer_task = tokio::spawn(write_loop(
        writer,
        out_rx,
        handle.closing.clone(),
        stats.clone(),
    ));
    let cc = cluster_config(&peers, &device_id)?;
    let _ = out_tx.send(Message::ClusterConfig(cc).into()).await;

    let mut state = State {
        peers: peers.clone(),
        device: device_id,
        out: out_tx,
        handle: handle.clone(),
        got_cc: false,
        shared: HashSet::new(),
        unshared: HashSet::new(),
        last_cc: None,
        senders: HashMap::new(),
        serve_slots: Arc::new(Semaphore::new(SERVE_REQUESTS)),
        serve_bytes: Arc::new(Semaphore::new(SERVE_KIB as usize)),
        stats,
    };
    let (result, asked_to_close) = tokio::select! {
        r = state.read_loop(&mut reader, buf) => (r, false),
        _ = handle.closing.notified() => (Ok(()), true),
    };
    match &result {
        Ok(()) => tracing::info!(device = %device_id, %remote_addr, "session ended"),
        Err(e) => tracing::warn!(device = %device_id, %remote_addr, "session closed: {e}"),
    }
    // Our requests to this peer fail now, not at their time-out: the
    // puller re-plans on the sessions that remain. Its requests still
    // queued are not served (nobody would read the answers).
    handle.fail_waiting();
    state.serve_slots.close();
    state.serve_bytes.close();
    for (_, s) in state.senders.drain() {
        s.abort();
    }
    peers.unregister(&handle);
    drop(state);
    drop(handle);
    if asked_to_close {
        // Our Close goes out first; the writer stops right after it.
        let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    } else {
        // The peer hung up or broke the protocol: nothing more is owed to
        // it, and the transport closes now (requests still being served
        // must not hold the socket open).
        writer_task.abort();
        let _ = writer_task.await;
    }
    result
}

/// The ClusterConfig we send to `device`: every folder shared with it,
/// listing us (our index ID and sequence) and it (what we hold of its index).
fn cluster_config(peers: &Peers, device: &DeviceId) -> Result<ClusterConfig, SessionError> {
    let mut folders = Vec::new();
    let dnum = peers.index.device_number(device)?;
    let config = peers.config();
    for f in config.folders.iter().filter(|f| f.devices.contains(device)) {
        let fi = peers.index.folder(&f.id)?;
        let ours = fi.device_meta(LOCAL)?;
        let theirs = fi.device_meta(dnum)?;
        let mut me = FolderDevice::new(peers.own);
        me.name = config.name.clone();
        me.index_id = ours.index_id;
        // What we may announce, not what is committed but not yet durable.
        me.max_sequence = *fi.durable().borrow();
        let mut them = FolderDevice::new(*device);
        if let Some(d) = config.device(device) {
            them.name = d.name.clone();
            them.addresses = d.addresses.clone();
        }
        them.index_id = theirs.index_id;
        them.max_sequence = theirs.max_sequence;
        folders.push(Folder {
            id: f.id.clone(),
            label: f.id.clone(),
            read_only: f.kind == FolderType::SendOnly,
            devices: vec![me, them],
            ..Folder::default()
        });
    }
    Ok(ClusterConfig {
        folders,
        secondary: false,
    })
}

async fn write_loop(
    mut w: Box<dyn AsyncWrite + Send + Unpin>,
    mut rx: mpsc::Receiver<Outgoing>,
    closing: Arc<tokio::sync::Notify>,
    stats: Arc<super::DeviceStats>,
) {
    let mut buf = Vec::with_capacity(256 << 10);
    // Held until the bytes of their messages are written.
    let mut held = Vec::new();
    loop {
        let out = match tokio::time::timeout(PING_EVERY, rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(_) => Message::Ping.into(),
        };
        let closing_msg = matches!(out.msg, Message::Close(_));
        frame::encode_message_into(&out.msg, Compression::Metadata, &mut buf);
        held.push(out);
        // Batch whatever else is queued into one write.
        while buf.len() < (1 << 20) && !closing_msg {
            match rx.try_recv() {
                Ok(m) => {
                    frame::encode_message_into(&m.msg, Compression::Metadata, &mut buf);
                    held.push(m);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = write_all_progressing(&mut w, &buf).await {
            tracing::debug!("session writer: {e}");
            // The session cannot go on without its writer.
            closing.notify_one();
            return;
        }
        stats
            .sent_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        stats
            .sent_messages
            .fetch_add(held.len() as u64, Ordering::Relaxed);
        buf.clear();
        held.clear();
        if closing_msg {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// Writes `buf`, failing if any step of it makes no progress for
/// [`WRITE_STALL`].
async fn write_all_progressing(
    w: &mut Box<dyn AsyncWrite + Send + Unpin>,
    buf: &[u8],
) -> std::io::Result<()> {
    let stalled = || std::io::Error::new(std::io::ErrorKind::TimedOut, "peer stopped reading");
    for step in buf.chunks(WRITE_STEP) {
        tokio::time::timeout(WRITE_STALL, w.write_all(step))
            .await
            .map_err(|_| stalled())??;
    }
    tokio::time::timeout(WRITE_STALL, w.flush())
        .await
        .map_err(|_| stalled())?
}

struct State {
    peers: Arc<Peers>,
    device: DeviceId,
    out: mpsc::Sender<Outgoing>,
    handle: SessionHandle,
    got_cc: bool,
    /// Folders both sides share and have announced unpaused.
    shared: HashSet<String>,
    /// Folders that were shared in this session and no longer are: an
    /// index for one may still be on its way, and is dropped.
    unshared: HashSet<String>,
    /// The peer's last ClusterConfig, looked at again when our
    /// configuration changes.
    last_cc: Option<ClusterConfig>,
    /// The index sender of each shared folder.
    senders: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Requests of this peer accepted and not yet answered on the wire.
    serve_slots: Arc<Semaphore>,
    /// KiB of this peer's requests being read or waiting to be written.
    serve_bytes: Arc<Semaphore>,
    /// The device's traffic counters.
    stats: Arc<super::DeviceStats>,
}

impl State {
    async fn read_loop(
        &mut self,
        reader: &mut Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        mut buf: BytesMut,
    ) -> Result<(), SessionError> {
        let reconfigure = self.handle.reconfigure.clone();
        loop {
            while let Some(msg) = frame::decode_message(&mut buf)? {
                self.stats.received_messages.fetch_add(1, Ordering::Relaxed);
                self.handle_message(msg).await?;
            }
            buf.reserve(64 << 10);
            let read = tokio::select! {
                r = tokio::time::timeout(READ_TIMEOUT, reader.read_buf(&mut buf)) => r,
                _ = reconfigure.notified() => {
                    self.reconfigure().await?;
                    continue;
                }
            };
            let n = read.map_err(|_| SessionError::Timeout("nothing received for 300 s"))??;
            self.stats
                .received_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Our configuration changed what is shared with this device: a new
    /// ClusterConfig goes out on this connection, folders no longer shared
    /// stop, and newly shared ones the peer offered start.
    async fn reconfigure(&mut self) -> Result<(), SessionError> {
        let cc = cluster_config(&self.peers, &self.device)?;
        let now: HashSet<String> = cc.folders.iter().map(|f| f.id.clone()).collect();
        let _ = self.out.send(Message::ClusterConfig(cc).into()).await;
        for gone in self.shared.iter().filter(|f| !now.contains(*f)) {
            if let Some(s) = self.senders.remove(gone) {
                s.abort();
            }
            self.unshared.insert(gone.clone());
        }
        self.shared.retain(|f| now.contains(f));
        tracing::info!(device = %self.device, folders = now.len(), "shared folders changed; new cluster config sent");
        match self.last_cc.clone() {
            Some(theirs) => self.cluster_config(theirs).await,
            None => Ok(()),
        }
    }

    async fn handle_message(&mut self, msg: Message) -> Result<(), SessionError> {
        if !self.got_cc && !matches!(msg, Message::ClusterConfig(_) | Message::Close(_)) {
            return Err(SessionError::Protocol(format!(
                "{:?} before ClusterConfig",
                msg.message_type()
            )));
        }
        match msg {
            Message::ClusterConfig(cc) => self.cluster_config(cc).await,
            Message::Index(idx) => self.index(idx, true).await,
            Message::IndexUpdate(idx) => self.index(idx, false).await,
            Message::Request(req) => {
                // Past SERVE_REQUESTS unanswered requests this peer's next
                // messages wait: a peer that floods and never reads costs a
                // bounded amount, whatever it sends.
                let slot = self
                    .serve_slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| SessionError::Protocol("serving closed".into()))?;
                let (peers, device, out) = (self.peers.clone(), self.device, self.out.clone());
                let bytes = self.serve_bytes.clone();
                tokio::spawn(async move {
                    let kib = req.size.div_ceil(1024).clamp(1, SERVE_KIB);
                    let Ok(bytes) = bytes.acquire_many_owned(kib).await else {
                        return;
                    };
                    let resp = serve::serve(&peers, &device, req).await;
                    let _ = out
                        .send(Outgoing {
                            msg: Message::Response(resp),
                            _held: Some(ServeBudget {
                                _slot: slot,
                                _bytes: bytes,
                            }),
                        })
                        .await;
                });
                Ok(())
            }
            Message::Response(resp) => {
                self.handle.answer(resp);
                Ok(())
            }
            Message::DownloadProgress(_) | Message::Ping => Ok(()),
            Message::Close(c) => Err(SessionError::Closed(c.reason)),
        }
    }

    async fn cluster_config(&mut self, cc: ClusterConfig) -> Result<(), SessionError> {
        tracing::debug!(device = %self.device, folders = cc.folders.len(), "cluster config");
        if cc.secondary {
            return Ok(());
        }
        self.got_cc = true;
        self.last_cc = Some(cc.clone());
        let peers = self.peers.clone();
        let dnum = peers.index.device_number(&self.device)?;
        let config = peers.config();
        for f in &cc.folders {
            let Some(ours) = config
                .folder(&f.id)
                .filter(|c| c.devices.contains(&self.device))
            else {
                peers.record_pending_folder(self.device, &f.id, &f.label);
                continue;
            };
            if f.paused || self.shared.contains(&f.id) {
                continue;
            }
            let me = f
                .devices
                .iter()
                .find(|d| d.id == peers.own)
                .ok_or_else(|| {
                    SessionError::Protocol(format!(
                        "folder {}: local device missing in cluster config",
                        f.id
                    ))
                })?;
            let them = f
                .devices
                .iter()
                .find(|d| d.id == self.device)
                .ok_or_else(|| {
                    SessionError::Protocol(format!(
                        "folder {}: remote device missing in cluster config",
                        f.id
                    ))
                })?;
            let fi = peers.index.folder(&ours.id)?;
            // What they hold of ours decides whether we resend everything.
            let local = fi.device_meta(LOCAL)?;
            let start = if me.index_id == local.index_id && me.max_sequence <= local.max_sequence {
                Some(me.max_sequence)
            } else {
                None
            };
            // What we hold of theirs is void if their index was reset.
            let stored = fi.device_meta(dnum)?;
            if them.index_id == 0 || them.index_id != stored.index_id {
                let (fi2, id) = (fi.clone(), them.index_id);
                tokio::task::spawn_blocking(move || {
                    fi2.drop_device(dnum)?;
                    fi2.set_index_id(dnum, id)
                })
                .await
                .map_err(|e| SessionError::Protocol(e.to_string()))??;
            }
            tracing::debug!(device = %self.device, folder = %f.id, ?start, "sending index");
            self.shared.insert(f.id.clone());
            self.unshared.remove(&f.id);
            let receive_only = (ours.kind == FolderType::ReceiveOnly).then(|| peers.own.short());
            let sender = tokio::spawn(index_send::run(fi, self.out.clone(), start, receive_only));
            self.senders.insert(f.id.clone(), sender);
        }
        Ok(())
    }

    async fn index(
        &mut self,
        mut idx: proto::message::Index,
        full: bool,
    ) -> Result<(), SessionError> {
        tracing::debug!(device = %self.device, folder = %idx.folder, files = idx.files.len(), full, "index received");
        // Our own names (temp files, the marker, .stignore, .stversions)
        // are never taken from a peer, as Syncthing drops them: a peer
        // could otherwise plant a symlink at a temp name, or a marker entry
        // that would be pulled over ours in a loop.
        let before = idx.files.len();
        idx.files
            .retain(|f| !crate::fs::is_internal(f.name.as_str()));
        if idx.files.len() != before {
            tracing::debug!(device = %self.device, folder = %idx.folder,
                dropped = before - idx.files.len(), "internal names dropped from index");
        }
        if !self.shared.contains(&idx.folder) && self.unshared.contains(&idx.folder) {
            tracing::debug!(device = %self.device, folder = %idx.folder, "index for a folder no longer shared; dropped");
            return Ok(());
        }
        if !self.shared.contains(&idx.folder) {
            return Err(SessionError::Protocol(format!(
                "index for folder {:?}, which is not shared with this device",
                idx.folder
            )));
        }
        let peers = self.peers.clone();
        let dnum = peers.index.device_number(&self.device)?;
        let fi = peers.index.folder(&idx.folder)?;
        tokio::task::spawn_blocking(move || {
            if full {
                fi.drop_device(dnum)?;
            }
            fi.update_remote(dnum, idx.files)
        })
        .await
        .map_err(|e| SessionError::Protocol(e.to_string()))??;
        Ok(())
    }
}
