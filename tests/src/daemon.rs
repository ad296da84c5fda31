//! Running `ferrosync run` as a real process in a test: start it isolated
//! (API on a free port, no discovery, no listeners), poll its status with a
//! deadline, read its API, stop or kill it, and show its log on failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Device;

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(25);

impl Device {
    /// An initialised, isolated device listening on loopback (TCP and QUIC,
    /// free ports); returns it with its device ID.
    pub fn on_loopback(name: &str) -> (Self, String) {
        let (d, id) = Self::init(name);
        d.isolate();
        d.ok(&[
            "config",
            "set",
            "listen",
            "tcp://127.0.0.1:0,quic://127.0.0.1:0",
        ]);
        (d, id)
    }

    /// An initialised, isolated device inside `host`'s network namespace:
    /// it listens on every address there (TCP and QUIC, free ports) and
    /// serves its API on the host's address, which the test process
    /// reaches over the lab's segment.
    pub fn in_netns(name: &str, host: &crate::netns::Host) -> (Self, String) {
        let (mut d, id) = Self::init(name);
        d.isolate();
        d.netns = Some(host.clone());
        d.ok(&["config", "set", "api.address", &format!("{}:0", host.ip)]);
        // An API beyond loopback needs a GUI password to start.
        d.set_gui_password("lab password");
        d.ok(&[
            "config",
            "set",
            "listen",
            "tcp://0.0.0.0:0,quic://0.0.0.0:0",
        ]);
        (d, id)
    }

    /// `ferrosync gui password` with `password` on stdin.
    pub fn set_gui_password(&self, password: &str) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["gui", "password"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        writeln!(child.stdin.take().expect("stdin"), "{password}").expect("stdin");
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "gui password: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Configures the home for a test on loopback: the API on a free port,
    /// and nothing that reaches beyond the machine.
    pub fn isolate(&self) {
        for (k, v) in [
            ("api.address", "127.0.0.1:0"),
            ("listen", ""),
            ("relays", ""),
            ("nat", "false"),
            ("stun", ""),
            ("discovery.local", "false"),
            ("discovery.global", ""),
        ] {
            self.ok(&["config", "set", k, v]);
        }
    }

    /// Starts `ferrosync run -v` and waits until its API answers.
    pub fn start(&self) -> Daemon<'_> {
        let n = std::fs::read_dir(self.scratch()).map_or(0, |d| d.count());
        let log = self.scratch().join(format!("daemon-{n}.log"));
        let _ = std::fs::remove_file(self.home().join("api-address"));
        let child = self
            .command()
            .args(["run", "-v"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ferrosync run");
        let mut d = Daemon {
            device: self,
            child: Some(child),
            log,
        };
        d.wait_until("the API answers", Duration::from_secs(30), |_| true);
        d
    }
}

/// A running daemon; killed (SIGKILL) on drop if still running.
pub struct Daemon<'a> {
    device: &'a Device,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon<'_> {
    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's resident memory in KiB (VmRSS), if it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The daemon's peak resident memory so far in KiB (VmHWM), if it runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// CPU time the daemon has used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses.
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// The URLs the daemon listens on, with their real ports.
    pub fn listen_urls(&self) -> Vec<String> {
        std::fs::read_to_string(self.device.home().join("listen-addresses"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Its listen URL of one scheme (`tcp` or `quic`).
    pub fn listen_url(&self, scheme: &str) -> String {
        self.listen_urls()
            .into_iter()
            .find(|u| u.starts_with(&format!("{scheme}://")))
            .unwrap_or_else(|| panic!("no {scheme} listener; log:\n{}", self.log()))
    }

    /// `status --json`, or `None` while the daemon does not answer.
    pub fn status(&self) -> Option<Value> {
        let out = self.device.run(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Polls the status until `cond` holds; panics with the log and the last
    /// status after `limit`.
    pub fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "daemon exited ({status}) while waiting for {what}; log:\n{}",
                        self.log()
                    );
                }
            }
            if let Some(s) = self.status() {
                if cond(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "timed out after {limit:?} waiting for {what}\nlast status: {}\nlog:\n{}",
            last.map(|s| s.to_string()).unwrap_or_default(),
            self.log()
        );
    }

    /// Waits until folder `id` has finished a scan and is idle or in error;
    /// returns its status object.
    pub fn wait_scanned(&mut self, id: &str) -> Value {
        let s = self.wait_until(
            &format!("folder {id} scanned"),
            Duration::from_secs(60),
            |s| {
                folder(s, id).is_some_and(|f| {
                    f["scans_completed"].as_u64() >= Some(1) && f["state"] != "scanning"
                })
            },
        );
        folder(&s, id).cloned().unwrap_or_default()
    }

    /// GETs a path of the local API and decodes the JSON answer.
    pub fn api_get(&self, path: &str) -> Value {
        let (url, key) = self.api(path);
        let mut resp = ureq::get(url)
            .header("X-API-Key", key)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}; log:\n{}", self.log()));
        resp.body_mut().read_json().expect("json")
    }

    /// POSTs to a path of the local API (no body) and decodes the JSON
    /// answer.
    pub fn api_post(&self, path: &str) -> Value {
        let (url, key) = self.api(path);
        let mut resp = ureq::post(url)
            .header("X-API-Key", key)
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {path}: {e}; log:\n{}", self.log()));
        resp.body_mut().read_json().expect("json")
    }

    /// The URL of an API path and the key to send.
    pub fn api(&self, path: &str) -> (String, String) {
        let addr =
            std::fs::read_to_string(self.device.home().join("api-address")).expect("api-address");
        let key = self.device.ok(&["config", "get", "api.key"]);
        (
            format!("http://{}{path}", addr.trim()),
            key.trim().to_string(),
        )
    }

    /// Stops the daemon with SIGTERM and checks that it exits cleanly.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        signal(&child, "TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "exit {status}; log:\n{}", self.log());
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!("daemon did not stop within 15 s; log:\n{}", self.log());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- log of the daemon in {}:\n{}",
                    self.device.home().display(),
                    self.log()
                );
            }
        }
    }
}

/// Sends a signal (`TERM`, `INT`, `STOP`, ...) to a child.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{sig} failed");
}

/// The status object of folder `id` in a `status --json` value.
pub fn folder<'v>(status: &'v Value, id: &str) -> Option<&'v Value> {
    status["folders"].as_array()?.iter().find(|f| f["id"] == id)
}
