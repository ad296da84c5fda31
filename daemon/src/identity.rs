//! This device's identity: an Ed25519 key and the self-signed certificate
//! whose SHA-256 is the device ID. Created once and never overwritten: a new
//! certificate would be a new device to every peer.

use std::fs;
use std::io;

use proto::DeviceId;

use crate::fs::write_atomic;
use crate::home::Home;

/// The certificate and key this device proves itself with.
#[derive(Clone)]
pub struct Identity {
    /// SHA-256 of the certificate.
    pub device_id: DeviceId,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// Why the identity could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity yet.
    #[error("no identity in {0}: run `ferrosync --home {0} init` first")]
    Missing(String),
    /// Only one of the two files is present.
    #[error("{present} exists but {missing} does not: restore it or move {present} away (it is never overwritten)")]
    Incomplete {
        /// The file that is there.
        present: String,
        /// The file that is not.
        missing: String,
    },
    /// The certificate is not a certificate.
    #[error("{path}: {source}")]
    BadCert {
        /// The file.
        path: String,
        /// What is wrong.
        source: proto::cert::CertError,
    },
    /// Generation failed.
    #[error(transparent)]
    Generate(#[from] proto::cert::CertError),
    /// A read or write failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
}

fn io_err(path: &std::path::Path) -> impl FnOnce(io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the identity in `home`.
pub fn load(home: &Home) -> Result<Identity, IdentityError> {
    let (cert, key) = (home.cert_path(), home.key_path());
    match (cert.exists(), key.exists()) {
        (true, true) => {}
        (false, false) => return Err(IdentityError::Missing(home.dir().display().to_string())),
        (c, _) => {
            let (present, missing) = if c { (&cert, &key) } else { (&key, &cert) };
            return Err(IdentityError::Incomplete {
                present: present.display().to_string(),
                missing: missing.display().to_string(),
            });
        }
    }
    let cert_pem = fs::read_to_string(&cert).map_err(io_err(&cert))?;
    let key_pem = fs::read_to_string(&key).map_err(io_err(&key))?;
    let device_id =
        proto::cert::device_id_from_pem(&cert_pem).map_err(|source| IdentityError::BadCert {
            path: cert.display().to_string(),
            source,
        })?;
    Ok(Identity {
        device_id,
        cert_pem,
        key_pem,
    })
}

/// Loads the identity in `home`, creating one (and the home directory) if
/// there is none. Returns whether it was created.
pub fn load_or_create(home: &Home) -> Result<(Identity, bool), IdentityError> {
    match load(home) {
        Err(IdentityError::Missing(_)) => {}
        other => return other.map(|id| (id, false)),
    }
    fs::create_dir_all(home.dir()).map_err(io_err(home.dir()))?;
    let g = proto::cert::generate("syncthing")?;
    let (cert, key) = (home.cert_path(), home.key_path());
    // Key first: a crash in between leaves a key without a certificate,
    // which `load` reports instead of silently minting a new identity.
    write_atomic(&key, g.key_pem.as_bytes(), 0o600).map_err(io_err(&key))?;
    write_atomic(&cert, g.cert_pem.as_bytes(), 0o644).map_err(io_err(&cert))?;
    Ok((
        Identity {
            device_id: g.device_id,
            cert_pem: g.cert_pem,
            key_pem: g.key_pem,
        },
        true,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_loaded_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path().join("h"));
        assert!(matches!(load(&home), Err(IdentityError::Missing(_))));
        let (a, created) = load_or_create(&home).expect("create");
        assert!(created);
        let (b, created) = load_or_create(&home).expect("load");
        assert!(!created);
        assert_eq!(a.device_id, b.device_id);
        assert_eq!(a.key_pem, b.key_pem);
        let mode = fs::metadata(home.key_path())
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_half_identity_is_reported_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        fs::write(home.key_path(), "KEY").expect("write");
        let err = load_or_create(&home).err().expect("must refuse");
        assert!(matches!(err, IdentityError::Incomplete { .. }), "{err}");
        assert_eq!(fs::read_to_string(home.key_path()).expect("read"), "KEY");
        assert!(!home.cert_path().exists());
    }
}
