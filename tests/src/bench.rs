//! Shared pieces of the benchmark binaries (`bench-scan`, `bench-sync`):
//! their common flags, the cached data sets, a ferrosync home and daemon
//! driven through the CLI and the HTTP API, readings from `/proc`, and the
//! side-by-side table.
//!
//! Unlike [`crate::Device`] and [`crate::daemon`], which panic for tests,
//! everything here returns errors (with the daemon's log tail), so that a
//! benchmark can report one failed daemon and go on with the other.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::syncthing;

pub mod pair;

/// The folder ID every daemon in a benchmark uses.
pub const FOLDER: &str = "bench";
/// Poll interval while waiting on a daemon's state.
pub const POLL: Duration = Duration::from_millis(20);
/// How many 30 s long polls a rescan may take.
const RESCAN_POLLS: u32 = 60;
/// How many lines of a daemon's log an error carries.
const LOG_LINES: usize = 40;

/// The flags every benchmark takes; `S` is its own kind of data set.
pub struct Args<S> {
    /// The data sets to run, in order.
    pub sets: Vec<S>,
    /// Where the data sets are generated and cached.
    pub dir: PathBuf,
    /// Whether ferrosync runs.
    pub ferrosync: bool,
    /// Whether Syncthing runs (when it is on `PATH`).
    pub syncthing: bool,
    /// `--ferrosync PATH`: the binary to run instead of the workspace build.
    pub ferrosync_path: Option<PathBuf>,
}

impl<S> Args<S> {
    /// Parses the process arguments: `--set` values go through `set` (which
    /// also knows `all`), `all_sets` is the default. Prints `usage` and
    /// exits on `--help` (0) or a bad argument (2).
    pub fn from_env(usage: &str, all_sets: Vec<S>, set: impl Fn(&str) -> Option<Vec<S>>) -> Self {
        match Self::parse(std::env::args().skip(1), all_sets, set) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{usage}");
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("error: {e}\n\n{usage}");
                std::process::exit(2);
            }
        }
    }

    /// `None` for `--help`.
    fn parse(
        mut it: impl Iterator<Item = String>,
        all_sets: Vec<S>,
        set: impl Fn(&str) -> Option<Vec<S>>,
    ) -> Result<Option<Self>, String> {
        let mut args = Args {
            sets: all_sets,
            dir: std::env::temp_dir().join("ferrosync-bench-data"),
            ferrosync: true,
            syncthing: true,
            ferrosync_path: None,
        };
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--set" => {
                    let v = value()?;
                    args.sets = set(&v).ok_or(format!("unknown set {v:?}"))?;
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
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(args))
    }

    /// The ferrosync binary, if ferrosync is to run: `--ferrosync PATH`,
    /// else the workspace build of this profile (built first when run under
    /// cargo). Says on stderr why when it cannot be found.
    pub fn ferrosync_binary(&self) -> Option<PathBuf> {
        if !self.ferrosync {
            return None;
        }
        if let Some(p) = &self.ferrosync_path {
            return Some(p.clone());
        }
        std::panic::catch_unwind(|| crate::bin("ferrosync"))
            .map_err(|_| eprintln!("ferrosync: could not build or find the ferrosync binary"))
            .ok()
    }

    /// The `syncthing` binary on `PATH`, if Syncthing is to run.
    pub fn syncthing_binary(&self) -> Option<PathBuf> {
        if self.syncthing {
            crate::require("syncthing", "syncthing")
        } else {
            None
        }
    }
}

/// The two cached data sets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Set {
    /// (a) 1 GiB in 4 files.
    Large,
    /// (b) 20,000 files of 1–64 KiB over 200 leaf directories.
    Small,
}

impl Set {
    /// The name of its directory under the data dir.
    pub fn name(self) -> &'static str {
        match self {
            Set::Large => "large",
            Set::Small => "small",
        }
    }

    /// How tables and progress lines name it.
    pub fn label(self) -> &'static str {
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
                            1024 + rng.next_u64() % (64 * 1024 - 1024 + 1),
                        )
                    })
                    .collect()
            }
        }
    }
}

/// A data set on disk: seeded pseudo-random (incompressible) files under
/// `<dir>/<name>`, with a `.stfolder` marker.
pub struct DataSet {
    /// Which set.
    pub set: Set,
    /// Its folder root.
    pub root: PathBuf,
    /// Relative path and size of every file.
    pub files: Vec<(PathBuf, u64)>,
    /// The sum of the file sizes.
    pub bytes: u64,
    /// How many directories hold them (the root not counted).
    pub directories: usize,
}

impl DataSet {
    /// Generates the set under `dir` unless an intact copy is there.
    pub fn prepare(set: Set, dir: &Path) -> Self {
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
        // The stamp keeps its first user's name: changing it would make
        // every cached copy look stale.
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
        for (rel, size) in &self.files {
            write_random(&self.root.join(rel), *size, &mut rng).expect("write a data file");
        }
    }

    /// [`prepare`](Self::prepare), then [`warm`](Self::warm), saying how
    /// fast the warming read went (a slow one means it came from disk).
    pub fn prepare_warm(set: Set, dir: &Path) -> Self {
        let data = Self::prepare(set, dir);
        let warm = data.warm();
        eprintln!(
            "{}: page cache warm ({:.2} GB/s to read it once)",
            set.label(),
            data.bytes as f64 / warm.as_secs_f64() / 1e9
        );
        data
    }

    /// Reads every file once; returns how long that took.
    pub fn warm(&self) -> Duration {
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        for (rel, _) in &self.files {
            let mut f = File::open(self.root.join(rel)).expect("open data file");
            while f.read(&mut buf).expect("read data file") > 0 {}
        }
        start.elapsed()
    }
}

/// Writes `size` bytes from `rng` to a new file at `path`, creating its
/// parent directories.
pub fn write_random(path: &Path, size: u64, rng: &mut Rng) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = File::create(path)?;
    // Chunks of at most 4 MiB: the same stream of `rng` for any buffer.
    let mut buf = vec![0u8; usize::try_from(size.min(4 << 20)).unwrap_or(4 << 20)];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// xoshiro256** seeded through splitmix64: fast, deterministic, and its
/// output does not compress.
pub struct Rng([u64; 4]);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
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

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
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

    /// Fills `buf` with the next bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A ferrosync home, configured and started through the `ferrosync` CLI.
pub struct Home {
    binary: PathBuf,
    path: PathBuf,
}

impl Home {
    /// A home at `path` (not created yet) for `binary`.
    pub fn new(binary: &Path, path: PathBuf) -> Self {
        Home {
            binary: binary.to_path_buf(),
            path,
        }
    }

    /// Runs `ferrosync --home <home> ARGS`; its stdout if it succeeded.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.binary)
            .arg("--home")
            .arg(&self.path)
            .args(args)
            .env_remove("FERROSYNC_HOME")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("ferrosync {args:?}: {}", crate::describe(&out)))
        }
    }

    /// `init`, then a benchmark's config: the API on a free loopback port,
    /// `listen` as given (empty: no listener), and nothing that reaches
    /// beyond the machine. Returns the device ID.
    pub fn init(&self, name: &str, listen: &str) -> Result<String, String> {
        let id = self.cli(&["init", "--name", name])?.trim().to_string();
        for (key, value) in [
            ("api.address", "127.0.0.1:0"),
            ("discovery.local", "false"),
            ("discovery.global", ""),
            ("relays", ""),
            ("nat", "false"),
            ("listen", listen),
        ] {
            self.cli(&["config", "set", key, value])?;
        }
        Ok(id)
    }

    /// The API key (`config get api.key`); read it before a timed spawn so
    /// that it costs the timings nothing.
    pub fn api_key(&self) -> Result<String, String> {
        Ok(self.cli(&["config", "get", "api.key"])?.trim().to_string())
    }

    /// Spawns `ferrosync run` with its stdout and stderr in `log_path`.
    pub fn spawn(&self, log_path: PathBuf) -> Result<Daemon, String> {
        let log = File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
        let spawned_at = Instant::now();
        let child = Command::new(&self.binary)
            .arg("--home")
            .arg(&self.path)
            .arg("run")
            .env_remove("FERROSYNC_HOME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| format!("log: {e}"))?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn ferrosync run: {e}"))?;
        Ok(Daemon {
            child,
            log_path,
            spawned_at,
            home: self.path.clone(),
        })
    }

    /// The running daemon's listen URL of one scheme (`tcp`, `quic`), with
    /// its real port, from `listen-addresses`.
    pub fn listen_url(&self, scheme: &str) -> Option<String> {
        let prefix = format!("{scheme}://");
        std::fs::read_to_string(self.path.join("listen-addresses"))
            .ok()?
            .lines()
            .find(|u| u.starts_with(&prefix))
            .map(str::to_string)
    }
}

/// A running `ferrosync run`, killed on drop.
pub struct Daemon {
    child: Child,
    log_path: PathBuf,
    spawned_at: Instant,
    home: PathBuf,
}

impl Daemon {
    /// When the process was spawned.
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// Its home directory (the index is `index` in it).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `msg` followed by the tail of the daemon's log.
    pub fn with_log(&self, msg: &str) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n");
        format!(
            "{msg}\n--- last {LOG_LINES} lines of {}\n{tail}",
            self.log_path.display()
        )
    }

    /// Polls `probe` every [`POLL`] until it returns `Some`, and returns
    /// that; fails at `deadline` or when the daemon exits.
    pub fn wait<T>(
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

    /// Waits until the daemon of `home` has written `api-address` (once it
    /// has bound its random port) and its API answers (a little later).
    pub fn api(&mut self, home: &Home, key: &str, deadline: Instant) -> Result<Api, String> {
        let address_file = home.path.join("api-address");
        self.wait(deadline, "the HTTP API to answer", || {
            let address = std::fs::read_to_string(&address_file).ok()?;
            let api = Api::new(address.trim(), key);
            api.call("GET", "/rest/status").ok().map(|_| api)
        })
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then up to 30 s to exit.
    pub fn stop(&mut self) -> Result<(), String> {
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

/// ferrosync's local API, called directly: a `ferrosync status --json`
/// subprocess per poll would cost milliseconds and blur the timings.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
    key: String,
}

impl Api {
    /// A client for the API at `address` (`host:port`) with `key`.
    pub fn new(address: &str, key: &str) -> Self {
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
    pub fn call(&self, method: &str, path: &str) -> Result<Value, String> {
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
    pub fn folder(&self) -> Result<Value, String> {
        let status = self.call("GET", "/rest/status")?;
        status["folders"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["id"] == FOLDER))
            .cloned()
            .ok_or_else(|| format!("no folder {FOLDER:?} in /rest/status: {status}"))
    }

    /// `POST /rest/folders/{FOLDER}/rescan`, then the long poll until that
    /// scan is done; returns the folder object the long poll answered.
    pub fn rescan(&self) -> Result<Value, String> {
        let ticket = self.call("POST", &format!("/rest/folders/{FOLDER}/rescan"))?;
        let target = ticket["scan"]
            .as_u64()
            .ok_or_else(|| format!("rescan ticket without `scan`: {ticket}"))?;
        // The long poll also answers when its 30 s are up: a scan of a
        // large folder takes several.
        for _ in 0..RESCAN_POLLS {
            let f = self.call(
                "GET",
                &format!("/rest/folders/{FOLDER}/scan/{target}?wait_ms=30000"),
            )?;
            if f["scans_completed"].as_u64() >= Some(target) {
                return Ok(f);
            }
        }
        Err(format!(
            "scan {target} not done within {RESCAN_POLLS} long polls of 30 s"
        ))
    }
}

/// CPU time (user + system) a process has used so far; `None` if it cannot
/// be read.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields
    // after its closing one. utime and stime are fields 14 and 15 (1-based),
    // so the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // In USER_HZ ticks, which the Linux ABI fixes at 100 per second.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The core a benchmark's load generator runs on ([`pin`]).
pub const CLIENT_CPU: u32 = 0;
/// The core a benchmarked server runs on ([`on_cpu`]).
pub const SERVER_CPU: u32 = 1;

/// Whether the machine has the two cores that pinning needs.
pub fn can_pin() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// Moves every thread of `pid` onto `cpu` (threads made later inherit
/// it); warns if `taskset` cannot.
pub fn pin(pid: u32, cpu: u32) {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("warning: could not pin process {pid} to CPU {cpu} (taskset)");
    }
}

/// `program`, started on `cpu` if given: it starts there, so its runtime
/// sizes itself for one core (tokio's workers, Go's GOMAXPROCS).
pub fn on_cpu(program: &Path, cpu: Option<u32>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// `program` on `PATH`, if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The machine's load averages (`/proc/loadavg`, first three fields).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// The middle value (the upper one of an even count); zero for none.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// `items` per second over `d`; `None` for a zero duration (a figure under
/// a daemon's reporting resolution).
pub fn rate(items: f64, d: Duration) -> Option<f64> {
    (!d.is_zero()).then(|| items / d.as_secs_f64())
}

/// The target a ferrosync figure must meet: how it reads, and the check.
pub type Target = (&'static str, fn(f64) -> bool);

/// How a row reads its figure from a daemon's figures `F`.
pub type Figure<'a, F> = Box<dyn Fn(&F) -> Option<f64> + 'a>;

/// One figure of a table: how to read it from a daemon's figures `F`, and
/// ferrosync's target, if it has one.
pub struct Row<'a, F> {
    /// The first column.
    pub label: &'static str,
    /// The figure, or `None` where the daemon has none.
    pub value: Figure<'a, F>,
    /// Digits after the point.
    pub precision: usize,
    /// ferrosync's target.
    pub target: Option<Target>,
}

impl<'a, F> Row<'a, F> {
    /// A row without a target.
    pub fn new(
        label: &'static str,
        precision: usize,
        value: impl Fn(&F) -> Option<f64> + 'a,
    ) -> Self {
        Row {
            label,
            value: Box::new(value),
            precision,
            target: None,
        }
    }

    /// The same row with a target for ferrosync.
    pub fn target(mut self, text: &'static str, ok: fn(f64) -> bool) -> Self {
        self.target = Some((text, ok));
        self
    }
}

/// The side-by-side table: `heading`, one line a row (ferrosync, Syncthing,
/// their ratio, ferrosync's target and whether it was met), then `notes`
/// and a summary of the targets.
pub fn table<F>(
    heading: &str,
    rows: &[Row<'_, F>],
    fs: Option<&F>,
    st: Option<&F>,
    notes: &[String],
) -> String {
    let width = rows
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max(46);
    let mut out = String::new();
    let _ = writeln!(out, "\n{heading}");
    let _ = writeln!(
        out,
        "{:<width$} {:>12} {:>12} {:>8}   target (ferrosync)",
        "figure", "ferrosync", "syncthing", "ratio"
    );
    let mut verdicts = Vec::new();
    for row in rows {
        let f = fs.and_then(|f| (row.value)(f));
        let s = st.and_then(|s| (row.value)(s));
        let cell = |v: Option<f64>| match v {
            Some(v) => format!("{v:.*}", row.precision),
            None => "n/a".to_string(),
        };
        let ratio = match (f, s) {
            (Some(f), Some(s)) if s > 0.0 => format!("{:.2}", f / s),
            _ => "-".to_string(),
        };
        let target = match (row.target, f) {
            (Some((text, ok)), Some(v)) => {
                format!("{text} {}", if ok(v) { "ok" } else { "MISSED" })
            }
            (Some((text, _)), None) => format!("{text} n/a"),
            (None, _) => String::new(),
        };
        if row.target.is_some() {
            verdicts.push(format!("{} {} {target}", row.label.trim(), cell(f)));
        }
        let _ = writeln!(
            out,
            "{:<width$} {:>12} {:>12} {:>8}   {target}",
            row.label,
            cell(f),
            cell(s),
            ratio
        );
    }
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(out, "targets (ferrosync): {}", verdicts.join("; "));
    out
}
