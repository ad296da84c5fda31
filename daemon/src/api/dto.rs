//! The JSON shapes of the local API, shared by the server and the CLI.
//! Scripts depend on these names: add fields freely, rename none.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::model::doctor::{Diagnosis, Finding};
pub use crate::model::verify::Verified;

/// `GET /rest/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// This device's ID.
    pub device_id: String,
    /// This device's name.
    pub name: String,
    /// ferrosync's version.
    pub version: String,
    /// `transport.prefer` in force.
    pub transport_prefer: String,
    /// Where this device listens (ports resolved): what another device
    /// can be given as this one's address.
    #[serde(default)]
    pub listening: Vec<String>,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StunStatus {
    /// The servers asked.
    pub servers: Vec<String>,
    /// Our QUIC port as they see it (announced as `quic://…`).
    pub external: Option<String>,
    /// What went wrong last.
    pub error: Option<String>,
}

/// One configured relay entry in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    /// The devices it is shared with.
    #[serde(default)]
    pub devices: Vec<String>,
    /// What it keeps of replaced and deleted files (`trashcan:30`, …).
    #[serde(default)]
    pub versioning: String,
    /// Whether it is paused in the configuration.
    #[serde(default)]
    pub paused: bool,
    /// Conflicts met pulling since the daemon started.
    #[serde(default)]
    pub conflicts: u64,
}

/// One problem of a pull pass.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    /// Its configured addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Bytes received from it since the daemon started.
    #[serde(default)]
    pub in_bytes_total: u64,
    /// Bytes sent to it since the daemon started.
    #[serde(default)]
    pub out_bytes_total: u64,
    /// Bytes per second received, over the last second or more.
    #[serde(default)]
    pub in_rate: f64,
    /// Bytes per second sent.
    #[serde(default)]
    pub out_rate: f64,
    /// How much of the folders shared with it it has, in percent of
    /// their global bytes (from its index as we have it).
    #[serde(default)]
    pub completion: f64,
    /// When the session started (Unix seconds), if connected.
    #[serde(default)]
    pub connected_since: Option<u64>,
}

/// `POST /rest/folders/{id}/rescan`: the scan to wait for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct RescanTicket {
    /// The folder's `scans_completed` once that scan is done.
    pub scan: u64,
}

/// One kept version of a file (`GET /rest/folders/{id}/versions`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Restored {
    /// The version restored.
    pub version: Version,
    /// The folder's `scans_completed` once that scan is done.
    pub scan: u64,
}

/// `POST /rest/folders/{id}/override|revert`: how many names it changed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Changed {
    /// Names whose entries were rewritten.
    pub changed: usize,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

/// `GET /rest/folders/{id}/entries`: this device's index entries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pending {
    /// Unknown devices that connected.
    pub devices: Vec<PendingDevice>,
    /// Folders offered to us and not shared.
    #[serde(default)]
    pub folders: Vec<PendingFolder>,
}

/// One folder offered by a configured device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reloaded {
    /// Anything the user should know (e.g. what needs a restart).
    pub notes: Vec<String>,
}

/// `GET /rest/auth`: whether this client is logged in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthState {
    /// A GUI password is set (the empty password does not log in).
    pub password_required: bool,
    /// The request carries a live session cookie (or the API key).
    pub logged_in: bool,
    /// The session's CSRF token, when logged in by cookie.
    pub csrf: Option<String>,
}

/// `POST /rest/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Login {
    /// The GUI password ("" when none is set).
    pub password: String,
}

/// `POST /rest/login`: the token to send as `X-CSRF-Token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoggedIn {
    /// Sent back on every request that changes something.
    pub csrf: String,
}

/// `PUT /rest/gui/password`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewPassword {
    /// The new GUI password (not empty).
    pub password: String,
}

/// `GET /rest/id`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceIdAnswer {
    /// This device's ID.
    pub id: String,
}

/// `PUT /rest/config/{key}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigValue {
    /// The new value, as `ferrosync config set` takes it.
    pub value: String,
}

/// A configured device (`GET /rest/devices`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceConfig {
    /// Its ID.
    pub id: String,
    /// Its name here.
    pub name: String,
    /// Where it is dialled (`dynamic`: found by discovery).
    pub addresses: Vec<String>,
}

/// `POST /rest/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewDevice {
    /// Its ID.
    pub id: String,
    /// A name for it.
    #[serde(default)]
    pub name: Option<String>,
    /// Where to reach it [default: dynamic].
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A configured folder (`GET /rest/folders`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FolderConfig {
    /// Its ID.
    pub id: String,
    /// Its root.
    pub path: String,
    /// `sendreceive`, `sendonly` or `receiveonly`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The devices it is shared with.
    pub devices: Vec<String>,
    /// What it keeps of replaced and deleted files.
    pub versioning: String,
    /// Paused.
    pub paused: bool,
}

/// `POST /rest/folders`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewFolder {
    /// The ID peers know it by.
    pub id: String,
    /// Its root: an existing directory, unless `create`.
    pub path: String,
    /// Create the directory if missing.
    #[serde(default)]
    pub create: bool,
    /// `sendreceive` (default), `sendonly` or `receiveonly`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Devices to share it with.
    #[serde(default)]
    pub devices: Vec<String>,
    /// `none`, `trashcan[:DAYS]`, `simple[:KEEP]`, `staggered[:MAXAGE]`.
    #[serde(default)]
    pub versioning: Option<String>,
}

/// `PATCH /rest/folders/{id}`: the settings to change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FolderPatch {
    /// New versioning.
    #[serde(default)]
    pub versioning: Option<String>,
    /// New type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `POST /rest/folders/{id}/share` and the folder-offer calls.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceRef {
    /// The device.
    pub device: String,
}

/// `POST /rest/pending/devices/{id}/accept`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AcceptDevice {
    /// A name for it [default: the name it gave].
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /rest/pending/folders/{id}/accept`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcceptFolder {
    /// The device offering it.
    pub device: String,
    /// Where to keep it, when it is not configured here yet (created if
    /// missing).
    #[serde(default)]
    pub path: Option<String>,
}

/// An item this device needs (`GET /rest/folders/{id}/need`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NeedItem {
    /// Folder-relative name.
    pub name: String,
    /// `file`, `directory` or `symlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes of the version needed.
    pub size: u64,
    /// Its modification time (Unix seconds).
    pub modified: i64,
    /// The needed version deletes it.
    pub deleted: bool,
    /// Connected or not, the devices that have that version.
    pub from: Vec<String>,
}

/// A conflict copy and the file it is a copy of
/// (`GET /rest/folders/{id}/conflicts`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Conflict {
    /// The conflict copy's name.
    pub conflict: String,
    /// The name it conflicts with.
    pub original: String,
    /// The short ID of the device whose version the copy keeps.
    pub device: String,
    /// The copy's size.
    pub conflict_size: u64,
    /// The copy's modification time (Unix seconds).
    pub conflict_modified: i64,
    /// Whether the original is there.
    pub original_exists: bool,
    /// The original's size.
    pub original_size: Option<u64>,
    /// The original's modification time.
    pub original_modified: Option<i64>,
}

/// `POST /rest/folders/{id}/conflicts/resolve`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resolve {
    /// The conflict copy's name.
    pub conflict: String,
    /// `original` (the copy goes), `conflict` (it replaces the original)
    /// or `both` (it is renamed to a plain name and stays).
    pub keep: String,
}

/// `GET /rest/folders/{id}/ignores`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IgnoreFile {
    /// `.stignore` as it is.
    pub text: String,
    /// Its pattern lines (comments and blank lines left out).
    pub patterns: Vec<String>,
}

/// `PUT /rest/folders/{id}/ignores`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IgnoreText {
    /// The new `.stignore`.
    pub text: String,
}
