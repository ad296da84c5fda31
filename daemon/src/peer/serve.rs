//! Answers a peer's block request, after every check a responder owes the
//! folder's owner: the folder is shared with that device, the name is not
//! internal or ignored (by the patterns in force, indexed or not), we have
//! announced it, no directory on the way is a symlink, the file is a
//! regular file, and the data read matches the hash asked for (its weak
//! hash when given, else its SHA-256).

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use proto::message::{ErrorCode, Request, Response};
use proto::DeviceId;
use sha2::{Digest, Sha256};

use super::Peers;
use crate::index::{FLAG_IGNORED, LOCAL};

/// Serves one request (blocking work runs off the async threads).
pub async fn serve(peers: &Peers, device: &DeviceId, req: Request) -> Response {
    let id = req.id;
    let fail = |code| Response {
        id,
        data: Bytes::new(),
        code,
    };
    let config = peers.config();
    let Some(folder) = config
        .folder(&req.folder)
        .filter(|f| f.devices.contains(device))
    else {
        return fail(ErrorCode::Generic);
    };
    let name = req.name.as_str();
    if crate::fs::is_internal(name) {
        return fail(ErrorCode::InvalidFile);
    }
    // The patterns in force decide, whether or not the file was ever
    // indexed; patterns that cannot be read serve nothing.
    match peers.ignores(folder) {
        Ok(i) if i.matches(name).ignored => return fail(ErrorCode::InvalidFile),
        Ok(_) => {}
        Err(_) => return fail(ErrorCode::Generic),
    }
    // Only what we announced is served; a temp file, asked for by the name
    // of the file it becomes, may be served before that file is indexed,
    // but then the file itself is not read in its place.
    let flags = match peers.index.folder(&folder.id) {
        Ok(fi) => fi.flags(LOCAL, name),
        Err(_) => return fail(ErrorCode::Generic),
    };
    let announced = match flags {
        Ok(Some(f)) if f & FLAG_IGNORED == 0 => true,
        Ok(Some(_)) => return fail(ErrorCode::InvalidFile),
        _ => false,
    };
    if !announced && !req.from_temporary {
        return fail(ErrorCode::NoSuchFile);
    }
    let root = folder.path.clone();
    let name = req.name.clone();
    let read = tokio::task::spawn_blocking(move || {
        read_block(
            &root,
            name.as_str(),
            req.offset,
            req.size,
            req.from_temporary,
            announced,
        )
    })
    .await;
    let data = match read {
        Ok(Ok(d)) => d,
        _ => return fail(ErrorCode::NoSuchFile),
    };
    if let Some(want) = req.hash {
        // The requester verifies the SHA-256 of what it gets anyway; here
        // the weak hash suffices to see the data is still that block
        // (Syncthing's check), and SHA-256 decides only when it differs.
        let weak_ok = req.weak_hash != 0 && crate::scanner::weak_hash(&data) == req.weak_hash;
        if !weak_ok && <[u8; 32]>::from(Sha256::digest(&data)) != want {
            // The file changed since it was indexed; the next scan sees it.
            tracing::debug!(folder = %req.folder, name = %req.name, "requested block no longer matches");
            return fail(ErrorCode::NoSuchFile);
        }
    }
    Response {
        id,
        data: Bytes::from(data),
        code: ErrorCode::NoError,
    }
}

fn read_block(
    root: &Path,
    name: &str,
    offset: u64,
    size: u32,
    temp: bool,
    announced: bool,
) -> std::io::Result<Vec<u8>> {
    let path = crate::fs::safe_path(root, name)?;
    let mut candidates = Vec::new();
    if temp {
        candidates.push(crate::fs::temp_path(&path));
    }
    if announced {
        candidates.push(path);
    }
    let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
    for p in candidates {
        match crate::fs::open_regular(&p).and_then(|f| read_whole(&f, offset, size)) {
            Ok(data) => return Ok(data),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Exactly `size` bytes at `offset`. A block reaching past the end is not
/// one we announced (the file shrank since, or the peer asks for what no
/// file holds): no partial answer, with or without a hash to check.
fn read_whole(f: &std::fs::File, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0u8; size as usize];
    let mut done = 0;
    while done < data.len() {
        match f.read_at(&mut data[done..], offset + done as u64)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(data)
}
