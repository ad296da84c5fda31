//! `bench-scale`: how scanning and syncing cost as a folder grows from ten
//! thousand to a million files, ferrosync and Syncthing side by side on
//! the same trees in the same run.
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-scale -- \
//!     [--set 10k|20k|100k|300k|1m|all] [--dir DIR] [--daemon ferrosync|syncthing|both] \
//!     [--ferrosync PATH]
//! ```
//!
//! Trees (generated once under `DIR/scale-N`, default
//! `/tmp/ferrosync-bench-data`, and reused while intact): N files of
//! 0–64 KiB (64 KiB · u⁵ for uniform u: median 2 KiB, mean 11 KiB) in leaf
//! directories of 1–100 files, 20 leaves to a directory and 20 of those to
//! a top-level one, plus three files of 64 MiB in `big/`. The trees are
//! read once before the daemons run (a warm page cache for both).
//!
//! Per tree and daemon, one pair of daemons on loopback (TCP):
//! 1. the source alone: initial scan (from the user action to idle with
//!    every file counted: see [`bench::pair::Run`]), a rescan with
//!    nothing changed (median of three), and a rescan after 1 % of the
//!    files were rewritten (same sizes, new bytes); each rescan timed as
//!    the client sees it (ferrosync: rescan request plus its long poll;
//!    Syncthing: the blocking `POST /rest/db/scan`). Peak RSS, CPU time
//!    and the index's size on disk are read at the end of this phase.
//! 2. initial sync to an empty destination: from the folder added on the
//!    running, connected destination until it holds every file with
//!    nothing needed ([`Start::Live`]).
//! 3. a sync of another 1 % rewritten on the source: from the rescan
//!    request on the source until every rewritten file on the destination
//!    has the source's size and modification time (both daemons keep it).
//!
//! Written beside the table: `docs/benchmarks/scale.json` (every figure)
//! and `docs/benchmarks/scale.png` (time and peak RSS against file count,
//! log–log), when the whole default list of sizes runs (after each tree).

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ferrosync_tests::bench::pair::{guarded, FsPair, Run, StPair, Start};
use ferrosync_tests::bench::{self, cpu_time, loadavg, median, Api, Args, Daemon, Rng, Row};
use ferrosync_tests::syncthing::{self, Syncthing};
use serde_json::{json, Value};

/// How long any one wait may take.
const LIMIT: Duration = Duration::from_secs(3600);
/// Unchanged rescans timed per tree (the median is reported).
const RESCANS: usize = 3;
/// The tree sizes of a full run.
const SIZES: [usize; 5] = [10_000, 20_000, 100_000, 300_000, 1_000_000];
/// Large files in every tree, and their size.
const LARGE_FILES: usize = 3;
const LARGE_SIZE: u64 = 64 << 20;
/// Bump when the layout or content changes: cached trees are remade.
const LAYOUT_VERSION: u32 = 1;

const USAGE: &str = "usage: bench-scale [--set 10k|20k|100k|300k|1m|all] [--dir DIR] \
[--daemon ferrosync|syncthing|both] [--ferrosync PATH]";

fn main() {
    let args = Args::from_env(USAGE, SIZES.to_vec(), |v| match v {
        "10k" => Some(vec![10_000]),
        "20k" => Some(vec![20_000]),
        "100k" => Some(vec![100_000]),
        "300k" => Some(vec![300_000]),
        "1m" => Some(vec![1_000_000]),
        "all" => Some(SIZES.to_vec()),
        _ => None,
    });
    let syncthing = args.syncthing_binary();
    let ferrosync = args.ferrosync_binary();
    let load_before = loadavg();
    let started = Instant::now();
    let mut report = String::new();
    let mut results = Vec::new();
    // Destinations are kept until the end: removing a million files makes
    // the next million slower to create for minutes (see `settle`).
    let mut keep = Vec::new();
    for &n in &args.sets {
        let tree = match Tree::prepare(n, &args.dir) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: preparing the {n}-file tree: {e}");
                std::process::exit(1);
            }
        };
        let label = format!("{n} files");
        let fs = ferrosync.as_ref().and_then(|bin| {
            guarded("ferrosync", &label, || {
                run_ferrosync(bin, &tree, &args.dir, &mut keep)
            })
        });
        let st = syncthing.as_ref().and_then(|bin| {
            guarded("syncthing", &label, || {
                run_syncthing(bin, &tree, &args.dir, &mut keep)
            })
        });
        let table = table(&tree, fs.as_ref(), st.as_ref());
        eprintln!("{table}");
        report.push_str(&table);
        results.push(json!({
            "files": tree.files,
            "bytes": tree.bytes,
            "directories": tree.dirs,
            "ferrosync": fs.as_ref().map(Figures::json),
            "syncthing": st.as_ref().map(Figures::json),
        }));
        if args.sets == SIZES {
            // After each tree, so that a run cut short keeps what it has.
            write_results(
                &results,
                &format!("partial run: {} of {} trees", results.len(), SIZES.len()),
            );
        }
    }
    drop(keep);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let machine = format!(
        "machine: {cores} cores; load average (1, 5, 15 min) before: {load_before}, \
         after: {} ({:.0} s of benchmark)",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    println!("{machine}\n{report}");
    if args.sets == SIZES {
        write_results(&results, &machine);
    }
}

/// Writes `docs/benchmarks/scale.json` and `scale.png`.
fn write_results(results: &[Value], machine: &str) {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks");
    let doc = json!({ "machine": machine, "trees": results });
    let written = fs::create_dir_all(&out)
        .and_then(|()| {
            fs::write(
                out.join("scale.json"),
                serde_json::to_string_pretty(&doc).unwrap_or_default(),
            )
        })
        .map_err(|e| e.to_string())
        .and_then(|()| plot::draw(&out.join("scale.png"), results));
    match written {
        Ok(()) => eprintln!("wrote {}/scale.json and scale.png", out.display()),
        Err(e) => eprintln!("error: writing the results: {e}"),
    }
}

/// One generated tree.
struct Tree {
    root: PathBuf,
    /// Every regular file, folder-relative, with its size.
    layout: Vec<(String, u64)>,
    files: u64,
    bytes: u64,
    dirs: u64,
}

impl Tree {
    /// The tree of `n` files under `dir`, generated unless a complete one
    /// of this layout is there, then read once.
    fn prepare(n: usize, dir: &Path) -> Result<Self, String> {
        let base = dir.join(format!("scale-{n}"));
        let root = base.join("tree");
        let layout = layout(n);
        let files = layout.len() as u64;
        let bytes = layout.iter().map(|(_, s)| s).sum();
        let dirs = layout
            .iter()
            .filter_map(|(p, _)| p.rsplit_once('/').map(|(d, _)| d))
            .collect::<std::collections::BTreeSet<_>>()
            .iter()
            .flat_map(|d| d.match_indices('/').map(|(i, _)| &d[..i]).chain([*d]))
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        let done = base.join(format!("complete-v{LAYOUT_VERSION}"));
        if !done.exists() {
            if base.exists() {
                fs::remove_dir_all(&base).map_err(|e| format!("remove {}: {e}", base.display()))?;
            }
            eprintln!("generating {n} files under {}", root.display());
            let t = Instant::now();
            fs::create_dir_all(root.join(".stfolder")).map_err(|e| e.to_string())?;
            generate(&root, &layout)?;
            fs::write(&done, "").map_err(|e| e.to_string())?;
            eprintln!("generated in {:.0} s", t.elapsed().as_secs_f64());
        }
        let tree = Tree {
            root,
            layout,
            files,
            bytes,
            dirs,
        };
        tree.warm()?;
        Ok(tree)
    }

    /// A sync of this tree into `dst_root`, clocked from the folder added
    /// on the connected destination.
    fn run<'a>(&'a self, binary: &'a Path, dst_root: &'a Path) -> Run<'a> {
        Run {
            binary,
            src_root: &self.root,
            dst_root,
            files: self.files,
            bytes: self.bytes,
            start: Start::Live,
            limit: LIMIT,
        }
    }

    /// Reads every file once, checking that the tree is as generated.
    fn warm(&self) -> Result<(), String> {
        let t = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        for (rel, size) in &self.layout {
            let path = self.root.join(rel);
            let mut f = fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut total = 0u64;
            loop {
                let k = f.read(&mut buf).map_err(|e| e.to_string())?;
                if k == 0 {
                    break;
                }
                total += k as u64;
            }
            if total != *size {
                return Err(format!("{rel}: {total} bytes, generated {size}"));
            }
        }
        eprintln!(
            "{} files read in {:.1} s (page cache warm)",
            self.files,
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Rewrites every 100th file, starting at `phase` (new bytes, same
    /// size; an empty file only gets a new modification time). Returns
    /// them with their new size and modification time.
    fn rewrite_percent(&self, phase: usize, seed: u64) -> Result<Vec<Changed>, String> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        for (rel, size) in self.layout.iter().skip(phase).step_by(100) {
            let path = self.root.join(rel);
            bench::write_random(&path, *size, &mut rng).map_err(|e| format!("{rel}: {e}"))?;
            let m = fs::metadata(&path).map_err(|e| format!("{rel}: {e}"))?;
            out.push(Changed {
                rel: rel.clone(),
                size: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
            });
        }
        Ok(out)
    }
}

/// A rewritten file as the source has it.
struct Changed {
    rel: String,
    size: u64,
    mtime: (i64, i64),
}

/// Waits until every changed file under `dst` has the source's size and
/// modification time; how long it took from `t0`.
fn wait_landed(dst: &Path, changed: &[Changed], t0: Instant) -> Result<Duration, String> {
    let mut left: Vec<&Changed> = changed.iter().collect();
    let landed = ferrosync_tests::poll(LIMIT.saturating_sub(t0.elapsed()), || {
        left.retain(|c| {
            fs::metadata(dst.join(&c.rel)).map_or(true, |m| {
                m.len() != c.size || (m.mtime(), m.mtime_nsec()) != c.mtime
            })
        });
        left.is_empty().then(|| t0.elapsed())
    });
    landed.ok_or_else(|| {
        format!(
            "{} of {} changed files not on the destination after {} s, e.g. {}",
            left.len(),
            changed.len(),
            LIMIT.as_secs(),
            left.first().map_or("", |c| c.rel.as_str())
        )
    })
}

/// The files of an `n`-file tree: deterministic for `n`.
fn layout(n: usize) -> Vec<(String, u64)> {
    let mut rng = Rng::new(0x5ca1e ^ n as u64);
    let mut out = Vec::with_capacity(n);
    let small = n - LARGE_FILES;
    let mut leaf = 0usize;
    while out.len() < small {
        let count = (1 + rng.next_u64() % 100) as usize;
        let dir = format!(
            "t{:03}/s{:02}/l{:02}",
            leaf / 400,
            (leaf / 20) % 20,
            leaf % 20
        );
        for i in 0..count.min(small - out.len()) {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let size = (65_536.0 * u.powi(5)) as u64;
            let ext = ["txt", "jpg", "rs", "json", "md", "bin"][(rng.next_u64() % 6) as usize];
            out.push((format!("{dir}/file-{i:03}.{ext}"), size));
        }
        leaf += 1;
    }
    for i in 0..LARGE_FILES {
        out.push((format!("big/large-{i}.bin"), LARGE_SIZE));
    }
    out.sort();
    out
}

/// Writes the files of `layout` under `root` on two threads.
fn generate(root: &Path, layout: &[(String, u64)]) -> Result<(), String> {
    let half = layout.len() / 2;
    std::thread::scope(|s| {
        let parts = [(&layout[..half], 1u64), (&layout[half..], 2u64)];
        let handles: Vec<_> = parts
            .into_iter()
            .map(|(part, seed)| {
                s.spawn(move || {
                    let mut rng = Rng::new(seed);
                    for (rel, size) in part {
                        bench::write_random(&root.join(rel), *size, &mut rng)
                            .map_err(|e| format!("{rel}: {e}"))?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "a writer panicked".to_string())?)
    })
}

/// Bytes under `path` on disk (allocated blocks, as `du` counts).
fn disk_usage(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        total += m.blocks() * 512;
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// What one daemon measured on one tree.
#[derive(Default)]
struct Figures {
    scan: Duration,
    rescan: Duration,
    rescan_touched: Duration,
    scan_rss_kib: u64,
    scan_cpu: Option<Duration>,
    index_bytes: u64,
    sync: Duration,
    sync_rss_src_kib: u64,
    sync_rss_dst_kib: u64,
    sync_cpu_src: Option<Duration>,
    sync_cpu_dst: Option<Duration>,
    dst_index_bytes: u64,
    change_sync: Duration,
}

impl Figures {
    fn json(&self) -> Value {
        let s = |d: Duration| d.as_secs_f64();
        let mib = |k: u64| k as f64 / 1024.0;
        json!({
            "initial_scan_s": s(self.scan),
            "rescan_unchanged_s": s(self.rescan),
            "rescan_1pct_s": s(self.rescan_touched),
            "scan_peak_rss_mib": mib(self.scan_rss_kib),
            "scan_cpu_s": self.scan_cpu.map(s),
            "index_bytes": self.index_bytes,
            "initial_sync_s": s(self.sync),
            "sync_peak_rss_source_mib": mib(self.sync_rss_src_kib),
            "sync_peak_rss_destination_mib": mib(self.sync_rss_dst_kib),
            "sync_cpu_source_s": self.sync_cpu_src.map(s),
            "sync_cpu_destination_s": self.sync_cpu_dst.map(s),
            "destination_index_bytes": self.dst_index_bytes,
            "sync_1pct_s": s(self.change_sync),
        })
    }
}

/// Phase 1 on a ferrosync source (see the module doc).
fn scan_phase_ferrosync(
    tree: &Tree,
    daemon: &Daemon,
    api: &Api,
    scan: Duration,
    f: &mut Figures,
) -> Result<(), String> {
    f.scan = scan;
    let mut trips = Vec::new();
    for _ in 0..RESCANS {
        let t = Instant::now();
        api.rescan()?;
        trips.push(t.elapsed());
    }
    f.rescan = median(trips);
    tree.rewrite_percent(0, seed())?;
    let t = Instant::now();
    api.rescan()?;
    f.rescan_touched = t.elapsed();
    f.scan_rss_kib = syncthing::peak_rss_kib(daemon.pid()).ok_or("cannot read VmHWM")?;
    f.scan_cpu = cpu_time(daemon.pid());
    f.index_bytes = disk_usage(&daemon.home().join("index"));
    Ok(())
}

/// Phase 1 on a Syncthing source.
fn scan_phase_syncthing(tree: &Tree, st: &Syncthing, scan: Duration, f: &mut Figures) {
    f.scan = scan;
    let mut trips = Vec::new();
    for _ in 0..RESCANS {
        let t = Instant::now();
        st.rescan(bench::FOLDER);
        trips.push(t.elapsed());
    }
    f.rescan = median(trips);
    if let Err(e) = tree.rewrite_percent(0, seed()) {
        st.fail(&e);
    }
    let t = Instant::now();
    st.rescan(bench::FOLDER);
    f.rescan_touched = t.elapsed();
    f.scan_rss_kib = st.peak_rss_kib();
    f.scan_cpu = cpu_time(st.pid());
    f.index_bytes = disk_usage(&st.home().join("index-v0.14.0.db"));
}

/// A seed that differs between runs, so that a rewrite always changes bytes.
fn seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

fn run_ferrosync(
    binary: &Path,
    tree: &Tree,
    dir: &Path,
    keep: &mut Vec<tempfile::TempDir>,
) -> Result<Figures, String> {
    let (dst_tmp, dst_root) = bench::pair::destination(dir)?;
    let mut f = Figures::default();
    let run = tree.run(binary, &dst_root);
    let (pair, sync) = FsPair::sync(&run, |d, api, scan| {
        scan_phase_ferrosync(tree, d, api, scan, &mut f)
    })?;
    keep.push(dst_tmp);
    f.sync = sync.sync;
    (f.sync_rss_src_kib, f.sync_rss_dst_kib) = pair.peak_rss_kib()?;
    f.sync_cpu_src = sync.cpu_src;
    f.sync_cpu_dst = sync.cpu_dst;
    f.dst_index_bytes = disk_usage(&pair.dst.home().join("index"));
    let changed = tree.rewrite_percent(1, seed())?;
    let t0 = Instant::now();
    pair.src_api.rescan().map_err(|e| pair.logs(&e))?;
    f.change_sync = wait_landed(&dst_root, &changed, t0).map_err(|e| pair.logs(&e))?;
    pair.stop()?;
    Ok(f)
}

fn run_syncthing(
    binary: &Path,
    tree: &Tree,
    dir: &Path,
    keep: &mut Vec<tempfile::TempDir>,
) -> Result<Figures, String> {
    let (dst_tmp, dst_root) = bench::pair::destination(dir)?;
    let mut f = Figures::default();
    let run = tree.run(binary, &dst_root);
    let (pair, sync) = StPair::sync(&run, |st, scan| {
        scan_phase_syncthing(tree, st, scan, &mut f)
    });
    keep.push(dst_tmp);
    f.sync = sync.sync;
    (f.sync_rss_src_kib, f.sync_rss_dst_kib) = pair.peak_rss_kib();
    f.sync_cpu_src = sync.cpu_src;
    f.sync_cpu_dst = sync.cpu_dst;
    f.dst_index_bytes = disk_usage(&pair.dst.home().join("index-v0.14.0.db"));
    let changed = tree.rewrite_percent(1, seed())?;
    let t0 = Instant::now();
    pair.src.rescan(bench::FOLDER);
    let landed = wait_landed(&dst_root, &changed, t0);
    f.change_sync = landed.unwrap_or_else(|e| pair.dst.fail(&e));
    pair.stop();
    Ok(f)
}

fn rows(tree: &Tree) -> Vec<Row<'_, Figures>> {
    let n = tree.files as f64;
    let s = |d: Duration| Some(d.as_secs_f64());
    let mib = |k: u64| Some(k as f64 / 1024.0);
    let cpu = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    vec![
        Row::new("initial scan: action -> idle [s]", 2, move |f: &Figures| {
            s(f.scan)
        }),
        Row::new("rescan, unchanged [s]", 3, move |f: &Figures| s(f.rescan)),
        Row::new("rescan, 1 % rewritten [s]", 3, move |f: &Figures| {
            s(f.rescan_touched)
        }),
        Row::new("scan phase: peak RSS [MiB]", 1, move |f: &Figures| {
            mib(f.scan_rss_kib)
        }),
        Row::new("scan phase: CPU [s]", 1, move |f: &Figures| cpu(f.scan_cpu)),
        Row::new("index on disk [MiB]", 1, |f: &Figures| {
            Some(f.index_bytes as f64 / f64::from(1 << 20))
        }),
        Row::new("index on disk per file [bytes]", 0, move |f: &Figures| {
            Some(f.index_bytes as f64 / n)
        }),
        Row::new(
            "initial sync: folder added -> in sync [s]",
            2,
            move |f: &Figures| s(f.sync),
        ),
        Row::new("initial sync [files/s]", 0, move |f: &Figures| {
            bench::rate(n, f.sync)
        }),
        Row::new("sync: peak RSS source [MiB]", 1, move |f: &Figures| {
            mib(f.sync_rss_src_kib)
        }),
        Row::new("sync: peak RSS destination [MiB]", 1, move |f: &Figures| {
            mib(f.sync_rss_dst_kib)
        }),
        Row::new(
            "sync: CPU source + destination [s]",
            1,
            move |f: &Figures| Some(cpu(f.sync_cpu_src)? + cpu(f.sync_cpu_dst)?),
        ),
        Row::new("destination index on disk [MiB]", 1, |f: &Figures| {
            Some(f.dst_index_bytes as f64 / f64::from(1 << 20))
        }),
        Row::new(
            "sync of 1 % rewritten: rescan -> landed [s]",
            2,
            move |f: &Figures| s(f.change_sync),
        ),
    ]
}

fn table(tree: &Tree, fs: Option<&Figures>, st: Option<&Figures>) -> String {
    let heading = format!(
        "{} files, {:.1} MiB, {} directories, in {}",
        tree.files,
        tree.bytes as f64 / f64::from(1 << 20),
        tree.dirs,
        tree.root.display()
    );
    let notes = [
        format!(
            "ratio = ferrosync / syncthing; unchanged rescan: median of {RESCANS}; \
             peak RSS is VmHWM; the sync phase's source peak includes its scans"
        ),
        "initial scan: ferrosync from its spawn with the folder configured, Syncthing from \
         the folder added to the running process"
            .to_string(),
    ];
    bench::table(&heading, &rows(tree), fs, st, &notes)
}

/// The PNG plot of the results.
mod plot {
    use std::path::Path;
    use std::sync::OnceLock;

    use plotters::prelude::*;
    use serde_json::Value;

    /// A TrueType font for the labels (ab_glyph draws it; no system
    /// font libraries are needed).
    const FONTS: [&str; 2] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];

    /// Two panels, time and peak RSS against file count, log–log.
    pub fn draw(path: &Path, trees: &[Value]) -> Result<(), String> {
        static FONT: OnceLock<Result<(), String>> = OnceLock::new();
        FONT.get_or_init(|| {
            let font = FONTS
                .iter()
                .find_map(|p| std::fs::read(p).ok())
                .ok_or("no DejaVuSans.ttf to label the plot (Debian: fonts-dejavu-core)")?;
            // Registered once for the process: plotters keeps it.
            let font: &'static [u8] = Box::leak(font.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, font)
                .map_err(|_| "the font does not load".to_string())
        })
        .clone()?;
        let root = BitMapBackend::new(path, (1400, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(700);
        panel(
            &left,
            trees,
            "time [s]",
            &[
                ("initial_scan_s", "initial scan"),
                ("rescan_unchanged_s", "rescan, unchanged"),
                ("initial_sync_s", "initial sync"),
            ],
        )?;
        panel(
            &right,
            trees,
            "peak RSS [MiB]",
            &[
                ("scan_peak_rss_mib", "scan"),
                ("sync_peak_rss_destination_mib", "sync, destination"),
            ],
        )?;
        root.present().map_err(|e| e.to_string())
    }

    fn panel(
        area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        trees: &[Value],
        y_label: &str,
        metrics: &[(&str, &str)],
    ) -> Result<(), String> {
        let mut series = Vec::new();
        for (d, daemon) in ["ferrosync", "syncthing"].iter().enumerate() {
            for (m, (key, label)) in metrics.iter().enumerate() {
                let points: Vec<(f64, f64)> = trees
                    .iter()
                    .filter_map(|t| Some((t["files"].as_f64()?, t[*daemon][*key].as_f64()?)))
                    .filter(|(_, y)| *y > 0.0)
                    .collect();
                series.push((d, m, format!("{daemon}: {label}"), points));
            }
        }
        let ys = series.iter().flat_map(|s| s.3.iter().map(|p| p.1));
        let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        if lo > hi {
            return Err("nothing to plot".into());
        }
        let mut chart = ChartBuilder::on(area)
            .caption(y_label, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (5_000f64..2_000_000f64).log_scale(),
                ((lo / 2.0)..(hi * 2.0)).log_scale(),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("files")
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        let colours = [RGBColor(200, 60, 30), RGBColor(30, 90, 200)];
        for (d, m, label, points) in series {
            let colour = colours[d];
            let style = ShapeStyle {
                color: colour.to_rgba(),
                filled: m == 0,
                stroke_width: if d == 0 { 3 } else { 2 },
            };
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            let marker = m;
            chart
                .draw_series(points.iter().map(move |&p| match marker {
                    0 => Circle::new(p, 4, style.filled()).into_dyn(),
                    1 => TriangleMarker::new(p, 5, style.filled()).into_dyn(),
                    _ => Cross::new(p, 4, style).into_dyn(),
                }))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
