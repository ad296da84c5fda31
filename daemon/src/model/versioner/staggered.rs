//! Staggered versioning: copies thinned as they age (Syncthing's
//! intervals: one per 30 s for the first hour, one per hour for the first
//! day, one per day for the first 30 days, one per week after), and
//! removed past a maximum age.

use std::time::{Duration, SystemTime};

use super::{by_file, Version};

/// (age up to, in seconds; one copy per this many seconds).
const INTERVALS: &[(u64, u64)] = &[
    (3_600, 30),
    (86_400, 3_600),
    (30 * 86_400, 86_400),
    (u64::MAX, 7 * 86_400),
];

/// The copies that go: older than `max_age_days` (0: no limit), or closer
/// to the next older copy kept than their age's interval allows.
pub(super) fn thinned(all: &[Version], max_age_days: u32, now: SystemTime) -> Vec<Version> {
    let max_age = match max_age_days {
        0 => u64::MAX,
        d => u64::from(d) * 86_400,
    };
    let age = |v: &Version| now.duration_since(v.at).unwrap_or(Duration::ZERO).as_secs();
    let mut gone = Vec::new();
    for copies in by_file(all) {
        // Oldest first: each copy is measured against the last one kept.
        let mut last_kept: Option<u64> = None;
        for v in copies {
            let a = age(v);
            if a > max_age {
                gone.push(v.clone());
                continue;
            }
            let step = INTERVALS
                .iter()
                .find(|(upto, _)| a <= *upto)
                .map_or(u64::MAX, |(_, step)| *step);
            match last_kept {
                Some(prev) if prev - a.min(prev) < step => gone.push(v.clone()),
                _ => last_kept = Some(a),
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_thin_out_with_age_and_go_past_the_maximum() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(400 * 86_400);
        let v = |secs_ago: u64| Version {
            name: "f".into(),
            stored: format!(".stversions/f~{secs_ago}"),
            at: now - Duration::from_secs(secs_ago),
            size: 1,
        };
        let all = [
            v(380 * 86_400), // past a year: goes
            v(20 * 86_400),
            v(20 * 86_400 - 3_600), // an hour after a kept one, 20 days old: goes
            v(2 * 86_400),
            v(600),
            v(590), // 10 s after one kept, in the first hour: goes
            v(500),
        ];
        let gone: Vec<_> = thinned(&all, 365, now)
            .into_iter()
            .map(|v| v.stored)
            .collect();
        assert_eq!(
            gone,
            [
                format!(".stversions/f~{}", 380 * 86_400),
                format!(".stversions/f~{}", 20 * 86_400 - 3_600),
                ".stversions/f~590".to_string(),
            ]
        );
        assert_eq!(thinned(&all, 0, now).len(), 2, "no maximum age");
    }
}
