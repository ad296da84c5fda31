//! Comparing synced folders: a snapshot of every entry under a root (with
//! content hashes) and a deadline-bounded wait until several roots agree.

use std::fs;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::daemon::Daemon;

/// Every entry under `root` but internal ones (`.stfolder`, `.stversions`,
/// temp files):
/// name and `dir`, `-> target` or `<size> <sha256>`, sorted by name.
pub fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if rel == ".stfolder" || rel == ".stversions" || rel.contains(".syncthing.") {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.file_type().is_symlink() {
                out.push((rel, format!("-> {:?}", fs::read_link(&p).ok())));
            } else if m.is_dir() {
                out.push((rel, "dir".into()));
                stack.push(p);
            } else {
                let data = fs::read(&p).unwrap_or_default();
                out.push((rel, format!("{} {:x}", data.len(), Sha256::digest(&data))));
            }
        }
    }
    out.sort();
    out
}

/// Waits until every root holds the same non-empty tree; returns it. On
/// timeout, prints each daemon's log and the trees, and panics.
pub fn wait_equal(
    roots: &[&Path],
    daemons: &[&Daemon],
    limit: Duration,
    what: &str,
) -> Vec<(String, String)> {
    let trees = || -> Vec<_> { roots.iter().map(|r| tree(r)).collect() };
    let same = crate::poll(limit, || {
        let t = trees();
        (t.windows(2).all(|w| w[0] == w[1]) && !t[0].is_empty()).then(|| t[0].clone())
    });
    same.unwrap_or_else(|| {
        for d in daemons {
            eprintln!("--- daemon log:\n{}", d.log());
        }
        panic!("{what}: trees differ after {limit:?}\n{:#?}", trees());
    })
}
