//! The runner task of one folder: one thing at a time, in named steps
//! (scan, pull, wait), until its folder is stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::ShortId;
use tokio::sync::{mpsc, watch};

use super::disk::{low_space, run_scan};
use super::pacing::{Backoff, PullRescan, RecentDeletes};
use super::{FolderHandle, FolderState, FolderStatus, Op, OpRequest};
use crate::config::FolderConfig;
use crate::index::FolderIndex;
use crate::peer::Peers;
use crate::scanner::{self, ScanProgress};
use crate::watcher::watch::Next;
use crate::watcher::{FolderWatch, ScanRequest, WatchState};

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
        conflicts: Arc::new(AtomicU64::new(0)),
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
        conflicts: handle.conflicts.clone(),
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
    if let Some(p) = &runner.peers {
        tokio::spawn(report_status(
            runner.config.id.clone(),
            handle.status.clone(),
            p.clone(),
        ));
    }
    (handle, tokio::spawn(runner.run()))
}

/// Turns the folder's status changes into events until the runner ends:
/// its state, and a summary whenever a scan or pull pass finished.
async fn report_status(
    folder: String,
    mut status: watch::Receiver<FolderStatus>,
    peers: Arc<Peers>,
) {
    let (mut state, mut scans) = {
        let s = status.borrow();
        (s.state.clone(), s.scans_completed)
    };
    while status.changed().await.is_ok() {
        let (now, now_scans, errors) = {
            let s = status.borrow_and_update();
            (s.state.clone(), s.scans_completed, s.pull_errors.len())
        };
        if now != state {
            peers.events.emit(
                "FolderStateChanged",
                serde_json::json!({ "folder": folder, "from": state.as_str(), "to": now.as_str() }),
            );
            if state == FolderState::Syncing || now_scans != scans {
                peers.events.emit(
                    "FolderSummary",
                    serde_json::json!({ "folder": folder, "pull_errors": errors }),
                );
            }
            state = now;
            scans = now_scans;
        }
    }
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
    /// Conflicts the puller met.
    conflicts: Arc<AtomicU64>,
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
        let report = crate::model::puller::pull(
            &self.config,
            &self.index,
            &peers,
            &self.fetched,
            &self.conflicts,
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
            matches!(&e.kind, crate::model::pull_error::PullErrorKind::Disk { kind, .. }
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
                crate::model::direction::override_changes(&index, own).map_err(|e| e.to_string())
            }
            Op::Revert => crate::model::direction::revert_changes(&index, &root, versioning),
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
