//! The notify watches of one folder (the only code that knows notify): a
//! recursive watch on the root, its events fed through an [`Aggregator`]
//! on a thread of its own, and the settled scan requests sent to the
//! folder's runner.
//!
//! Before watching, the directories are counted: inotify needs one watch
//! per directory, and a limit that is too low would otherwise fail part
//! way (or silently, for directories created later). When the folder does
//! not fit, nothing is watched and the status says how many watches are
//! needed and how to raise the limit; the runner then rescans often.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, watch};

use super::aggregate::{Aggregator, ScanRequest, Settings};

/// Events waiting for the aggregator. While the runner pulls, the
/// aggregator waits to hand over a request and events queue here: one per
/// write, rename and close of every file pulled, so unbounded this grew to
/// 300 MiB on a 100,000-file initial sync. Past the bound they are dropped
/// and the folder is scanned whole instead, as after an inotify overflow.
const EVENT_QUEUE: usize = 4096;

/// Where the per-user inotify watch limit is read from.
const LIMIT_FILE: &str = "/proc/sys/fs/inotify/max_user_watches";

/// What the watcher of a folder is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchState {
    /// Watching is switched off for this folder.
    Off,
    /// Every directory is watched.
    Watching {
        /// Directories watched when it started.
        dirs: u64,
    },
    /// The folder needs more watches than it may have: not watched,
    /// rescanned periodically instead.
    Limited {
        /// Watches the folder needs (one per directory).
        needed: u64,
        /// The limit in force.
        limit: u64,
        /// The limit is ferrosync's `max_watches`, not the OS's.
        configured: bool,
    },
    /// Watching failed for another reason: rescanned periodically.
    Failed(String),
}

impl WatchState {
    /// The name used in `status --json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Watching { .. } => "watching",
            Self::Limited { .. } => "limited",
            Self::Failed(_) => "failed",
        }
    }

    /// Changes arrive as they happen.
    pub fn is_watching(&self) -> bool {
        matches!(self, Self::Watching { .. })
    }

    /// What to tell the user, if anything is wrong.
    pub fn problem(&self) -> Option<String> {
        match self {
            Self::Off | Self::Watching { .. } => None,
            Self::Limited {
                needed,
                limit,
                configured,
            } => {
                let raise = if *configured {
                    format!("`ferrosync config set max_watches {needed}` (or 0 for the OS limit)")
                } else {
                    format!(
                        "`sysctl fs.inotify.max_user_watches={}` (and a line in /etc/sysctl.d/ \
                         to keep it)",
                        limit + needed
                    )
                };
                Some(format!(
                    "not watching for changes: the folder needs {needed} inotify watches but the \
                     limit is {limit}; raise it with {raise}; until then changes are found by \
                     rescans every minute"
                ))
            }
            Self::Failed(e) => Some(format!(
                "not watching for changes: {e}; changes are found by periodic rescans"
            )),
        }
    }
}

/// A running watch; dropping it stops watching.
pub struct FolderWatch {
    /// Scan requests as changes settle.
    pub requests: mpsc::Receiver<ScanRequest>,
    /// The watch's state.
    pub state: watch::Receiver<WatchState>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// What [`FolderWatch::next`] saw.
pub enum Next {
    /// Changes settled: scan this.
    Scan(ScanRequest),
    /// [`FolderWatch::state`] changed.
    State,
    /// Nothing more will come (not watching, or the watch ended).
    Ended,
}

impl FolderWatch {
    /// Waits for the next scan request or state change.
    pub async fn next(&mut self) -> Next {
        tokio::select! {
            r = self.requests.recv() => r.map_or(Next::Ended, Next::Scan),
            r = self.state.changed() => if r.is_ok() { Next::State } else { Next::Ended },
        }
    }
}

/// Starts watching `root`. `cap` lowers the OS watch limit (0: the OS
/// limit alone).
pub fn spawn(root: &Path, settings: Settings, cap: u64) -> FolderWatch {
    let (req_tx, req_rx) = mpsc::channel(4);
    let (state_tx, state_rx) = watch::channel(WatchState::Off);
    let root = root.to_path_buf();
    let needed = count_dirs(&root);
    let os = os_limit();
    let cap = Some(cap).filter(|c| *c > 0 && os.is_none_or(|o| *c < o));
    let limit = cap.or(os);
    if let Some(limit) = limit.filter(|l| needed > *l) {
        let s = WatchState::Limited {
            needed,
            limit,
            configured: cap.is_some(),
        };
        tracing::warn!(root = %root.display(), "{}", s.problem().unwrap_or_default());
        state_tx.send_replace(s);
        return FolderWatch {
            requests: req_rx,
            state: state_rx,
            _watcher: None,
        };
    }
    let (ev_tx, ev_rx) = std_mpsc::sync_channel::<notify::Result<notify::Event>>(EVENT_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let overflowed = overflow.clone();
    let watcher = notify::recommended_watcher(move |ev| {
        if let Err(std_mpsc::TrySendError::Full(_)) = ev_tx.try_send(ev) {
            overflowed.store(true, Ordering::Relaxed);
        }
    })
    .and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|()| w));
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            let s = failure(&e, needed, limit);
            tracing::warn!(root = %root.display(), "{}", s.problem().unwrap_or_default());
            state_tx.send_replace(s);
            return FolderWatch {
                requests: req_rx,
                state: state_rx,
                _watcher: None,
            };
        }
    };
    tracing::debug!(root = %root.display(), dirs = needed, "watching");
    state_tx.send_replace(WatchState::Watching { dirs: needed });
    let spawned = std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            let events = Events {
                queue: ev_rx,
                overflow,
            };
            aggregate(root, settings, events, req_tx, state_tx, needed, limit)
        });
    if let Err(e) = spawned {
        tracing::warn!("starting a watch thread: {e}");
    }
    FolderWatch {
        requests: req_rx,
        state: state_rx,
        _watcher: Some(watcher),
    }
}

/// The state after notify refused a watch.
fn failure(e: &notify::Error, needed: u64, limit: Option<u64>) -> WatchState {
    match (&e.kind, limit) {
        // Other processes of this user hold the rest of the OS limit.
        (notify::ErrorKind::MaxFilesWatch, Some(limit)) => WatchState::Limited {
            needed,
            limit,
            configured: false,
        },
        _ => WatchState::Failed(e.to_string()),
    }
}

/// notify's events, and whether some were dropped.
struct Events {
    queue: std_mpsc::Receiver<notify::Result<notify::Event>>,
    overflow: Arc<AtomicBool>,
}

/// Feeds events through the aggregator until the watch is dropped or the
/// runner is gone.
fn aggregate(
    root: PathBuf,
    settings: Settings,
    events: Events,
    requests: mpsc::Sender<ScanRequest>,
    state: watch::Sender<WatchState>,
    needed: u64,
    limit: Option<u64>,
) {
    let mut agg = Aggregator::new(settings);
    loop {
        let ev = match agg.next_deadline() {
            Some(at) => events
                .queue
                .recv_timeout(at.saturating_duration_since(Instant::now())),
            None => events
                .queue
                .recv()
                .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        if events.overflow.swap(false, Ordering::Relaxed) {
            tracing::debug!(root = %root.display(), "watch events dropped; scanning the folder");
            agg.full(now);
        }
        match ev {
            Ok(Ok(ev)) => note(&root, &ev, &mut agg, now),
            Ok(Err(e)) => {
                // A watch on a new directory failed (most likely the
                // limit): what it holds is only found by rescans now.
                let s = failure(&e, needed.max(count_dirs(&root)), limit);
                tracing::warn!(root = %root.display(), "{}", s.problem().unwrap_or_default());
                state.send_replace(s);
                agg.full(now);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if let Some(req) = agg.ready(Instant::now()) {
            if requests.blocking_send(req).is_err() {
                return;
            }
        }
    }
}

/// Hands one event's paths to the aggregator.
fn note(root: &Path, ev: &notify::Event, agg: &mut Aggregator, now: Instant) {
    if ev.need_rescan() {
        agg.full(now);
        return;
    }
    match ev.kind {
        // Reads change nothing; a close after writing ends a write burst.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return,
        _ => {}
    }
    for p in &ev.paths {
        match p.strip_prefix(root).ok().map(|r| r.to_str()) {
            Some(Some(rel)) => agg.changed(rel, now),
            // Not UTF-8, or not under the root: let a full scan sort it out.
            _ => agg.full(now),
        }
    }
}

/// Directories under `root`, itself included, not following symlinks.
fn count_dirs(root: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        n += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    n
}

fn os_limit() -> Option<u64> {
    std::fs::read_to_string(LIMIT_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()
}
