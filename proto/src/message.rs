//! BEP messages as the rest of ferrosync sees them: validated domain types.
//!
//! A value of these types has passed every per-message check a receiver must
//! make (canonical names, 32-byte hashes and device IDs, block lists that
//! fit the file), so no later code re-validates or trusts raw wire data.
//! Conversions to and from [`crate::wire`] live in `convert.rs`.

use bytes::Bytes;

use crate::{DeviceId, Name, ShortId, Vector};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Any message that follows the Hello.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The folders shared with the peer and what each side has of them.
    ClusterConfig(ClusterConfig),
    /// A full index of one folder: replaces everything known from the sender.
    Index(Index),
    /// Changes to a folder's index since the last Index or IndexUpdate.
    IndexUpdate(Index),
    /// A request for one block.
    Request(Request),
    /// The answer to a Request.
    Response(Response),
    /// Which blocks of in-progress downloads the sender already has.
    DownloadProgress(DownloadProgress),
    /// Keep-alive.
    Ping,
    /// The sender is closing the connection.
    Close(Close),
}

/// The first message on a connection, before any frame (unauthenticated
/// metadata: shown to the user, never trusted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// The sender's name for itself (Syncthing sends it only to known devices).
    pub device_name: String,
    /// The implementation, e.g. `syncthing` or `ferrosync`.
    pub client_name: String,
    /// Its version.
    pub client_version: String,
    /// Parallel connections the sender wants (1.25+; 0 means 1).
    pub num_connections: i32,
    /// Sender's clock in nanoseconds (1.25+).
    pub timestamp: i64,
}

/// Per-device compression preference, as carried in ClusterConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Compress everything but block data (the default).
    #[default]
    Metadata,
    /// Compress nothing.
    Never,
    /// Compress everything.
    Always,
}

/// The folders the sender shares with the receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Shared folders.
    pub folders: Vec<Folder>,
    /// An extra connection's config, carrying no folder state (1.25+).
    pub secondary: bool,
}

/// One shared folder in a ClusterConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folder {
    /// The folder ID (never empty).
    pub id: String,
    /// A human label.
    pub label: String,
    /// The sender's copy is send-only.
    pub read_only: bool,
    /// The sender ignores permissions.
    pub ignore_permissions: bool,
    /// The sender ignores deletes.
    pub ignore_delete: bool,
    /// The sender neither wants nor sends DownloadProgress.
    pub disable_temp_indexes: bool,
    /// The sender's folder is paused.
    pub paused: bool,
    /// Every device sharing it, including sender and receiver.
    pub devices: Vec<FolderDevice>,
}

/// One device sharing a folder, as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderDevice {
    /// The device.
    pub id: DeviceId,
    /// The sender's name for it.
    pub name: String,
    /// The sender's addresses for it.
    pub addresses: Vec<String>,
    /// The sender's compression setting for it.
    pub compression: Compression,
    /// Expected certificate CN, usually empty.
    pub cert_name: String,
    /// Highest sequence the sender has of this device's index.
    pub max_sequence: i64,
    /// Whether the sender treats it as an introducer.
    pub introducer: bool,
    /// Index ID the sender has for this device's index (0 = none).
    pub index_id: u64,
    /// Introducer option.
    pub skip_introduction_removals: bool,
    /// Untrusted-device password token (encrypted folders).
    pub encryption_password_token: Vec<u8>,
}

/// An Index or IndexUpdate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// The folder ID.
    pub folder: String,
    /// Entries in increasing sequence order.
    pub files: Vec<FileInfo>,
    /// Highest sequence in this batch (1.28+; 0 = not sent).
    pub last_sequence: i64,
    /// Highest sequence of the previous batch (1.28+ IndexUpdate; 0 = not sent).
    pub prev_sequence: i64,
}

/// What kind of entry a FileInfo describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileKind {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Directory,
    /// A symbolic link (wire types 2, 3 and 4).
    Symlink,
}

/// One entry of a folder's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Canonical folder-relative name.
    pub name: Name,
    /// File, directory or symlink.
    pub kind: FileKind,
    /// Size in bytes (0 for directories, symlinks and deleted entries).
    pub size: u64,
    /// Permission bits (`mode & 0o777`).
    pub permissions: u32,
    /// Modification time, Unix seconds.
    pub modified_s: i64,
    /// Nanosecond part of the modification time.
    pub modified_ns: i32,
    /// Short ID of the device that made this version.
    pub modified_by: ShortId,
    /// A tombstone.
    pub deleted: bool,
    /// Not to be pulled (ignored, unsupported, or a receive-only local change).
    pub invalid: bool,
    /// Permission bits are meaningless.
    pub no_permissions: bool,
    /// Version vector.
    pub version: Vector,
    /// The sender's local sequence for this entry.
    pub sequence: i64,
    /// Block size (never 0: a 0 on the wire means 128 KiB).
    pub block_size: u32,
    /// Blocks in order, contiguous from offset 0 (files only).
    pub blocks: Vec<BlockInfo>,
    /// Symlink target, raw bytes.
    pub symlink_target: Vec<u8>,
    /// SHA-256 over the block list (a shortcut for comparing block lists).
    pub blocks_hash: Vec<u8>,
}

/// One block of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockInfo {
    /// Offset in the file.
    pub offset: u64,
    /// Length (the file's block size except for the last block).
    pub size: u32,
    /// SHA-256 of the block.
    pub hash: Hash,
    /// Adler-32 of the block (0 = absent; Syncthing 2.x sends none).
    pub weak_hash: u32,
}

/// A request for one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Unique among the sender's outstanding requests.
    pub id: i32,
    /// Folder ID.
    pub folder: String,
    /// File name.
    pub name: Name,
    /// Offset of the block.
    pub offset: u64,
    /// Length wanted (at most the largest block size).
    pub size: u32,
    /// Expected SHA-256, if the requester knows it.
    pub hash: Option<Hash>,
    /// Read from the temp file of an in-progress download.
    pub from_temporary: bool,
    /// Expected Adler-32 (0 = absent).
    pub weak_hash: u32,
    /// Index of the block in the file.
    pub block_no: i32,
}

/// Outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorCode {
    /// Data follows.
    #[default]
    NoError,
    /// Refused or failed (also used for unknown codes).
    Generic,
    /// No such file, or it changed.
    NoSuchFile,
    /// The file is invalid (ignored or internal).
    InvalidFile,
}

/// The answer to a Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's ID.
    pub id: i32,
    /// Block data (only with [`ErrorCode::NoError`]).
    pub data: Bytes,
    /// Outcome.
    pub code: ErrorCode,
}

/// Progress of downloads in one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Folder ID.
    pub folder: String,
    /// Per-file updates.
    pub updates: Vec<FileDownloadProgressUpdate>,
}

/// Whether a progress update adds blocks or forgets the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUpdateType {
    /// These blocks are now available.
    Append,
    /// The download is over; forget its progress.
    Forget,
}

/// Progress of one file's download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDownloadProgressUpdate {
    /// Append or forget.
    pub update_type: ProgressUpdateType,
    /// The file.
    pub name: Name,
    /// The version being downloaded.
    pub version: Vector,
    /// Block numbers now present in the temp file.
    pub block_indexes: Vec<i32>,
    /// Block size of that version.
    pub block_size: i32,
}

/// Why the sender closes the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Close {
    /// Free text, logged by the receiver.
    pub reason: String,
}

impl Message {
    /// The wire type of this message.
    pub fn message_type(&self) -> crate::wire::MessageType {
        use crate::wire::MessageType as T;
        match self {
            Self::ClusterConfig(_) => T::ClusterConfig,
            Self::Index(_) => T::Index,
            Self::IndexUpdate(_) => T::IndexUpdate,
            Self::Request(_) => T::Request,
            Self::Response(_) => T::Response,
            Self::DownloadProgress(_) => T::DownloadProgress,
            Self::Ping => T::Ping,
            Self::Close(_) => T::Close,
        }
    }
}

impl FolderDevice {
    /// An entry for `id` with every other field empty.
    pub fn new(id: DeviceId) -> Self {
        Self {
            id,
            name: String::new(),
            addresses: Vec::new(),
            compression: Compression::Metadata,
            cert_name: String::new(),
            max_sequence: 0,
            introducer: false,
            index_id: 0,
            skip_introduction_removals: false,
            encryption_password_token: Vec::new(),
        }
    }
}

impl FileInfo {
    /// An entry named `name` of the given kind with every other field empty
    /// (and the smallest block size).
    pub fn new(name: Name, kind: FileKind) -> Self {
        Self {
            name,
            kind,
            size: 0,
            permissions: 0,
            modified_s: 0,
            modified_ns: 0,
            modified_by: ShortId(0),
            deleted: false,
            invalid: false,
            no_permissions: false,
            version: Vector::new(),
            sequence: 0,
            block_size: crate::block_size::MIN_BLOCK_SIZE,
            blocks: Vec::new(),
            symlink_target: Vec::new(),
            blocks_hash: Vec::new(),
        }
    }
}
