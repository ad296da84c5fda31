//! The event aggregator, pure: paths that changed go in with the time they
//! were seen; scan requests come out once things settle. Like Syncthing's
//! `lib/watchaggregator`, but per directory and with a settle of a fraction
//! of a second rather than ten seconds:
//!
//! - events are grouped by the directory holding the path; a group is
//!   ready once no event has touched it for `settle` (a file still being
//!   written keeps its group waiting, so it is not scanned torn), or once
//!   its oldest event is `max_delay` old (so a file written forever is
//!   still scanned now and then; the scanner itself re-queues a file that
//!   is not quiet);
//! - every ready group goes out in one request; a group of more than
//!   `dir_cap` paths becomes its directory (a burst in one directory is
//!   one directory scan), a path under another requested path is dropped,
//!   and more than `total_cap` paths become a full scan;
//! - internal names (temp files, the marker, `.stversions`) are dropped
//!   before anything else; a change to `.stignore` asks for a full scan,
//!   since what is ignored may have changed everywhere.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The aggregator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Quiet time a directory's changes wait for.
    pub settle: Duration,
    /// The longest a change waits, however busy its directory.
    pub max_delay: Duration,
    /// Paths in one directory beyond which the directory is scanned.
    pub dir_cap: usize,
    /// Paths in one request beyond which the folder is scanned.
    pub total_cap: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            settle: Duration::from_millis(150),
            max_delay: Duration::from_secs(10),
            dir_cap: 100,
            total_cap: 1000,
        }
    }
}

/// What to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRequest {
    /// These folder-relative paths (files or directories), sorted.
    Paths(Vec<String>),
    /// The whole folder.
    Full,
}

/// The changes of one directory not yet asked for.
#[derive(Debug)]
struct Group {
    paths: Vec<String>,
    first: Instant,
    last: Instant,
}

/// Changes waiting to settle.
#[derive(Debug)]
pub struct Aggregator {
    settings: Settings,
    groups: BTreeMap<String, Group>,
    /// A full scan is wanted, from this time.
    full: Option<Instant>,
    /// Paths held in `groups`.
    held: usize,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            groups: BTreeMap::new(),
            full: None,
            held: 0,
        }
    }

    /// `path` (folder-relative, `/`-separated; empty for the root itself)
    /// changed at `now`.
    pub fn changed(&mut self, path: &str, now: Instant) {
        let path = path.trim_matches('/');
        if path == ".stignore" || path.is_empty() {
            self.full(now);
            return;
        }
        if crate::fs::is_internal(path) {
            return;
        }
        if self.full.is_some() {
            // The full scan covers it; holding paths meanwhile would grow
            // with every file a long pull writes.
            return;
        }
        if self.held >= self.settings.total_cap * 4 {
            // More than one request could carry: a full scan it is, and
            // memory stays bounded however many directories change.
            self.full(now);
            self.groups.clear();
            self.held = 0;
            return;
        }
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let g = self.groups.entry(dir).or_insert_with(|| Group {
            paths: Vec::new(),
            first: now,
            last: now,
        });
        g.last = now;
        // A directory over its cap is scanned whole: its paths no longer
        // need keeping (the cap bounds memory per directory too).
        if g.paths.len() <= self.settings.dir_cap && !g.paths.iter().any(|p| p == path) {
            g.paths.push(path.to_string());
            self.held += 1;
        }
    }

    /// Something changed that only a full scan can sort out (e.g. the
    /// events were lost).
    pub fn full(&mut self, now: Instant) {
        self.full.get_or_insert(now);
    }

    /// When [`Aggregator::ready`] may next have something, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let s = &self.settings;
        let groups = self
            .groups
            .values()
            .map(|g| (g.last + s.settle).min(g.first + s.max_delay));
        groups.chain(self.full.map(|t| t + s.settle)).min()
    }

    /// The scan to run now, if anything has settled.
    pub fn ready(&mut self, now: Instant) -> Option<ScanRequest> {
        let s = self.settings;
        if let Some(t) = self.full {
            if now >= t + s.settle {
                self.full = None;
                self.groups.clear();
                self.held = 0;
                return Some(ScanRequest::Full);
            }
        }
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| now >= g.last + s.settle || now >= g.first + s.max_delay)
            .map(|(d, _)| d.clone())
            .collect();
        if due.is_empty() {
            return None;
        }
        let mut paths = Vec::new();
        for dir in due {
            let g = self.groups.remove(&dir).expect("listed above");
            self.held -= g.paths.len();
            if g.paths.len() > s.dir_cap {
                if dir.is_empty() {
                    return Some(self.full_now());
                }
                paths.push(dir);
            } else {
                paths.extend(g.paths);
            }
        }
        paths.sort();
        paths.dedup();
        // Keep a path only if none of its ancestors is asked for.
        let asked: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
        let kept: Vec<String> = paths
            .iter()
            .filter(|p| !p.match_indices('/').any(|(i, _)| asked.contains(&p[..i])))
            .cloned()
            .collect();
        if kept.len() > s.total_cap {
            return Some(self.full_now());
        }
        Some(ScanRequest::Paths(kept))
    }

    /// A full scan covers everything still waiting.
    fn full_now(&mut self) -> ScanRequest {
        self.groups.clear();
        self.held = 0;
        self.full = None;
        ScanRequest::Full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn agg() -> (Aggregator, Instant) {
        (Aggregator::new(Settings::default()), Instant::now())
    }

    fn paths(r: Option<ScanRequest>) -> Vec<String> {
        match r {
            Some(ScanRequest::Paths(p)) => p,
            other => panic!("expected paths, got {other:?}"),
        }
    }

    #[test]
    fn a_change_is_asked_for_once_its_directory_is_quiet() {
        let (mut a, t0) = agg();
        assert_eq!(a.next_deadline(), None);
        a.changed("docs/a.txt", t0);
        assert_eq!(a.next_deadline(), Some(t0 + 150 * MS));
        assert_eq!(a.ready(t0 + 149 * MS), None);
        assert_eq!(paths(a.ready(t0 + 150 * MS)), ["docs/a.txt"]);
        assert_eq!(a.ready(t0 + 300 * MS), None);
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn a_file_still_being_written_waits_but_not_forever() {
        let (mut a, t0) = agg();
        // Appended to every 50 ms for 3 s: never quiet for 150 ms.
        let mut t = t0;
        while t < t0 + Duration::from_secs(3) {
            a.changed("log.txt", t);
            assert_eq!(a.ready(t), None, "asked for while still written");
            t += 50 * MS;
        }
        assert_eq!(paths(a.ready(t + 150 * MS)), ["log.txt"]);
        // Written for longer than max_delay: asked for at max_delay.
        let t1 = t + Duration::from_secs(1);
        let mut t = t1;
        let mut asked = None;
        while t < t1 + Duration::from_secs(12) && asked.is_none() {
            a.changed("log.txt", t);
            asked = a.ready(t).map(|_| t);
            t += 50 * MS;
        }
        assert_eq!(asked, Some(t1 + Duration::from_secs(10)));
    }

    #[test]
    fn changes_in_more_directories_than_a_request_carries_become_one_full_scan() {
        // A long pull writes every file of a large folder while nobody
        // asks for the requests: what is held must stay bounded.
        let (mut a, t0) = agg();
        for d in 0..20_000 {
            for f in 0..3 {
                a.changed(&format!("d{d}/f{f}"), t0);
            }
            assert!(
                a.held <= 4 * Settings::default().total_cap,
                "{} held",
                a.held
            );
        }
        assert!(a.groups.is_empty(), "{} directories held", a.groups.len());
        assert_eq!(a.ready(t0 + 150 * MS), Some(ScanRequest::Full));
        assert_eq!(a.ready(t0 + 300 * MS), None);
        // Counted down again as requests go out.
        a.changed("docs/a.txt", t0 + 400 * MS);
        assert_eq!(paths(a.ready(t0 + 550 * MS)), ["docs/a.txt"]);
        assert_eq!(a.held, 0);
    }

    #[test]
    fn a_busy_directory_does_not_hold_up_a_quiet_one() {
        let (mut a, t0) = agg();
        a.changed("quiet/x", t0);
        a.changed("busy/y", t0 + 100 * MS);
        assert_eq!(paths(a.ready(t0 + 160 * MS)), ["quiet/x"]);
        assert_eq!(a.ready(t0 + 200 * MS), None);
        assert_eq!(paths(a.ready(t0 + 250 * MS)), ["busy/y"]);
    }

    #[test]
    fn a_burst_in_one_directory_is_one_directory_scan() {
        let (mut a, t0) = agg();
        for i in 0..1000 {
            a.changed(&format!("photos/img{i:04}.jpg"), t0 + (i / 100) * MS);
        }
        a.changed("notes.txt", t0);
        assert_eq!(a.ready(t0 + 100 * MS), None);
        assert_eq!(paths(a.ready(t0 + 200 * MS)), ["notes.txt", "photos"]);
        assert_eq!(a.ready(t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn too_much_at_once_is_a_full_scan_and_the_root_too() {
        let (mut a, t0) = agg();
        for d in 0..1001 {
            a.changed(&format!("d{d}/f"), t0);
        }
        assert_eq!(a.ready(t0 + 150 * MS), Some(ScanRequest::Full));
        for i in 0..101 {
            a.changed(&format!("f{i}"), t0);
        }
        assert_eq!(a.ready(t0 + 150 * MS), Some(ScanRequest::Full));
        a.changed("", t0);
        assert_eq!(a.ready(t0 + 150 * MS), Some(ScanRequest::Full));
    }

    #[test]
    fn internal_names_are_dropped_and_stignore_is_a_full_scan() {
        let (mut a, t0) = agg();
        for p in [
            "docs/.syncthing.a.txt.tmp",
            "~syncthing~b.tmp",
            ".stfolder",
            ".stversions/old~20260101-000000.txt",
        ] {
            a.changed(p, t0);
        }
        assert_eq!(a.next_deadline(), None);
        assert_eq!(a.ready(t0 + Duration::from_secs(1)), None);
        a.changed("docs/a.txt", t0);
        a.changed(".stignore", t0);
        assert_eq!(a.ready(t0 + 150 * MS), Some(ScanRequest::Full));
        assert_eq!(
            a.ready(t0 + 300 * MS),
            None,
            "the full scan covered docs/a.txt"
        );
    }

    #[test]
    fn paths_under_a_requested_directory_are_not_asked_for_twice() {
        let (mut a, t0) = agg();
        a.changed("a", t0);
        a.changed("a/b/c", t0);
        a.changed("a/b/c", t0 + MS);
        a.changed("ab", t0);
        // Sorts between "a" and "a/b/c".
        a.changed("a b", t0);
        assert_eq!(paths(a.ready(t0 + 200 * MS)), ["a", "a b", "ab"]);
    }
}
