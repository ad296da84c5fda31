//! Runs the real Syncthing binary (Debian's 1.19.2) as one process in a
//! temporary home, for interop tests and benchmarks, and drives it through
//! its REST API.
//!
//! [`Syncthing::start`] generates the home, rewrites `config.xml` before the
//! first start (loopback listeners on a free port, GUI/API on another free
//! port, no discovery, relays, NAT, STUN, usage reports, crash reports or
//! upgrades, no self-renicing), starts `syncthing serve` unmonitored, and
//! returns once the API answers. Every failure panics with the last
//! [`LOG_LINES`] lines of Syncthing's log. The process is killed on drop; the
//! temporary home goes with it, folders the test made elsewhere stay.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use ferrosync_tests::syncthing::{FolderType, Options, Syncthing};
//!
//! let st = Syncthing::start(Options::default());
//! let dir = st.scratch().join("f");
//! st.add_folder("f", &dir, &[], FolderType::SendReceive);
//! let status = st.wait_folder_idle("f", Instant::now() + Duration::from_secs(30));
//! assert_eq!(status["localFiles"], 0);
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How many log lines a failure message carries.
pub const LOG_LINES: usize = 40;

/// How often the harness polls while it waits for a state.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The log file Syncthing's stdout and stderr go to, inside its home.
const LOG_FILE: &str = "syncthing.log";

/// Which sync-connection listeners Syncthing gets (all on one port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Listen {
    /// `tcp://127.0.0.1:P` only.
    Tcp,
    /// `quic://127.0.0.1:P` only.
    Quic,
    /// Both, on the same port number.
    #[default]
    Both,
}

impl Listen {
    fn tcp(self) -> bool {
        matches!(self, Listen::Tcp | Listen::Both)
    }
    fn quic(self) -> bool {
        matches!(self, Listen::Quic | Listen::Both)
    }
}

/// A folder type, as Syncthing's config spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FolderType {
    /// `sendreceive`.
    #[default]
    SendReceive,
    /// `sendonly`.
    SendOnly,
    /// `receiveonly`.
    ReceiveOnly,
}

impl FolderType {
    /// The config value: `sendreceive`, `sendonly` or `receiveonly`.
    pub fn as_str(self) -> &'static str {
        match self {
            FolderType::SendReceive => "sendreceive",
            FolderType::SendOnly => "sendonly",
            FolderType::ReceiveOnly => "receiveonly",
        }
    }
}

/// A folder written into `config.xml` before the first start, so that it is
/// scanned from the moment the daemon starts (benchmarks time that). It is
/// shared with this device only; share it further with
/// [`Syncthing::put_config`] or use [`Syncthing::add_folder`] instead.
#[derive(Clone, Debug)]
pub struct FolderSpec {
    /// The folder ID.
    pub id: String,
    /// The folder root; created with a `.stfolder` marker if missing.
    pub path: PathBuf,
    /// The folder type.
    pub folder_type: FolderType,
}

/// How to start Syncthing.
#[derive(Clone, Debug)]
pub struct Options {
    /// The program to run; `syncthing` on `PATH` by default.
    pub binary: PathBuf,
    /// Which listeners to configure.
    pub listen: Listen,
    /// `STTRACE` for the process (e.g. `connections,protocol`), if any.
    pub sttrace: Option<String>,
    /// More environment variables for the process.
    pub env: Vec<(String, String)>,
    /// Folders configured before the first start.
    pub folders: Vec<FolderSpec>,
    /// How long to wait for the API to answer after the start.
    pub ready_timeout: Duration,
    /// Time limit of one REST call (a blocking rescan is one call).
    pub request_timeout: Duration,
    /// Run inside this host's network namespace, listening (and serving
    /// the REST API) on its address instead of loopback.
    pub netns: Option<crate::netns::Host>,
    /// Announce to and look up on this global discovery server.
    pub global_discovery: Option<String>,
    /// Send and hear local discovery beacons.
    pub local_discovery: bool,
    /// Join this relay (`relay://…`), with relays enabled.
    pub relay: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("syncthing"),
            listen: Listen::Both,
            sttrace: None,
            env: Vec::new(),
            folders: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
            netns: None,
            global_discovery: None,
            local_discovery: false,
            relay: None,
        }
    }
}

/// One running Syncthing process in its own temporary home.
pub struct Syncthing {
    child: Mutex<Child>,
    failed: AtomicBool,
    dir: tempfile::TempDir,
    home: PathBuf,
    device_id: String,
    api_key: String,
    gui_port: u16,
    listen_port: u16,
    /// The address it listens and serves on.
    host: String,
    listen: Listen,
    agent: ureq::Agent,
    spawned_at: Instant,
    startup: Duration,
    opts: Options,
}

impl Syncthing {
    /// Generates a home, configures it for loopback-only use, starts
    /// `syncthing serve`, and waits until its REST API answers.
    pub fn start(opts: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("syncthing-test-")
            .tempdir()
            .expect("tempdir for the syncthing home");
        let home = dir.path().join("home");
        let out = Command::new(&opts.binary)
            .arg("generate")
            .arg(format!("--home={}", home.display()))
            .args(["--no-default-folder", "--skip-port-probing"])
            .output()
            .unwrap_or_else(|e| panic!("running {} generate: {e}", opts.binary.display()));
        assert!(
            out.status.success(),
            "syncthing generate failed:\n{}",
            crate::describe(&out)
        );
        let out = Command::new(&opts.binary)
            .arg("serve")
            .arg(format!("--home={}", home.display()))
            .arg("--device-id")
            .output()
            .expect("running syncthing serve --device-id");
        assert!(
            out.status.success(),
            "syncthing serve --device-id failed:\n{}",
            crate::describe(&out)
        );
        let device_id = String::from_utf8_lossy(&out.stdout).trim().to_string();

        // Hold the ports until the config names them, then let them go.
        let (listen_sockets, listen_port) = free_tcp_udp_port();
        let gui_socket = loop {
            let s = TcpListener::bind("127.0.0.1:0").expect("bind a free GUI port");
            if s.local_addr().expect("local addr").port() != listen_port {
                break s;
            }
        };
        let gui_port = gui_socket.local_addr().expect("local addr").port();

        let config_path = home.join("config.xml");
        let mut xml = std::fs::read_to_string(&config_path).expect("read generated config.xml");
        let api_key = configure(&mut xml, &opts, &device_id, listen_port, gui_port);
        std::fs::write(&config_path, xml).expect("write config.xml");
        drop((listen_sockets, gui_socket));

        let spawned_at = Instant::now();
        let child = spawn_serve(&opts, &home);
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(5)))
                .timeout_global(Some(opts.request_timeout))
                .build(),
        );
        let mut st = Self {
            child: Mutex::new(child),
            failed: AtomicBool::new(false),
            dir,
            home,
            device_id,
            api_key,
            gui_port,
            listen_port,
            host: host_of(&opts),
            listen: opts.listen,
            agent,
            spawned_at,
            startup: Duration::ZERO,
            opts,
        };
        st.wait_ready();
        st
    }

    /// Stops the process and starts it again on the same home (config,
    /// keys, database and ports kept), then waits until its API answers:
    /// a device restarted as a user would restart it.
    pub fn restart(&mut self) {
        self.stop();
        self.spawned_at = Instant::now();
        *self.child() = spawn_serve(&self.opts, &self.home);
        self.wait_ready();
    }

    /// Waits until the REST API answers after a spawn, and checks that the
    /// process is the device it was generated as.
    fn wait_ready(&mut self) {
        let st = self;
        let deadline = st.spawned_at + st.opts.ready_timeout;
        let status = st.wait_for(deadline, "the REST API to answer", |st| {
            st.request("GET", "/rest/system/status", None)
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|(_, body)| body)
        });
        st.startup = st.spawned_at.elapsed();
        let status: Value = serde_json::from_str(&status).expect("system/status is JSON");
        if status["myID"] != st.device_id.as_str() {
            st.fail(&format!(
                "myID {} is not the generated ID {}",
                status["myID"], st.device_id
            ));
        }
    }

    /// The home directory (`config.xml`, keys, database, log).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// A scratch directory beside the home, for folders; removed on drop.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_wait(&self) -> Option<ExitStatus> {
        self.child().try_wait().expect("try_wait on syncthing")
    }

    /// This device's ID.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The API key sent as `X-API-Key`.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The REST base URL, `http://127.0.0.1:G` (the namespace's address
    /// when in one).
    pub fn api_url(&self) -> String {
        format!("http://{}:{}", self.host, self.gui_port)
    }

    /// `tcp://127.0.0.1:P`, if a TCP listener is configured.
    pub fn tcp_address(&self) -> Option<String> {
        self.listen
            .tcp()
            .then(|| format!("tcp://{}:{}", self.host, self.listen_port))
    }

    /// `quic://127.0.0.1:P`, if a QUIC listener is configured.
    pub fn quic_address(&self) -> Option<String> {
        self.listen
            .quic()
            .then(|| format!("quic://{}:{}", self.host, self.listen_port))
    }

    /// When the process was spawned (after the home was prepared).
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// How long the process took from spawn until its API first answered.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The log file (stdout and stderr of the process).
    pub fn log_path(&self) -> PathBuf {
        self.home.join(LOG_FILE)
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panics with `msg` and the log tail.
    pub fn fail(&self, msg: &str) -> ! {
        self.failed.store(true, Ordering::Relaxed);
        panic!(
            "syncthing ({}): {msg}\n--- last {LOG_LINES} lines of {}\n{}",
            self.device_id,
            self.log_path().display(),
            self.log_tail(LOG_LINES)
        )
    }

    /// Polls `probe` every [`POLL_INTERVAL`] until it returns `Some`, and
    /// returns that. Panics (naming `what`) at `deadline` or when the
    /// process has exited.
    pub fn wait_for<T>(
        &self,
        deadline: Instant,
        what: &str,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            if let Some(status) = self.try_wait() {
                self.fail(&format!("exited ({status}) while waiting for {what}"));
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out waiting for {what}"));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// One REST call: `(status code, body)`, or a transport error.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), ureq::Error> {
        let url = format!("{}{path_and_query}", self.api_url());
        let key = self.api_key.as_str();
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("X-API-Key", key).call(),
            ("DELETE", _) => self.agent.delete(&url).header("X-API-Key", key).call(),
            (m, body) => {
                let req = match m {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    other => panic!("unsupported method {other}"),
                }
                .header("X-API-Key", key);
                match body {
                    Some(json) => req.send_json(json),
                    None => req.send_empty(),
                }
            }
        };
        let mut resp = resp?;
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string()?;
        Ok((code, text))
    }

    /// A REST call that must succeed (2xx); returns its JSON body, or
    /// `Value::Null` when the body is empty.
    pub fn api(&self, method: &str, path_and_query: &str, body: Option<&Value>) -> Value {
        match self.request(method, path_and_query, body) {
            Ok((code, text)) if (200..300).contains(&code) => {
                if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or_else(|e| {
                        self.fail(&format!(
                            "{method} {path_and_query}: body is not JSON ({e}): {text}"
                        ))
                    })
                }
            }
            Ok((code, text)) => self.fail(&format!(
                "{method} {path_and_query}: HTTP {code}: {}",
                text.trim()
            )),
            Err(e) => self.fail(&format!("{method} {path_and_query}: {e}")),
        }
    }

    /// `GET /rest/system/status`.
    pub fn system_status(&self) -> Value {
        self.api("GET", "/rest/system/status", None)
    }

    /// Adds (or replaces) a device: `POST /rest/config/devices`. An empty
    /// `addresses` means `dynamic`.
    pub fn add_device(&self, id: &str, name: &str, addresses: &[&str]) {
        let addresses: Vec<&str> = if addresses.is_empty() {
            vec!["dynamic"]
        } else {
            addresses.to_vec()
        };
        self.api(
            "POST",
            "/rest/config/devices",
            Some(&json!({ "deviceID": id, "name": name, "addresses": addresses })),
        );
    }

    /// Adds (or replaces) a folder shared with `devices` (this device is
    /// always included): `POST /rest/config/folders`. Creates `path` with a
    /// `.stfolder` marker first. Other settings are Syncthing's defaults.
    pub fn add_folder(&self, id: &str, path: &Path, devices: &[&str], folder_type: FolderType) {
        create_folder_root(path);
        let mut shared = vec![json!({ "deviceID": self.device_id })];
        shared.extend(
            devices
                .iter()
                .filter(|d| **d != self.device_id)
                .map(|d| json!({ "deviceID": d })),
        );
        self.api(
            "POST",
            "/rest/config/folders",
            Some(&json!({
                "id": id,
                "label": id,
                "path": path,
                "type": folder_type.as_str(),
                "devices": shared,
            })),
        );
    }

    /// Replaces one config object: `PUT /rest/config/<what>` (for example
    /// `folders/<id>` with a modified copy of `GET /rest/config/folders/<id>`).
    pub fn put_config(&self, what: &str, value: &Value) {
        self.api("PUT", &format!("/rest/config/{what}"), Some(value));
    }

    /// `PATCH /rest/config/options` with a partial options object.
    pub fn patch_options(&self, json: &Value) {
        self.api("PATCH", "/rest/config/options", Some(json));
    }

    /// `POST /rest/db/scan?folder=`: returns when the scan has completed.
    pub fn rescan(&self, folder: &str) {
        self.api(
            "POST",
            &format!("/rest/db/scan?folder={}", enc(folder)),
            None,
        );
    }

    /// `GET /rest/db/status?folder=`.
    pub fn db_status(&self, folder: &str) -> Value {
        self.api(
            "GET",
            &format!("/rest/db/status?folder={}", enc(folder)),
            None,
        )
    }

    /// `GET /rest/system/connections`.
    pub fn connections(&self) -> Value {
        self.api("GET", "/rest/system/connections", None)
    }

    /// `GET /rest/cluster/pending/devices`.
    pub fn pending_devices(&self) -> Value {
        self.api("GET", "/rest/cluster/pending/devices", None)
    }

    /// Polls `db/status` until the folder is `idle`; returns that status.
    pub fn wait_folder_idle(&self, folder: &str, deadline: Instant) -> Value {
        self.wait_folder(folder, deadline, "idle", |s| s["state"] == "idle")
    }

    /// Polls `db/status` until `cond` holds; returns that status.
    pub fn wait_folder(
        &self,
        folder: &str,
        deadline: Instant,
        what: &str,
        mut cond: impl FnMut(&Value) -> bool,
    ) -> Value {
        let what = format!("folder {folder} to be {what}");
        self.wait_for(deadline, &what, |st| {
            let s = st.db_status(folder);
            cond(&s).then_some(s)
        })
    }

    /// Polls `system/connections` until `device` is connected; returns its
    /// entry (`address`, `type`, ...).
    pub fn wait_connected(&self, device: &str, deadline: Instant) -> Value {
        let what = format!("a connection to {device}");
        self.wait_for(deadline, &what, |st| {
            let c = st.connections();
            let entry = &c["connections"][device];
            (entry["connected"] == true).then(|| entry.clone())
        })
    }

    /// Peak resident memory of the process so far (`VmHWM`), in KiB.
    /// Read it before [`stop`](Self::stop).
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.pid())
            .unwrap_or_else(|| self.fail("cannot read VmHWM from /proc/<pid>/status"))
    }

    /// Stops the process: SIGTERM, up to 30 s to exit, then SIGKILL.
    /// Returns its exit status.
    pub fn stop(&self) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return status;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        eprintln!(
            "syncthing {} ignored SIGTERM for 30 s; killing it",
            self.pid()
        );
        let mut child = self.child();
        let _ = child.kill();
        child.wait().expect("wait for syncthing")
    }
}

impl Drop for Syncthing {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.failed.load(Ordering::Relaxed) {
            eprintln!(
                "--- syncthing {} log tail ({})\n{}",
                self.device_id,
                self.log_path().display(),
                self.log_tail(LOG_LINES)
            );
        }
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// Spawns `syncthing serve` on `home`, its output appended to the log.
fn spawn_serve(opts: &Options, home: &Path) -> Child {
    // Appended: a restart keeps what the earlier run logged.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join(LOG_FILE))
        .expect("open the syncthing log");
    let mut cmd = match &opts.netns {
        Some(h) => h.command(&opts.binary),
        None => Command::new(&opts.binary),
    };
    cmd.arg("serve")
        .arg(format!("--home={}", home.display()))
        .args(["--no-browser", "--no-restart"])
        .env("STNORESTART", "1")
        .env("STMONITORED", "1")
        .env_remove("STTRACE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log);
    if let Some(trace) = &opts.sttrace {
        cmd.env("STTRACE", trace);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawning {} serve: {e}", opts.binary.display()))
}

/// `VmHWM` of any process, in KiB; `None` if it cannot be read.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Creates a folder root with a `.stfolder` marker (a directory, as
/// Syncthing makes it), unless the marker is there already.
pub fn create_folder_root(path: &Path) {
    let marker = path.join(".stfolder");
    if marker.symlink_metadata().is_err() {
        std::fs::create_dir_all(&marker)
            .unwrap_or_else(|e| panic!("creating {}: {e}", marker.display()));
    }
}

/// A port free for both TCP and UDP on 127.0.0.1, with both sockets held.
fn free_tcp_udp_port() -> ((TcpListener, UdpSocket), u16) {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a free TCP port");
        let port = tcp.local_addr().expect("local addr").port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            return ((tcp, udp), port);
        }
    }
    panic!("no port free for both TCP and UDP after 100 tries")
}

/// Rewrites the generated `config.xml` for loopback-only use; returns the
/// API key.
/// Where Syncthing listens: loopback, or its namespace's address.
fn host_of(opts: &Options) -> String {
    opts.netns
        .as_ref()
        .map_or_else(|| "127.0.0.1".to_string(), |h| h.ip.to_string())
}

fn configure(xml: &mut String, opts: &Options, my_id: &str, port: u16, gui_port: u16) -> String {
    let host = host_of(opts);
    let mut listen = Vec::new();
    if opts.listen.tcp() {
        listen.push(format!("tcp://{host}:{port}"));
    }
    if opts.listen.quic() {
        listen.push(format!("quic://{host}:{port}"));
    }
    if let Some(r) = &opts.relay {
        listen.push(xml_escape(r));
    }
    let listen = listen
        .iter()
        .map(|a| format!("<listenAddress>{a}</listenAddress>"))
        .collect::<Vec<_>>()
        .join("\n        ");
    replace_once(
        xml,
        "<listenAddress>default</listenAddress>",
        &listen,
        "the default listen address",
    );
    set_element(xml, "<gui ", "address", &format!("{host}:{gui_port}"));
    let global = opts.global_discovery.is_some();
    if let Some(url) = &opts.global_discovery {
        set_element(xml, "<options>", "globalAnnounceServer", &xml_escape(url));
    }
    for (tag, value) in [
        (
            "globalAnnounceEnabled",
            if global { "true" } else { "false" },
        ),
        (
            "localAnnounceEnabled",
            if opts.local_discovery {
                "true"
            } else {
                "false"
            },
        ),
        (
            "relaysEnabled",
            if opts.relay.is_some() {
                "true"
            } else {
                "false"
            },
        ),
        ("natEnabled", "false"),
        ("crashReportingEnabled", "false"),
        ("startBrowser", "false"),
        ("urAccepted", "-1"),
        ("autoUpgradeIntervalH", "0"),
        ("stunKeepaliveStartS", "0"),
        // Syncthing renices itself (nice 9, idle I/O class) by default; a
        // benchmark against it must not handicap it.
        ("setLowPriority", "false"),
    ] {
        set_element(xml, "<options>", tag, value);
    }
    let mut api_key = get_element(xml, "<gui ", "apikey");
    if api_key.is_empty() {
        api_key = format!("ferrosync-tests-{my_id}");
        set_element(xml, "<gui ", "apikey", &api_key);
    }
    if !opts.folders.is_empty() {
        let template = default_folder(xml);
        let folders: String = opts
            .folders
            .iter()
            .map(|f| {
                create_folder_root(&f.path);
                folder_element(&template, f)
            })
            .collect();
        replace_once(xml, "    <gui ", &format!("{folders}    <gui "), "<gui>");
    }
    api_key
}

/// The `<folder>` element under `<defaults>`: a folder with every setting
/// at its default, shared with this device.
fn default_folder(xml: &str) -> String {
    let defaults = xml.find("<defaults>").expect("config.xml has <defaults>");
    let start = defaults + xml[defaults..].find("<folder ").expect("default <folder>");
    let end = start + xml[start..].find("</folder>").expect("</folder>") + "</folder>".len();
    xml[start..end].to_string()
}

fn folder_element(template: &str, f: &FolderSpec) -> String {
    let mut el = template.to_string();
    let head_end = el.find('>').expect("folder open tag");
    let head = el[..head_end]
        .replacen(" id=\"\"", &format!(" id=\"{}\"", xml_escape(&f.id)), 1)
        .replacen(
            " label=\"\"",
            &format!(" label=\"{}\"", xml_escape(&f.id)),
            1,
        )
        .replacen(
            " path=\"~\"",
            &format!(" path=\"{}\"", xml_escape(&f.path.to_string_lossy())),
            1,
        )
        .replacen(
            " type=\"sendreceive\"",
            &format!(" type=\"{}\"", f.folder_type.as_str()),
            1,
        );
    assert!(
        head.contains(&format!(
            " path=\"{}\"",
            xml_escape(&f.path.to_string_lossy())
        )),
        "unexpected default folder element: {template}"
    );
    el.replace_range(..head_end, &head);
    format!("    {el}\n")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn replace_once(xml: &mut String, from: &str, to: &str, what: &str) {
    let at = xml
        .find(from)
        .unwrap_or_else(|| panic!("config.xml has no {what} ({from})"));
    xml.replace_range(at..at + from.len(), to);
}

/// The byte range of the text of `<tag>…</tag>`, the first one after
/// `section`.
fn element_range(xml: &str, section: &str, tag: &str) -> std::ops::Range<usize> {
    let base = xml
        .find(section)
        .unwrap_or_else(|| panic!("config.xml has no {section}"));
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml[base..]
        .find(&open)
        .map(|i| base + i + open.len())
        .unwrap_or_else(|| panic!("config.xml has no <{tag}> in {section}"));
    let end = start
        + xml[start..]
            .find(&close)
            .unwrap_or_else(|| panic!("config.xml has no </{tag}>"));
    start..end
}

fn get_element(xml: &str, section: &str, tag: &str) -> String {
    xml[element_range(xml, section, tag)].to_string()
}

fn set_element(xml: &mut String, section: &str, tag: &str, value: &str) {
    let range = element_range(xml, section, tag);
    xml.replace_range(range, value);
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes `files` (relative name, contents) under `root`, creating
/// directories; for tests that need a few files in a folder.
pub fn write_files(root: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent directories");
        }
        let mut w = BufWriter::new(File::create(&path).expect("create file"));
        w.write_all(data).expect("write file");
        w.flush().expect("flush file");
    }
}
