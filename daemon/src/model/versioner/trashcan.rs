//! The trash can: the last copy of each file, removed after a number of
//! days.

use std::time::{Duration, SystemTime};

use super::Version;

/// The copies older than `days` (none when `days` is 0).
pub(super) fn expired(all: &[Version], days: u32, now: SystemTime) -> Vec<Version> {
    if days == 0 {
        return Vec::new();
    }
    let limit = Duration::from_secs(u64::from(days) * 86_400);
    all.iter()
        .filter(|v| now.duration_since(v.at).is_ok_and(|age| age > limit))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_past_their_days_go() {
        let now = SystemTime::now();
        let v = |name: &str, days_ago: u64| Version {
            name: name.into(),
            stored: format!(".stversions/{name}"),
            at: now - Duration::from_secs(days_ago * 86_400),
            size: 1,
        };
        let all = [v("old", 31), v("recent", 29), v("new", 0)];
        let gone: Vec<_> = expired(&all, 30, now).into_iter().map(|v| v.name).collect();
        assert_eq!(gone, ["old"]);
        assert!(expired(&all, 0, now).is_empty(), "0 keeps forever");
    }
}
