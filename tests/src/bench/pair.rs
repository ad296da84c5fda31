//! Two daemons of one kind sharing [`FOLDER`] on loopback, the source
//! serving a tree and the destination filling an empty directory, for the
//! benchmarks that time a sync (`bench-sync`, `bench-scale`): set up the
//! same way and timed from the same user action for ferrosync and
//! Syncthing, with a hook between the source's scan and the sync.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{cpu_time, Api, Daemon, Home, FOLDER};
use crate::syncthing::{self, FolderType, Listen, Options, Syncthing};

/// How long a daemon may take to answer its API after the spawn.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// Runs one daemon's part of a set; a failure (an error, or a panic of the
/// Syncthing harness, which prints its own log tail) is reported and the
/// benchmark goes on without that column.
pub fn guarded<T>(who: &str, set: &str, run: impl FnOnce() -> Result<T, String>) -> Option<T> {
    eprintln!("{set}: running {who}");
    match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            eprintln!("{who} failed on {set}: {e}");
            None
        }
        Err(_) => {
            eprintln!("{who} failed on {set} (panicked, see above)");
            None
        }
    }
}

/// What one daemon pair measured on a full sync.
#[derive(Clone)]
pub struct SyncFigures {
    /// Clock start (see the module doc) until in sync.
    pub sync: Duration,
    /// ferrosync, spawn start: destination spawn until it first showed the
    /// source as connected (not measured for Syncthing; in a live start
    /// both are connected before the clock starts).
    pub connected: Option<Duration>,
    /// Connected (or clock start, if later) until in sync.
    pub transfer: Duration,
    /// CPU time each process used between clock start and in sync.
    pub cpu_src: Option<Duration>,
    /// (The destination's.)
    pub cpu_dst: Option<Duration>,
    /// Peak RSS of each process over its life, KiB, read just before the
    /// stop (so after the sync and the check; zero until then).
    pub rss_src_kib: u64,
    /// (The destination's.)
    pub rss_dst_kib: u64,
}

/// CPU time `pid` has used since `before`.
pub fn cpu_since(pid: u32, before: Option<Duration>) -> Option<Duration> {
    Some(cpu_time(pid)?.saturating_sub(before?))
}

/// Two ferrosync daemons sharing [`FOLDER`]: the source serving its data,
/// the destination filling an empty directory.
pub struct FsPair {
    /// The daemon serving the data set.
    pub src: Daemon,
    /// The daemon filling the empty directory.
    pub dst: Daemon,
    /// The source's API.
    pub src_api: Api,
    /// The destination's API.
    pub dst_api: Api,
    /// The source's TCP listen port.
    pub src_port: u16,
    /// The destination's TCP listen port.
    pub dst_port: u16,
    /// The homes and logs; removed on drop, after the daemons (declared
    /// last, dropped last).
    _tmp: tempfile::TempDir,
}

/// What a pair syncs, and how. The pairs' `sync` calls `after_scan` once
/// the source has scanned the data set, with how long that took as a
/// client saw it (ferrosync: from the spawn with the folder configured;
/// Syncthing: from the folder added to the running process; both until
/// idle with every file counted, polled every [`super::POLL`]), before
/// the destination gets the folder.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    /// The daemon binary.
    pub binary: &'a Path,
    /// The source's folder root (the data set).
    pub src_root: &'a Path,
    /// The destination's folder root (created by the daemon).
    pub dst_root: &'a Path,
    /// Regular files in the data set.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Where the clock starts.
    pub start: Start,
    /// How long any one wait may take before the run counts as failed.
    pub limit: Duration,
}

impl FsPair {
    /// The CLI contract's order: both homes initialised; the source
    /// configured, started and scanned; its TCP URL given to the
    /// destination, which is then started and dials it. Returns once the
    /// destination is in sync.
    pub fn sync(
        run: &Run<'_>,
        after_scan: impl FnOnce(&Daemon, &Api, Duration) -> Result<(), String>,
    ) -> Result<(Self, SyncFigures), String> {
        let Run {
            binary,
            src_root,
            dst_root,
            files,
            bytes,
            start,
            limit,
        } = *run;
        let tmp = tempfile::Builder::new()
            .prefix("bench-sync-homes-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let src_home = Home::new(binary, tmp.path().join("src"));
        let dst_home = Home::new(binary, tmp.path().join("dst"));
        let listen = "tcp://127.0.0.1:0";
        let src_id = src_home.init("source", listen)?;
        let dst_id = dst_home.init("destination", listen)?;

        src_home.cli(&["device", "add", &dst_id, "--name", "destination"])?;
        let root = src_root.to_str().ok_or("source path is not UTF-8")?;
        src_home.cli(&["folder", "add", FOLDER, root, "--share", &dst_id])?;
        let src_key = src_home.api_key()?;
        let mut src = src_home.spawn(tmp.path().join("src.log"))?;
        let src_api = src.api(&src_home, &src_key, src.spawned_at() + STARTUP_LIMIT)?;
        let scanned = src.wait(
            src.spawned_at() + limit,
            "the source to be scanned and idle with every file",
            || {
                let f = src_api.folder().ok()?;
                let done = f["state"] == "idle"
                    && f["scans_completed"].as_u64() >= Some(1)
                    && f["local_files"].as_u64() == Some(files)
                    && f["local_bytes"].as_u64() == Some(bytes);
                done.then_some(f)
            },
        )?;
        let scan = src.spawned_at().elapsed();
        after_scan(&src, &src_api, scan).map_err(|e| src.with_log(&e))?;
        let src_url = src.wait(src.spawned_at() + limit, "listen-addresses", || {
            src_home.listen_url("tcp")
        })?;
        let src_port = port_of(&src_url)?;

        dst_home.cli(&[
            "device",
            "add",
            &src_id,
            "--name",
            "source",
            "--address",
            &src_url,
        ])?;
        let root = dst_root.to_str().ok_or("destination path is not UTF-8")?;
        let add_folder = || {
            dst_home.cli(&[
                "folder", "add", FOLDER, root, "--create", "--share", &src_id,
            ])
        };
        if start == Start::Spawn {
            add_folder()?;
        }
        let dst_key = dst_home.api_key()?;

        let mut cpu_src = cpu_time(src.pid());
        let mut dst = dst_home.spawn(tmp.path().join("dst.log"))?;
        let mut t0 = dst.spawned_at();
        let fail = |src: &Daemon, e: String| format!("{e}\n{}", src.with_log("(source)"));
        let dst_api = dst
            .api(&dst_home, &dst_key, t0 + STARTUP_LIMIT)
            .map_err(|e| fail(&src, e))?;
        // In a spawn start the destination's CPU counts from its spawn.
        let mut cpu_dst = Some(Duration::ZERO);
        if start == Start::Live {
            // As for Syncthing: devices connected, then the folder added on
            // the running destination (the CLI applies it live).
            dst.wait(t0 + limit, "the devices to connect", || {
                let status = dst_api.call("GET", "/rest/status").ok()?;
                status["devices"]
                    .as_array()
                    .is_some_and(|ds| ds.iter().any(|d| d["connected"] == true))
                    .then_some(())
            })
            .map_err(|e| fail(&src, e))?;
            cpu_src = cpu_time(src.pid());
            cpu_dst = cpu_time(dst.pid());
            t0 = Instant::now();
            add_folder().map_err(|e| fail(&src, e))?;
        }
        let mut connected = None;
        let synced = dst.wait(t0 + limit, "the destination to be in sync", || {
            let status = dst_api.call("GET", "/rest/status").ok()?;
            let at = Instant::now();
            let linked = status["devices"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(|d| d["connected"] == true));
            if linked && connected.is_none() && start == Start::Spawn {
                connected = Some(at - t0);
            }
            let f = status["folders"]
                .as_array()?
                .iter()
                .find(|f| f["id"] == FOLDER)?;
            let done = f["local_files"] == scanned["local_files"]
                && f["local_bytes"] == scanned["local_bytes"]
                && f["need_files"] == 0;
            done.then_some(at)
        });
        let synced = synced.map_err(|e| fail(&src, e))?;
        let sync = synced - t0;
        let figures = SyncFigures {
            sync,
            connected,
            transfer: sync.saturating_sub(connected.unwrap_or_default()),
            cpu_src: cpu_since(src.pid(), cpu_src),
            cpu_dst: cpu_since(dst.pid(), cpu_dst),
            rss_src_kib: 0,
            rss_dst_kib: 0,
        };
        let dst_url = dst
            .wait(t0 + STARTUP_LIMIT, "listen-addresses", || {
                dst_home.listen_url("tcp")
            })
            .map_err(|e| fail(&src, e))?;
        let pair = FsPair {
            src,
            dst,
            src_api,
            dst_api,
            src_port,
            dst_port: port_of(&dst_url)?,
            _tmp: tmp,
        };
        Ok((pair, figures))
    }

    /// Peak RSS (KiB) of the source and the destination so far.
    pub fn peak_rss_kib(&self) -> Result<(u64, u64), String> {
        let rss = |d: &Daemon| {
            syncthing::peak_rss_kib(d.pid()).ok_or_else(|| d.with_log("cannot read VmHWM"))
        };
        Ok((rss(&self.src)?, rss(&self.dst)?))
    }

    /// `msg` with both daemons' log tails.
    pub fn logs(&self, msg: &str) -> String {
        format!(
            "{}\n{}",
            self.src.with_log(&format!("{msg}\n(source)")),
            self.dst.with_log("(destination)")
        )
    }

    /// Stops both daemons (destination first, as a user would leave).
    pub fn stop(mut self) -> Result<(), String> {
        self.dst.stop()?;
        self.src.stop()
    }
}

/// The port of a `scheme://host:port` URL.
pub fn port_of(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("no port in {url:?}"))
}

/// A fresh, empty destination directory on the data's disk, removed on
/// drop; the folder root is `dir/dst` (not created).
pub fn destination(dir: &Path) -> Result<(tempfile::TempDir, PathBuf), String> {
    let tmp = tempfile::Builder::new()
        .prefix("bench-sync-dst-")
        .tempdir_in(dir)
        .map_err(|e| format!("tempdir in {}: {e}", dir.display()))?;
    let root = tmp.path().join("dst");
    Ok((tmp, root))
}

/// Where a full sync's clock starts: both are things a user does, and
/// both daemons are timed from each.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Start {
    /// The destination is started with the folder already configured:
    /// its startup, connect and index exchange are inside.
    Spawn,
    /// The devices are connected; the folder is added on the running
    /// destination.
    Live,
}

impl Start {
    /// How a table names this start.
    pub fn label(self) -> &'static str {
        match self {
            Start::Spawn => "clock from the destination's spawn",
            Start::Live => "clock from the folder added live",
        }
    }
}

/// Two Syncthing processes sharing [`FOLDER`] over TCP.
pub struct StPair {
    /// The process serving the data set.
    pub src: Syncthing,
    /// The process filling the empty directory.
    pub dst: Syncthing,
}

impl StPair {
    /// Starts both, lets them know each other, adds the folder on the
    /// source and waits for its scan and for the connection; then adds the
    /// folder on the destination (the clock starts) and waits until the
    /// destination is in sync. The harness panics, with a log tail, on
    /// failure.
    pub fn sync(
        run: &Run<'_>,
        after_scan: impl FnOnce(&Syncthing, Duration),
    ) -> (Self, SyncFigures) {
        let Run {
            binary,
            src_root,
            dst_root,
            files,
            start,
            limit,
            ..
        } = *run;
        let opts = Options {
            binary: binary.to_path_buf(),
            listen: Listen::Tcp,
            // A blocking rescan is one call.
            request_timeout: limit,
            ..Options::default()
        };
        let src = Syncthing::start(opts.clone());
        let mut dst = Syncthing::start(opts);
        let (src_id, dst_id) = (src.device_id().to_string(), dst.device_id().to_string());
        let address = |st: &Syncthing| st.tcp_address().expect("Listen::Tcp has a TCP address");
        let deadline = Instant::now() + limit;
        dst.add_device(&src_id, "source", &[&address(&src)]);
        if start == Start::Spawn {
            // The destination's config is written by a first run that the
            // source does not accept yet (it knows no destination), then
            // the destination stops: its next start is the clock start.
            dst.add_folder(FOLDER, dst_root, &[&src_id], FolderType::SendReceive);
            dst.wait_folder_idle(FOLDER, deadline);
            dst.stop();
        }
        src.add_device(&dst_id, "destination", &[&address(&dst)]);
        let added = Instant::now();
        src.add_folder(FOLDER, src_root, &[&dst_id], FolderType::SendReceive);
        // Not `localBytes`: Syncthing counts 128 bytes a directory in it.
        let (scanned, at) = wait_db_status(&src, deadline, "scanned with every file", |s| {
            s["state"] == "idle" && s["localFiles"] == files
        });
        after_scan(&src, at - added);
        let cpu_src = cpu_time(src.pid());
        let (t0, cpu_dst) = match start {
            Start::Live => {
                dst.wait_connected(&src_id, deadline);
                let cpu_dst = cpu_time(dst.pid());
                let t0 = Instant::now();
                dst.add_folder(FOLDER, dst_root, &[&src_id], FolderType::SendReceive);
                (t0, cpu_dst)
            }
            Start::Spawn => {
                let t0 = Instant::now();
                dst.restart();
                (t0, Some(Duration::ZERO))
            }
        };
        let (_, synced) = wait_db_status(&dst, t0 + limit, "in sync", |s| {
            s["localFiles"] == scanned["localFiles"]
                && s["localBytes"] == scanned["localBytes"]
                && s["needFiles"] == 0
        });
        let sync = synced - t0;
        let figures = SyncFigures {
            sync,
            connected: None,
            transfer: sync,
            cpu_src: cpu_since(src.pid(), cpu_src),
            cpu_dst: cpu_since(dst.pid(), cpu_dst),
            rss_src_kib: 0,
            rss_dst_kib: 0,
        };
        (StPair { src, dst }, figures)
    }

    /// Peak RSS (KiB) of the source and the destination so far.
    pub fn peak_rss_kib(&self) -> (u64, u64) {
        (self.src.peak_rss_kib(), self.dst.peak_rss_kib())
    }

    /// The TCP listen ports of the source and the destination.
    pub fn ports(&self) -> Result<(u16, u16), String> {
        let port = |st: &Syncthing| port_of(&st.tcp_address().unwrap_or_default());
        Ok((port(&self.src)?, port(&self.dst)?))
    }

    /// Stops both (destination first).
    pub fn stop(self) {
        self.dst.stop();
        self.src.stop();
    }
}

/// Polls Syncthing's `db/status` of [`FOLDER`] until `done` holds; returns
/// that status and when it was read. Panics with the last status and the
/// log tail at `deadline`.
pub fn wait_db_status(
    st: &Syncthing,
    deadline: Instant,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> (Value, Instant) {
    loop {
        let s = st.db_status(FOLDER);
        let at = Instant::now();
        if done(&s) {
            return (s, at);
        }
        if at >= deadline {
            st.fail(&format!(
                "timed out waiting for {what}; last db/status: {s}"
            ));
        }
        std::thread::sleep(super::POLL);
    }
}

/// Waits, after the destinations of a batch of runs were removed, until
/// their files no longer count as recently deleted, so that the next batch
/// does not pay for this one's cleanup. ext4 without a journal (as on this
/// project's machines) does not reuse an inode for 60 s after its delete
/// (5 minutes more while its inode table block is dirty, hence the
/// `sync`), and walks past every such inode each time it creates a file:
/// measured here, 20,000 files synced within a minute of removing
/// 20,000 took up to twice as long, for both daemons, with the kernel's
/// `recently_deleted` under `openat` on top of the profile. This is also
/// why no destination is removed between the runs of a batch. A set of
/// few files needs no wait.
pub fn settle(files: usize) {
    if files < 1_000 {
        return;
    }
    let _ = Command::new("sync").status();
    let wait = Duration::from_secs(62);
    eprintln!(
        "waiting {} s until the removed files' inodes are reusable",
        wait.as_secs()
    );
    std::thread::sleep(wait);
}

/// Regular files under `root` with their sizes, by relative path, leaving
/// out what the daemons keep for themselves (`.stfolder`, `.stversions`,
/// `.stignore`, `.syncthing.*.tmp`).
pub fn files_under(root: &Path) -> Result<BTreeMap<PathBuf, u64>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let internal = matches!(name.as_str(), ".stfolder" | ".stversions" | ".stignore")
                || (name.starts_with(".syncthing.") && name.ends_with(".tmp"));
            if internal {
                continue;
            }
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| format!("stat {}: {e}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).map_err(|e| e.to_string())?;
                out.insert(rel.to_path_buf(), meta.len());
            }
        }
    }
    Ok(out)
}

/// Checks that both trees hold the same files with the same sizes, as many
/// and as large as expected.
pub fn same_files(src: &Path, dst: &Path, files: u64, bytes: u64) -> Result<(), String> {
    let (a, b) = (files_under(src)?, files_under(dst)?);
    let total = |m: &BTreeMap<PathBuf, u64>| m.values().sum::<u64>();
    if a != b {
        let differ = a
            .iter()
            .filter(|(p, s)| b.get(*p) != Some(*s))
            .chain(b.iter().filter(|(p, _)| !a.contains_key(*p)))
            .take(5)
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>();
        return Err(format!(
            "the trees differ: source {} files {} bytes, destination {} files {} bytes; \
             e.g. {differ:?}",
            a.len(),
            total(&a),
            b.len(),
            total(&b)
        ));
    }
    if a.len() as u64 != files || total(&a) != bytes {
        return Err(format!(
            "expected {files} files of {bytes} bytes, found {} of {}",
            a.len(),
            total(&a)
        ));
    }
    eprintln!("checked: {files} files, {bytes} bytes on both sides");
    Ok(())
}
