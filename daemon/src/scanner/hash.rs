//! Block hashing: SHA-256 and Adler-32 of each block, streamed through a
//! small reusable buffer so no block (up to 16 MiB) is ever held whole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use proto::message::{BlockInfo, Hash};
use sha2::{Digest, Sha256};

/// How much is read per call: big enough to amortise syscalls, small
/// enough to stay in cache.
pub const READ_SIZE: usize = 256 << 10;

/// SHA-256 of no bytes: the hash of an empty file's single block.
pub const EMPTY_HASH: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The block list of an empty file: one zero-length block, weak hash 0.
pub fn empty_file_blocks() -> Vec<BlockInfo> {
    vec![BlockInfo {
        offset: 0,
        size: 0,
        hash: EMPTY_HASH,
        weak_hash: 0,
    }]
}

/// The number of blocks of a file (an empty file has one).
pub fn block_count(size: u64, block_size: u32) -> usize {
    size.div_ceil(u64::from(block_size)).max(1) as usize
}

/// Hashes blocks `first..end` of `file` (`size` bytes long, cut into
/// `block_size` blocks). `on_bytes` is told of progress. A file shorter
/// than `size` is an error: it changed under us.
pub fn hash_blocks(
    file: &File,
    size: u64,
    block_size: u32,
    first: usize,
    end: usize,
    buf: &mut [u8],
    mut on_bytes: impl FnMut(u64),
) -> io::Result<Vec<BlockInfo>> {
    if size == 0 {
        return Ok(empty_file_blocks());
    }
    let mut blocks = Vec::with_capacity(end - first);
    for i in first..end {
        let offset = i as u64 * u64::from(block_size);
        let len = (size - offset).min(u64::from(block_size)) as u32;
        let mut sha = Sha256::new();
        let mut adler = simd_adler32::Adler32::new();
        let mut done = 0u32;
        while done < len {
            let want = ((len - done) as usize).min(buf.len());
            let n = file.read_at(&mut buf[..want], offset + u64::from(done))?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was hashed",
                ));
            }
            sha.update(&buf[..n]);
            adler.write(&buf[..n]);
            done += n as u32;
            on_bytes(n as u64);
        }
        blocks.push(BlockInfo {
            offset,
            size: len,
            hash: sha.finalize().into(),
            weak_hash: adler.finish(),
        });
    }
    Ok(blocks)
}

/// A block's weak hash (Adler-32, as Syncthing's `weak_hash`): a cheap
/// check that data read for a request is still the block asked for.
pub fn weak_hash(data: &[u8]) -> u32 {
    let mut adler = simd_adler32::Adler32::new();
    adler.write(data);
    adler.finish()
}

/// SHA-256 over each block's hash followed by its weak hash (big-endian):
/// the shortcut peers compare before comparing block lists.
pub fn blocks_hash(blocks: &[BlockInfo]) -> Vec<u8> {
    let mut h = Sha256::new();
    for b in blocks {
        h.update(b.hash);
        h.update(b.weak_hash.to_be_bytes());
    }
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn empty_file_values_match_syncthing() {
        let f = tempfile::tempfile().expect("tmp");
        let blocks = hash_blocks(&f, 0, 128 << 10, 0, 1, &mut [0; 16], |_| {}).expect("hash");
        assert_eq!(blocks, empty_file_blocks());
        assert_eq!(hex(&blocks[0].hash), format!("{:x}", Sha256::digest(b"")));
        // Value observed from Syncthing 1.19.2 (protocol facts §5.4).
        let bh = hex(&blocks_hash(&blocks));
        assert!(bh.starts_with("d3bfe98e") && bh.ends_with("b12a"), "{bh}");
    }

    #[test]
    fn blocks_are_cut_at_the_block_size_and_hashed() {
        let bs = 128 << 10;
        let data: Vec<u8> = (0..(2 * bs + 1000)).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = tempfile::tempfile().expect("tmp");
        f.write_all(&data).expect("write");
        let size = data.len() as u64;
        assert_eq!(block_count(size, bs as u32), 3);
        // A small buffer forces several reads per block.
        let mut seen = 0;
        let blocks =
            hash_blocks(&f, size, bs as u32, 0, 3, &mut [0; 1000], |n| seen += n).expect("hash");
        assert_eq!(seen, size);
        assert_eq!(blocks.len(), 3);
        for (i, b) in blocks.iter().enumerate() {
            let chunk = &data[i * bs..((i + 1) * bs).min(data.len())];
            assert_eq!(b.offset, (i * bs) as u64);
            assert_eq!(b.size as usize, chunk.len());
            assert_eq!(b.hash, <[u8; 32]>::from(Sha256::digest(chunk)));
        }
        // Adler-32 of "Wikipedia" is the textbook 0x11E60398.
        let mut g = tempfile::tempfile().expect("tmp");
        g.write_all(b"Wikipedia").expect("write");
        let b = hash_blocks(&g, 9, bs as u32, 0, 1, &mut [0; 64], |_| {}).expect("hash");
        assert_eq!(b[0].weak_hash, 0x11E6_0398);
        // A middle range hashes only its blocks.
        let mid = hash_blocks(&f, size, bs as u32, 1, 2, &mut [0; 4096], |_| {}).expect("hash");
        assert_eq!(mid, blocks[1..2]);
    }

    #[test]
    fn a_file_shorter_than_expected_is_an_error() {
        let mut f = tempfile::tempfile().expect("tmp");
        f.write_all(&[1; 100]).expect("write");
        let err = hash_blocks(&f, 200, 128 << 10, 0, 1, &mut [0; 64], |_| {}).expect_err("short");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
