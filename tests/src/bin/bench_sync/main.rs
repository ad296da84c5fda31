//! `bench-sync`: how fast two devices on loopback converge, ferrosync and
//! Syncthing side by side on the same data, and how many bytes a small
//! change in a large file costs on the wire.
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-sync -- \
//!     [--set large|small|delta|live|all] [--dir DIR] [--daemon ferrosync|syncthing|both] \
//!     [--ferrosync PATH]
//! ```
//!
//! Sets (generated under `DIR`, default `/tmp/ferrosync-bench-data`):
//! - (a) `large`, (b) `small`: bench-scan's cached data sets (1 GiB in 4
//!   files; 20,000 files of 1–64 KiB). The source device's folder is the
//!   cached set itself; the destination is a fresh empty directory beside
//!   it (same disk), deleted afterwards. With the source scanned and idle
//!   and the devices connected, the clock starts when the folder is added
//!   on the running destination (the same user action for both systems),
//!   and stops when the destination's local files and bytes equal the
//!   source's with nothing needed (polled every 20 ms). Both are also
//!   timed from the destination's spawn with the device and the folder
//!   already configured (Syncthing's config written by a first run the
//!   source did not yet accept). Each daemon runs three times per clock
//!   start, taking turns; the tables show the median runs.
//! - (c) `delta`: a fresh 256 MiB file is synced, then 1 MiB in its middle
//!   is overwritten in place on the source and a rescan requested there.
//!   Timed from the rescan request to the new content on the destination
//!   (its file replaced, polled every millisecond, then checked by
//!   SHA-256); the bytes on the wire are the changes of the TCP counters
//!   (`bytes_acked`, `bytes_received` from `ss -tinO`) of the source's end
//!   of the connection between the two daemons.
//! - (d) `live`: 20 small files written on the source one after another,
//!   no rescan asked for; each timed from its write to its content on the
//!   destination. Both find changes with their watcher (Syncthing's delay
//!   at its 1 s minimum).
//!
//! Both daemons use TCP (TLS) only: ferrosync's LAN default. Every run ends
//! with a check that both sides hold the same files (names, sizes; for
//! delta the SHA-256 of the file). Syncthing runs when it is on `PATH`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferrosync_tests::bench::{
    self, cpu_time, loadavg, rate, Api, Args, Daemon, DataSet, Home, Rng, Row, Set, FOLDER,
};
use ferrosync_tests::syncthing::{self, FolderType, Listen, Options, Syncthing};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long any one wait may take before the run counts as failed.
const LIMIT: Duration = Duration::from_secs(600);
/// How long a daemon may take to answer its API after the spawn.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// The file of the delta set, its size, and the change: 1 MiB at the
/// middle, which is block-aligned for every block size up to 16 MiB.
const DELTA_FILE: &str = "delta.bin";
const DELTA_SIZE: u64 = 256 << 20;
const CHANGE_AT: u64 = 128 << 20;
const CHANGE_LEN: usize = 1 << 20;
/// How often the destination file is looked at while the change travels.
const LAND_POLL: Duration = Duration::from_millis(1);
/// TCP counters count as settled once unchanged for this long.
const SETTLE: Duration = Duration::from_millis(500);

const USAGE: &str = "usage: bench-sync [--set large|small|delta|live|all] [--dir DIR] \
[--daemon ferrosync|syncthing|both] [--ferrosync PATH]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum SyncSet {
    Large,
    Small,
    Delta,
    Live,
}

mod delta;
use delta::*;
mod live;
use live::*;

fn main() {
    let all = vec![
        SyncSet::Large,
        SyncSet::Small,
        SyncSet::Delta,
        SyncSet::Live,
    ];
    let args = Args::from_env(USAGE, all.clone(), |v| match v {
        "large" => Some(vec![SyncSet::Large]),
        "small" => Some(vec![SyncSet::Small]),
        "delta" => Some(vec![SyncSet::Delta]),
        "live" => Some(vec![SyncSet::Live]),
        "all" => Some(all.clone()),
        _ => None,
    });
    let syncthing = args.syncthing_binary();
    let ferrosync = args.ferrosync_binary();
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("error: creating {}: {e}", args.dir.display());
        std::process::exit(1);
    }
    let load_before = loadavg();
    let started = Instant::now();
    let mut report = String::new();
    for set in &args.sets {
        let table = match set {
            SyncSet::Large | SyncSet::Small => {
                let set = if *set == SyncSet::Large {
                    Set::Large
                } else {
                    Set::Small
                };
                let data = DataSet::prepare_warm(set, &args.dir);
                let mut t = String::new();
                for start in [Start::Live, Start::Spawn] {
                    t.push_str(&full_runs(&ferrosync, &syncthing, &data, &args.dir, start));
                }
                t
            }
            SyncSet::Delta => {
                let fs = ferrosync.as_ref().and_then(|bin| {
                    guarded("ferrosync", "(c) delta", || delta_ferrosync(bin, &args.dir))
                });
                let st = syncthing.as_ref().and_then(|bin| {
                    guarded("syncthing", "(c) delta", || delta_syncthing(bin, &args.dir))
                });
                delta_table(fs.as_ref(), st.as_ref())
            }
            SyncSet::Live => {
                let fs = ferrosync.as_ref().and_then(|bin| {
                    guarded("ferrosync", "(d) live", || live_ferrosync(bin, &args.dir))
                });
                let st = syncthing.as_ref().and_then(|bin| {
                    guarded("syncthing", "(d) live", || live_syncthing(bin, &args.dir))
                });
                live_table(fs.as_ref(), st.as_ref())
            }
        };
        // Shown as it comes, so that a later failure loses nothing.
        eprintln!("{table}");
        report.push_str(&table);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cores} cores; load average (1, 5, 15 min) before: {load_before}, \
         after: {} ({:.0} s of benchmark)",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
}

/// Runs one daemon's part of a set; a failure (an error, or a panic of the
/// Syncthing harness, which prints its own log tail) is reported and the
/// benchmark goes on without that column.
fn guarded<T>(who: &str, set: &str, run: impl FnOnce() -> Result<T, String>) -> Option<T> {
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
struct SyncFigures {
    /// Clock start (see the module doc) until in sync.
    sync: Duration,
    /// ferrosync, spawn start: destination spawn until it first showed the
    /// source as connected (not measured for Syncthing; in a live start
    /// both are connected before the clock starts).
    connected: Option<Duration>,
    /// Connected (or clock start, if later) until in sync.
    transfer: Duration,
    /// CPU time each process used between clock start and in sync.
    cpu_src: Option<Duration>,
    cpu_dst: Option<Duration>,
    /// Peak RSS of each process over its life, KiB, read just before the
    /// stop (so after the sync and the check; zero until then).
    rss_src_kib: u64,
    rss_dst_kib: u64,
}

/// CPU time `pid` has used since `before`.
fn cpu_since(pid: u32, before: Option<Duration>) -> Option<Duration> {
    Some(cpu_time(pid)?.saturating_sub(before?))
}

/// Two ferrosync daemons sharing [`FOLDER`]: the source serving its data,
/// the destination filling an empty directory.
struct FsPair {
    src: Daemon,
    dst: Daemon,
    src_api: Api,
    dst_api: Api,
    src_port: u16,
    dst_port: u16,
    /// The homes and logs; removed on drop, after the daemons (declared
    /// last, dropped last).
    _tmp: tempfile::TempDir,
}

impl FsPair {
    /// The CLI contract's order: both homes initialised; the source
    /// configured, started and scanned; its TCP URL given to the
    /// destination, which is then started and dials it. Returns once the
    /// destination is in sync.
    fn sync(
        binary: &Path,
        src_root: &Path,
        dst_root: &Path,
        files: u64,
        bytes: u64,
        start: Start,
    ) -> Result<(Self, SyncFigures), String> {
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
            src.spawned_at() + LIMIT,
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
        let src_url = src.wait(src.spawned_at() + LIMIT, "listen-addresses", || {
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
            dst.wait(t0 + LIMIT, "the devices to connect", || {
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
        let synced = dst.wait(t0 + LIMIT, "the destination to be in sync", || {
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
    fn peak_rss_kib(&self) -> Result<(u64, u64), String> {
        let rss = |d: &Daemon| {
            syncthing::peak_rss_kib(d.pid()).ok_or_else(|| d.with_log("cannot read VmHWM"))
        };
        Ok((rss(&self.src)?, rss(&self.dst)?))
    }

    /// `msg` with both daemons' log tails.
    fn logs(&self, msg: &str) -> String {
        format!(
            "{}\n{}",
            self.src.with_log(&format!("{msg}\n(source)")),
            self.dst.with_log("(destination)")
        )
    }

    /// Stops both daemons (destination first, as a user would leave).
    fn stop(mut self) -> Result<(), String> {
        self.dst.stop()?;
        self.src.stop()
    }
}

/// The port of a `scheme://host:port` URL.
fn port_of(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| format!("no port in {url:?}"))
}

/// A fresh, empty destination directory on the data's disk, removed on
/// drop; the folder root is `dir/dst` (not created).
fn destination(dir: &Path) -> Result<(tempfile::TempDir, PathBuf), String> {
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
enum Start {
    /// The destination is started with the folder already configured:
    /// its startup, connect and index exchange are inside.
    Spawn,
    /// The devices are connected; the folder is added on the running
    /// destination.
    Live,
}

impl Start {
    fn label(self) -> &'static str {
        match self {
            Start::Spawn => "clock from the destination's spawn",
            Start::Live => "clock from the folder added live",
        }
    }
}

/// One full sync by ferrosync into a fresh destination, which is
/// returned (removed when dropped).
fn full_ferrosync(
    binary: &Path,
    data: &DataSet,
    dir: &Path,
    start: Start,
) -> Result<(SyncFigures, tempfile::TempDir), String> {
    let (dst_tmp, dst_root) = destination(dir)?;
    let files = data.files.len() as u64;
    let (pair, mut figures) =
        FsPair::sync(binary, &data.root, &dst_root, files, data.bytes, start)?;
    same_files(&data.root, &dst_root, files, data.bytes).map_err(|e| pair.logs(&e))?;
    (figures.rss_src_kib, figures.rss_dst_kib) = pair.peak_rss_kib()?;
    pair.stop()?;
    Ok((figures, dst_tmp))
}

/// Two Syncthing processes sharing [`FOLDER`] over TCP.
struct StPair {
    src: Syncthing,
    dst: Syncthing,
}

impl StPair {
    /// Starts both, lets them know each other, adds the folder on the
    /// source and waits for its scan and for the connection; then adds the
    /// folder on the destination (the clock starts) and waits until the
    /// destination is in sync. The harness panics, with a log tail, on
    /// failure.
    fn sync(
        binary: &Path,
        src_root: &Path,
        dst_root: &Path,
        files: u64,
        start: Start,
    ) -> (Self, SyncFigures) {
        let opts = Options {
            binary: binary.to_path_buf(),
            listen: Listen::Tcp,
            ..Options::default()
        };
        let src = Syncthing::start(opts.clone());
        let mut dst = Syncthing::start(opts);
        let (src_id, dst_id) = (src.device_id().to_string(), dst.device_id().to_string());
        let address = |st: &Syncthing| st.tcp_address().expect("Listen::Tcp has a TCP address");
        let deadline = Instant::now() + LIMIT;
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
        src.add_folder(FOLDER, src_root, &[&dst_id], FolderType::SendReceive);
        // Not `localBytes`: Syncthing counts 128 bytes a directory in it.
        let (scanned, _) = wait_db_status(&src, deadline, "scanned with every file", |s| {
            s["state"] == "idle" && s["localFiles"] == files
        });
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
        let (_, synced) = wait_db_status(&dst, t0 + LIMIT, "in sync", |s| {
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
    fn peak_rss_kib(&self) -> (u64, u64) {
        (self.src.peak_rss_kib(), self.dst.peak_rss_kib())
    }

    /// The TCP listen ports of the source and the destination.
    fn ports(&self) -> Result<(u16, u16), String> {
        let port = |st: &Syncthing| port_of(&st.tcp_address().unwrap_or_default());
        Ok((port(&self.src)?, port(&self.dst)?))
    }

    fn stop(self) {
        self.dst.stop();
        self.src.stop();
    }
}

/// Polls Syncthing's `db/status` of [`FOLDER`] until `done` holds; returns
/// that status and when it was read. Panics with the last status and the
/// log tail at `deadline`.
fn wait_db_status(
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
        std::thread::sleep(bench::POLL);
    }
}

/// One full sync by Syncthing into a fresh destination, which is
/// returned (removed when dropped).
fn full_syncthing(
    binary: &Path,
    data: &DataSet,
    dir: &Path,
    start: Start,
) -> Result<(SyncFigures, tempfile::TempDir), String> {
    let (dst_tmp, dst_root) = destination(dir)?;
    let files = data.files.len() as u64;
    let (pair, mut figures) = StPair::sync(binary, &data.root, &dst_root, files, start);
    if let Err(e) = same_files(&data.root, &dst_root, files, data.bytes) {
        pair.dst.fail(&e);
    }
    (figures.rss_src_kib, figures.rss_dst_kib) = pair.peak_rss_kib();
    pair.stop();
    Ok((figures, dst_tmp))
}

/// How many times each daemon runs a full sync per clock start; the
/// table shows each daemon's median run.
const RUNS: usize = 3;

/// [`RUNS`] full syncs of `data` per daemon, started as `start` says,
/// the two daemons taking turns (so that a slow minute of the machine
/// falls on both); returns the table of the median runs and every time.
fn full_runs(
    ferrosync: &Option<PathBuf>,
    syncthing: &Option<PathBuf>,
    data: &DataSet,
    dir: &Path,
    start: Start,
) -> String {
    let (mut fs, mut st) = (Vec::new(), Vec::new());
    // Every destination is kept until all runs are done: see `settle`.
    let mut destinations = Vec::new();
    for run in 1..=RUNS {
        let label = format!(
            "{} ({}, run {run} of {RUNS})",
            data.set.label(),
            start.label()
        );
        if let Some(bin) = ferrosync {
            if let Some((f, d)) = guarded("ferrosync", &label, || {
                full_ferrosync(bin, data, dir, start)
            }) {
                fs.push(f);
                destinations.push(d);
            }
        }
        if let Some(bin) = syncthing {
            if let Some((f, d)) = guarded("syncthing", &label, || {
                full_syncthing(bin, data, dir, start)
            }) {
                st.push(f);
                destinations.push(d);
            }
        }
    }
    drop(destinations);
    settle(data.files.len());
    let times = |v: &[SyncFigures]| {
        v.iter()
            .map(|f| format!("{:.3}", f.sync.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut t = full_table(
        data,
        start,
        median_run(&fs).as_ref(),
        median_run(&st).as_ref(),
    );
    t.push_str(&format!(
        "every run, clock start -> in sync [s]: ferrosync {}; syncthing {}\n",
        times(&fs),
        times(&st)
    ));
    t
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
fn settle(files: usize) {
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

/// The run with the median sync time; none unless all [`RUNS`] ran (a
/// median of fewer would hide the failures).
fn median_run(runs: &[SyncFigures]) -> Option<SyncFigures> {
    if runs.len() < RUNS {
        return None;
    }
    let mut by_time: Vec<&SyncFigures> = runs.iter().collect();
    by_time.sort_by_key(|f| f.sync);
    Some(by_time[by_time.len() / 2].clone())
}

/// Regular files under `root` with their sizes, by relative path, leaving
/// out what the daemons keep for themselves (`.stfolder`, `.stversions`,
/// `.stignore`, `.syncthing.*.tmp`).
fn files_under(root: &Path) -> Result<BTreeMap<PathBuf, u64>, String> {
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
fn same_files(src: &Path, dst: &Path, files: u64, bytes: u64) -> Result<(), String> {
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

fn full_rows(data: &DataSet) -> Vec<Row<'_, SyncFigures>> {
    let mb = data.bytes as f64 / 1e6;
    let files = data.files.len() as f64;
    let mut rows = vec![Row::new(
        "sync: clock start -> in sync [s]",
        3,
        |f: &SyncFigures| Some(f.sync.as_secs_f64()),
    )];
    match data.set {
        Set::Large => {
            rows.push(
                Row::new(
                    "throughput: bytes / sync time [MB/s]",
                    0,
                    move |f: &SyncFigures| rate(mb, f.sync),
                )
                .target(">= 900", |v| v >= 900.0),
            );
            rows.push(Row::new(
                "  (informational) connected -> in sync [MB/s]",
                0,
                move |f: &SyncFigures| rate(mb, f.transfer),
            ));
        }
        Set::Small => {
            rows.push(
                Row::new(
                    "throughput: files / sync time [files/s]",
                    0,
                    move |f: &SyncFigures| rate(files, f.sync),
                )
                .target(">= 5000", |v| v >= 5_000.0),
            );
            rows.push(Row::new(
                "  (informational) connected -> in sync [files/s]",
                0,
                move |f: &SyncFigures| rate(files, f.transfer),
            ));
        }
    }
    rows.extend([
        Row::new(
            "  (informational) dest spawn -> connected [s]",
            3,
            |f: &SyncFigures| f.connected.map(|d| d.as_secs_f64()),
        ),
        Row::new(
            "CPU time during the sync, source [s]",
            2,
            |f: &SyncFigures| f.cpu_src.map(|d| d.as_secs_f64()),
        ),
        Row::new(
            "CPU time during the sync, destination [s]",
            2,
            |f: &SyncFigures| f.cpu_dst.map(|d| d.as_secs_f64()),
        ),
        Row::new("peak RSS (VmHWM), source [MiB]", 1, |f: &SyncFigures| {
            Some(f.rss_src_kib as f64 / 1024.0)
        })
        .target("< 60", |v| v < 60.0),
        Row::new(
            "peak RSS (VmHWM), destination [MiB]",
            1,
            |f: &SyncFigures| Some(f.rss_dst_kib as f64 / 1024.0),
        )
        .target("< 60", |v| v < 60.0),
    ]);
    rows
}

fn full_table(
    data: &DataSet,
    start: Start,
    fs: Option<&SyncFigures>,
    st: Option<&SyncFigures>,
) -> String {
    let heading = format!(
        "{} ({}; median of {RUNS} runs): {} files, {:.1} MiB ({:.1} MB), {} directories, \
         from {} to a fresh directory beside it",
        data.set.label(),
        start.label(),
        data.files.len(),
        data.bytes as f64 / (1 << 20) as f64,
        data.bytes as f64 / 1e6,
        data.directories,
        data.root.display()
    );
    let clock = match start {
        Start::Live => {
            "the devices connected, the folder added on the running destination \
             (ferrosync: `folder add` through its API; syncthing: POST /rest/config/folders)"
        }
        Start::Spawn => {
            "the destination spawned with the device and the folder already in its config \
             (ferrosync: configured through the CLI before its first start; syncthing: \
             configured through its API in a first run, stopped, then started again), the \
             source running and scanned; the destination's CPU counts from its spawn"
        }
    };
    let notes = [
        format!("ratio = ferrosync / syncthing. Clock start, the same for both: {clock}."),
        "In sync: the destination's local files and bytes equal the source's, need 0 \
         (polled every 20 ms). CPU: user + system, 10 ms ticks. Peak RSS over each \
         process's life: the source's includes its initial scan."
            .to_string(),
    ];
    bench::table(&heading, &full_rows(data), fs, st, &notes)
}
