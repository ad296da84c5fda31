//! The folder runner: scans a folder at start, when asked, and on a timer
//! with jitter; publishes its state and scan progress for the API.
//!
//! ```text
//! daemon ── spawns ──▶ runner task ── per scan ──▶ blocking scan thread(s)
//!   ▲                     │ exits when its request channel closes
//!   └─ FolderHandle ◀─────┘ (status, progress, rescan requests)
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::ShortId;
use tokio::sync::{mpsc, watch};

use crate::config::FolderConfig;
use crate::index::{FolderIndex, LOCAL};
use crate::scanner::ignore::Ignores;
use crate::scanner::{self, ScanOptions, ScanProgress};

/// What a folder is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderState {
    /// Waiting for work.
    Idle,
    /// A scan is running.
    Scanning,
    /// It cannot be scanned; the reason says why.
    Error(String),
}

impl FolderState {
    /// The name used in `status --json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Scanning => "scanning",
            Self::Error(_) => "error",
        }
    }
}

/// A folder's published status.
#[derive(Debug, Clone)]
pub struct FolderStatus {
    /// Current state.
    pub state: FolderState,
    /// Scans finished (successfully or not) since start.
    pub scans_completed: u64,
    /// Per-file problems of the last scan.
    pub errors: Vec<String>,
    /// How long the last scan took.
    pub last_scan: Option<Duration>,
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
    status: watch::Receiver<FolderStatus>,
    requests: mpsc::Sender<()>,
    /// Scans started or queued so far; the Nth scan to finish is the one
    /// that made this N. Rescan callers wait for their number.
    requested: Arc<Mutex<u64>>,
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

    /// Waits until `scans_completed` reaches `target` (or the runner stops).
    pub async fn wait_for_scan(&self, target: u64) {
        let mut rx = self.status.clone();
        let _ = rx.wait_for(|s| s.scans_completed >= target).await;
    }
}

/// Starts a folder's runner. It scans at once, then on request and every
/// `rescan_interval_s` (with ±25% jitter) until `stop` is set.
pub fn spawn(
    config: FolderConfig,
    index: Arc<FolderIndex>,
    own: ShortId,
    stop: Arc<AtomicBool>,
) -> (FolderHandle, tokio::task::JoinHandle<()>) {
    let interval = Duration::from_secs(config.rescan_interval_s.max(1));
    let (status_tx, status_rx) = watch::channel(FolderStatus {
        state: FolderState::Idle,
        scans_completed: 0,
        errors: Vec::new(),
        last_scan: None,
    });
    let (req_tx, mut req_rx) = mpsc::channel::<()>(1);
    let progress = Arc::new(ScanProgress::default());
    let handle = FolderHandle {
        config: config.clone(),
        index: index.clone(),
        progress: progress.clone(),
        status: status_rx,
        requests: req_tx,
        requested: Arc::new(Mutex::new(1)),
    };
    let requested = handle.requested.clone();
    let task = tokio::spawn(async move {
        loop {
            let started = Instant::now();
            let outcome = {
                let (config, index, progress, stop) = (
                    config.clone(),
                    index.clone(),
                    progress.clone(),
                    stop.clone(),
                );
                status_tx.send_modify(|s| {
                    if !matches!(s.state, FolderState::Error(_)) || s.scans_completed == 0 {
                        s.state = FolderState::Scanning;
                    }
                });
                tokio::task::spawn_blocking(move || {
                    run_scan(&config, &index, own, &progress, &stop)
                })
                .await
                .unwrap_or_else(|e| Err(format!("scan panicked: {e}")))
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            status_tx.send_modify(|s| {
                s.scans_completed += 1;
                s.last_scan = Some(started.elapsed());
                match outcome {
                    Ok(errors) => {
                        s.state = FolderState::Idle;
                        s.errors = errors;
                    }
                    Err(reason) => s.state = FolderState::Error(reason),
                }
            });
            tokio::select! {
                r = req_rx.recv() => if r.is_none() { break },
                _ = tokio::time::sleep(jittered(interval)) => {
                    *requested.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    });
    (handle, task)
}

/// Scans once; returns the per-file errors or why the folder cannot scan.
fn run_scan(
    config: &FolderConfig,
    index: &FolderIndex,
    own: ShortId,
    progress: &ScanProgress,
    stop: &AtomicBool,
) -> Result<Vec<String>, String> {
    for counter in [
        &progress.files_total,
        &progress.bytes_total,
        &progress.files_done,
        &progress.bytes_done,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    let root: &PathBuf = &config.path;
    let ignores = Ignores::load(root).map_err(|e| e.to_string())?;
    let opts = ScanOptions {
        own,
        ignores: &ignores,
        progress,
        cancel: stop,
        threads: 0,
    };
    let t = Instant::now();
    match scanner::scan(root, index, &opts) {
        Ok(report) => {
            tracing::info!(
                folder = %config.id,
                changes = report.changes,
                hashed_files = report.hashed_files,
                hashed_bytes = report.hashed_bytes,
                elapsed_ms = t.elapsed().as_millis() as u64,
                local_files = index.device_meta(LOCAL).map(|m| m.counts.files).unwrap_or(0),
                "scan complete"
            );
            Ok(report.errors)
        }
        Err(scanner::ScanError::Cancelled) => Ok(Vec::new()),
        Err(e) => {
            tracing::warn!(folder = %config.id, "cannot scan: {e}");
            Err(e.to_string())
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    let quarter = interval / 4;
    let extra = rand::random::<f64>() * (quarter * 2).as_secs_f64();
    interval - quarter + Duration::from_secs_f64(extra)
}
