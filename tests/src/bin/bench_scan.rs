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
//!
//! Spawn → idle includes daemon startup (Syncthing self-tests for ~1.4 s)
//! and polling granularity, so each scan is also timed as the daemon itself
//! reports it, and the scan targets are judged on that figure:
//! - ferrosync: `last_scan_ms` of the folder in `GET /rest/status` (scan
//!   start to end inside the daemon, whole milliseconds); the rescan is
//!   `POST /rest/folders/{id}/rescan` plus the long poll
//!   `GET /rest/folders/{id}/scan/{n}`.
//! - Syncthing: the time between the `StateChanged` events into and out of
//!   `scanning`, read from `GET /rest/events`. Their `time` fields are used,
//!   not `duration`: 1.19 truncates the state-change instant to whole
//!   seconds, so `duration` overstates by up to 1 s. The events come from
//!   the default subscription, which exists from startup; one filtered
//!   with `events=` is only created on first request and would miss the
//!   scan. The rescan is the blocking `POST /rest/db/scan`.

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
    /// The first scan's duration as the daemon reports it.
    scan_reported: Option<Duration>,
    /// Median client round trip of the unchanged rescans (small set only).
    rescan: Option<Duration>,
    /// Median daemon-reported duration of those rescans.
    rescan_reported: Option<Duration>,
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
    let mut events = StEvents::default();
    let scan_reported = events
        .next_scan(&st)
        .map_err(|e| eprintln!("syncthing: no daemon-reported scan time: {e}"))
        .ok();
    let (rescan, rescan_reported) = if data.set == Set::Small {
        let mut trips = Vec::new();
        let mut reported = Vec::new();
        for _ in 0..RESCANS {
            let t = Instant::now();
            st.rescan(FOLDER);
            trips.push(t.elapsed());
            match events.next_scan(&st) {
                Ok(d) => reported.push(d),
                Err(e) => eprintln!("syncthing: no daemon-reported rescan time: {e}"),
            }
        }
        // A median over fewer rescans than ran would hide the failures.
        let reported = (reported.len() == RESCANS).then(|| median(reported));
        (Some(median(trips)), reported)
    } else {
        (None, None)
    };
    let figures = Figures {
        startup: st.startup_time(),
        scan,
        scan_reported,
        rescan,
        rescan_reported,
        rss_kib: st.peak_rss_kib(),
    };
    st.stop();
    figures
}

/// Reads Syncthing's `StateChanged` events for [`FOLDER`] in order, so that
/// each call to [`next_scan`](Self::next_scan) times the next scan.
#[derive(Default)]
struct StEvents {
    /// The last event ID seen (`since=` of the next read).
    since: u64,
    /// `StateChanged` events of the folder not consumed yet.
    pending: Vec<Value>,
    /// When the folder last entered `scanning` (ns since the epoch).
    scanning_since: Option<i128>,
}

impl StEvents {
    /// How long the next scan stayed in `scanning`, from the times of the
    /// events into and out of that state; waits (long polls of 1 s, up to
    /// 30 s) for the event that ends it.
    fn next_scan(&mut self, st: &Syncthing) -> Result<Duration, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while !self.pending.is_empty() {
                let ev = self.pending.remove(0);
                let time = ev["time"]
                    .as_str()
                    .and_then(parse_rfc3339_ns)
                    .ok_or_else(|| format!("event without a readable time: {ev}"))?;
                let data = &ev["data"];
                if data["to"] == "scanning" {
                    self.scanning_since = Some(time);
                } else if data["from"] == "scanning" {
                    let start = self.scanning_since.take().ok_or_else(|| {
                        format!("scan end without its start (event buffer overrun?): {ev}")
                    })?;
                    let ns = u64::try_from(time - start)
                        .map_err(|_| format!("scan ends before it starts: {ev}"))?;
                    let took = Duration::from_nanos(ns);
                    // Shown for comparison: the field Syncthing means for
                    // this, quantised by its whole-second state clock.
                    eprintln!(
                        "syncthing: scanning -> {} after {:.3} s by event times; \
                         its `duration` field says {}",
                        data["to"].as_str().unwrap_or("?"),
                        took.as_secs_f64(),
                        data["duration"]
                    );
                    return Ok(took);
                }
            }
            if Instant::now() >= deadline {
                return Err("no scanning -> idle event within 30 s".to_string());
            }
            self.pull(st)?;
        }
    }

    /// One read of the event buffer after `since`; returns at once when
    /// there are events, else after Syncthing's 1 s timeout.
    fn pull(&mut self, st: &Syncthing) -> Result<(), String> {
        // No `events=` filter: that subscription would start now, while the
        // default one has buffered everything since startup.
        let path = format!("/rest/events?since={}&timeout=1", self.since);
        let list = st.api("GET", &path, None);
        for ev in list.as_array().ok_or("events are not a JSON array")? {
            let id = ev["id"].as_u64().ok_or("event without an id")?;
            if self.since == 0 && id > 1 {
                eprintln!("syncthing: events before {id} were dropped from the buffer");
            }
            self.since = self.since.max(id);
            if ev["type"] == "StateChanged" && ev["data"]["folder"] == FOLDER {
                self.pending.push(ev.clone());
            }
        }
        Ok(())
    }
}

/// An RFC 3339 time as Syncthing writes it (`2024-05-01T12:00:00.123Z`,
/// fraction of 0–9 digits, `Z` or `±hh:mm`), in ns since the Unix epoch.
fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset_s) = match rest.strip_suffix('Z') {
        Some(clock) => (clock, 0),
        None => {
            let at = rest.rfind(['+', '-'])?;
            let (clock, off) = rest.split_at(at);
            let (h, m) = off[1..].split_once(':')?;
            let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            (clock, if off.starts_with('-') { -secs } else { secs })
        }
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|v| v.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i128 = format!("{frac:0<9}").parse().ok()?;
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec - offset_s;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ferrosync's local API, called directly: a `ferrosync status --json`
/// subprocess per poll would cost milliseconds and blur the timings.
struct Api {
    agent: ureq::Agent,
    base: String,
    key: String,
}

impl Api {
    fn new(address: &str, key: &str) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(5)))
                // Above the 30 s the scan long poll may hold the request.
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        Api {
            agent,
            base: format!("http://{address}"),
            key: key.to_string(),
        }
    }

    /// `GET` or `POST` (empty body); the JSON answer of a 2xx.
    fn call(&self, method: &str, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("X-API-Key", &self.key)
                .send_empty(),
            _ => self.agent.get(&url).header("X-API-Key", &self.key).call(),
        };
        let mut resp = resp.map_err(|e| format!("{method} {path}: {e}"))?;
        let code = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !(200..300).contains(&code) {
            return Err(format!("{method} {path}: HTTP {code}: {}", text.trim()));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: not JSON ({e}): {text}"))
    }

    /// The bench folder's object from `GET /rest/status`.
    fn folder(&self) -> Result<Value, String> {
        let status = self.call("GET", "/rest/status")?;
        status["folders"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["id"] == FOLDER))
            .cloned()
            .ok_or_else(|| format!("no folder {FOLDER:?} in /rest/status: {status}"))
    }
}

/// `last_scan_ms` of a folder object, as a duration.
fn last_scan(folder: &Value) -> Option<Duration> {
    folder["last_scan_ms"].as_u64().map(Duration::from_millis)
}

/// Sets ferrosync up through its CLI contract (`init`, `config set`,
/// `config get`, `folder add`), runs it, and times it through its HTTP API.
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
    // Read before the spawn so that it costs the timings nothing.
    let key = cli(&["config", "get", "api.key"])?.trim().to_string();
    let address_file = home.join("api-address");

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

    // The daemon writes `api-address` once it has bound the (random) port;
    // the API answers a little later.
    let api = daemon.wait(spawned_at + STARTUP_LIMIT, "the HTTP API to answer", || {
        let address = std::fs::read_to_string(&address_file).ok()?;
        let api = Api::new(address.trim(), &key);
        api.call("GET", "/rest/status").ok().map(|_| api)
    })?;
    let startup = spawned_at.elapsed();
    let n = data.files.len() as u64;
    let folder = daemon.wait(
        spawned_at + SCAN_LIMIT,
        "the folder to be idle with every file counted",
        || {
            let f = api.folder().ok()?;
            (f["state"] == "idle" && f["local_files"].as_u64() == Some(n)).then_some(f)
        },
    )?;
    let scan = spawned_at.elapsed();
    // `last_scan_ms` is the latest scan's; only while that is the first
    // does it time the initial scan.
    let scan_reported = match folder["scans_completed"].as_u64() {
        Some(1) => last_scan(&folder),
        other => {
            eprintln!(
                "ferrosync: {other:?} scans completed by the time it was idle; \
                 no daemon-reported initial scan time"
            );
            None
        }
    };
    let (rescan, rescan_reported) = if data.set == Set::Small {
        let mut trips = Vec::new();
        let mut reported = Vec::new();
        for _ in 0..RESCANS {
            let t = Instant::now();
            let ticket = api
                .call("POST", &format!("/rest/folders/{FOLDER}/rescan"))
                .map_err(|e| daemon.with_log(&e))?;
            let target = ticket["scan"]
                .as_u64()
                .ok_or_else(|| format!("rescan ticket without `scan`: {ticket}"))?;
            let f = api
                .call(
                    "GET",
                    &format!("/rest/folders/{FOLDER}/scan/{target}?wait_ms=30000"),
                )
                .map_err(|e| daemon.with_log(&e))?;
            trips.push(t.elapsed());
            // The long poll also answers when its 30 s are up.
            if f["scans_completed"].as_u64() < Some(target) {
                return Err(daemon.with_log(&format!("scan {target} not done within 30 s")));
            }
            reported.push(last_scan(&f).ok_or_else(|| format!("no last_scan_ms: {f}"))?);
        }
        (Some(median(trips)), Some(median(reported)))
    } else {
        (None, None)
    };
    let rss_kib = syncthing::peak_rss_kib(daemon.child.id())
        .ok_or_else(|| daemon.with_log("cannot read VmHWM"))?;
    daemon.stop()?;
    Ok(Figures {
        startup,
        scan,
        scan_reported,
        rescan,
        rescan_reported,
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

    /// Polls `probe` until it returns `Some`, and returns that; fails at
    /// `deadline` or when the daemon exits.
    fn wait<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T, String> {
        loop {
            if let Some(v) = probe() {
                return Ok(v);
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

/// `per_second` items over `d`; `None` for a zero duration (a scan under
/// the 1 ms resolution of `last_scan_ms`).
fn rate(items: f64, d: Duration) -> Option<f64> {
    (!d.is_zero()).then(|| items / d.as_secs_f64())
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
        Row {
            label: "initial scan: daemon-reported [s]",
            value: |f, _| f.scan_reported.map(|d| d.as_secs_f64()),
            precision: 3,
            target: None,
        },
    ];
    match set {
        Set::Large => {
            rows.push(Row {
                label: "throughput: spawn -> idle [GB/s]",
                value: |f, d| rate(d.bytes as f64 / 1e9, f.scan),
                precision: 3,
                target: None,
            });
            rows.push(Row {
                label: "  (informational) excl. startup [GB/s]",
                value: |f, d| rate(d.bytes as f64 / 1e9, f.scan.saturating_sub(f.startup)),
                precision: 3,
                target: None,
            });
            rows.push(Row {
                label: "throughput: daemon-reported [GB/s]",
                value: |f, d| rate(d.bytes as f64 / 1e9, f.scan_reported?),
                precision: 3,
                target: Some((">= 3.0", true, 3.0)),
            });
        }
        Set::Small => {
            rows.push(Row {
                label: "throughput: spawn -> idle [files/s]",
                value: |f, d| rate(d.files.len() as f64, f.scan),
                precision: 0,
                target: None,
            });
            rows.push(Row {
                label: "  (informational) excl. startup [files/s]",
                value: |f, d| rate(d.files.len() as f64, f.scan.saturating_sub(f.startup)),
                precision: 0,
                target: None,
            });
            rows.push(Row {
                label: "throughput: daemon-reported [files/s]",
                value: |f, d| rate(d.files.len() as f64, f.scan_reported?),
                precision: 0,
                target: Some((">= 25000", true, 25_000.0)),
            });
            rows.push(Row {
                label: "rescan, unchanged: client round trip [s]",
                value: |f, _| f.rescan.map(|d| d.as_secs_f64()),
                precision: 3,
                target: Some(("< 0.3", false, 0.3)),
            });
            rows.push(Row {
                label: "rescan, unchanged: daemon-reported [s]",
                value: |f, _| f.rescan_reported.map(|d| d.as_secs_f64()),
                precision: 3,
                target: None,
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
    let mut verdicts = Vec::new();
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
            (Some((text, _, _)), None) => format!("{text} n/a"),
            (None, _) => String::new(),
        };
        if row.target.is_some() {
            verdicts.push(format!("{} {} {target}", row.label, cell(f)));
        }
        let _ = writeln!(
            out,
            "{:<46} {:>12} {:>12} {:>8}   {target}",
            row.label,
            cell(f),
            cell(s),
            ratio
        );
    }
    let _ = writeln!(
        out,
        "ratio = ferrosync / syncthing; rescans: median of {RESCANS}"
    );
    let _ = writeln!(
        out,
        "daemon-reported: ferrosync `last_scan_ms` (1 ms steps); syncthing \
         StateChanged event times into and out of `scanning`"
    );
    let _ = writeln!(out, "targets (ferrosync): {}", verdicts.join("; "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2000-03-01T00:00:01.5Z"),
            Some((951_868_800 + 1) * 1_000_000_000 + 500_000_000)
        );
        // The same instant written with an offset.
        assert_eq!(
            parse_rfc3339_ns("2026-11-21T07:17:09.584229796+02:00"),
            parse_rfc3339_ns("2026-11-21T05:17:09.584229796Z")
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-21T05:17:09.588389049Z")
                .zip(parse_rfc3339_ns("2026-11-21T05:17:09.584247752Z"))
                .map(|(a, b)| a - b),
            Some(4_141_297)
        );
        assert_eq!(parse_rfc3339_ns("2026-11-21 05:17:09Z"), None);
        assert_eq!(parse_rfc3339_ns("2026-11-21T05:17:09.1234567890Z"), None);
    }
}
