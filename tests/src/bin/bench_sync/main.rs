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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferrosync_tests::bench::pair::*;
use ferrosync_tests::bench::{
    self, loadavg, rate, Api, Args, Daemon, DataSet, Rng, Row, Set, FOLDER,
};
use ferrosync_tests::syncthing;
use sha2::{Digest, Sha256};

/// How long any one wait may take before the run counts as failed.
const LIMIT: Duration = Duration::from_secs(600);
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

/// A [`Run`] of this benchmark (every wait bounded by [`LIMIT`]).
fn run<'a>(
    binary: &'a Path,
    src_root: &'a Path,
    dst_root: &'a Path,
    files: u64,
    bytes: u64,
    start: Start,
) -> Run<'a> {
    Run {
        binary,
        src_root,
        dst_root,
        files,
        bytes,
        start,
        limit: LIMIT,
    }
}

/// Nothing between the source's scan and the sync.
fn no_hook(_: &Daemon, _: &Api, _: Duration) -> Result<(), String> {
    Ok(())
}

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
    let (pair, mut figures) = FsPair::sync(
        &run(binary, &data.root, &dst_root, files, data.bytes, start),
        no_hook,
    )?;
    same_files(&data.root, &dst_root, files, data.bytes).map_err(|e| pair.logs(&e))?;
    (figures.rss_src_kib, figures.rss_dst_kib) = pair.peak_rss_kib()?;
    pair.stop()?;
    Ok((figures, dst_tmp))
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
    let (pair, mut figures) = StPair::sync(
        &run(binary, &data.root, &dst_root, files, data.bytes, start),
        |_, _| (),
    );
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
