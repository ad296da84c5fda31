//! Adding and removing devices and folders. Each method checks everything
//! first, so an error leaves the config as it was.

use std::path::{Path, PathBuf};

use proto::addr::{Address, Transport};
use proto::DeviceId;

use super::keys::check_sync_url;
use super::{Config, ConfigError, DeviceConfig, FolderConfig, FolderType};

impl Config {
    /// Adds a device. `own_id` is this device's, which cannot be added.
    pub fn add_device(
        &mut self,
        own_id: &DeviceId,
        id: DeviceId,
        name: Option<&str>,
        addresses: &[String],
    ) -> Result<(), ConfigError> {
        if id == *own_id {
            return Err(ConfigError::Conflict(format!(
                "{id} is this device's own ID"
            )));
        }
        if self.device(&id).is_some() {
            return Err(ConfigError::Conflict(format!(
                "device {id} is already configured"
            )));
        }
        for a in addresses {
            let any = [Transport::Tcp, Transport::Quic, Transport::Relay];
            let checked = match proto::addr::parse_address(a) {
                Ok(Address::Dynamic) => Ok(()),
                Ok(Address::Url(_)) => check_sync_url(a, &any),
                Err(e) => Err(e.to_string()),
            };
            checked.map_err(|reason| ConfigError::BadValue {
                key: "--address".into(),
                reason: format!("{reason} (or use `dynamic`)"),
            })?;
        }
        self.ignored_devices.retain(|d| *d != id);
        self.devices.push(DeviceConfig {
            id,
            name: name.unwrap_or_default().to_string(),
            addresses: if addresses.is_empty() {
                vec![proto::addr::DYNAMIC.into()]
            } else {
                addresses.to_vec()
            },
        });
        Ok(())
    }

    /// Removes a device and unshares every folder from it. Returns the IDs
    /// of the folders it was removed from.
    pub fn remove_device(&mut self, id: &DeviceId) -> Result<Vec<String>, ConfigError> {
        let before = self.devices.len();
        self.devices.retain(|d| d.id != *id);
        if self.devices.len() == before {
            return Err(not_a_device(id));
        }
        let mut unshared = Vec::new();
        for f in &mut self.folders {
            if f.devices.contains(id) {
                f.devices.retain(|d| d != id);
                unshared.push(f.id.clone());
            }
        }
        Ok(unshared)
    }

    /// Adds a folder rooted at `path` (an existing directory, stored
    /// absolute) and shares it with `share`, which must be configured.
    pub fn add_folder(
        &mut self,
        id: &str,
        path: &Path,
        kind: FolderType,
        share: &[DeviceId],
    ) -> Result<(), ConfigError> {
        if id.trim().is_empty() || id.trim() != id {
            return Err(ConfigError::BadValue {
                key: "FOLDER-ID".into(),
                reason: format!("{id:?} must be non-empty, without leading or trailing spaces"),
            });
        }
        if self.folder(id).is_some() {
            return Err(ConfigError::Conflict(format!(
                "folder {id:?} is already configured"
            )));
        }
        let root = canonical_dir(path)?;
        if let Some(other) = self
            .folders
            .iter()
            .find(|f| f.path.starts_with(&root) || root.starts_with(&f.path))
        {
            return Err(ConfigError::Conflict(format!(
                "{} overlaps folder {:?} at {}",
                root.display(),
                other.id,
                other.path.display()
            )));
        }
        for d in share {
            if self.device(d).is_none() {
                return Err(not_a_device(d));
            }
        }
        let mut devices = share.to_vec();
        devices.sort();
        devices.dedup();
        self.folders.push(FolderConfig {
            id: id.to_string(),
            path: root,
            kind,
            devices,
            rescan_interval_s: super::default_rescan_interval(),
            max_conflicts: super::default_max_conflicts(),
            watch: true,
            watch_settle_ms: super::default_watch_settle(),
            paused: false,
            delete_guard_percent: super::default_delete_guard_percent(),
            delete_guard_min_files: super::default_delete_guard_min_files(),
            versioning: super::Versioning::default(),
            min_disk_free_percent: super::default_min_disk_free(),
        });
        Ok(())
    }

    /// Pauses or resumes a folder. Returns false if it already was so.
    pub fn pause_folder(&mut self, folder: &str, paused: bool) -> Result<bool, ConfigError> {
        let f = self.folder_mut(folder)?;
        let changed = f.paused != paused;
        f.paused = paused;
        Ok(changed)
    }

    /// Sets what a folder keeps of replaced and deleted files. Returns
    /// false if it already was so.
    pub fn set_versioning(
        &mut self,
        folder: &str,
        versioning: super::Versioning,
    ) -> Result<bool, ConfigError> {
        let f = self.folder_mut(folder)?;
        let changed = f.versioning != versioning;
        f.versioning = versioning;
        Ok(changed)
    }

    /// Sets which directions a folder's changes flow. Returns false if it
    /// already was so.
    pub fn set_kind(&mut self, folder: &str, kind: FolderType) -> Result<bool, ConfigError> {
        let f = self.folder_mut(folder)?;
        let changed = f.kind != kind;
        f.kind = kind;
        Ok(changed)
    }

    fn folder_mut(&mut self, folder: &str) -> Result<&mut super::FolderConfig, ConfigError> {
        self.folders
            .iter_mut()
            .find(|f| f.id == folder)
            .ok_or_else(|| ConfigError::NotFound(format!("folder {folder:?} is not configured")))
    }

    /// Shares a folder with a configured device. Returns false if it
    /// already was.
    pub fn share_folder(&mut self, folder: &str, device: &DeviceId) -> Result<bool, ConfigError> {
        if self.device(device).is_none() {
            return Err(not_a_device(device));
        }
        let f = self.folder_mut(folder)?;
        if f.devices.contains(device) {
            return Ok(false);
        }
        f.devices.push(*device);
        Ok(true)
    }

    /// Removes a folder from the configuration (its files stay where they
    /// are).
    pub fn remove_folder(&mut self, folder: &str) -> Result<(), ConfigError> {
        self.folder_mut(folder)?;
        self.folders.retain(|f| f.id != folder);
        Ok(())
    }

    /// Stops listing `device`'s connection requests as pending. Returns
    /// false if it already was ignored.
    pub fn ignore_device(&mut self, device: &DeviceId) -> Result<bool, ConfigError> {
        if self.device(device).is_some() {
            return Err(ConfigError::Conflict(format!(
                "device {device} is configured; remove it first"
            )));
        }
        if self.ignored_devices.contains(device) {
            return Ok(false);
        }
        self.ignored_devices.push(*device);
        Ok(true)
    }

    /// Stops listing `device`'s offer of folder `id` as pending. Returns
    /// false if it already was ignored.
    pub fn ignore_folder(&mut self, device: &DeviceId, id: &str) -> Result<bool, ConfigError> {
        if self.ignored_folders.iter().any(|i| i.matches(device, id)) {
            return Ok(false);
        }
        self.ignored_folders.push(super::IgnoredFolder {
            device: *device,
            id: id.to_string(),
        });
        Ok(true)
    }
}

fn not_a_device(id: &DeviceId) -> ConfigError {
    ConfigError::NotFound(format!(
        "device {id} is not configured (add it with `ferrosync device add`)"
    ))
}

fn canonical_dir(path: &Path) -> Result<PathBuf, ConfigError> {
    let bad = |reason: String| ConfigError::BadValue {
        key: "PATH".into(),
        reason,
    };
    let root = path
        .canonicalize()
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if !root.is_dir() {
        return Err(bad(format!("{} is not a directory", path.display())));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DeviceId {
        DeviceId::from_bytes([n; 32])
    }

    #[test]
    fn devices_add_and_remove_unshares() {
        let mut c = Config::new_for("me");
        let dir = tempfile::tempdir().expect("tempdir");
        c.add_device(&id(0), id(1), Some("one"), &[]).expect("add");
        assert_eq!(c.devices[0].addresses, ["dynamic"]);
        c.add_folder("f", dir.path(), FolderType::SendReceive, &[id(1)])
            .expect("folder");
        assert_eq!(c.remove_device(&id(1)).expect("remove"), ["f"]);
        assert!(c.folders[0].devices.is_empty());
        assert!(matches!(
            c.remove_device(&id(1)),
            Err(ConfigError::NotFound(_))
        ));
    }

    #[test]
    fn refusals_change_nothing() {
        let mut c = Config::new_for("me");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        c.add_device(&id(0), id(1), None, &[]).expect("add");
        c.add_folder("f", dir.path(), FolderType::SendOnly, &[])
            .expect("folder");
        let before = c.clone();
        let errs = [
            c.add_device(&id(0), id(0), None, &[]).err(),
            c.add_device(&id(0), id(1), None, &[]).err(),
            c.add_device(&id(0), id(2), None, &["http://x:1".into()])
                .err(),
            c.add_device(&id(0), id(2), None, &["tcp://x".into()]).err(),
            c.add_folder("f", &dir.path().join("sub"), FolderType::SendReceive, &[])
                .err(),
            c.add_folder("g", &file, FolderType::SendReceive, &[]).err(),
            c.add_folder(
                "g",
                &dir.path().join("missing"),
                FolderType::SendReceive,
                &[],
            )
            .err(),
            c.add_folder("g", &dir.path().join("sub"), FolderType::SendReceive, &[])
                .err(),
            c.add_folder("", dir.path(), FolderType::SendReceive, &[])
                .err(),
            c.share_folder("nope", &id(1)).err(),
            c.share_folder("f", &id(9)).err(),
        ];
        for (i, e) in errs.iter().enumerate() {
            assert!(e.is_some(), "case {i} was accepted");
        }
        assert_eq!(c, before);
        assert!(c.share_folder("f", &id(1)).expect("share"));
        assert!(!c.share_folder("f", &id(1)).expect("again"));
    }
}
