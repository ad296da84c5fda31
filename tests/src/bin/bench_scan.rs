//! `bench-scan`: how fast ferrosync and Syncthing scan the same data, side
//! by side, on a warm page cache.
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-scan -- \
//!     [--set large|small|all] [--dir DIR] [--daemon ferrosync|syncthing|both] \
//!     [--ferrosync PATH]
//! ```
//!
//! Data sets (seeded pseudo-random, incompressible; generated once under
//! `DIR`, default `/tmp/ferrosync-bench-data`, and reused while intact):
//! (a) `large`: 1 GiB in 4 files; (b) `small`: 20,000 files of 1–64 KiB in
//! 200 leaf directories. Every file is read once before the daemons run.
//!
//! For each daemon, on a fresh home with the data set as its only folder:
//! startup (spawn until its API answers), initial scan (spawn until the
//! folder is idle with every file counted; nothing subtracted), throughput,
//! for (b) a rescan with nothing changed (median of three), and the peak
//! RSS (`VmHWM`) of the daemon process. Syncthing runs when it is on `PATH`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrosync_tests::syncthing::{self, FolderSpec, FolderType, Options, Syncthing};
use serde_json::Value;

/// The folder ID both daemons use.
const FOLDER: &str = "bench";
/// How long a daemon may take to answer its API after the spawn.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// How long one initial scan may take before the run counts as failed.
const SCAN_LIMIT: Duration = Duration::from_secs(600);
/// Poll interval while waiting on a daemon's state.
const POLL: Duration = Duration::from_millis(20);
/// How many unchanged rescans are timed (the median is reported).
const RESCANS: usize = 3;

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let syncthing = if args.syncthing {
        ferrosync_tests::require("syncthing", "syncthing")
    } else {
        None
    };
    let ferrosync = if args.ferrosync {
        locate_ferrosync(args.ferrosync_path.clone())
    } else {
        Err("not requested".to_string())
    };
    if let (true, Err(e)) = (args.ferrosync, &ferrosync) {
        eprintln!("ferrosync: {e}");
    }
    let mut report = String::new();
    for set in &args.sets {
        let data = DataSet::prepare(*set, &args.dir);
        let warm = data.warm();
        eprintln!(
            "{}: page cache warm ({:.2} GB/s to read it once)",
            set.label(),
            data.bytes as f64 / warm.as_secs_f64() / 1e9
        );
        let fs = match &ferrosync {
            Ok(bin) => {
                eprintln!("{}: running ferrosync", set.label());
                let r = run_ferrosync(bin, &data);
                if let Err(e) = &r {
                    eprintln!("ferrosync failed on {}: {e}", set.label());
                }
                r.ok()
            }
            Err(_) => None,
        };
        let st = syncthing.as_ref().map(|bin| {
            eprintln!("{}: running syncthing", set.label());
            run_syncthing(bin, &data)
        });
        report.push_str(&table(&data, fs.as_ref(), st.as_ref()));
    }
    println!("{report}");
}

const USAGE: &str = "usage: bench-scan [--set large|small|all] [--dir DIR] \
[--daemon ferrosync|syncthing|both] [--ferrosync PATH]";

struct Args {
    sets: Vec<Set>,
    dir: PathBuf,
    ferrosync: bool,
    syncthing: bool,
    ferrosync_path: Option<PathBuf>,
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut args = Args {
            sets: vec![Set::Large, Set::Small],
            dir: std::env::temp_dir().join("ferrosync-bench-data"),
            ferrosync: true,
            syncthing: true,
            ferrosync_path: None,
        };
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--set" => {
                    args.sets = match value()?.as_str() {
                        "large" => vec![Set::Large],
                        "small" => vec![Set::Small],
                        "all" => vec![Set::Large, Set::Small],
                        v => return Err(format!("unknown set {v:?}")),
                    }
                }
                "--dir" => args.dir = PathBuf::from(value()?),
                "--daemon" => {
                    (args.ferrosync, args.syncthing) = match value()?.as_str() {
                        "ferrosync" => (true, false),
                        "syncthing" => (false, true),
                        "both" => (true, true),
                        v => return Err(format!("unknown daemon {v:?}")),
                    }
                }
                "--ferrosync" => args.ferrosync_path = Some(PathBuf::from(value()?)),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(args)
    }
}

/// The ferrosync binary: `--ferrosync PATH`, else the workspace build in
/// this profile (built first when run under cargo).
fn locate_ferrosync(path: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = path {
        return Ok(p);
    }
    std::panic::catch_unwind(|| ferrosync_tests::bin("ferrosync"))
        .map_err(|_| "could not build or find the ferrosync binary".to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    /// (a) 1 GiB in 4 files.
    Large,
    /// (b) 20,000 files of 1–64 KiB over 200 leaf directories.
    Small,
}

impl Set {
    fn name(self) -> &'static str {
        match self {
            Set::Large => "large",
            Set::Small => "small",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Set::Large => "(a) large",
            Set::Small => "(b) small",
        }
    }

    /// Relative path and size of every file, from a fixed seed.
    fn layout(self) -> Vec<(PathBuf, u64)> {
        match self {
            Set::Large => (0..4)
                .map(|i| (PathBuf::from(format!("file{i}.bin")), 256 << 20))
                .collect(),
            Set::Small => {
                let mut rng = Rng::new(0x5eed_0b5e);
                (0..20_000u64)
                    .map(|i| {
                        let leaf = i % 200;
                        let name = format!("d{:02}/e{}/f{i:05}.bin", leaf / 10, leaf % 10);
                        (
                            PathBuf::from(name),
                            1024 + rng.next() % (64 * 1024 - 1024 + 1),
                        )
                    })
                    .collect()
            }
        }
    }
}

struct DataSet {
    set: Set,
    root: PathBuf,
    files: Vec<(PathBuf, u64)>,
    bytes: u64,
    directories: usize,
}

impl DataSet {
    /// Generates the set under `dir` unless an intact copy is there.
    fn prepare(set: Set, dir: &Path) -> Self {
        let files = set.layout();
        let bytes = files.iter().map(|(_, s)| s).sum();
        let mut dirs: Vec<&Path> = files
            .iter()
            .flat_map(|(p, _)| p.ancestors().skip(1))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        dirs.sort();
        dirs.dedup();
        let directories = dirs.len();
        let data = DataSet {
            set,
            root: dir.join(set.name()),
            files,
            bytes,
            directories,
        };
        let stamp = dir.join(format!("{}.complete", set.name()));
        let spec = format!(
            "bench-scan v1 {} files={} bytes={}\n",
            set.name(),
            data.files.len(),
            bytes
        );
        let intact = std::fs::read_to_string(&stamp).is_ok_and(|s| s == spec)
            && data.files.iter().all(|(p, size)| {
                std::fs::metadata(data.root.join(p)).is_ok_and(|m| m.is_file() && m.len() == *size)
            });
        if intact {
            eprintln!("{}: reusing {}", set.label(), data.root.display());
        } else {
            eprintln!("{}: generating {}", set.label(), data.root.display());
            let _ = std::fs::remove_file(&stamp);
            if data.root.exists() {
                std::fs::remove_dir_all(&data.root).expect("remove a stale data set");
            }
            data.generate();
            std::fs::write(&stamp, spec).expect("write the data set stamp");
        }
        syncthing::create_folder_root(&data.root);
        data
    }

    fn generate(&self) {
        let mut rng = Rng::new(0xda7a_0000 + self.set as u64);
        let mut buf = vec![0u8; 4 << 20];
        for (rel, size) in &self.files {
            let path = self.root.join(rel);
            std::fs::create_dir_all(path.parent().expect("file has a parent"))
                .expect("create data directories");
            let mut f = File::create(&path).expect("create data file");
            let mut left = *size as usize;
            while left > 0 {
                let n = left.min(buf.len());
                rng.fill(&mut buf[..n]);
                f.write_all(&buf[..n]).expect("write data file");
                left -= n;
            }
        }
    }

    /// Reads every file once; returns how long that took.
    fn warm(&self) -> Duration {
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        for (rel, _) in &self.files {
            let mut f = File::open(self.root.join(rel)).expect("open data file");
            while f.read(&mut buf).expect("read data file") > 0 {}
        }
        start.elapsed()
    }
}

/// xoshiro256** seeded through splitmix64: fast, deterministic, and its
/// output does not compress.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut split = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([split(), split(), split(), split()])
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What one daemon measured on one data set.
struct Figures {
    /// Spawn until the API first answered.
    startup: Duration,
    /// Spawn until the folder was idle with every file counted.
    scan: Duration,
    /// Median of the unchanged rescans (small set only).
    rescan: Option<Duration>,
    /// Peak RSS of the daemon process, KiB.
    rss_kib: u64,
}

fn run_syncthing(binary: &Path, data: &DataSet) -> Figures {
    let n = data.files.len();
    let st = Syncthing::start(Options {
        binary: binary.to_path_buf(),
        folders: vec![FolderSpec {
            id: FOLDER.to_string(),
            path: data.root.clone(),
            folder_type: FolderType::SendReceive,
        }],
        ..Options::default()
    });
    st.wait_folder(
        FOLDER,
        st.spawned_at() + SCAN_LIMIT,
        "idle with every file counted",
        |s| s["state"] == "idle" && s["localFiles"] == n,
    );
    let scan = st.spawned_at().elapsed();
    let rescan = (data.set == Set::Small).then(|| {
        median(
            (0..RESCANS)
                .map(|_| {
                    let t = Instant::now();
                    st.rescan(FOLDER);
                    t.elapsed()
                })
                .collect(),
        )
    });
    let figures = Figures {
        startup: st.startup_time(),
        scan,
        rescan,
        rss_kib: st.peak_rss_kib(),
    };
    st.stop();
    figures
}

/// Runs ferrosync through its CLI contract: `init`, `config set`, `folder
/// add`, `run`, `status --json`, `folder rescan`.
fn run_ferrosync(binary: &Path, data: &DataSet) -> Result<Figures, String> {
    let tmp = tempfile::Builder::new()
        .prefix("bench-ferrosync-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let home = tmp.path().join("home");
    let cli = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(binary)
            .arg("--home")
            .arg(&home)
            .args(args)
            .env_remove("FERROSYNC_HOME")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ferrosync {args:?}: {}",
                ferrosync_tests::describe(&out)
            ))
        }
    };
    cli(&["init", "--name", "bench"])?;
    for (key, value) in [
        ("api.address", "127.0.0.1:0"),
        ("discovery.local", "false"),
        ("discovery.global", ""),
        ("relays", ""),
        ("nat", "false"),
        ("listen", ""),
    ] {
        cli(&["config", "set", key, value])?;
    }
    let root = data.root.to_str().ok_or("data path is not UTF-8")?;
    cli(&["folder", "add", FOLDER, root])?;

    let log_path = tmp.path().join("daemon.log");
    let log = File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
    let spawned_at = Instant::now();
    let child = Command::new(binary)
        .arg("--home")
        .arg(&home)
        .arg("run")
        .env_remove("FERROSYNC_HOME")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| format!("log: {e}"))?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn ferrosync run: {e}"))?;
    let mut daemon = Daemon { child, log_path };

    let status =
        || -> Option<Value> { serde_json::from_str(&cli(&["status", "--json"]).ok()?).ok() };
    daemon.wait(
        spawned_at + STARTUP_LIMIT,
        "`status --json` to reach the daemon",
        || status().map(|_| ()),
    )?;
    let startup = spawned_at.elapsed();
    let n = data.files.len() as u64;
    daemon.wait(
        spawned_at + SCAN_LIMIT,
        "the folder to be idle with every file counted",
        || {
            let status = status()?;
            let folder = status["folders"]
                .as_array()?
                .iter()
                .find(|f| f["id"] == FOLDER)?;
            (folder["state"] == "idle" && folder["local_files"].as_u64() == Some(n)).then_some(())
        },
    )?;
    let scan = spawned_at.elapsed();
    let rescan = if data.set == Set::Small {
        let mut times = Vec::new();
        for _ in 0..RESCANS {
            let t = Instant::now();
            cli(&["folder", "rescan", FOLDER]).map_err(|e| daemon.with_log(&e))?;
            times.push(t.elapsed());
        }
        Some(median(times))
    } else {
        None
    };
    let rss_kib = syncthing::peak_rss_kib(daemon.child.id())
        .ok_or_else(|| daemon.with_log("cannot read VmHWM"))?;
    daemon.stop()?;
    Ok(Figures {
        startup,
        scan,
        rescan,
        rss_kib,
    })
}

/// A running `ferrosync run`, killed on drop.
struct Daemon {
    child: Child,
    log_path: PathBuf,
}

impl Daemon {
    fn with_log(&self, msg: &str) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "{msg}\n--- last 40 lines of {}\n{tail}",
            self.log_path.display()
        )
    }

    /// Polls `probe` until it returns `Some`; fails at `deadline` or when
    /// the daemon exits.
    fn wait(
        &mut self,
        deadline: Instant,
        what: &str,
        mut probe: impl FnMut() -> Option<()>,
    ) -> Result<(), String> {
        loop {
            if probe().is_some() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.with_log(&format!("exited ({status}) waiting for {what}")));
            }
            if Instant::now() >= deadline {
                return Err(self.with_log(&format!("timed out waiting for {what}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, then up to 30 s to exit.
    fn stop(&mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("{}", self.with_log(&format!("ferrosync exited {status}")));
                    }
                    return Ok(());
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => return Err(self.with_log("did not stop within 30 s of SIGTERM")),
                Err(e) => return Err(format!("wait for ferrosync: {e}")),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One figure, as a number and a formatting rule.
struct Row {
    label: &'static str,
    value: fn(&Figures, &DataSet) -> Option<f64>,
    precision: usize,
    /// The target for ferrosync: (text, whether higher is better, bound).
    target: Option<(&'static str, bool, f64)>,
}

fn rows(set: Set) -> Vec<Row> {
    let mut rows = vec![
        Row {
            label: "startup: spawn -> API answers [s]",
            value: |f, _| Some(f.startup.as_secs_f64()),
            precision: 3,
            target: None,
        },
        Row {
            label: "initial scan: spawn -> idle, all counted [s]",
            value: |f, _| Some(f.scan.as_secs_f64()),
            precision: 3,
            target: None,
        },
    ];
    match set {
        Set::Large => {
            rows.push(Row {
                label: "scan throughput [GB/s]",
                value: |f, d| Some(d.bytes as f64 / f.scan.as_secs_f64() / 1e9),
                precision: 3,
                target: Some((">= 3.0", true, 3.0)),
            });
            rows.push(Row {
                label: "  (informational) excl. startup [GB/s]",
                value: |f, d| {
                    Some(d.bytes as f64 / f.scan.saturating_sub(f.startup).as_secs_f64() / 1e9)
                },
                precision: 3,
                target: None,
            });
        }
        Set::Small => {
            rows.push(Row {
                label: "scan throughput [files/s]",
                value: |f, d| Some(d.files.len() as f64 / f.scan.as_secs_f64()),
                precision: 0,
                target: Some((">= 25000", true, 25_000.0)),
            });
            rows.push(Row {
                label: "  (informational) excl. startup [files/s]",
                value: |f, d| {
                    Some(d.files.len() as f64 / f.scan.saturating_sub(f.startup).as_secs_f64())
                },
                precision: 0,
                target: None,
            });
            rows.push(Row {
                label: "rescan, nothing changed (median of 3) [s]",
                value: |f, _| f.rescan.map(|d| d.as_secs_f64()),
                precision: 3,
                target: Some(("< 0.3", false, 0.3)),
            });
        }
    }
    rows.push(Row {
        label: "peak RSS (VmHWM) [MiB]",
        value: |f, _| Some(f.rss_kib as f64 / 1024.0),
        precision: 1,
        target: (set == Set::Small).then_some(("< 60", false, 60.0)),
    });
    rows
}

fn table(data: &DataSet, fs: Option<&Figures>, st: Option<&Figures>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{}: {} files, {:.1} MiB, {} directories, in {}",
        data.set.label(),
        data.files.len(),
        data.bytes as f64 / (1 << 20) as f64,
        data.directories,
        data.root.display()
    );
    let _ = writeln!(
        out,
        "{:<46} {:>12} {:>12} {:>8}   target (ferrosync)",
        "figure", "ferrosync", "syncthing", "ratio"
    );
    for row in rows(data.set) {
        let f = fs.and_then(|f| (row.value)(f, data));
        let s = st.and_then(|s| (row.value)(s, data));
        let cell = |v: Option<f64>| match v {
            Some(v) => format!("{v:.*}", row.precision),
            None => "n/a".to_string(),
        };
        let ratio = match (f, s) {
            (Some(f), Some(s)) if s > 0.0 => format!("{:.2}", f / s),
            _ => "-".to_string(),
        };
        let target = match (row.target, f) {
            (Some((text, higher, bound)), Some(v)) => {
                let ok = if higher { v >= bound } else { v < bound };
                format!("{text} {}", if ok { "ok" } else { "MISSED" })
            }
            (Some((text, _, _)), None) => text.to_string(),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<46} {:>12} {:>12} {:>8}   {target}",
            row.label,
            cell(f),
            cell(s),
            ratio
        );
    }
    let _ = writeln!(out, "ratio = ferrosync / syncthing");
    out
}
