//! The daemon's home directory: where its identity and config live.

use std::path::{Path, PathBuf};

/// Paths inside a home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// The home at `dir` (not created here).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The home chosen by `--home`, else `$FERROSYNC_HOME` (clap reads both),
    /// else the platform's config directory.
    pub fn resolve(explicit: Option<PathBuf>) -> anyhow::Result<Self> {
        match explicit {
            Some(dir) => Ok(Self::new(dir)),
            None => dirs::config_dir()
                .map(|d| Self::new(d.join("ferrosync")))
                .ok_or_else(|| {
                    anyhow::anyhow!("no config directory on this platform: pass --home DIR")
                }),
        }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The TLS certificate (its SHA-256 is the device ID).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The private key (PKCS#8, mode 0600).
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The configuration (TOML).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The index database directory.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index")
    }

    /// Where a running daemon writes the URLs it listens on, one per line
    /// (with the real ports when the config asked for port 0).
    pub fn listen_urls_path(&self) -> PathBuf {
        self.dir.join("listen-addresses")
    }

    /// Where a running daemon writes the address its API is bound to (the
    /// config may ask for port 0); removed when it stops.
    pub fn api_address_path(&self) -> PathBuf {
        self.dir.join("api-address")
    }
}
