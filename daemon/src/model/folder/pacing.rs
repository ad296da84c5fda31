//! How long the runner waits before doing something again: rescans a
//! pull pass asks for, retries of passes that got nothing done, and the
//! deletions that count toward the delete guard.

use std::time::{Duration, Instant};

/// How long deletions count toward the delete guard: a `rm -rf` of a
/// large tree reaches the scanner a directory at a time.
const RECENT_DELETES: Duration = Duration::from_secs(600);

/// Rescans a pull pass asks for (it found the disk differing from the
/// index) run at once while they find changes; one that found nothing
/// means the next such request waits, 1 s doubling to 60 s, so no
/// disagreement between the puller and the scanner can spin the folder.
#[derive(Default)]
pub(super) struct PullRescan {
    /// The running scan was asked for by a pull pass.
    from_pull: bool,
    /// How long the next pull-requested rescan waits (zero: at once).
    wait: Duration,
    /// When a deferred one is due.
    at: Option<tokio::time::Instant>,
}

impl PullRescan {
    const MAX_WAIT: Duration = Duration::from_secs(60);

    /// A scan finished having recorded `changes` entries.
    pub(super) fn scanned(&mut self, changes: usize) {
        if changes > 0 {
            self.wait = Duration::ZERO;
        } else if self.from_pull {
            self.wait = (self.wait * 2).clamp(Duration::from_secs(1), Self::MAX_WAIT);
        }
        self.from_pull = false;
    }

    /// A pull pass asks for a rescan: whether to run it now (else it is
    /// scheduled for [`PullRescan::due`]).
    pub(super) fn now(&mut self) -> bool {
        if self.wait.is_zero() {
            self.started();
            return true;
        }
        self.at
            .get_or_insert_with(|| tokio::time::Instant::now() + self.wait);
        false
    }

    /// The deferred rescan starts.
    pub(super) fn started(&mut self) {
        self.at = None;
        self.from_pull = true;
    }

    /// Whether a deferred rescan is due by now.
    pub(super) fn overdue(&self) -> bool {
        self.at.is_some_and(|at| at <= tokio::time::Instant::now())
    }

    /// Resolves when a deferred rescan is due; never if none is.
    pub(super) async fn due(&self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Retries of a pull pass that got nothing done while the folder still
/// needs something: 10 s doubling to 60 s (Syncthing retries failed items
/// after a minute), until a pass makes progress or nothing is needed.
#[derive(Default)]
pub(super) struct Backoff {
    /// The wait before the next retry (zero: none failed yet).
    wait: Duration,
    /// When the pending retry is due.
    at: Option<tokio::time::Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(60);

    /// A pass got nothing done: schedules the next one.
    pub(super) fn failed(&mut self) {
        self.wait = (self.wait * 2).clamp(Self::FIRST, Self::MAX);
        self.at = Some(tokio::time::Instant::now() + self.wait);
    }

    /// Retries after `wait`, whatever the backoff was (a known condition
    /// such as a full disk is looked at again soon).
    pub(super) fn after(&mut self, wait: Duration) {
        self.at = Some(tokio::time::Instant::now() + wait);
    }

    /// Progress, or nothing needed: no retry, and the next wait is short.
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// The retry is running.
    pub(super) fn started(&mut self) {
        self.at = None;
    }

    /// Resolves when a retry is due; never if none is.
    pub(super) async fn due(&self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Deletions carried out lately, for the delete guard.
#[derive(Default)]
pub(super) struct RecentDeletes(std::collections::VecDeque<(Instant, u64)>);

impl RecentDeletes {
    /// Files deleted within [`RECENT_DELETES`].
    pub(super) fn count(&mut self) -> u64 {
        while self
            .0
            .front()
            .is_some_and(|(t, _)| t.elapsed() > RECENT_DELETES)
        {
            self.0.pop_front();
        }
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// `n` more files were deleted; `accepted`: confirmed by the user, so
    /// the count starts over.
    pub(super) fn carried_out(&mut self, n: u64, accepted: bool) {
        if accepted {
            self.0.clear();
        } else if n > 0 {
            self.0.push_back((Instant::now(), n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passes that get nothing done are retried 10 s, 20 s, 40 s, then
    /// every 60 s later; progress starts over.
    #[test]
    fn pull_retries_back_off_until_progress() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("rt");
        rt.block_on(async {
            let mut b = Backoff::default();
            let t0 = tokio::time::Instant::now();
            let mut waits = Vec::new();
            for _ in 0..5 {
                b.failed();
                b.due().await;
                b.started();
                waits.push(t0.elapsed().as_secs());
            }
            assert_eq!(waits, [10, 30, 70, 130, 190]);
            b.clear();
            b.failed();
            assert_eq!(b.wait, Backoff::FIRST);
        });
    }

    /// A pull that keeps asking for rescans that find nothing is slowed
    /// down, 1 s doubling to 60 s; a scan that finds changes resets it.
    #[test]
    fn pull_requested_rescans_back_off_while_they_find_nothing() {
        let mut r = PullRescan::default();
        assert!(r.now(), "the first one runs at once");
        r.scanned(0);
        assert_eq!(r.wait, Duration::from_secs(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        rt.block_on(async {
            assert!(!r.now(), "deferred");
            assert!(r.at.is_some());
        });
        r.started();
        r.scanned(0);
        assert_eq!(r.wait, Duration::from_secs(2));
        for _ in 0..10 {
            r.from_pull = true;
            r.scanned(0);
        }
        assert_eq!(r.wait, PullRescan::MAX_WAIT);
        r.scanned(3);
        assert!(r.wait.is_zero() && r.now(), "changes found: at once again");
    }
}
