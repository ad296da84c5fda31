//! `folder verify`: rehashes a folder and compares it with what the index
//! says this device has, entry by entry and file by file. The check a
//! crash test (or a worried user) runs: every indexed file whole with the
//! blocks announced, nothing indexed missing, nothing on disk unindexed,
//! nothing deleted in the index still there. Read-only; changes that a
//! scan has not seen yet show up as differences (verify an idle folder).

use std::collections::HashSet;
use std::path::Path;

use proto::message::FileKind;

use crate::index::{DbError, FolderIndex, FLAG_IGNORED, LOCAL};
use crate::scanner::ignore::Ignores;
use crate::scanner::{block_count, hash_blocks};

/// What a verify found.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Verified {
    /// Index entries compared (deleted ones included).
    pub entries: u64,
    /// Files rehashed.
    pub files: u64,
    /// Bytes rehashed.
    pub bytes: u64,
    /// Every difference, one line each (`name: what`).
    pub problems: Vec<String>,
}

/// Compares the folder at `root` with its index `fi`, names matched by
/// `ignores` left out as the scanner leaves them out.
pub fn verify(root: &Path, fi: &FolderIndex, ignores: &Ignores) -> Result<Verified, DbError> {
    let mut v = Verified::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut indexed = HashSet::new();
    for e in fi.entries(LOCAL) {
        let e = e?;
        v.entries += 1;
        let name = e.info.name.as_str().to_string();
        if e.flags & FLAG_IGNORED != 0 || e.info.invalid {
            continue;
        }
        let Ok(path) = crate::fs::safe_path(root, &name) else {
            v.problems
                .push(format!("{name}: not a name inside the folder"));
            continue;
        };
        let meta = std::fs::symlink_metadata(&path);
        if e.info.deleted {
            if meta.is_ok() {
                v.problems
                    .push(format!("{name}: deleted in the index, present on disk"));
            }
            continue;
        }
        indexed.insert(name.clone());
        let Ok(meta) = meta else {
            v.problems
                .push(format!("{name}: in the index, not on disk"));
            continue;
        };
        let kind_ok = match e.info.kind {
            FileKind::File => meta.is_file(),
            FileKind::Directory => meta.is_dir(),
            FileKind::Symlink => meta.file_type().is_symlink(),
        };
        if !kind_ok {
            v.problems.push(format!(
                "{name}: a {:?} in the index, another kind on disk",
                e.info.kind
            ));
            continue;
        }
        match e.info.kind {
            FileKind::File => {
                if meta.len() != e.info.size {
                    v.problems.push(format!(
                        "{name}: {} bytes on disk, {} in the index",
                        meta.len(),
                        e.info.size
                    ));
                    continue;
                }
                let blocks = crate::fs::open_regular(&path).and_then(|f| {
                    let n = block_count(e.info.size, e.info.block_size);
                    hash_blocks(&f, e.info.size, e.info.block_size, 0, n, &mut buf, |_| {})
                });
                v.files += 1;
                v.bytes += e.info.size;
                match blocks {
                    Ok(b)
                        if b.iter()
                            .map(|x| x.hash)
                            .eq(e.info.blocks.iter().map(|x| x.hash)) => {}
                    Ok(_) => v
                        .problems
                        .push(format!("{name}: its content is not the indexed blocks")),
                    Err(err) => v.problems.push(format!("{name}: cannot be read: {err}")),
                }
            }
            FileKind::Symlink => {
                let target =
                    std::fs::read_link(&path).map(|t| t.into_os_string().into_encoded_bytes());
                if target.ok().as_deref() != Some(&e.info.symlink_target[..]) {
                    v.problems
                        .push(format!("{name}: the link points elsewhere than indexed"));
                }
            }
            FileKind::Directory => {}
        }
    }
    unindexed(root, "", &indexed, ignores, &mut v);
    v.problems.sort();
    Ok(v)
}

/// Names on disk under `dir` (folder-relative `prefix`) that the index
/// does not hold as present.
fn unindexed(
    root: &Path,
    prefix: &str,
    indexed: &HashSet<String>,
    ignores: &Ignores,
    v: &mut Verified,
) {
    let dir = if prefix.is_empty() {
        root.to_path_buf()
    } else {
        root.join(prefix)
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let Some(leaf) = e.file_name().to_str().map(str::to_string) else {
            v.problems.push(format!(
                "{prefix}/{:?}: a name that is not UTF-8",
                e.file_name()
            ));
            continue;
        };
        let name = if prefix.is_empty() {
            leaf
        } else {
            format!("{prefix}/{leaf}")
        };
        if crate::fs::is_internal(&name) || ignores.matches(&name).ignored {
            continue;
        }
        if !indexed.contains(&name) {
            v.problems
                .push(format!("{name}: on disk, not in the index"));
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            unindexed(root, &name, indexed, ignores, v);
        }
    }
}
