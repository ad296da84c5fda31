//! The harness for multi-process tests: it builds and finds the real
//! binaries, gives each test its own temporary home, runs commands, and
//! locates the Syncthing binaries that interop tests run against.
//!
//! Tests that need a real peer call [`require`]: without the prerequisite
//! they skip with a note locally, and fail when `CI` is set. The
//! [`syncthing`] module runs the real Syncthing binary in a temporary home.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod bench;
pub mod daemon;
pub mod docs;
pub mod http;
pub mod links;
pub mod mallory;
pub mod netns;
pub mod pair;
pub mod pytools;
pub mod servers;
pub mod syncthing;
pub mod transfer;
pub mod trees;
pub mod wan;

/// The path of one of our binaries (`ferrosync`, `ferrosync-relay`,
/// `ferrosync-discovery`), built first if the tests run under cargo.
pub fn bin(name: &str) -> PathBuf {
    let dir = target_profile_dir();
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_binaries(&dir));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// `target/<profile>`, found from this executable's own path: a test lives
/// in `target/<profile>/deps/<test>`, a binary of this crate (a benchmark) in
/// `target/<profile>/<bin>`. Custom target dirs work too.
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("executable has a parent directory");
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.parent()
            .expect("target/<profile>/deps has a parent")
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Builds the workspace binaries so a plain `cargo test` never runs stale
/// ones. Cargo's own lock serialises concurrent test processes.
fn build_binaries(profile_dir: &Path) {
    let Ok(cargo) = std::env::var("CARGO") else {
        return; // Not under cargo: use what is there.
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--workspace", "--bins"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let out = cmd.output().expect("running cargo build");
    assert!(
        out.status.success(),
        "cargo build --workspace --bins failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How often [`poll`] looks.
pub const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(25);

/// Calls `probe` every [`POLL_EVERY`] until it returns `Some` (returned),
/// or `limit` has passed (`None`: the caller fails with what it knows).
/// The one place tests wait for something to happen.
pub fn poll<T>(limit: std::time::Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Whether we run in CI, where missing prerequisites are failures.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Finds an external program on `PATH`. Returns `None` (and prints why) when
/// it is missing locally; panics in CI, where `.ci/run` installs it.
pub fn require(program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !in_ci(),
            "{program} is required in CI: .ci/run must install the Debian package {package}"
        );
        eprintln!("SKIPPED: {program} not found (apt-get install {package})");
    }
    found
}

/// A ferrosync device home in a temporary directory, removed on drop.
pub struct Device {
    dir: tempfile::TempDir,
    /// Runs in this host's network namespace (see [`Device::in_netns`]).
    netns: Option<netns::Host>,
    /// Runs with libfaketime (its path) at this offset (see
    /// [`Device::set_clock`]).
    clock: Option<(PathBuf, String)>,
}

impl Default for Device {
    fn default() -> Self {
        Self::new()
    }
}

impl Device {
    /// A new, empty home (not initialised).
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("ferrosync-test-")
                .tempdir()
                .expect("tempdir"),
            netns: None,
            clock: None,
        }
    }

    /// An initialised home; returns it with its device ID.
    pub fn init(name: &str) -> (Self, String) {
        let d = Self::new();
        let id = d.ok(&["init", "--name", name]).trim().to_string();
        (d, id)
    }

    /// The home directory.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A scratch directory beside the home, for folders and logs.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// A `ferrosync --home <home>` command, ready for more arguments.
    pub fn command(&self) -> Command {
        let mut c = match &self.netns {
            Some(h) => h.command(bin("ferrosync")),
            None => Command::new(bin("ferrosync")),
        };
        if let Some((lib, offset)) = &self.clock {
            // The library itself, not the `faketime` wrapper, which forks
            // and would take the signals meant for the daemon.
            c.env("LD_PRELOAD", lib).env("FAKETIME", offset);
            // Only the wall clock is wrong, as on a real device.
            c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        c.arg("--home")
            .arg(self.home())
            .env_remove("FERROSYNC_HOME");
        c
    }

    /// From now on runs with libfaketime at OFFSET (e.g. `+365d`): a
    /// device whose wall clock is wrong by that much. `None` where the
    /// `faketime` package is missing (panics under `CI`).
    pub fn set_clock(&mut self, offset: &str) -> Option<()> {
        require("faketime", "faketime")?;
        let lib = [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib",
        ]
        .iter()
        .map(|d| Path::new(d).join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("the faketime package's libfaketime.so.1");
        self.clock = Some((lib, offset.to_string()));
        Some(())
    }

    /// Runs `ferrosync --home <home> ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("spawn ferrosync")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ferrosync {args:?} failed:\n{}",
            describe(&out)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Adds folder `id` at `root` (created) shared with device `peer`.
    pub fn share_folder(&self, id: &str, root: &Path, peer: &str) {
        self.ok(&[
            "folder",
            "add",
            id,
            root.to_str().expect("utf-8 path"),
            "--create",
            "--share",
            peer,
        ]);
    }

    /// Runs a command that must fail with a one-line error and no change to
    /// the config; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let before = std::fs::read(self.home().join("config.toml")).ok();
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "ferrosync {args:?} succeeded:\n{}",
            describe(&out)
        );
        let after = std::fs::read(self.home().join("config.toml")).ok();
        assert_eq!(
            before, after,
            "ferrosync {args:?} failed but changed config.toml"
        );
        let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
        let line = stderr.lines().next().unwrap_or_default().to_string();
        assert!(
            line.starts_with("error: "),
            "ferrosync {args:?}: no error line:\n{stderr}"
        );
        line
    }
}

/// Exit status, stdout and stderr of a finished command, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
