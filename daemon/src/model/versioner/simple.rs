//! Simple versioning: the last few copies of each file.

use super::{by_file, Version};

/// The copies of each file beyond the newest `keep`.
pub(super) fn beyond(all: &[Version], keep: u32) -> Vec<Version> {
    by_file(all)
        .into_iter()
        .flat_map(|copies| {
            let extra = copies.len().saturating_sub(keep as usize);
            copies[..extra].to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_oldest_beyond_the_count_go() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let v = |name: &str, s: u64| Version {
            name: name.into(),
            stored: format!(".stversions/{name}~{s}"),
            at: t0 + Duration::from_secs(s),
            size: 1,
        };
        let all = [v("a", 1), v("a", 2), v("a", 3), v("b", 1)];
        let gone: Vec<_> = beyond(&all, 2).into_iter().map(|v| v.stored).collect();
        assert_eq!(gone, [".stversions/a~1"]);
        assert!(beyond(&all, 5).is_empty());
    }
}
