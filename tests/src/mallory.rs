//! A hand-built peer for hostile scenarios: a configured device that
//! speaks BEP from the test itself, so a test can send what no honest
//! client would (planted internal names, malformed block lists, floods of
//! requests it never reads) and see exactly what the daemon answers.
//!
//! It is synchronous (a private tokio runtime drives the connection), so
//! tests stay plain `#[test]` functions.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferrosync::home::Home;
use ferrosync::identity::Identity;
use ferrosync::net::Net;
use proto::message::{
    ClusterConfig, Compression, ErrorCode, Folder, FolderDevice, Hello, Index, Message, Request,
    Response,
};
use proto::{frame, wire, DeviceId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Set to a directory, every frame a [`Mallory`] receives is saved there
/// as a fuzz seed (see `fuzz-seeds`).
pub const CAPTURE_ENV: &str = "FERROSYNC_FUZZ_CAPTURE";

/// Writes `bytes` as the seed `dir/target/HASH` (named by content, so a
/// seed seen twice is kept once).
pub fn save_seed(dir: &std::path::Path, target: &str, bytes: &[u8]) {
    use sha2::Digest;
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("seed dir");
    let h = sha2::Sha256::digest(bytes);
    let name: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(d.join(name), bytes).expect("write seed");
}

/// The identity of a hand-built peer, made in its own directory.
pub struct MalloryId {
    _dir: tempfile::TempDir,
    /// Certificate and key.
    pub identity: Identity,
}

impl MalloryId {
    /// A new identity.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (identity, _) =
            ferrosync::identity::load_or_create(&Home::new(dir.path().join("m"))).expect("id");
        Self {
            _dir: dir,
            identity,
        }
    }

    /// Its device ID as text.
    pub fn id(&self) -> String {
        self.identity.device_id.to_string()
    }
}

impl Default for MalloryId {
    fn default() -> Self {
        Self::new()
    }
}

/// A live connection from the hand-built peer to a daemon.
pub struct Mallory {
    rt: tokio::runtime::Runtime,
    reader: Box<dyn AsyncRead + Send + Unpin>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    buf: BytesMut,
    hello_seen: bool,
    /// Where received frames are saved as fuzz seeds
    /// (`$FERROSYNC_FUZZ_CAPTURE/TARGET/HASH`), if anywhere.
    capture: Option<std::path::PathBuf>,
    _net: Net,
    /// The device dialled.
    pub peer: DeviceId,
}

impl Mallory {
    /// Dials `url` (the daemon `peer`), exchanges Hellos, and sends a
    /// ClusterConfig sharing `folders` with it.
    pub fn connect(me: &MalloryId, url: &str, peer: &str, folders: &[&str]) -> Self {
        let mut m = Self::hello_only(me, url, peer);
        let mut own = FolderDevice::new(me.identity.device_id);
        own.index_id = 1;
        let cc = ClusterConfig {
            folders: folders
                .iter()
                .map(|id| Folder {
                    id: id.to_string(),
                    devices: vec![own.clone(), FolderDevice::new(m.peer)],
                    ..Folder::default()
                })
                .collect(),
            secondary: false,
        };
        m.send(&Message::ClusterConfig(cc));
        m
    }

    /// Dials `url` (the daemon `peer`) and sends only its Hello: what
    /// comes next is up to the test.
    pub fn hello_only(me: &MalloryId, url: &str, peer: &str) -> Self {
        let mut m = Self::raw(me, url, peer);
        let hello = Hello {
            device_name: "mallory".into(),
            client_name: "mallory".into(),
            ..Hello::default()
        };
        m.send_raw(&frame::encode_hello(&hello));
        m
    }

    /// Dials `url` (the daemon `peer`) and completes TLS, sending nothing.
    pub fn raw(me: &MalloryId, url: &str, peer: &str) -> Self {
        Self::try_raw(me, url, peer).unwrap_or_else(|e| panic!("dial: {e}"))
    }

    /// Like [`Mallory::raw`], with the daemon free to refuse.
    pub fn try_raw(me: &MalloryId, url: &str, peer: &str) -> Result<Self, String> {
        let peer: DeviceId = peer.parse().expect("device id");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (net, conn) = rt.block_on(async {
            let (net, _rx) = Net::start(&me.identity, &[]).await.expect("net");
            let c = net.dial(url, peer).await.map_err(|e| format!("{e:?}"))?;
            Ok::<_, String>((net, c))
        })?;
        Ok(Self {
            rt,
            reader: conn.reader,
            writer: conn.writer,
            buf: BytesMut::new(),
            hello_seen: false,
            capture: std::env::var_os(CAPTURE_ENV).map(Into::into),
            _net: net,
            peer,
        })
    }

    /// Sends `body` as an uncompressed frame of type `ty`, as it is: the
    /// wire types can hold what the domain types refuse (negative sizes,
    /// names that escape).
    pub fn send_wire(&mut self, ty: wire::MessageType, body: &impl prost::Message) {
        let header = wire::Header {
            r#type: ty.into(),
            compression: wire::MessageCompression::None.into(),
        };
        let mut out = Vec::new();
        out.extend_from_slice(&(prost::Message::encoded_len(&header) as u16).to_be_bytes());
        out.extend_from_slice(&prost::Message::encode_to_vec(&header));
        out.extend_from_slice(&(body.encoded_len() as u32).to_be_bytes());
        out.extend_from_slice(&body.encode_to_vec());
        self.send_raw(&out);
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &Message) {
        self.send_raw(&frame::encode_message(msg, Compression::Never));
    }

    /// Sends an Index (the first) or IndexUpdate of `files` for `folder`.
    pub fn send_index(&mut self, folder: &str, files: Vec<proto::message::FileInfo>, full: bool) {
        let last = files.iter().map(|f| f.sequence).max().unwrap_or(0);
        let idx = Index {
            folder: folder.into(),
            files,
            last_sequence: last,
            prev_sequence: 0,
        };
        self.send(&if full {
            Message::Index(idx)
        } else {
            Message::IndexUpdate(idx)
        });
    }

    /// Writes bytes as they are; false if the daemon has closed.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        let w = &mut self.writer;
        self.rt.block_on(async {
            matches!(
                tokio::time::timeout(Duration::from_secs(10), async {
                    w.write_all(bytes).await?;
                    w.flush().await
                })
                .await,
                Ok(Ok(()))
            )
        })
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        assert!(self.try_send_raw(bytes), "the daemon stopped reading");
    }

    /// The next message from the daemon within `limit`: `Err(true)` when
    /// it closed the connection, `Err(false)` on time-out.
    pub fn recv(&mut self, limit: Duration) -> Result<Message, bool> {
        let deadline = Instant::now() + limit;
        loop {
            let before = self.capture.as_ref().map(|_| self.buf.clone());
            if !self.hello_seen {
                self.hello_seen = frame::decode_hello(&mut self.buf)
                    .expect("daemon's Hello")
                    .is_some();
                if self.hello_seen {
                    self.save("bep_hello", before.as_deref());
                }
            }
            if self.hello_seen {
                let before = self.capture.as_ref().map(|_| self.buf.clone());
                if let Some(m) = frame::decode_message(&mut self.buf).expect("daemon's frame") {
                    self.save("bep_message", before.as_deref());
                    if let Message::Index(i) | Message::IndexUpdate(i) = &m {
                        for f in &i.files {
                            self.save_seed("file_info", &f.encode());
                        }
                    }
                    return Ok(m);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let (r, buf) = (&mut self.reader, &mut self.buf);
            match self
                .rt
                .block_on(async { tokio::time::timeout(left, r.read_buf(buf)).await })
            {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(true),
                Ok(Ok(_)) => {}
                Err(_) => return Err(false),
            }
        }
    }

    /// Saves what was decoded from `before` (the buffer's state before it
    /// was taken from the front) as a seed for `target`.
    fn save(&self, target: &str, before: Option<&[u8]>) {
        if let Some(b) = before {
            let taken = b.len() - self.buf.len();
            self.save_seed(target, &b[..taken]);
        }
    }

    fn save_seed(&self, target: &str, bytes: &[u8]) {
        if let Some(dir) = &self.capture {
            save_seed(dir, target, bytes);
        }
    }

    /// Reads until the daemon closes the connection (true) or `limit`
    /// passes (false), answering nothing.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => continue,
                Err(closed) => return closed,
            }
        }
    }

    /// Sends a block request for `name` in `folder` (from offset 0, `size`
    /// bytes, with the hashes given) and returns the daemon's answer to
    /// it, or `None` if none came within 60 s.
    pub fn ask(
        &mut self,
        id: i32,
        folder: &str,
        name: &str,
        size: u32,
        hash: Option<[u8; 32]>,
        weak_hash: u32,
    ) -> Option<Response> {
        self.send(&Message::Request(Request {
            id,
            folder: folder.into(),
            name: proto::Name::parse(name).expect("name"),
            offset: 0,
            size,
            hash,
            from_temporary: false,
            weak_hash,
            block_no: 0,
        }));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Ok(Message::Response(r)) if r.id == id => return Some(r),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Answers the daemon's block requests with `data(request)` (None: "no
    /// such file") until `done()` holds or `limit` passes; returns whether
    /// `done()` held, and every request seen.
    pub fn serve_until(
        &mut self,
        limit: Duration,
        data: impl Fn(&Request) -> Option<Bytes>,
        mut done: impl FnMut() -> bool,
    ) -> (bool, Vec<Request>) {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if done() {
                return (true, seen);
            }
            match self.recv(crate::POLL_EVERY) {
                Ok(Message::Request(r)) => {
                    let resp = match data(&r) {
                        Some(d) => Response {
                            id: r.id,
                            data: d,
                            code: ErrorCode::NoError,
                        },
                        None => Response {
                            id: r.id,
                            data: Bytes::new(),
                            code: ErrorCode::NoSuchFile,
                        },
                    };
                    seen.push(r);
                    self.send(&Message::Response(resp));
                }
                Ok(_) | Err(false) => {}
                Err(true) => return (done(), seen),
            }
        }
        (done(), seen)
    }
}

/// A file entry of `data` in one block (at most one block long), at
/// version `{short: counter}`.
pub fn file_entry(
    name: &str,
    data: &[u8],
    short: proto::ShortId,
    counter: u64,
    sequence: i64,
) -> proto::message::FileInfo {
    use sha2::{Digest, Sha256};
    let mut f = proto::message::FileInfo::new(
        proto::Name::parse(name).expect("name"),
        proto::message::FileKind::File,
    );
    f.size = data.len() as u64;
    f.permissions = 0o644;
    f.modified_s = 1_700_000_000;
    f.modified_by = short;
    f.sequence = sequence;
    let mut v = proto::Vector::new();
    for _ in 0..counter {
        v = v.updated(short, 0);
    }
    f.version = v;
    f.blocks = vec![proto::message::BlockInfo {
        offset: 0,
        size: data.len() as u32,
        hash: Sha256::digest(data).into(),
        weak_hash: 0,
    }];
    f
}
