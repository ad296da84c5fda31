//! Disk access rules shared by everything that touches a synced folder or
//! the home: contained paths ([`safe_path`], [`open_regular`]), atomic
//! replacement, the folder marker, and the names that are ours (never
//! synced).
//!
//! Everything the daemon persists by replacing a file goes through
//! [`write_atomic`]: a temp file in the same directory, fsynced, renamed over
//! the target, then the directory fsynced. A crash at any instant leaves
//! either the old content or the new.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The path of `name` under `root` if no directory on the way is a symlink.
pub fn safe_path(root: &Path, name: &str) -> io::Result<PathBuf> {
    let mut p = root.to_path_buf();
    let mut parts = name.split('/').peekable();
    while let Some(part) = parts.next() {
        p.push(part);
        if parts.peek().is_some() && !fs::symlink_metadata(&p)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a parent is not a directory (or is a symlink)",
            ));
        }
    }
    Ok(p)
}

/// Opens a regular file for reading without following a symlink in its
/// last component ([`safe_path`] covers the parents): whatever is
/// on disk, a read never leaves the folder root.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// Replaces `path` with `data`, creating it with permission bits `mode` if
/// it does not exist (an existing file's mode is not widened).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}-{:08x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The marker that says a folder root is present (a directory, as
/// Syncthing makes it). Without it a folder is never scanned: an unmounted
/// disk must not look like "everything was deleted".
pub const MARKER: &str = ".stfolder";

/// Names at a folder root that belong to the sync tool, never synced.
const INTERNAL_ROOT_NAMES: [&str; 3] = [MARKER, ".stignore", ".stversions"];

/// Whether a folder-relative name is internal: the marker, `.stignore` or
/// `.stversions` at the root or anything under them (Syncthing's rule), or
/// a download temp file anywhere.
pub fn is_internal(name: &str) -> bool {
    let top = name.split('/').next().unwrap_or(name);
    INTERNAL_ROOT_NAMES.contains(&top) || is_temp_name(name.rsplit('/').next().unwrap_or(name))
}

/// Whether a base name is a download temp file (ours or Syncthing's).
pub fn is_temp_name(base: &str) -> bool {
    base.ends_with(".tmp") && (base.starts_with(".syncthing.") || base.starts_with("~syncthing~"))
}

/// The download temp file for `path`: `.syncthing.<name>.tmp` beside it,
/// the name Syncthing peers expect (hashed when the name is long).
pub fn temp_path(path: &Path) -> std::path::PathBuf {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = if base.len() > 145 {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(base.as_bytes());
        format!(
            ".syncthing.{}.tmp",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    } else {
        format!(".syncthing.{base}.tmp")
    };
    path.with_file_name(name)
}

/// The bytes free (to unprivileged users) and the size of the file
/// system holding `path`.
pub fn space(path: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)?;
    Ok((st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize))
}

/// Whether `root` has its marker.
pub fn has_marker(root: &Path) -> bool {
    root.join(MARKER).exists()
}

/// Creates the marker in `root` if it is missing.
pub fn ensure_marker(root: &Path) -> io::Result<()> {
    match fs::create_dir(root.join(MARKER)) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_and_sets_mode_without_leaving_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"one", 0o600).expect("write");
        write_atomic(&p, b"two", 0o600).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let mode = fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1, "temp file left behind");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("missing-dir").join("f");
        assert!(write_atomic(&p, b"x", 0o644).is_err());
        assert!(!p.exists());
    }

    #[test]
    fn internal_names() {
        for n in [
            ".stfolder",
            ".stignore",
            ".stversions",
            ".stversions/a",
            ".stfolder/x",
            ".stignore/y",
            "d/.syncthing.x.tmp",
            ".syncthing.a.tmp",
            "~syncthing~a.tmp",
        ] {
            assert!(is_internal(n), "{n}");
        }
        for n in [
            "a/.stfolder",
            "d/.stignore",
            "stfolder",
            ".stfolderx",
            ".syncthing.a",
            "a.tmp",
        ] {
            assert!(!is_internal(n), "{n}");
        }
    }
}
