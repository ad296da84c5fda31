//! The block-size rule: files are cut into blocks of 128 KiB × 2^k so that a
//! file has about 2000 blocks at most, with hysteresis on rescans so that a
//! file growing across a boundary is not re-hashed with a new size.

/// The smallest block size (and the size assumed when a peer sends 0).
pub const MIN_BLOCK_SIZE: u32 = 128 << 10;
/// The largest block size.
pub const MAX_BLOCK_SIZE: u32 = 16 << 20;
/// The number of blocks a file aims to stay under.
pub const DESIRED_PER_FILE_BLOCKS: u64 = 2000;

/// Whether `size` is one of the eight sizes peers may use.
pub fn is_valid_block_size(size: u32) -> bool {
    size.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size)
}

/// The block size for a new file of `file_size` bytes: the smallest valid
/// size with `file_size < 2000 × size`, else the largest.
pub fn block_size(file_size: u64) -> u32 {
    let mut size = MIN_BLOCK_SIZE;
    while size < MAX_BLOCK_SIZE && file_size >= DESIRED_PER_FILE_BLOCKS * u64::from(size) {
        size *= 2;
    }
    size
}

/// The block size for a rescan of a file last hashed with `current`: keep
/// the current size while the ideal one is within a factor of two of it.
pub fn block_size_for_rescan(file_size: u64, current: Option<u32>) -> u32 {
    let ideal = block_size(file_size);
    match current {
        Some(cur) if is_valid_block_size(cur) && ideal.max(cur) / ideal.min(cur) <= 2 => cur,
        _ => ideal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn thresholds_are_2000_blocks() {
        let cases = [
            (0, 128 << 10),
            (250 * MIB - 1, 128 << 10),
            (250 * MIB, 256 << 10),
            (500 * MIB - 1, 256 << 10),
            (500 * MIB, 512 << 10),
            (1000 * MIB, 1 << 20),
            (2000 * MIB, 2 << 20),
            (4000 * MIB, 4 << 20),
            (8000 * MIB, 8 << 20),
            (16000 * MIB - 1, 8 << 20),
            (16000 * MIB, 16 << 20),
            (u64::MAX, 16 << 20),
        ];
        for (file, want) in cases {
            assert_eq!(block_size(file), want, "file of {file} bytes");
        }
    }

    #[test]
    fn rescan_keeps_a_size_within_a_factor_of_two() {
        // Grew just past 250 MiB: ideal 256 KiB, keep 128 KiB.
        assert_eq!(block_size_for_rescan(250 * MIB, Some(128 << 10)), 128 << 10);
        // Grew past 500 MiB: ideal 512 KiB is 4x: switch.
        assert_eq!(block_size_for_rescan(500 * MIB, Some(128 << 10)), 512 << 10);
        // Shrank below 250 MiB: ideal 128 KiB, keep 256 KiB.
        assert_eq!(block_size_for_rescan(MIB, Some(256 << 10)), 256 << 10);
        assert_eq!(block_size_for_rescan(MIB, Some(512 << 10)), 128 << 10);
        // No previous size, or a nonsense one: ideal.
        assert_eq!(block_size_for_rescan(MIB, None), 128 << 10);
        assert_eq!(block_size_for_rescan(MIB, Some(1000)), 128 << 10);
    }

    #[test]
    fn valid_sizes() {
        let valid: Vec<u32> = (0..32)
            .map(|k| 1u32 << k)
            .filter(|&s| is_valid_block_size(s))
            .collect();
        assert_eq!(valid.len(), 8);
        assert!(!is_valid_block_size(0));
        assert!(!is_valid_block_size(3 << 17));
    }
}
