//! Pulling one regular file: fill the temp file from what we have, ask
//! peers for the rest (many requests in flight, within the pass's byte
//! budget, every block verified), then finish it off the async threads.

use super::apply::{finish, shortcut, NAME_MAX};
use super::fill::prepare;
use super::{FileResult, Outcome, Pass, DIRECT_BLOCK_MAX};
use crate::fs::safe_path;
use crate::index::same_content;
use crate::index::{Entry, Global, LOCAL};
use crate::model::temp_file::Run;
use crate::peer::{Peers, SessionHandle};
use proto::message::{FileInfo, FileKind};
use proto::DeviceId;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Pulls one regular file.
pub(super) async fn file(
    pass: &Pass<'_>,
    global: &Global,
    info: &FileInfo,
    local: Option<&Entry>,
) -> FileResult {
    let mut r = FileResult {
        outcome: Ok(Outcome::Later(String::new())),
        fetched: 0,
        rescan: false,
    };
    r.outcome = file_inner(pass, global, info, local, &mut r.fetched, &mut r.rescan).await;
    r
}

pub(super) async fn file_inner(
    pass: &Pass<'_>,
    global: &Global,
    info: &FileInfo,
    local: Option<&Entry>,
    fetched_here: &mut u64,
    rescan: &mut bool,
) -> std::io::Result<Outcome> {
    let Pass {
        cfg,
        peers,
        local: local_blocks,
        budget,
        fetched,
        apply,
    } = pass;
    let path = safe_path(&cfg.path, info.name.as_str())?;
    // Refused before anything is written: the rename would fail after the
    // whole file had been fetched, leaving its temp file behind.
    if info.name.as_str().rsplit('/').next().map_or(0, str::len) > NAME_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("name longer than {NAME_MAX} bytes"),
        ));
    }
    if let Some(l) = local
        .filter(|l| !l.info.deleted && l.info.kind == FileKind::File && same_content(&l.info, info))
    {
        // The content is already here (a kill -9 before the index recorded
        // a pull, a reset index, the same edit on two devices): only the
        // metadata changes, and nothing conflicts.
        let (info, l) = (info.clone(), l.clone());
        return tokio::task::spawn_blocking(move || shortcut(&path, &info, &l))
            .await
            .map_err(std::io::Error::other)?;
    }
    let tmp = crate::fs::temp_path(&path);
    // Disk reads and hashing stay off the async threads. The blocking pool
    // is small (BLOCKING_THREADS), which also keeps file creation from
    // more threads at once than that, where the kernel only spins on the
    // file system's locks (measured).
    let prepared = {
        let (path, tmp, info, local) = (path.clone(), tmp.clone(), info.clone(), local.cloned());
        let local_blocks = Arc::clone(local_blocks);
        tokio::task::spawn_blocking(move || {
            prepare(&path, &tmp, &info, local.as_ref(), &local_blocks)
        })
        .await
        .map_err(std::io::Error::other)??
    };
    let (out, missing) = match prepared {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };

    if !missing.is_empty() {
        let sources = holders(peers, global);
        if sources.is_empty() {
            return Ok(Outcome::Later("no connected device has it".into()));
        }
        let mut tasks = JoinSet::new();
        // Blocks are copied into an aligned buffer for direct writes; larger
        // ones (files over 2 GiB) go through the page cache, so the buffer a
        // file in flight holds stays small.
        let largest = missing.iter().map(|(_, b)| b.size as usize).max();
        let mut run = Run::new(largest.unwrap_or(0).min(DIRECT_BLOCK_MAX));
        let mut next = 0;
        let mut failed = None;
        while (failed.is_none() && next < missing.len()) || !tasks.is_empty() {
            // After a failure no more is asked: the file is retried later,
            // and a peer that refuses (or a claim it cannot back) costs one
            // window of requests, not one per block.
            while failed.is_none()
                && next < missing.len()
                && tasks.len() < budget.requests_per_file(missing[next].1.size.div_ceil(1024))
            {
                let (i, b) = missing[next];
                let s = sources[next % sources.len()].clone();
                let (folder, name) = (cfg.id.clone(), info.name.clone());
                let budget = Arc::clone(budget);
                let fetched = Arc::clone(fetched);
                tasks.spawn(async move {
                    let kib = b.size.div_ceil(1024);
                    let permit = budget.acquire(kib).await.map_err(|e| e.to_string())?;
                    let asked = std::time::Instant::now();
                    let data = s.request(&folder, &name, &b, i as i32).await;
                    let data = data.map_err(|e| e.to_string())?;
                    budget.arrived(kib, asked.elapsed());
                    if data.len() != b.size as usize || sha(&data) != b.hash {
                        return Err(format!(
                            "block {i} from {} does not match its hash",
                            s.device
                        ));
                    }
                    fetched.fetch_add(data.len() as u64, AtomicOrdering::Relaxed);
                    Ok::<_, String>((b.offset, data, permit))
                });
                next += 1;
            }
            // One writer per file: concurrent writes to one file only
            // contend for its inode lock (measured as kernel spinning).
            // A direct write of one block is short enough to do inline.
            match tasks.join_next().await {
                Some(Ok(Ok((offset, data, permit)))) => {
                    out.write_block(&data, offset, &mut run)?;
                    *fetched_here += data.len() as u64;
                    drop(permit);
                }
                Some(Ok(Err(e))) => failed = failed.or(Some(e)),
                Some(Err(e)) => failed = failed.or(Some(e.to_string())),
                None => break,
            }
        }
        if let Some(e) = failed {
            // Verified blocks stay in the temp file for the next attempt.
            return Ok(Outcome::Later(e));
        }
    }

    // The rest is blocking disk work (fsyncs above all): off the async
    // threads, so other files' transfers go on meanwhile.
    let (info, local) = (info.clone(), local.cloned());
    let ctx = apply.clone();
    let (done, conflicted) =
        tokio::task::spawn_blocking(move || finish(out, &tmp, &path, &info, local.as_ref(), &ctx))
            .await
            .map_err(std::io::Error::other)??;
    *rescan |= conflicted;
    Ok(done)
}

/// Connected sessions of the devices that have the global version.
pub(super) fn holders(peers: &Peers, global: &Global) -> Vec<SessionHandle> {
    global
        .devices
        .iter()
        .filter(|&&d| d != LOCAL)
        .filter_map(|&d| peers.index.device_by_number(d).ok().flatten())
        .filter_map(|id: DeviceId| peers.session(&id))
        .collect()
}

pub(super) fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}
