//! The folder runner: scans a folder at start, when asked, and on a timer
//! with jitter; publishes its state and scan progress for the API.
//!
//! ```text
//! daemon ── spawns ──▶ runner task ── per scan ──▶ a scan thread (+ its hash workers)
//!   ▲                     │ exits when its request channel closes
//!   └─ FolderHandle ◀─────┘ (status, progress, rescan requests)
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::ShortId;
use tokio::sync::{mpsc, watch};

use crate::config::FolderConfig;
use crate::index::{FolderIndex, LOCAL};
use crate::peer::Peers;
use crate::scanner::ignore::Ignores;
use crate::scanner::{self, ScanOptions, ScanProgress};
use crate::watcher::watch::Next;
use crate::watcher::{FolderWatch, ScanRequest, WatchState};

/// How long deletions count toward the delete guard: a `rm -rf` of a
/// large tree reaches the scanner a directory at a time.
const RECENT_DELETES: Duration = Duration::from_secs(600);

/// How long deletions the watcher reports wait for the next ones: a
/// `rm -rf` reaches the scanner a directory at a time, and the delete
/// guard must see it whole, not let its first directories through...
const DELETE_SETTLE: Duration = Duration::from_secs(1);

/// ...but no longer than this after the first.
const DELETE_MAX_WAIT: Duration = Duration::from_secs(30);

/// How often a folder out of disk space looks again.
const NO_SPACE_RETRY: Duration = Duration::from_secs(3);

/// How often a folder whose changes cannot be watched is rescanned.
const UNWATCHED_RESCAN: Duration = Duration::from_secs(60);

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

/// Starts a folder's runner. It scans at once, then the paths its watcher
/// reports, on request and every `rescan_interval_s` (with ±25% jitter;
/// every minute while changes cannot be watched), and pulls whatever the
/// folder needs whenever the index or the set of connected peers changes;
/// one thing at a time, until `stop` is set. `max_watches` caps the
/// watches the folder may use (0: only the OS limit).
pub fn spawn(
    config: FolderConfig,
    index: Arc<FolderIndex>,
    own: ShortId,
    peers: Option<Arc<Peers>>,
    stop: Arc<AtomicBool>,
    max_watches: u64,
) -> (FolderHandle, tokio::task::JoinHandle<()>) {
    let interval = Duration::from_secs(config.rescan_interval_s.max(1));
    let watcher = (config.watch && !config.paused).then(|| {
        let settings = crate::watcher::Settings {
            settle: Duration::from_millis(config.watch_settle_ms),
            ..Default::default()
        };
        crate::watcher::watch::spawn(&config.path, settings, max_watches)
    });
    let (status_tx, status_rx) = watch::channel(FolderStatus {
        state: FolderState::Idle,
        scans_completed: 0,
        errors: Vec::new(),
        pull_errors: Vec::new(),
        last_scan: None,
        watch_scans: 0,
        watch_scanned_paths: 0,
        watch: watcher
            .as_ref()
            .map_or(WatchState::Off, |w| w.state.borrow().clone()),
        deletes_held: 0,
    });
    let (req_tx, req_rx) = mpsc::channel::<()>(1);
    let (ops_tx, ops_rx) = mpsc::channel::<OpRequest>(4);
    let progress = Arc::new(ScanProgress::default());
    let handle = FolderHandle {
        config: config.clone(),
        index: index.clone(),
        progress: progress.clone(),
        fetched: Arc::new(AtomicU64::new(0)),
        status: status_rx,
        requests: req_tx,
        requested: Arc::new(Mutex::new(1)),
        accept_outgoing: Arc::new(AtomicBool::new(false)),
        accept_incoming: Arc::new(AtomicBool::new(false)),
        ops: ops_tx,
    };
    let mut runner = Runner {
        changes: index.subscribe(),
        peer_changes: peers.as_ref().map(|p| p.changed.subscribe()),
        requested: handle.requested.clone(),
        fetched: handle.fetched.clone(),
        accept_outgoing: handle.accept_outgoing.clone(),
        accept_incoming: handle.accept_incoming.clone(),
        config,
        index,
        own,
        peers,
        stop,
        progress,
        status: status_tx,
        requests: req_rx,
        ops: ops_rx,
        interval,
        next_timer: tokio::time::Instant::now(),
        watcher,
        watched_paths: None,
        deleting: Vec::new(),
        deletes_due: None,
        scan_due: true,
        pull_rescan: PullRescan::default(),
        scan_deletes: RecentDeletes::default(),
        pull_deletes: RecentDeletes::default(),
        retry: Backoff::default(),
    };
    runner.next_timer += jittered(runner.interval());
    (handle, tokio::spawn(runner.run()))
}

/// One folder's runner: owns the folder's state and does one thing at a
/// time, in named steps: [`Runner::scan`], [`Runner::pull`] and
/// [`Runner::wait`] for the next thing to do.
struct Runner {
    config: FolderConfig,
    index: Arc<FolderIndex>,
    own: ShortId,
    peers: Option<Arc<Peers>>,
    stop: Arc<AtomicBool>,
    progress: Arc<ScanProgress>,
    fetched: Arc<AtomicU64>,
    status: watch::Sender<FolderStatus>,
    requests: mpsc::Receiver<()>,
    ops: mpsc::Receiver<OpRequest>,
    /// Scans started or queued (see [`FolderHandle::request_rescan`]).
    requested: Arc<Mutex<u64>>,
    accept_outgoing: Arc<AtomicBool>,
    accept_incoming: Arc<AtomicBool>,
    changes: watch::Receiver<u64>,
    peer_changes: Option<watch::Receiver<u64>>,
    interval: Duration,
    next_timer: tokio::time::Instant,
    /// The folder's watch, if watching is on.
    watcher: Option<FolderWatch>,
    /// Paths the watcher reported, not scanned yet.
    watched_paths: Option<Vec<String>>,
    /// Watched paths whose scan found deletions, not recorded yet, and
    /// when they are (see [`DELETE_SETTLE`]).
    deleting: Vec<String>,
    deletes_due: Option<(tokio::time::Instant, tokio::time::Instant)>,
    scan_due: bool,
    pull_rescan: PullRescan,
    /// Files our scans recorded deleted lately.
    scan_deletes: RecentDeletes,
    /// Files pull passes deleted lately.
    pull_deletes: RecentDeletes,
    /// The next pull pass while something is needed and the last pass
    /// got none of it: a wake-up the runner missed, or a peer that could
    /// not serve then, costs at most this wait.
    retry: Backoff,
}

/// What the runner does after a pull pass.
enum AfterPull {
    /// Look again at once (progress was made, or a rescan is due).
    Again,
    /// Wait for something to change.
    Wait,
}

impl Runner {
    async fn run(mut self) {
        if self.config.paused {
            // Nothing to do until the config changes, which restarts the
            // runner; requests are taken and dropped (the API refuses them).
            self.status
                .send_modify(|s| s.state = FolderState::Paused(None));
            loop {
                tokio::select! {
                    r = self.requests.recv() => if r.is_none() { return },
                    Some((_, reply)) = self.ops.recv() => {
                        let _ = reply.send(Err(format!(
                            "folder {:?} is paused (`ferrosync folder resume {}`)",
                            self.config.id, self.config.id
                        )));
                    }
                }
            }
        }
        loop {
            if self.stopped() {
                break;
            }
            if self.scan_due {
                self.scan_due = false;
                self.watched_paths = None;
                // A full scan records every deletion there is.
                self.deleting.clear();
                self.deletes_due = None;
                self.scan(None, true).await;
                if self.stopped() {
                    break;
                }
            } else if self
                .deletes_due
                .is_some_and(|(at, _)| at <= tokio::time::Instant::now())
            {
                self.deletes_due = None;
                let paths = std::mem::take(&mut self.deleting);
                self.scan(Some(paths), true).await;
                if self.stopped() {
                    break;
                }
            } else if let Some(paths) = self.watched_paths.take() {
                self.scan(Some(paths), false).await;
                if self.stopped() {
                    break;
                }
            }
            if let AfterPull::Again = self.pull().await {
                continue;
            }
            if !self.wait().await {
                break;
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The time between periodic full scans: shorter while changes cannot
    /// be watched, since those scans are then all that finds them.
    fn interval(&self) -> Duration {
        if self.config.watch && !self.status.borrow().watch.is_watching() {
            self.interval.min(UNWATCHED_RESCAN)
        } else {
            self.interval
        }
    }

    /// Takes in what the watcher asks for: a full scan is queued like any;
    /// paths wait in `watched_paths`, merged.
    fn watched(&mut self, req: ScanRequest) {
        match req {
            ScanRequest::Full => {
                if !self.scan_due {
                    self.queue_scan();
                }
            }
            ScanRequest::Paths(p) => self.watched_paths.get_or_insert_with(Vec::new).extend(p),
        }
    }

    /// Takes whatever the watcher has asked for meanwhile.
    fn drain_watcher(&mut self) {
        let mut got = Vec::new();
        if let Some(w) = self.watcher.as_mut() {
            while let Ok(req) = w.requests.try_recv() {
                got.push(req);
            }
        }
        for req in got {
            self.watched(req);
        }
    }

    /// Publishes a changed watch state and rearms the timer for it. The
    /// watch is dropped once it has ended (its state stays published).
    fn watch_state_changed(&mut self, ended: bool) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let mut state = w.state.borrow_and_update().clone();
        if ended {
            self.watcher = None;
            if state.is_watching() {
                state = WatchState::Failed("the watch stopped".into());
            }
        }
        self.status.send_modify(|s| s.watch = state);
        let soonest = tokio::time::Instant::now() + jittered(self.interval());
        self.next_timer = self.next_timer.min(soonest);
    }

    /// Counts a scan the runner decided on itself (rescan callers wait
    /// for their number).
    fn queue_scan(&mut self) {
        *self.requested.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.scan_due = true;
    }

    /// Scans the folder (or only `paths`) on a thread of its own and
    /// publishes the outcome. Without `record_deletes`, what it finds
    /// deleted waits for a scan of those paths [`DELETE_SETTLE`] after the
    /// last such find.
    async fn scan(&mut self, paths: Option<Vec<String>>, record_deletes: bool) {
        let watched = paths.as_ref().map_or(0, |p| p.len() as u64);
        let started = Instant::now();
        self.status.send_modify(|s| {
            // An error or a hold stays shown (and keeps pulls off) until
            // a scan ends it.
            let stays = matches!(
                s.state,
                FolderState::Error(_) | FolderState::Paused(Some(_))
            );
            if !stays || s.scans_completed == 0 {
                s.state = FolderState::Scanning;
            }
        });
        let (config, index, progress, stop, peers, own, accept) = (
            self.config.clone(),
            self.index.clone(),
            self.progress.clone(),
            self.stop.clone(),
            self.peers.clone(),
            self.own,
            self.accept_outgoing.clone(),
        );
        let accepting = accept.load(Ordering::SeqCst);
        let paths_for_scan = paths.clone();
        let recent = self.scan_deletes.count();
        // A thread of its own, not the runtime's small blocking pool: a
        // long scan must not hold up block serving, index updates or the
        // end of pulls (short blocking work).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("scan {}", config.id))
            .spawn(move || {
                let _ = tx.send(run_scan(
                    &config,
                    &index,
                    own,
                    &progress,
                    &stop,
                    &accept,
                    recent,
                    record_deletes,
                    peers.as_deref(),
                    paths_for_scan.as_deref(),
                ));
            });
        let outcome = match spawned {
            Ok(_) => rx
                .await
                .unwrap_or_else(|_| Err(FolderState::Error("scan thread panicked".to_string()))),
            Err(e) => Err(FolderState::Error(format!("starting a scan thread: {e}"))),
        };
        if self.stopped() {
            return;
        }
        self.pull_rescan
            .scanned(outcome.as_ref().map_or(0, |r| r.changes));
        if let Ok(r) = &outcome {
            self.scan_deletes.carried_out(
                r.deleted_files,
                accepting && !self.accept_outgoing.load(Ordering::SeqCst),
            );
            if let (Some(p), true) = (paths, r.deletes_deferred > 0) {
                self.deleting.extend(p);
                let now = tokio::time::Instant::now();
                let first = self.deletes_due.map_or(now, |(_, first)| first);
                self.deletes_due =
                    Some(((now + DELETE_SETTLE).min(first + DELETE_MAX_WAIT), first));
            }
        }
        self.status.send_modify(|s| {
            if watched > 0 {
                s.watch_scans += 1;
                s.watch_scanned_paths += watched;
            } else {
                s.scans_completed += 1;
            }
            s.last_scan = Some(started.elapsed());
            match outcome {
                Ok(r) => {
                    // Deletions held stay held until a full scan finds
                    // them gone (or accepted): a scan of other paths
                    // says nothing about them.
                    if watched == 0 || !matches!(s.state, FolderState::Paused(Some(_))) {
                        s.state = FolderState::Idle;
                    }
                    s.errors = r.errors;
                }
                Err(state) => s.state = state,
            }
        });
    }

    /// One pull pass if the folder needs anything and may apply it.
    async fn pull(&mut self) -> AfterPull {
        // A send-only folder never applies remote changes; one in error
        // (no marker) must not be written to at all, nor one paused.
        let healthy = !matches!(
            self.status.borrow().state,
            FolderState::Error(_) | FolderState::Paused(_)
        ) && self.config.kind != crate::config::FolderType::SendOnly;
        let out_of_space = matches!(self.status.borrow().state, FolderState::NoSpace(_));
        self.changes.borrow_and_update();
        let Some(peers) = self.peers.clone().filter(|_| healthy) else {
            return AfterPull::Wait;
        };
        let needed = self
            .index
            .folder_meta()
            .map(|m| m.need != Default::default())
            .unwrap_or(false);
        if let Err(e) = scanner::check_root(&self.config.path) {
            // Gone since the last scan (the watcher may not have said so
            // yet): nothing is written until a scan finds it back.
            tracing::warn!(folder = %self.config.id, "not pulling: {e}");
            self.status
                .send_modify(|s| s.state = FolderState::Error(e.to_string()));
            return AfterPull::Wait;
        }
        if !needed {
            self.retry.clear();
            self.status.send_if_modified(|s| {
                let was_out = matches!(s.state, FolderState::NoSpace(_));
                if was_out {
                    s.state = FolderState::Idle;
                }
                std::mem::take(&mut s.deletes_held) > 0 || was_out
            });
            return AfterPull::Wait;
        }
        if let Some(why) = low_space(&self.config) {
            if !out_of_space {
                tracing::warn!(folder = %self.config.id, "not pulling: {why}");
            }
            self.status
                .send_modify(|s| s.state = FolderState::NoSpace(why));
            self.retry.after(NO_SPACE_RETRY);
            return AfterPull::Wait;
        }
        self.status.send_modify(|s| s.state = FolderState::Syncing);
        let report = super::puller::pull(
            &self.config,
            &self.index,
            &peers,
            &self.fetched,
            self.pull_deletes.count(),
            &self.accept_incoming,
        )
        .await;
        let accepted = report.deleted_files > 0 && self.status.borrow().deletes_held > 0;
        self.pull_deletes
            .carried_out(report.deleted_files, accepted);
        if report.done > 0 || report.deferred > 0 {
            tracing::info!(folder = %self.config.id, done = report.done, deferred = report.deferred,
                fetched = report.fetched, "pull pass");
        }
        for e in &report.errors {
            tracing::warn!(folder = %self.config.id, "{e}");
        }
        let full = report.errors.iter().find(|e| {
            matches!(&e.kind, super::pull_error::PullErrorKind::Disk { kind, .. }
                if matches!(kind, std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
        });
        let full = full.map(|e| {
            format!(
                "the disk is full ({}); pulling resumes by itself once space is freed \
                 (files not yet complete are kept in temporary files, never under their names)",
                e.kind
            )
        });
        self.status.send_modify(|s| {
            s.state = match &full {
                Some(why) => FolderState::NoSpace(why.clone()),
                None => FolderState::Idle,
            };
            s.pull_errors = report.errors.clone();
            s.deletes_held = report.held_deletes;
        });
        if full.is_some() {
            self.retry.after(NO_SPACE_RETRY);
            return AfterPull::Wait;
        }
        if report.rescan && self.pull_rescan.now() {
            self.queue_scan();
            return AfterPull::Again;
        }
        if report.done == 0 {
            if report.deferred == 0 && report.errors.is_empty() {
                tracing::info!(folder = %self.config.id,
                    "pull pass: something is needed, but no entry could be started");
            }
            self.retry.failed();
            return AfterPull::Wait;
        }
        self.retry.clear();
        // Progress: look again at once, but what is due meanwhile (a
        // deferred or requested rescan, the timer) is not starved by a long
        // stream of passes.
        if self.pull_rescan.overdue() {
            self.pull_rescan.started();
            self.queue_scan();
        }
        if self.requests.try_recv().is_ok() {
            self.scan_due = true;
        }
        self.drain_watcher();
        if tokio::time::Instant::now() >= self.next_timer {
            self.queue_scan();
            self.next_timer = tokio::time::Instant::now() + jittered(self.interval());
        }
        AfterPull::Again
    }

    /// Waits for the next thing to do; false when the runner should end.
    async fn wait(&mut self) -> bool {
        tokio::select! {
            r = self.requests.recv() => match r {
                Some(()) => self.scan_due = true,
                None => return false,
            },
            _ = tokio::time::sleep_until(self.next_timer) => {
                self.queue_scan();
                self.next_timer = tokio::time::Instant::now() + jittered(self.interval());
            }
            next = async {
                match self.watcher.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            } => match next {
                Next::Scan(req) => {
                    self.watched(req);
                    self.drain_watcher();
                }
                Next::State => self.watch_state_changed(false),
                Next::Ended => self.watch_state_changed(true),
            },
            _ = self.pull_rescan.due() => {
                self.pull_rescan.started();
                self.queue_scan();
            }
            _ = self.retry.due() => self.retry.started(),
            _ = async {
                match self.deletes_due {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            Some((op, reply)) = self.ops.recv() => self.run_op(op, reply).await,
            r = self.changes.changed() => {
                if r.is_err() {
                    return false;
                }
                settle(&mut self.changes).await;
            }
            r = async {
                match self.peer_changes.as_mut() {
                    Some(p) => p.changed().await,
                    None => std::future::pending().await,
                }
            } => if r.is_err() { return false },
        }
        true
    }
}

impl Runner {
    /// Runs an [`Op`] on a blocking thread; the index changes it makes
    /// wake the puller and the index senders as any would.
    async fn run_op(&mut self, op: Op, reply: tokio::sync::oneshot::Sender<Result<usize, String>>) {
        let (index, root, versioning, own) = (
            self.index.clone(),
            self.config.path.clone(),
            self.config.versioning,
            self.own,
        );
        let done = tokio::task::spawn_blocking(move || match op {
            Op::Override => {
                super::direction::override_changes(&index, own).map_err(|e| e.to_string())
            }
            Op::Revert => super::direction::revert_changes(&index, &root, versioning),
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match &done {
            Ok(n) => tracing::info!(folder = %self.config.id, ?op, changed = n, "done"),
            Err(e) => tracing::warn!(folder = %self.config.id, ?op, "failed: {e}"),
        }
        let _ = reply.send(done);
    }
}

/// Rescans a pull pass asks for (it found the disk differing from the
/// index) run at once while they find changes; one that found nothing
/// means the next such request waits, 1 s doubling to 60 s, so no
/// disagreement between the puller and the scanner can spin the folder.
#[derive(Default)]
struct PullRescan {
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
    fn scanned(&mut self, changes: usize) {
        if changes > 0 {
            self.wait = Duration::ZERO;
        } else if self.from_pull {
            self.wait = (self.wait * 2).clamp(Duration::from_secs(1), Self::MAX_WAIT);
        }
        self.from_pull = false;
    }

    /// A pull pass asks for a rescan: whether to run it now (else it is
    /// scheduled for [`PullRescan::due`]).
    fn now(&mut self) -> bool {
        if self.wait.is_zero() {
            self.started();
            return true;
        }
        self.at
            .get_or_insert_with(|| tokio::time::Instant::now() + self.wait);
        false
    }

    /// The deferred rescan starts.
    fn started(&mut self) {
        self.at = None;
        self.from_pull = true;
    }

    /// Whether a deferred rescan is due by now.
    fn overdue(&self) -> bool {
        self.at.is_some_and(|at| at <= tokio::time::Instant::now())
    }

    /// Resolves when a deferred rescan is due; never if none is.
    async fn due(&self) {
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
struct Backoff {
    /// The wait before the next retry (zero: none failed yet).
    wait: Duration,
    /// When the pending retry is due.
    at: Option<tokio::time::Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(60);

    /// A pass got nothing done: schedules the next one.
    fn failed(&mut self) {
        self.wait = (self.wait * 2).clamp(Self::FIRST, Self::MAX);
        self.at = Some(tokio::time::Instant::now() + self.wait);
    }

    /// Retries after `wait`, whatever the backoff was (a known condition
    /// such as a full disk is looked at again soon).
    fn after(&mut self, wait: Duration) {
        self.at = Some(tokio::time::Instant::now() + wait);
    }

    /// Progress, or nothing needed: no retry, and the next wait is short.
    fn clear(&mut self) {
        *self = Self::default();
    }

    /// The retry is running.
    fn started(&mut self) {
        self.at = None;
    }

    /// Resolves when a retry is due; never if none is.
    async fn due(&self) {
        match self.at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Deletions carried out lately, for the delete guard.
#[derive(Default)]
struct RecentDeletes(std::collections::VecDeque<(Instant, u64)>);

impl RecentDeletes {
    /// Files deleted within [`RECENT_DELETES`].
    fn count(&mut self) -> u64 {
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
    fn carried_out(&mut self, n: u64, accepted: bool) {
        if accepted {
            self.0.clear();
        } else if n > 0 {
            self.0.push_back((Instant::now(), n));
        }
    }
}

/// Scans once; returns the per-file errors, the number of changes
/// recorded and the files found deleted, or the state the failure puts the folder in (an error, or
/// paused by the delete guard).
#[allow(clippy::too_many_arguments)]
fn run_scan(
    config: &FolderConfig,
    index: &FolderIndex,
    own: ShortId,
    progress: &ScanProgress,
    stop: &AtomicBool,
    accept_deletes: &AtomicBool,
    recently_deleted: u64,
    record_deletes: bool,
    peers: Option<&Peers>,
    paths: Option<&[String]>,
) -> Result<scanner::ScanReport, FolderState> {
    for counter in [
        &progress.files_total,
        &progress.bytes_total,
        &progress.files_done,
        &progress.bytes_done,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    let root: &PathBuf = &config.path;
    let ignores = Arc::new(Ignores::load(root).map_err(|e| FolderState::Error(e.to_string()))?);
    // The puller and the block server follow the patterns this scan uses.
    if let Some(p) = peers {
        p.set_ignores(&config.id, ignores.clone());
    }
    let opts = ScanOptions {
        own,
        ignores: &ignores,
        progress,
        cancel: stop,
        threads: 0,
        receive_only: config.kind == crate::config::FolderType::ReceiveOnly,
        delete_guard: Some(config.delete_guard()),
        recently_deleted,
        record_deletes,
        accept_deletes,
    };
    let t = Instant::now();
    let result = match paths {
        None => scanner::scan(root, index, &opts),
        Some(p) => scanner::scan_paths(root, index, &opts, p),
    };
    match result {
        Ok(report) => {
            tracing::info!(
                folder = %config.id,
                paths = paths.map_or(0, <[String]>::len),
                changes = report.changes,
                deletes_deferred = report.deletes_deferred,
                hashed_files = report.hashed_files,
                hashed_bytes = report.hashed_bytes,
                elapsed_ms = t.elapsed().as_millis() as u64,
                local_files = index.device_meta(LOCAL).map(|m| m.counts.files).unwrap_or(0),
                "scan complete"
            );
            if paths.is_none() {
                clean_versions(config, index);
            }
            Ok(report)
        }
        Err(scanner::ScanError::Cancelled) => Ok(scanner::ScanReport::default()),
        Err(scanner::ScanError::MassDelete { deleted, files }) => {
            let why = format!(
                "{deleted} of this folder's {files} files are gone; the deletions are held, \
                 not announced (if they were meant: `ferrosync folder resume {} --accept-deletes`)",
                config.id
            );
            tracing::warn!(folder = %config.id, "paused: {why}");
            Err(FolderState::Paused(Some(why)))
        }
        Err(e) => {
            tracing::warn!(folder = %config.id, "cannot scan: {e}");
            Err(FolderState::Error(e.to_string()))
        }
    }
}

/// Why the folder's disk is too full to pull into, if it is.
fn low_space(config: &FolderConfig) -> Option<String> {
    let (free, total) = crate::fs::space(&config.path).ok()?;
    let percent = free as f64 * 100.0 / total.max(1) as f64;
    (percent < config.min_disk_free_percent).then(|| {
        format!(
            "the disk holding {} has {percent:.1} % free ({free} bytes), below the folder's \
             min_disk_free_percent of {} %; pulling resumes by itself once space is freed",
            config.path.display(),
            config.min_disk_free_percent
        )
    })
}

/// Removes the versions the folder's versioning no longer keeps (after
/// each full scan: that is how often time moves them out), and their
/// blocks from the block map.
fn clean_versions(config: &FolderConfig, index: &FolderIndex) {
    match super::versioner::clean(
        &config.path,
        config.versioning,
        std::time::SystemTime::now(),
    ) {
        Ok(gone) => {
            for v in &gone {
                if let Err(e) = index.unmap_version(&v.stored) {
                    tracing::warn!(folder = %config.id, version = v.stored, "block map: {e}");
                }
            }
            if !gone.is_empty() {
                tracing::info!(folder = %config.id, removed = gone.len(), "old versions removed");
            }
        }
        Err(e) => tracing::warn!(folder = %config.id, "cleaning out versions: {e}"),
    }
}

/// Waits until the index has been quiet for a moment (at most a second):
/// related updates arrive together, e.g. a rename's new name and the old
/// name's deletion, so the puller sees the whole change at once (deleting
/// the old name first would leave no local copy of the blocks to reuse).
async fn settle(changes: &mut watch::Receiver<u64>) {
    const QUIET: Duration = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    changes.borrow_and_update();
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(QUIET, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => return,
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    let quarter = interval / 4;
    let extra = rand::random::<f64>() * (quarter * 2).as_secs_f64();
    interval - quarter + Duration::from_secs_f64(extra)
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
