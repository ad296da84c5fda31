//! The configuration: this device's settings, the devices it knows and the
//! folders it shares. Stored as TOML in the home, replaced atomically.
//!
//! Mutations (`keys.rs`, `edit.rs`) are methods on [`Config`] that either
//! apply whole or return an error and change nothing; callers save after a
//! successful change. The CLI and, later, the local API share them.

mod edit;
pub mod keys;
pub mod live;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use proto::DeviceId;
use serde::{Deserialize, Serialize};

pub use keys::KEYS;

/// The configuration shipped with the binary; `init` fills in the name and
/// API key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The schema version this build writes.
pub const VERSION: u32 = 1;

/// Everything a device is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Schema version.
    pub version: u32,
    /// This device's name.
    pub name: String,
    /// Listen URLs.
    pub listen: Vec<String>,
    /// Relay URLs to join.
    pub relays: Vec<String>,
    /// Port mapping on the router.
    pub nat: bool,
    /// STUN servers (`host:port`) that tell us our QUIC port's address
    /// behind a NAT (empty: none).
    #[serde(default)]
    pub stun: Vec<String>,
    /// The local control API.
    pub api: ApiConfig,
    /// Discovery settings.
    pub discovery: DiscoveryConfig,
    /// Which transport carries a session when several connect.
    #[serde(default)]
    pub transport: TransportConfig,
    /// The most inotify watches one folder may use (0: as many as the OS
    /// allows); a folder needing more is rescanned every minute instead.
    #[serde(default)]
    pub max_watches: u64,
    /// The index database's page cache, MiB: most of the daemon's memory
    /// on a large folder. Read at start.
    #[serde(default = "default_index_cache_mib")]
    pub index_cache_mib: u64,
    /// Devices whose connection requests are refused without being
    /// listed as pending.
    #[serde(
        default,
        with = "device_id_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ignored_devices: Vec<DeviceId>,
    /// Known devices.
    #[serde(default, rename = "device", skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceConfig>,
    /// Shared folders.
    #[serde(default, rename = "folder", skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<FolderConfig>,
    /// Folder offers not listed as pending.
    #[serde(
        default,
        rename = "ignored_folder",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ignored_folders: Vec<IgnoredFolder>,
}

/// The index cache when the config does not say: see `bench-scale` in
/// `docs/benchmarks/` for what it buys.
pub const DEFAULT_INDEX_CACHE_MIB: u64 = 4;

fn default_index_cache_mib() -> u64 {
    DEFAULT_INDEX_CACHE_MIB
}

/// A folder a device offered that the user chose not to be asked about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoredFolder {
    /// The device offering it.
    #[serde(with = "device_id_text")]
    pub device: DeviceId,
    /// The folder's ID.
    pub id: String,
}

impl IgnoredFolder {
    /// Whether this is `device`'s offer of `id`.
    pub fn matches(&self, device: &DeviceId, id: &str) -> bool {
        self.device == *device && self.id == id
    }
}

/// The local control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port` to listen on (loopback by default).
    pub address: String,
    /// The secret sent as `X-API-Key`.
    pub key: String,
    /// The GUI password's argon2 hash (PHC string); empty: none, which
    /// only a loopback address allows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_hash: String,
    /// Serve `/metrics` without authentication.
    #[serde(default)]
    pub metrics_without_auth: bool,
}

/// How peers are found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// LAN discovery on or off.
    pub local: bool,
    /// Global discovery server URLs.
    pub global: Vec<String>,
}

/// Transport policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    /// The preferred transport.
    #[serde(default)]
    pub prefer: TransportPrefer,
}

/// `transport.prefer`: on a LAN, TLS over TCP moves bulk data with a third
/// of QUIC's CPU here, so `auto` prefers TCP and uses QUIC where TCP
/// cannot get through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportPrefer {
    /// TCP first, QUIC when TCP fails.
    #[default]
    Auto,
    /// TCP first.
    Tcp,
    /// QUIC first.
    Quic,
}

impl TransportPrefer {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }

    /// Rank of a transport under this policy (lower is better): the
    /// preferred direct transport, the other, then a relay (always the
    /// last resort: it adds a hop and shares the relay's bandwidth).
    pub fn rank(self, transport: &str) -> u8 {
        let preferred = if self == Self::Quic { "quic" } else { "tcp" };
        if transport == "relay" {
            2
        } else {
            u8::from(transport != preferred)
        }
    }
}

/// A device this one may talk to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Its ID.
    #[serde(with = "device_id_text")]
    pub id: DeviceId,
    /// Our name for it.
    #[serde(default)]
    pub name: String,
    /// Where to reach it: URLs, or `dynamic` for discovery.
    #[serde(default = "dynamic")]
    pub addresses: Vec<String>,
}

fn dynamic() -> Vec<String> {
    vec![proto::addr::DYNAMIC.to_string()]
}

/// A folder shared with some devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The ID peers know it by.
    pub id: String,
    /// Absolute path of its root.
    pub path: PathBuf,
    /// Which directions changes flow.
    #[serde(rename = "type", default)]
    pub kind: FolderType,
    /// Devices it is shared with.
    #[serde(default, with = "device_id_list")]
    pub devices: Vec<DeviceId>,
    /// Seconds between periodic full rescans (jittered by ±25%).
    #[serde(default = "default_rescan_interval")]
    pub rescan_interval_s: u64,
    /// Conflict copies kept per file, newest first (Syncthing's
    /// `maxConflicts`): -1 keeps all, 0 keeps none.
    #[serde(default = "default_max_conflicts")]
    pub max_conflicts: i64,
    /// Watch the folder for changes (else only rescans find them).
    #[serde(default = "yes")]
    pub watch: bool,
    /// How long a directory's changes must be quiet before they are
    /// scanned, in milliseconds.
    #[serde(default = "default_watch_settle")]
    pub watch_settle_ms: u64,
    /// Paused: neither scanned nor pulled (`folder pause|resume`).
    #[serde(default)]
    pub paused: bool,
    /// Deletions held for confirmation when one scan or one remote update
    /// would delete more than this share of the folder's files, in
    /// percent (0: never held)...
    #[serde(default = "default_delete_guard_percent")]
    pub delete_guard_percent: u8,
    /// ...and at least this many files.
    #[serde(default = "default_delete_guard_min_files")]
    pub delete_guard_min_files: u64,
    /// What is kept of files the puller replaces or deletes.
    #[serde(default)]
    pub versioning: Versioning,
    /// Pulling stops while the folder's file system has less than this
    /// share free, in percent, and resumes when space returns.
    #[serde(default = "default_min_disk_free")]
    pub min_disk_free_percent: f64,
}

fn default_min_disk_free() -> f64 {
    1.0
}

/// What is kept, in `.stversions/` (Syncthing's layout), of a file the
/// puller is about to replace or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Versioning {
    /// Nothing.
    None,
    /// The last copy of each file, at its own path, for this many days
    /// (0: kept until removed by hand).
    Trashcan {
        /// Days a copy is kept.
        days: u32,
    },
    /// The last `keep` copies of each file, named `name~YYYYMMDD-HHMMSS.ext`.
    Simple {
        /// Copies kept per file.
        keep: u32,
    },
    /// Copies named as `Simple`'s, thinned with age (one per 30 s in the
    /// first hour, per hour in the first day, per day in the first 30
    /// days, per week after) and removed after `max_age_days` (0: never).
    Staggered {
        /// Days a copy is kept at most.
        max_age_days: u32,
    },
}

impl Default for Versioning {
    /// Resilio keeps an archive by default; a replaced file is recoverable
    /// for a month unless the user chose otherwise.
    fn default() -> Self {
        Self::Trashcan { days: 30 }
    }
}

impl std::fmt::Display for Versioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Trashcan { days } => write!(f, "trashcan:{days}"),
            Self::Simple { keep } => write!(f, "simple:{keep}"),
            Self::Staggered { max_age_days } => write!(f, "staggered:{max_age_days}"),
        }
    }
}

impl std::str::FromStr for Versioning {
    type Err = String;

    /// `none`, `trashcan[:DAYS]` (30), `simple[:KEEP]` (5) or
    /// `staggered[:MAXAGE]` (365 days).
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = match s.trim().split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s.trim(), None),
        };
        let n = |default: u32| -> Result<u32, String> {
            arg.map_or(Ok(default), |a| {
                a.trim()
                    .parse()
                    .map_err(|_| format!("{a:?} in {s:?} is not a whole number"))
            })
        };
        Ok(match kind {
            "none" if arg.is_none() => Self::None,
            "trashcan" => Self::Trashcan { days: n(30)? },
            "simple" => match n(5)? {
                0 => return Err("simple versioning must keep at least 1 copy".into()),
                keep => Self::Simple { keep },
            },
            "staggered" => Self::Staggered {
                max_age_days: n(365)?,
            },
            _ => {
                return Err(format!(
                    "{s:?} is not none, trashcan[:DAYS], simple[:KEEP] or staggered[:MAXAGE]"
                ))
            }
        })
    }
}

impl TryFrom<String> for Versioning {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Versioning> for String {
    fn from(v: Versioning) -> String {
        v.to_string()
    }
}

impl FolderConfig {
    /// The mass-delete guard's threshold.
    pub fn delete_guard(&self) -> DeleteGuard {
        DeleteGuard {
            percent: self.delete_guard_percent,
            min_files: self.delete_guard_min_files,
        }
    }
}

/// When deletions are too many to let through unconfirmed: an accident
/// (a `rm -rf`, a wrong mount, a peer's) must not spread by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteGuard {
    /// More than this share of the folder's files, in percent (0: off)...
    pub percent: u8,
    /// ...and at least this many.
    pub min_files: u64,
}

impl DeleteGuard {
    /// Whether deleting `deleted` of `files` files needs confirmation.
    pub fn trips(self, deleted: u64, files: u64) -> bool {
        self.percent > 0
            && deleted >= self.min_files.max(1)
            && deleted * 100 > files * u64::from(self.percent)
    }

    /// Whether to hold `deleted` of the `files` there are (those
    /// included): they count with the
    /// `recent` deletions already carried out (a `rm -rf` reaches the
    /// scanner a directory at a time), unless `accept` was set, which
    /// this clears.
    pub fn holds(self, deleted: u64, files: u64, recent: u64, accept: &AtomicBool) -> bool {
        deleted > 0
            && self.trips(deleted + recent, files + recent)
            && !accept.swap(false, Ordering::SeqCst)
    }
}

fn default_delete_guard_percent() -> u8 {
    50
}

fn default_delete_guard_min_files() -> u64 {
    100
}

fn yes() -> bool {
    true
}

fn default_watch_settle() -> u64 {
    150
}

fn default_rescan_interval() -> u64 {
    3600
}

fn default_max_conflicts() -> i64 {
    10
}

/// Which directions changes flow in a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FolderType {
    /// Send local changes and apply remote ones.
    #[default]
    SendReceive,
    /// Send local changes; never apply remote ones.
    SendOnly,
    /// Apply remote changes; never announce local ones.
    ReceiveOnly,
}

impl FolderType {
    /// The name used in the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendReceive => "send-receive",
            Self::SendOnly => "send-only",
            Self::ReceiveOnly => "receive-only",
        }
    }
}

/// Why the configuration could not be read, changed or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No config file yet.
    #[error("no configuration at {0}: run `ferrosync --home {1} init` first")]
    Missing(String, String),
    /// A read or write failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The TOML does not parse or does not fit the schema.
    #[error("{0}: {1}")]
    Parse(String, String),
    /// Written by a newer ferrosync.
    #[error("{0}: written by a newer ferrosync (schema {1}, this build knows {VERSION})")]
    TooNew(String, u32),
    /// A key `config get|set` does not know.
    #[error("unknown key {0:?}; known keys: {keys}", keys = KEYS.join(", "))]
    UnknownKey(String),
    /// A value that does not fit its key.
    #[error("bad value for {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A change that conflicts with what is configured.
    #[error("{0}")]
    Conflict(String),
    /// Refers to a device or folder that is not configured.
    #[error("{0}")]
    NotFound(String),
}

impl Config {
    /// The embedded default configuration.
    pub fn default_config() -> Self {
        toml::from_str(DEFAULT_TOML)
            .unwrap_or_else(|e| unreachable!("embedded default.toml is valid: {e}"))
    }

    /// A fresh configuration for a new device called `name`.
    pub fn new_for(name: &str) -> Self {
        let mut c = Self::default_config();
        c.name = name.to_string();
        c.api.key = new_api_key();
        c
    }

    /// Reads the config at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let home = path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .display()
                    .to_string();
                return Err(ConfigError::Missing(shown, home));
            }
            Err(e) => return Err(ConfigError::Io(shown, e)),
        };
        Self::from_toml(&text, &shown)
    }

    /// Parses a config's text (`shown` names it in errors).
    pub fn from_toml(text: &str, shown: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse(shown.to_string(), e.to_string()))?;
        if config.version > VERSION {
            return Err(ConfigError::TooNew(shown.to_string(), config.version));
        }
        Ok(config)
    }

    /// Writes the config to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Parse(shown.clone(), e.to_string()))?;
        // The API key is a secret: owner-only.
        crate::fs::write_atomic(path, text.as_bytes(), 0o600).map_err(|e| ConfigError::Io(shown, e))
    }

    /// The configured device with this ID.
    pub fn device(&self, id: &DeviceId) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.id == *id)
    }

    /// The configured folder with this ID.
    pub fn folder(&self, id: &str) -> Option<&FolderConfig> {
        self.folders.iter().find(|f| f.id == id)
    }
}

/// The name a new device gets when none is given: the host name.
pub fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "ferrosync".to_string())
}

fn new_api_key() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

mod device_id_text {
    use proto::DeviceId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &DeviceId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("device ID {s:?}: {e}")))
    }
}

mod device_id_list {
    use proto::DeviceId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ids: &[DeviceId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ids.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| serde::de::Error::custom(format!("device ID {s:?}: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `rm -rf` scanned a directory at a time is held once the
    /// deletions together pass the share; the acceptance lets one through
    /// and is used up.
    #[test]
    fn the_delete_guard_counts_recent_deletions() {
        let g = DeleteGuard {
            percent: 50,
            min_files: 100,
        };
        let no = AtomicBool::new(false);
        // `files` counts those about to be deleted.
        assert!(!g.holds(99, 100, 0, &no), "below the minimum");
        assert!(!g.holds(200, 400, 0, &no), "half is not more than half");
        assert!(g.holds(201, 400, 0, &no));
        // 150 of 500 went, now 150 of the 350 left: 300 of 500.
        assert!(!g.holds(150, 500, 0, &no));
        assert!(g.holds(150, 350, 150, &no));
        assert!(!g.holds(0, 350, 150, &no), "nothing new to hold");
        let yes = AtomicBool::new(true);
        assert!(!g.holds(150, 350, 150, &yes));
        assert!(g.holds(150, 350, 150, &yes), "used up");
        let off = DeleteGuard { percent: 0, ..g };
        assert!(!off.holds(1000, 0, 0, &no));
    }

    #[test]
    fn default_config_is_valid_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        let mut c = Config::new_for("laptop");
        c.devices.push(DeviceConfig {
            id: "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD"
                .parse()
                .expect("id"),
            name: "other".into(),
            addresses: dynamic(),
        });
        c.save(&path).expect("save");
        assert_eq!(Config::load(&path).expect("load"), c);
        assert_eq!(c.api.key.len(), 48);
        assert_eq!(c.listen, ["tcp://0.0.0.0:22000", "quic://0.0.0.0:22000"]);
    }

    #[test]
    fn load_errors_name_the_file_and_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        let e = Config::load(&path).expect_err("missing").to_string();
        assert!(e.contains("init"), "{e}");
        std::fs::write(&path, "version = 1\nbogus = 3\n").expect("write");
        let e = Config::load(&path).expect_err("unknown field").to_string();
        assert!(e.contains("config.toml"), "{e}");
        let mut c = Config::new_for("x");
        c.version = VERSION + 1;
        c.save(&path).expect("save");
        let e = Config::load(&path).expect_err("too new").to_string();
        assert!(e.contains("newer"), "{e}");
    }
}
