//! The JSON shapes of the local API, shared by the server and the CLI.
//! Scripts depend on these names: add fields freely, rename none.

use serde::{Deserialize, Serialize};

pub use crate::model::doctor::{Diagnosis, Finding};

/// `GET /rest/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// This device's ID.
    pub device_id: String,
    /// This device's name.
    pub name: String,
    /// ferrosync's version.
    pub version: String,
    /// `transport.prefer` in force.
    pub transport_prefer: String,
    /// Every configured folder.
    pub folders: Vec<FolderStatus>,
    /// Every configured device.
    pub devices: Vec<DeviceStatus>,
    /// Every discovery source and whether it works.
    pub discovery: Vec<DiscoveryStatus>,
    /// Every configured relay entry and whether we are joined.
    #[serde(default)]
    pub relays: Vec<RelayStatus>,
    /// Port mapping on the router: the external addresses found, and how.
    #[serde(default)]
    pub nat: NatStatus,
    /// What STUN says our QUIC port is behind a NAT.
    #[serde(default)]
    pub stun: StunStatus,
}

/// Port mapping in [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NatStatus {
    /// `nat` in force.
    pub enabled: bool,
    /// The router found, and how we speak to it (`UPnP IGD at …` or
    /// `NAT-PMP at …`).
    pub gateway: Option<String>,
    /// The mapped addresses (announced).
    pub external: Vec<String>,
    /// What went wrong last.
    pub error: Option<String>,
}

/// STUN in [`Status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StunStatus {
    /// The servers asked.
    pub servers: Vec<String>,
    /// Our QUIC port as they see it (announced as `quic://…`).
    pub external: Option<String>,
    /// What went wrong last.
    pub error: Option<String>,
}

/// One configured relay entry in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayStatus {
    /// As configured: `relay://…` or a `dynamic+https://…` pool.
    pub entry: String,
    /// The relay joined or last tried (for a pool, the one it picked).
    pub relay: Option<String>,
    /// Whether we are joined to it now (peers can reach us through it).
    pub joined: bool,
    /// Its measured connect time in milliseconds (pool entries).
    pub latency_ms: Option<u64>,
    /// What went wrong last.
    pub error: Option<String>,
}

/// One discovery source in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoveryStatus {
    /// `global` or `lan`.
    pub source: String,
    /// The server's URL (global discovery).
    pub server: Option<String>,
    /// Whether its last attempt worked.
    pub ok: bool,
    /// What went wrong last, if it failed.
    pub error: Option<String>,
}

/// One folder in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderStatus {
    /// Folder ID.
    pub id: String,
    /// Root path.
    pub path: String,
    /// `send-receive`, `send-only` or `receive-only`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `idle`, `scanning`, `syncing`, `error` or `paused`.
    pub state: String,
    /// Why the folder is in `error`.
    pub error: Option<String>,
    /// What the delete guard holds and how to let it go on: a scan's
    /// deletions (the folder is `paused`), or a remote update's (the rest
    /// keeps syncing).
    pub hold: Option<String>,
    /// Remote deletions of our files held by the delete guard.
    pub deletes_held: u64,
    /// Regular files here.
    pub local_files: u64,
    /// Their bytes.
    pub local_bytes: u64,
    /// Directories here.
    pub local_directories: u64,
    /// Symlinks here.
    pub local_symlinks: u64,
    /// Tombstones here.
    pub local_deleted: u64,
    /// Regular files in the global state.
    pub global_files: u64,
    /// Their bytes.
    pub global_bytes: u64,
    /// Directories in the global state.
    pub global_directories: u64,
    /// Entries this device needs.
    pub need_files: u64,
    /// Their bytes.
    pub need_bytes: u64,
    /// This device's highest sequence in the folder.
    pub sequence: i64,
    /// For each device sharing the folder: the highest sequence of its
    /// index that we hold.
    pub remote_sequences: std::collections::BTreeMap<String, i64>,
    /// Per-file problems of the last scan.
    pub errors: Vec<String>,
    /// What the last pull pass could not do (why a file is not synced).
    #[serde(default)]
    pub pull_errors: Vec<PullError>,
    /// Full scans finished since the daemon started.
    pub scans_completed: u64,
    /// Scans of the paths the watcher reported, finished since start.
    #[serde(default)]
    pub watch_scans: u64,
    /// The paths those scans covered (a directory counts once).
    #[serde(default)]
    pub watch_scanned_paths: u64,
    /// `off`, `watching`, `limited` (too few inotify watches) or `failed`.
    #[serde(default)]
    pub watch: String,
    /// Why changes are not watched, and what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_problem: Option<String>,
    /// Milliseconds the last scan took.
    pub last_scan_ms: Option<u64>,
    /// Progress of the running scan.
    pub scan_progress: Option<ScanProgress>,
    /// Bytes received from peers for this folder since the daemon started.
    pub pulled_bytes: u64,
}

/// One problem of a pull pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullError {
    /// The folder-relative name (absent: the pass itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `disk`, `index`, `ignores` or `internal`.
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// Progress of a running scan.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ScanProgress {
    /// Files to hash found so far.
    pub files_total: u64,
    /// Files hashed.
    pub files_done: u64,
    /// Bytes to hash found so far.
    pub bytes_total: u64,
    /// Bytes hashed.
    pub bytes_done: u64,
}

/// One device in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Device ID.
    pub id: String,
    /// Our name for it.
    pub name: String,
    /// Whether a session is up.
    pub connected: bool,
    /// The peer's address when connected.
    pub address: Option<String>,
    /// `quic`, `tcp` or `relay` when connected.
    pub transport: Option<String>,
    /// The relay's URI, when relayed.
    #[serde(default)]
    pub relay: Option<String>,
    /// Where the address in use came from when connected: `static`,
    /// `lan` or `global` when we dialled it, `incoming` when it dialled us.
    pub source: Option<String>,
}

/// `POST /rest/folders/{id}/rescan`: the scan to wait for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RescanTicket {
    /// The folder's `scans_completed` once that scan is done.
    pub scan: u64,
}

/// One kept version of a file (`GET /rest/folders/{id}/versions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    /// The folder-relative name of the file it is a copy of.
    pub name: String,
    /// Its own folder-relative name, under `.stversions/`.
    pub stored: String,
    /// When it was kept, in seconds since the Unix epoch.
    pub at: i64,
    /// The same, in local time (`YYYY-MM-DD HH:MM:SS`).
    pub at_local: String,
    /// Its size in bytes.
    pub size: u64,
}

/// `POST /rest/folders/{id}/restore`: what was brought back, and the scan
/// that records it (and so sends it to the other devices).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restored {
    /// The version restored.
    pub version: Version,
    /// The folder's `scans_completed` once that scan is done.
    pub scan: u64,
}

/// `POST /rest/folders/{id}/override|revert`: how many names it changed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Changed {
    /// Names whose entries were rewritten.
    pub changed: usize,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

/// `GET /rest/folders/{id}/entries`: this device's index entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Folder-relative name.
    pub name: String,
    /// `file`, `directory` or `symlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// A tombstone.
    pub deleted: bool,
    /// Ignored (announced invalid).
    pub invalid: bool,
    /// Permission bits.
    pub permissions: u32,
    /// This device's sequence for the entry.
    pub sequence: i64,
    /// Block size.
    pub block_size: u32,
    /// Number of blocks.
    pub block_count: usize,
    /// SHA-256 of each block, hex (with `?blocks=true` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<String>,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub symlink_target: String,
}

/// `GET /rest/pending`: devices that asked to connect, and folders
/// configured devices offered that we do not share with them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Unknown devices that connected.
    pub devices: Vec<PendingDevice>,
    /// Folders offered to us and not shared.
    #[serde(default)]
    pub folders: Vec<PendingFolder>,
}

/// One folder offered by a configured device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingFolder {
    /// The folder ID.
    pub id: String,
    /// Its label on the offering device.
    pub label: String,
    /// The device that offers it.
    pub device: String,
    /// When, in seconds since the Unix epoch.
    pub seen: u64,
}

/// One unknown device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingDevice {
    /// Its ID.
    pub id: String,
    /// The name from its Hello.
    pub name: String,
    /// Where it connected from.
    pub address: String,
    /// When, in seconds since the Unix epoch.
    pub seen: u64,
}

/// `POST /rest/config/reload`: the configuration file was applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reloaded {
    /// Anything the user should know (e.g. what needs a restart).
    pub notes: Vec<String>,
}
