//! Servers as real processes: `ferrosync-discovery` on a data directory,
//! on loopback or inside a lab host (stopped with SIGTERM, so it flushes
//! its store, by [`DiscoveryProcess::stop`]); Syncthing's `stdiscosrv` in
//! a lab host; `ferrosync-relay` and Syncthing's `strelaysrv` (never in a
//! pool) on loopback or in a lab host; a `redis-server` on loopback. Each
//! is killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::bin;
use crate::netns::Host;

/// A running `ferrosync-discovery run`.
pub struct DiscoveryProcess {
    child: Option<Child>,
    /// The URL it printed (`https://ADDR/?id=ID`).
    pub url: String,
}

impl DiscoveryProcess {
    /// Starts it on `data`, listening on `listen` (port 0: any), inside
    /// `host`'s namespace if given; waits until it prints its URL.
    pub fn start(data: &Path, listen: &str, host: Option<&Host>, extra: &[&str]) -> Self {
        let cmd = match host {
            Some(h) => h.command(bin("ferrosync-discovery")),
            None => Command::new(bin("ferrosync-discovery")),
        };
        Self::start_with(cmd, data, listen, extra)
    }

    /// The same with `cmd` as the program to run (a wrapper such as
    /// `taskset -c 1 ferrosync-discovery`).
    pub fn start_with(mut cmd: Command, data: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut child = cmd
            .arg("--data")
            .arg(data)
            .args(["run", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrosync-discovery");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the URL");
        assert!(line.starts_with("https://"), "no URL printed: {line:?}");
        Self {
            child: Some(child),
            url: line.trim().to_string(),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("not a server URL: {}", self.url))
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops it with SIGTERM and checks it exited cleanly.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        crate::daemon::signal(&child, "TERM");
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "ferrosync-discovery exited with {status:?}"
        );
    }
}

impl Drop for DiscoveryProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running Syncthing `stdiscosrv` inside a lab host, on port 8443 of
/// the host's address.
pub struct StDiscosrv {
    child: Child,
    /// Its URL with the `?id=` pin, for clients.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl StDiscosrv {
    /// Starts `program` (the `stdiscosrv` binary) in `host`; waits until it
    /// logs its device ID.
    pub fn start(program: &Path, host: &Host) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let log = d.join("stdiscosrv.log");
        let child = host
            .command(program)
            .arg(format!("-listen={}:8443", host.ip))
            .arg(format!("-db-dir={}", d.join("db").display()))
            .arg(format!("-cert={}", d.join("cert.pem").display()))
            .arg(format!("-key={}", d.join("key.pem").display()))
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(d.join("stdiscosrv.err")).expect("log"))
            .spawn()
            .expect("spawn stdiscosrv");
        let id = crate::poll(std::time::Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default()
                + &std::fs::read_to_string(d.join("stdiscosrv.err")).unwrap_or_default();
            text.lines()
                .find_map(|l| l.split("Server device ID is ").nth(1))
                .map(|id| id.trim().to_string())
        })
        .expect("stdiscosrv printed no device ID");
        Self {
            child,
            url: format!("https://{}:8443/v2/?id={id}", host.ip),
            _dir: dir,
        }
    }
}

impl Drop for StDiscosrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running relay: `ferrosync-relay run` or `strelaysrv -pools=""`.
pub struct RelayProcess {
    child: Child,
    /// The URI it printed (`relay://ADDR/?id=ID&…`).
    pub uri: String,
    _dir: tempfile::TempDir,
}

impl RelayProcess {
    /// `ferrosync-relay` listening on `listen` (port 0: any), inside
    /// `host` if given; waits until it prints its URI.
    pub fn start(listen: &str, host: Option<&Host>, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = match host {
            Some(h) => h.command(bin("ferrosync-relay")),
            None => Command::new(bin("ferrosync-relay")),
        };
        let mut child = cmd
            .arg("--data")
            .arg(dir.path())
            .args(["run", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ferrosync-relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the URI");
        assert!(line.starts_with("relay://"), "no URI printed: {line:?}");
        Self {
            child,
            uri: line.trim().to_string(),
            _dir: dir,
        }
    }

    /// Syncthing's `strelaysrv` (`program`) on port 22067 of `host`'s
    /// address, or of loopback (a free port); never in a public pool.
    pub fn strelaysrv(program: &Path, host: Option<&Host>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let listen = match host {
            Some(h) => format!("{}:22067", h.ip),
            None => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("free port")
                    .port();
                format!("127.0.0.1:{port}")
            }
        };
        let mut cmd = match host {
            Some(h) => h.command(program),
            None => Command::new(program),
        };
        let log = d.join("strelaysrv.log");
        let child = cmd
            .arg(format!("-listen={listen}"))
            .args(["-pools=", "-status-srv="])
            .arg(format!("-keys={}", d.display()))
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(d.join("strelaysrv.err")).expect("log"))
            .spawn()
            .expect("spawn strelaysrv");
        let uri = crate::poll(std::time::Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default()
                + &std::fs::read_to_string(d.join("strelaysrv.err")).unwrap_or_default();
            text.lines()
                .find_map(|l| l.split("URI: ").nth(1))
                .map(|u| u.trim().to_string())
        })
        .expect("strelaysrv printed no URI");
        Self {
            child,
            uri,
            _dir: dir,
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `miniupnpd` (Debian's iptables build) in a router made by
/// [`crate::netns::Lab::upnp_nat`], serving UPnP IGD and NAT-PMP to its
/// LAN; killed on drop.
pub struct MiniUpnpd {
    child: Child,
    router: Host,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl MiniUpnpd {
    /// Starts `program` in `router` for the LAN `198.18.{lan}.0/24`.
    /// miniupnpd refuses to map anything while its WAN address is in a
    /// reserved range (198.18/15 is), unless a STUN server says the address
    /// is public: `stun` (`host:port`, e.g. `ferrosync-discovery --stun`)
    /// is asked. `upnp: false` serves NAT-PMP only. Waits until
    /// miniupnpd says it forwards ports.
    pub fn start(
        program: &Path,
        router: &Host,
        lan: u8,
        stun: std::net::SocketAddr,
        upnp: bool,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("miniupnpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ext_ifname=eth0\nlistening_ip=eth1\nhttp_port=5555\nenable_upnp={}\n\
                 enable_natpmp=yes\nsecure_mode=yes\nipv6_disable=yes\nsystem_uptime=yes\n\
                 ext_perform_stun=yes\next_stun_host={}\next_stun_port={}\n\
                 uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
                 allow 1024-65535 198.18.{lan}.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
                if upnp { "yes" } else { "no" },
                stun.ip(),
                stun.port()
            ),
        )
        .expect("miniupnpd.conf");
        let log = dir.path().join("miniupnpd.log");
        // Its own pid file: miniupnpd refuses to start while another's
        // (in another test's router) is in the default place.
        let child = router
            .command(program)
            .arg("-d")
            .arg("-f")
            .arg(&conf)
            .arg("-P")
            .arg(dir.path().join("miniupnpd.pid"))
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("miniupnpd.err")).expect("log"))
            .spawn()
            .expect("spawn miniupnpd");
        let mut me = Self {
            child,
            router: router.clone(),
            log,
            _dir: dir,
        };
        let up = crate::poll(std::time::Duration::from_secs(30), || {
            me.log()
                .contains("Port forwarding is now enabled")
                .then_some(())
        });
        if up.is_none() {
            let _ = me.child.kill();
            panic!("miniupnpd did not enable port forwarding:\n{}", me.log());
        }
        me
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        let err = self.log.with_file_name("miniupnpd.err");
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(err).unwrap_or_default()
    }

    /// The port-forwarding (DNAT) rules it has in place now, one per
    /// mapping, as `iptables-legacy -S` prints them.
    pub fn mappings(&self) -> Vec<String> {
        let out = self
            .router
            .command("iptables-legacy")
            .args(["-w", "-t", "nat", "-S", "MINIUPNPD"])
            .output()
            .expect("iptables-legacy");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("-A MINIUPNPD"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for MiniUpnpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real redis-server on a free loopback port, stopped on drop.
pub struct Redis(Child, u16);

impl Redis {
    /// Starts one; `None` (the caller skips) if `redis-server` is not
    /// installed outside CI.
    pub fn start() -> Option<Self> {
        let program = crate::require("redis-server", "redis-server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let up = crate::poll(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "redis-server did not start");
        Some(Self(child, port))
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its URL, for `--store`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.1)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
