//! One BEP session: Hello, ClusterConfig, then indexes, requests and pings
//! until either side closes. Protocol errors end the session with a logged
//! reason; nothing a peer sends can panic it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use proto::frame::{self, FrameError};
use proto::message::{ClusterConfig, Compression, Folder, FolderDevice, Hello, Message};
use proto::DeviceId;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{index_send, serve, Link, Peers, SessionHandle};
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
        mut reader,
        mut writer,
        keepalive: _keepalive,
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
    if !known {
        peers.record_pending(device_id, &hello.device_name, remote_addr);
        // Like Syncthing: close without a BEP Close.
        let _ = writer.shutdown().await;
        return Ok(());
    }
    tracing::info!(device = %device_id, %remote_addr, transport, client = %hello.client_name,
        version = %hello.client_version, name = %hello.device_name, "connected");

    let (out_tx, out_rx) = mpsc::channel::<Message>(OUT_QUEUE);
    let handle = SessionHandle {
        device: device_id,
        address: remote_addr,
        transport,
        outgoing,
        out: out_tx.clone(),
        inflight: Arc::new(Mutex::new(HashMap::new())),
        next_id: Arc::new(AtomicI32::new(0)),
        closing: Arc::new(tokio::sync::Notify::new()),
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
    let writer_task = tokio::spawn(write_loop(writer, out_rx));
    let cc = cluster_config(&peers, &device_id)?;
    let _ = out_tx.send(Message::ClusterConfig(cc)).await;

    let mut state = State {
        peers: peers.clone(),
        device: device_id,
        out: out_tx,
        handle: handle.clone(),
        got_cc: false,
        shared: HashSet::new(),
        senders: Vec::new(),
    };
    let result = tokio::select! {
        r = state.read_loop(&mut reader, buf) => r,
        _ = handle.closing.notified() => Ok(()),
    };
    match &result {
        Ok(()) => tracing::info!(device = %device_id, %remote_addr, "session ended"),
        Err(e) => tracing::warn!(device = %device_id, %remote_addr, "session closed: {e}"),
    }
    for s in state.senders.drain(..) {
        s.abort();
    }
    peers.unregister(&handle);
    // Dropping the last sender ends the writer once it has flushed.
    drop(state);
    drop(handle);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer_task).await;
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
        me.max_sequence = ours.max_sequence;
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

async fn write_loop(mut w: Box<dyn AsyncWrite + Send + Unpin>, mut rx: mpsc::Receiver<Message>) {
    let mut buf = Vec::with_capacity(256 << 10);
    loop {
        let msg = match tokio::time::timeout(PING_EVERY, rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(_) => Message::Ping,
        };
        let closing = matches!(msg, Message::Close(_));
        frame::encode_message_into(&msg, Compression::Metadata, &mut buf);
        // Batch whatever else is queued into one write.
        while buf.len() < (1 << 20) && !closing {
            match rx.try_recv() {
                Ok(m) => frame::encode_message_into(&m, Compression::Metadata, &mut buf),
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            return;
        }
        buf.clear();
        if closing {
            break;
        }
    }
    let _ = w.shutdown().await;
}

struct State {
    peers: Arc<Peers>,
    device: DeviceId,
    out: mpsc::Sender<Message>,
    handle: SessionHandle,
    got_cc: bool,
    /// Folders both sides share and have announced unpaused.
    shared: HashSet<String>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl State {
    async fn read_loop(
        &mut self,
        reader: &mut Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        mut buf: BytesMut,
    ) -> Result<(), SessionError> {
        loop {
            while let Some(msg) = frame::decode_message(&mut buf)? {
                self.handle_message(msg).await?;
            }
            buf.reserve(64 << 10);
            let n = tokio::time::timeout(READ_TIMEOUT, reader.read_buf(&mut buf))
                .await
                .map_err(|_| SessionError::Timeout("nothing received for 300 s"))??;
            if n == 0 {
                return Ok(());
            }
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
                let (peers, device, out) = (self.peers.clone(), self.device, self.out.clone());
                tokio::spawn(async move {
                    let resp = serve::serve(&peers, &device, req).await;
                    let _ = out.send(Message::Response(resp)).await;
                });
                Ok(())
            }
            Message::Response(resp) => {
                let waiter = self
                    .handle
                    .inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&resp.id);
                // An answer to a request we gave up on is harmless.
                if let Some(w) = waiter {
                    let _ = w.send(resp);
                }
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
        let peers = self.peers.clone();
        let dnum = peers.index.device_number(&self.device)?;
        let config = peers.config();
        for f in &cc.folders {
            let Some(ours) = config
                .folder(&f.id)
                .filter(|c| c.devices.contains(&self.device))
            else {
                tracing::info!(device = %self.device, folder = %f.id, "peer offers a folder we do not share with it");
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
            let receive_only = (ours.kind == FolderType::ReceiveOnly).then(|| peers.own.short());
            self.senders.push(tokio::spawn(index_send::run(
                fi,
                self.out.clone(),
                start,
                receive_only,
            )));
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
