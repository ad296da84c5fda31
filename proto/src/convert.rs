//! Conversions between the prost wire types and the domain types: the one
//! place where received data is checked ("parse, don't validate").

use crate::block_size::{is_valid_block_size, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::message::*;
use crate::version::Counter;
use crate::{wire, DeviceId, Name, ShortId, Vector};

/// Why a received message was refused. Any of these closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The protobuf did not decode.
    #[error("undecodable {kind}: {source}")]
    Decode {
        /// Which message.
        kind: &'static str,
        /// prost's reason.
        source: prost::DecodeError,
    },
    /// It decoded but breaks a rule of the protocol.
    #[error("invalid {kind}: {reason}")]
    Invalid {
        /// Which message.
        kind: &'static str,
        /// What is wrong, naming the file or field.
        reason: String,
    },
}

fn invalid(kind: &'static str, reason: impl Into<String>) -> MessageError {
    MessageError::Invalid {
        kind,
        reason: reason.into(),
    }
}

fn hash32(kind: &'static str, what: &str, b: &[u8]) -> Result<Hash, MessageError> {
    Hash::try_from(b).map_err(|_| invalid(kind, format!("{what}: hash of {} bytes", b.len())))
}

// ---- Hello -----------------------------------------------------------------

impl From<wire::Hello> for Hello {
    fn from(w: wire::Hello) -> Self {
        Self {
            device_name: w.device_name,
            client_name: w.client_name,
            client_version: w.client_version,
            num_connections: w.num_connections,
            timestamp: w.timestamp,
        }
    }
}

impl From<&Hello> for wire::Hello {
    fn from(h: &Hello) -> Self {
        Self {
            device_name: h.device_name.clone(),
            client_name: h.client_name.clone(),
            client_version: h.client_version.clone(),
            num_connections: h.num_connections,
            timestamp: h.timestamp,
        }
    }
}

// ---- ClusterConfig ---------------------------------------------------------

fn compression_from_wire(c: i32) -> Compression {
    match wire::Compression::try_from(c) {
        Ok(wire::Compression::Never) => Compression::Never,
        Ok(wire::Compression::Always) => Compression::Always,
        _ => Compression::Metadata,
    }
}

fn compression_to_wire(c: Compression) -> i32 {
    match c {
        Compression::Metadata => wire::Compression::Metadata,
        Compression::Never => wire::Compression::Never,
        Compression::Always => wire::Compression::Always,
    }
    .into()
}

impl TryFrom<wire::ClusterConfig> for ClusterConfig {
    type Error = MessageError;
    fn try_from(w: wire::ClusterConfig) -> Result<Self, MessageError> {
        const K: &str = "ClusterConfig";
        let mut folders = Vec::with_capacity(w.folders.len());
        for f in w.folders {
            if f.id.is_empty() {
                return Err(invalid(K, "folder with empty ID"));
            }
            let mut devices = Vec::with_capacity(f.devices.len());
            for d in f.devices {
                let id = DeviceId::try_from(d.id.as_slice())
                    .map_err(|e| invalid(K, format!("folder {:?}: {e}", f.id)))?;
                devices.push(FolderDevice {
                    id,
                    name: d.name,
                    addresses: d.addresses,
                    compression: compression_from_wire(d.compression),
                    cert_name: d.cert_name,
                    max_sequence: d.max_sequence,
                    introducer: d.introducer,
                    index_id: d.index_id,
                    skip_introduction_removals: d.skip_introduction_removals,
                    encryption_password_token: d.encryption_password_token,
                });
            }
            folders.push(Folder {
                id: f.id,
                label: f.label,
                read_only: f.read_only,
                ignore_permissions: f.ignore_permissions,
                ignore_delete: f.ignore_delete,
                disable_temp_indexes: f.disable_temp_indexes,
                paused: f.paused,
                devices,
            });
        }
        Ok(Self {
            folders,
            secondary: w.secondary,
        })
    }
}

impl From<&ClusterConfig> for wire::ClusterConfig {
    fn from(c: &ClusterConfig) -> Self {
        Self {
            folders: c
                .folders
                .iter()
                .map(|f| wire::Folder {
                    id: f.id.clone(),
                    label: f.label.clone(),
                    read_only: f.read_only,
                    ignore_permissions: f.ignore_permissions,
                    ignore_delete: f.ignore_delete,
                    disable_temp_indexes: f.disable_temp_indexes,
                    paused: f.paused,
                    devices: f
                        .devices
                        .iter()
                        .map(|d| wire::Device {
                            id: d.id.as_bytes().to_vec(),
                            name: d.name.clone(),
                            addresses: d.addresses.clone(),
                            compression: compression_to_wire(d.compression),
                            cert_name: d.cert_name.clone(),
                            max_sequence: d.max_sequence,
                            introducer: d.introducer,
                            index_id: d.index_id,
                            skip_introduction_removals: d.skip_introduction_removals,
                            encryption_password_token: d.encryption_password_token.clone(),
                        })
                        .collect(),
                })
                .collect(),
            secondary: c.secondary,
        }
    }
}

// ---- Index -----------------------------------------------------------------

/// Counters a version vector may have: one per device that ever changed
/// the file, so far more than any cluster has. Syncthing sets no limit; a
/// peer could otherwise make every entry it sends cost megabytes to keep
/// and to pass on to every other device.
pub const MAX_COUNTERS: usize = 4096;

fn vector_from_wire(kind: &'static str, v: Option<wire::Vector>) -> Result<Vector, MessageError> {
    let counters = v.map(|v| v.counters).unwrap_or_default();
    if counters.len() > MAX_COUNTERS {
        return Err(invalid(
            kind,
            format!(
                "version vector of {} counters (at most {MAX_COUNTERS})",
                counters.len()
            ),
        ));
    }
    Ok(Vector::from_counters(
        counters
            .into_iter()
            .map(|c| Counter {
                id: ShortId(c.id),
                value: c.value,
            })
            .collect(),
    ))
}

fn vector_to_wire(v: &Vector) -> Option<wire::Vector> {
    // Syncthing omits an empty vector entirely.
    (!v.counters().is_empty()).then(|| wire::Vector {
        counters: v
            .counters()
            .iter()
            .map(|c| wire::Counter {
                id: c.id.0,
                value: c.value,
            })
            .collect(),
    })
}

impl TryFrom<wire::FileInfo> for FileInfo {
    type Error = MessageError;
    fn try_from(w: wire::FileInfo) -> Result<Self, MessageError> {
        const K: &str = "FileInfo";
        let name = Name::parse(w.name).map_err(|e| invalid(K, e.to_string()))?;
        let bad = |reason: String| invalid(K, format!("{name:?}: {reason}"));
        let kind = match wire::FileInfoType::try_from(w.r#type) {
            Ok(wire::FileInfoType::File) => FileKind::File,
            Ok(wire::FileInfoType::Directory) => FileKind::Directory,
            Ok(
                wire::FileInfoType::Symlink
                | wire::FileInfoType::SymlinkFile
                | wire::FileInfoType::SymlinkDirectory,
            ) => FileKind::Symlink,
            Err(_) => return Err(bad(format!("unknown type {}", w.r#type))),
        };
        let size = u64::try_from(w.size).map_err(|_| bad(format!("negative size {}", w.size)))?;
        // Deleted entries, directories and symlinks carry whatever block
        // size their sender had; only a file's blocks are cut by it. A
        // directory's or symlink's is not kept (we send none for them), so
        // an entry reads back from the index as it was received.
        let block_size = match w.block_size {
            _ if kind != FileKind::File => MIN_BLOCK_SIZE,
            0 => MIN_BLOCK_SIZE,
            b if b > 0 && b as u32 <= MAX_BLOCK_SIZE => b as u32,
            b => return Err(bad(format!("block size {b} out of range"))),
        };
        if !w.blocks.is_empty() && !is_valid_block_size(block_size) {
            return Err(bad(format!("block size {block_size} is not a valid one")));
        }
        if !(0..1_000_000_000).contains(&w.modified_ns) {
            return Err(bad(format!("modified_ns {} out of range", w.modified_ns)));
        }
        if !w.blocks.is_empty() && (w.deleted || kind != FileKind::File) {
            return Err(bad(
                "a deleted entry, directory or symlink has blocks".into()
            ));
        }
        if kind == FileKind::File && !w.deleted && !w.invalid && w.blocks.is_empty() {
            return Err(bad("file with empty block list".into()));
        }
        // BEP's rule: every block but the last is exactly the block size
        // (the last is at most that). It bounds the block list by the file
        // size, and keeps every block but the last aligned for direct I/O.
        let count = w.blocks.len();
        let mut blocks = Vec::with_capacity(count);
        let mut next_offset = 0u64;
        for (i, b) in w.blocks.into_iter().enumerate() {
            let last = i + 1 == count;
            let bsize = u32::try_from(b.size)
                .ok()
                .filter(|&s| s == block_size || (last && s < block_size))
                .ok_or_else(|| {
                    bad(format!(
                        "block {i} of {count} has size {}, block size {block_size}",
                        b.size
                    ))
                })?;
            if b.offset < 0 || b.offset as u64 != next_offset {
                return Err(bad(format!(
                    "block {i} at offset {}, expected {next_offset}",
                    b.offset
                )));
            }
            next_offset += u64::from(bsize);
            blocks.push(BlockInfo {
                offset: b.offset as u64,
                size: bsize,
                hash: hash32(K, &name.to_string(), &b.hash)?,
                weak_hash: b.weak_hash,
            });
        }
        if !blocks.is_empty() && !w.invalid && next_offset != size {
            return Err(bad(format!("blocks cover {next_offset} bytes of {size}")));
        }
        let version = vector_from_wire(K, w.version).map_err(|_| {
            bad(format!(
                "version vector of more than {MAX_COUNTERS} counters"
            ))
        })?;
        Ok(Self {
            name,
            kind,
            size,
            permissions: w.permissions,
            modified_s: w.modified_s,
            modified_ns: w.modified_ns,
            modified_by: ShortId(w.modified_by),
            deleted: w.deleted,
            invalid: w.invalid,
            no_permissions: w.no_permissions,
            version,
            sequence: w.sequence,
            block_size,
            blocks,
            symlink_target: w.symlink_target,
            blocks_hash: w.blocks_hash,
        })
    }
}

impl From<&FileInfo> for wire::FileInfo {
    fn from(f: &FileInfo) -> Self {
        let r#type = match f.kind {
            FileKind::File => wire::FileInfoType::File,
            FileKind::Directory => wire::FileInfoType::Directory,
            FileKind::Symlink => wire::FileInfoType::Symlink,
        };
        Self {
            name: f.name.to_string(),
            r#type: r#type.into(),
            size: i64::try_from(f.size).unwrap_or(i64::MAX),
            permissions: f.permissions,
            modified_s: f.modified_s,
            deleted: f.deleted,
            invalid: f.invalid,
            no_permissions: f.no_permissions,
            version: vector_to_wire(&f.version),
            sequence: f.sequence,
            modified_ns: f.modified_ns,
            modified_by: f.modified_by.0,
            // Syncthing sends no block size for directories and symlinks.
            block_size: if f.kind == FileKind::File {
                f.block_size as i32
            } else {
                0
            },
            blocks: f
                .blocks
                .iter()
                .map(|b| wire::BlockInfo {
                    offset: b.offset as i64,
                    size: b.size as i32,
                    hash: b.hash.to_vec(),
                    weak_hash: b.weak_hash,
                })
                .collect(),
            symlink_target: f.symlink_target.clone(),
            blocks_hash: f.blocks_hash.clone(),
            encrypted: Vec::new(),
            previous_blocks_hash: Vec::new(),
        }
    }
}

impl TryFrom<wire::Index> for Index {
    type Error = MessageError;
    fn try_from(w: wire::Index) -> Result<Self, MessageError> {
        if w.folder.is_empty() {
            return Err(invalid("Index", "empty folder ID"));
        }
        Ok(Self {
            folder: w.folder,
            files: w
                .files
                .into_iter()
                .map(FileInfo::try_from)
                .collect::<Result<_, _>>()?,
            last_sequence: w.last_sequence,
            prev_sequence: w.prev_sequence,
        })
    }
}

impl From<&Index> for wire::Index {
    fn from(i: &Index) -> Self {
        Self {
            folder: i.folder.clone(),
            files: i.files.iter().map(Into::into).collect(),
            last_sequence: i.last_sequence,
            prev_sequence: i.prev_sequence,
        }
    }
}

// ---- Request / Response ----------------------------------------------------

impl TryFrom<wire::Request> for Request {
    type Error = MessageError;
    fn try_from(w: wire::Request) -> Result<Self, MessageError> {
        const K: &str = "Request";
        let name = Name::parse(w.name).map_err(|e| invalid(K, e.to_string()))?;
        let offset = u64::try_from(w.offset)
            .map_err(|_| invalid(K, format!("negative offset {}", w.offset)))?;
        let size = u32::try_from(w.size)
            .ok()
            .filter(|&s| s <= MAX_BLOCK_SIZE)
            .ok_or_else(|| invalid(K, format!("size {} out of range", w.size)))?;
        let hash = match w.hash.len() {
            0 => None,
            _ => Some(hash32(K, name.as_str(), &w.hash)?),
        };
        Ok(Self {
            id: w.id,
            folder: w.folder,
            name,
            offset,
            size,
            hash,
            from_temporary: w.from_temporary,
            weak_hash: w.weak_hash,
            block_no: w.block_no,
        })
    }
}

impl From<&Request> for wire::Request {
    fn from(r: &Request) -> Self {
        Self {
            id: r.id,
            folder: r.folder.clone(),
            name: r.name.to_string(),
            offset: r.offset as i64,
            size: r.size as i32,
            hash: r.hash.map(|h| h.to_vec()).unwrap_or_default(),
            from_temporary: r.from_temporary,
            weak_hash: r.weak_hash,
            block_no: r.block_no,
        }
    }
}

impl From<wire::Response> for Response {
    fn from(w: wire::Response) -> Self {
        let code = match wire::ErrorCode::try_from(w.code) {
            Ok(wire::ErrorCode::NoError) => ErrorCode::NoError,
            Ok(wire::ErrorCode::NoSuchFile) => ErrorCode::NoSuchFile,
            Ok(wire::ErrorCode::InvalidFile) => ErrorCode::InvalidFile,
            Ok(wire::ErrorCode::Generic) | Err(_) => ErrorCode::Generic,
        };
        Self {
            id: w.id,
            data: w.data,
            code,
        }
    }
}

impl From<&Response> for wire::Response {
    fn from(r: &Response) -> Self {
        let code = match r.code {
            ErrorCode::NoError => wire::ErrorCode::NoError,
            ErrorCode::Generic => wire::ErrorCode::Generic,
            ErrorCode::NoSuchFile => wire::ErrorCode::NoSuchFile,
            ErrorCode::InvalidFile => wire::ErrorCode::InvalidFile,
        };
        Self {
            id: r.id,
            data: r.data.clone(),
            code: code.into(),
        }
    }
}

// ---- DownloadProgress / Close ---------------------------------------------

impl TryFrom<wire::DownloadProgress> for DownloadProgress {
    type Error = MessageError;
    fn try_from(w: wire::DownloadProgress) -> Result<Self, MessageError> {
        const K: &str = "DownloadProgress";
        let mut updates = Vec::with_capacity(w.updates.len());
        for u in w.updates {
            let update_type = match wire::FileDownloadProgressUpdateType::try_from(u.update_type) {
                Ok(wire::FileDownloadProgressUpdateType::Append) => ProgressUpdateType::Append,
                Ok(wire::FileDownloadProgressUpdateType::Forget) => ProgressUpdateType::Forget,
                Err(_) => return Err(invalid(K, format!("update type {}", u.update_type))),
            };
            updates.push(FileDownloadProgressUpdate {
                update_type,
                name: Name::parse(u.name).map_err(|e| invalid(K, e.to_string()))?,
                version: vector_from_wire(K, u.version)?,
                block_indexes: u.block_indexes,
                block_size: u.block_size,
            });
        }
        Ok(Self {
            folder: w.folder,
            updates,
        })
    }
}

impl From<&DownloadProgress> for wire::DownloadProgress {
    fn from(d: &DownloadProgress) -> Self {
        Self {
            folder: d.folder.clone(),
            updates: d
                .updates
                .iter()
                .map(|u| wire::FileDownloadProgressUpdate {
                    update_type: match u.update_type {
                        ProgressUpdateType::Append => wire::FileDownloadProgressUpdateType::Append,
                        ProgressUpdateType::Forget => wire::FileDownloadProgressUpdateType::Forget,
                    }
                    .into(),
                    name: u.name.to_string(),
                    version: vector_to_wire(&u.version),
                    block_indexes: u.block_indexes.clone(),
                    block_size: u.block_size,
                })
                .collect(),
        }
    }
}

impl FileInfo {
    /// The entry as a BEP FileInfo protobuf (how the index stores it too).
    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&wire::FileInfo::from(self))
    }

    /// Decodes and checks a BEP FileInfo protobuf.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let w = <wire::FileInfo as prost::Message>::decode(bytes).map_err(|source| {
            MessageError::Decode {
                kind: "FileInfo",
                source,
            }
        })?;
        Self::try_from(w)
    }
}
