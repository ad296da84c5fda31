//! Sends one folder's local index to one peer: everything after the
//! sequence the peer already has (or all of it, as an Index, when the peer
//! has nothing valid), then each new change as an IndexUpdate.

use std::sync::Arc;

use proto::message::{Index, Message};
use tokio::sync::mpsc;

use crate::index::{FolderIndex, FLAG_RECEIVE_ONLY};

/// Files per message (Syncthing's batch size).
const BATCH_FILES: usize = 1000;
/// Approximate bytes per message before it is sent.
const BATCH_BYTES: usize = 250 << 10;

/// Streams the index until the session ends. `start` is the sequence the
/// peer has; `None` means it must get a full Index. With `receive_only`
/// set to this device's short ID, our own changes go out invalid with an
/// empty version, so they never win anywhere (what pulled from others is
/// announced as usual).
pub async fn run(
    fi: Arc<FolderIndex>,
    out: mpsc::Sender<super::Outgoing>,
    start: Option<i64>,
    receive_only: Option<proto::ShortId>,
) {
    // Only durable entries go out (see `FolderIndex::durable`).
    let mut durable = fi.durable();
    let mut full = start.is_none();
    let mut after = start.unwrap_or(0);
    loop {
        let upto = *durable.borrow_and_update();
        let (fi2, from) = (fi.clone(), after);
        let batch = tokio::task::spawn_blocking(move || collect(&fi2, from, upto)).await;
        let (files, flags): (Vec<_>, Vec<_>) = match batch {
            Ok(Ok(f)) => f.into_iter().unzip(),
            Ok(Err(e)) => {
                tracing::warn!(folder = fi.id(), "reading the index to send: {e}");
                return;
            }
            Err(_) => return,
        };
        tracing::trace!(folder = fi.id(), after, n = files.len(), "collected");
        if files.is_empty() {
            if full {
                // Nothing at all: Syncthing sends no empty Index either.
                full = false;
            }
            if durable.changed().await.is_err() {
                return;
            }
            continue;
        }
        tracing::debug!(
            folder = fi.id(),
            files = files.len(),
            after,
            full,
            "sending index batch"
        );
        after = files.last().map_or(after, |f| f.sequence);
        let mut files = files;
        for (f, flags) in files.iter_mut().zip(flags) {
            // A receive-only change never becomes anyone's global version
            // (Syncthing sends it invalid with an empty version). Entries
            // recorded before the flag existed are known by their author.
            let own_change = receive_only.is_some_and(|me| f.modified_by == me);
            if flags & FLAG_RECEIVE_ONLY != 0 || own_change {
                f.invalid = true;
                f.version = proto::Vector::new();
            }
        }
        let idx = Index {
            folder: fi.id().to_string(),
            files,
            last_sequence: after,
            prev_sequence: 0,
        };
        let msg = if full {
            full = false;
            Message::Index(idx)
        } else {
            Message::IndexUpdate(idx)
        };
        if out.send(msg.into()).await.is_err() {
            return;
        }
    }
}

fn collect(
    fi: &FolderIndex,
    after: i64,
    upto: i64,
) -> Result<Vec<(proto::message::FileInfo, u32)>, crate::index::DbError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for e in fi.local_since(after) {
        let e = e?;
        if e.info.sequence > upto {
            break;
        }
        bytes += 100 + e.info.name.as_str().len() + 40 * e.info.blocks.len();
        out.push((e.info, e.flags));
        if out.len() >= BATCH_FILES || bytes >= BATCH_BYTES {
            break;
        }
    }
    Ok(out)
}
