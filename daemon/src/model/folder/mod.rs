//! The folder runner: scans a folder at start, when asked, and on a timer
//! with jitter; publishes its state and scan progress for the API.
//!
//! ```text
//! daemon ── spawns ──▶ runner task ── per scan ──▶ a scan thread (+ its hash workers)
//!   ▲                     │ exits when its request channel closes
//!   └─ FolderHandle ◀─────┘ (status, progress, rescan requests)
//! ```
//!
//! `runner.rs` is the runner itself, `pacing.rs` the waits between its
//! retries, `disk.rs` the work it does on the folder's disk (scans,
//! versions cleanup, the free-space check).

mod disk;
mod pacing;
mod runner;

pub use runner::spawn;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::FolderConfig;
use crate::index::FolderIndex;
use crate::scanner::ScanProgress;
use crate::watcher::WatchState;

/// What a folder is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderState {
    /// Waiting for work.
    Idle,
    /// A scan is running.
    Scanning,
    /// Pulling changes from peers.
    Syncing,
    /// It cannot be scanned; the reason says why.
    Error(String),
    /// Neither scanned nor pulled: by the user (`None`), or by the delete
    /// guard, for the reason given, until the deletions are accepted.
    Paused(Option<String>),
    /// Not pulling: the disk is (nearly) full; looked at again every few
    /// seconds, and pulling resumes by itself once there is space.
    NoSpace(String),
}

impl FolderState {
    /// The name used in `status --json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Scanning => "scanning",
            Self::Syncing => "syncing",
            Self::Error(_) => "error",
            Self::Paused(_) | Self::NoSpace(_) => "paused",
        }
    }
}

/// What a one-way folder can be told to do to agree with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Send-only: our version of everything the cluster changed wins.
    Override,
    /// Receive-only: drop our local changes, take the global version.
    Revert,
}

/// An [`Op`] with where its answer (the names changed, or why not) goes.
type OpRequest = (Op, tokio::sync::oneshot::Sender<Result<usize, String>>);

/// A folder's published status.
#[derive(Debug, Clone)]
pub struct FolderStatus {
    /// Current state.
    pub state: FolderState,
    /// Scans finished (successfully or not) since start.
    pub scans_completed: u64,
    /// Per-file problems of the last scan.
    pub errors: Vec<String>,
    /// What the last pull pass could not do, per entry.
    pub pull_errors: Vec<super::pull_error::PullError>,
    /// How long the last scan took.
    pub last_scan: Option<Duration>,
    /// Scans of the paths the watcher reported, finished since start.
    pub watch_scans: u64,
    /// The paths those scans covered (a directory counts once).
    pub watch_scanned_paths: u64,
    /// What the watcher is doing.
    pub watch: WatchState,
    /// Remote deletions of our files held by the delete guard.
    pub deletes_held: u64,
}

/// The daemon's view of a running folder.
#[derive(Clone)]
pub struct FolderHandle {
    /// Its configuration.
    pub config: FolderConfig,
    /// Its index.
    pub index: Arc<FolderIndex>,
    /// Live scan progress (meaningful while scanning).
    pub progress: Arc<ScanProgress>,
    /// Bytes received from peers since the daemon started.
    pub fetched: Arc<AtomicU64>,
    /// Conflicts met pulling since the daemon started.
    pub conflicts: Arc<AtomicU64>,
    status: watch::Receiver<FolderStatus>,
    requests: mpsc::Sender<()>,
    /// Scans started or queued so far; the Nth scan to finish is the one
    /// that made this N. Rescan callers wait for their number.
    requested: Arc<Mutex<u64>>,
    /// Lets the next mass delete a scan finds through.
    accept_outgoing: Arc<AtomicBool>,
    /// Lets the next mass delete a pull pass is asked for through.
    accept_incoming: Arc<AtomicBool>,
    ops: mpsc::Sender<OpRequest>,
}

impl FolderHandle {
    /// The current status.
    pub fn status(&self) -> FolderStatus {
        self.status.borrow().clone()
    }

    /// Asks for a rescan; returns the number `scans_completed` reaches when
    /// a scan that started after this call has finished.
    pub fn request_rescan(&self) -> u64 {
        let mut n = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        // Coalesces: a queued request covers every later one.
        if self.requests.try_send(()).is_ok() {
            *n += 1;
        }
        *n
    }

    /// Accepts the deletions the delete guard holds, in either direction,
    /// and asks for the rescan (and the pull after it) that carries them
    /// out; returns its number as [`FolderHandle::request_rescan`] does,
    /// or `None` when nothing is held.
    pub fn accept_deletes(&self) -> Option<u64> {
        let st = self.status();
        let outgoing = matches!(st.state, FolderState::Paused(Some(_)));
        if !outgoing && st.deletes_held == 0 {
            return None;
        }
        self.accept_outgoing.store(outgoing, Ordering::SeqCst);
        self.accept_incoming
            .store(st.deletes_held > 0, Ordering::SeqCst);
        Some(self.request_rescan())
    }

    /// Runs `op` between the runner's other work; answers the names it
    /// changed, or why it cannot run.
    pub async fn run(&self, op: Op) -> Result<usize, String> {
        use crate::config::FolderType;
        let needs = match op {
            Op::Override => FolderType::SendOnly,
            Op::Revert => FolderType::ReceiveOnly,
        };
        if self.config.kind != needs {
            return Err(format!(
                "folder {:?} is {}; {} is for {} folders",
                self.config.id,
                self.config.kind.as_str(),
                if op == Op::Override {
                    "override"
                } else {
                    "revert"
                },
                needs.as_str()
            ));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ops
            .send((op, tx))
            .await
            .map_err(|_| "the folder is stopping".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the folder is stopping".to_string()))
    }

    /// Waits until `scans_completed` reaches `target` (or the runner stops).
    pub async fn wait_for_scan(&self, target: u64) {
        let mut rx = self.status.clone();
        let _ = rx.wait_for(|s| s.scans_completed >= target).await;
    }
}
