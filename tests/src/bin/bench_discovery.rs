//! `bench-discovery`: a bounded loopback load against global discovery
//! servers, the same load against each in one run.
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-discovery -- \
//!     [--announces N] [--lookups N] [--concurrency C] \
//!     [--server ferrosync|ferrosync-redis|stdiscosrv|all] [--no-pin]
//! ```
//!
//! For each server, started fresh as a process on 127.0.0.1:
//! 1. `--announces` (default 10,000) announcements, each from its own
//!    device certificate over its own TLS connection (as Syncthing's
//!    clients make them: no keep-alive), `--concurrency` (default 32) at a
//!    time;
//! 2. `--lookups` (default 100,000) lookups of announced devices picked at
//!    random, on `--concurrency` keep-alive connections.
//!
//! Reported per phase: requests per second (wall time of the phase),
//! p50/p99 latency (request sent to answer read; for announces including
//! the connection and TLS handshake), errors (any answer but 204 or 200),
//! the server's CPU use during the lookups (100% = one core busy), and its
//! peak RSS (`VmHWM`) at the end. ferrosync's
//! server runs with `--rate-limit 0` (stdiscosrv has no limit); the Redis
//! variant needs `redis-server`. With two cores or more the load generator
//! is pinned to CPU 0 and each server starts pinned to CPU 1, so the
//! figures are the server's on one core, not how it shares cores with the
//! client (Redis shares the client's core, as if it had a machine of its
//! own); `--no-pin` lets them share.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrosync_discovery::testing::{ClientCert, Connection};
use ferrosync_tests::bench::{can_pin, cpu_time, on_cpu, pin, which, CLIENT_CPU, SERVER_CPU};
use ferrosync_tests::servers::{DiscoveryProcess, Redis};
use ferrosync_tests::syncthing::peak_rss_kib;

const USAGE: &str = "usage: bench-discovery [--announces N] [--lookups N] [--concurrency C] \
[--server ferrosync|ferrosync-redis|stdiscosrv|all] [--no-pin]";

struct Opts {
    announces: usize,
    lookups: usize,
    concurrency: usize,
    servers: Vec<&'static str>,
    pin: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        announces: 10_000,
        lookups: 100_000,
        concurrency: 32,
        servers: vec!["ferrosync", "ferrosync-redis", "stdiscosrv"],
        pin: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{a}: {v:?} is not a positive number"))
        };
        match a.as_str() {
            "--announces" => o.announces = number(value()?)?,
            "--lookups" => o.lookups = number(value()?)?,
            "--concurrency" => o.concurrency = number(value()?)?,
            "--server" => {
                o.servers = match value()?.as_str() {
                    "ferrosync" => vec!["ferrosync"],
                    "ferrosync-redis" => vec!["ferrosync-redis"],
                    "stdiscosrv" => vec!["stdiscosrv"],
                    "all" => o.servers.clone(),
                    v => return Err(format!("--server: unknown {v:?}")),
                }
            }
            "--no-pin" => o.pin = false,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(o)
}

/// A server under load: its address and process.
enum Running {
    Ours(DiscoveryProcess, Option<Redis>),
    Theirs(Child, tempfile::TempDir),
}

fn start(
    kind: &str,
    data: &Path,
    pinned: bool,
) -> Result<(Running, std::net::SocketAddr, u32), String> {
    match kind {
        "ferrosync" | "ferrosync-redis" => {
            let redis = if kind == "ferrosync-redis" {
                let r = Redis::start().ok_or("redis-server is not installed")?;
                // Beside the load generator, as if on a machine of its
                // own: the server's core is the server's.
                if pinned {
                    pin(r.pid(), CLIENT_CPU);
                }
                Some(r)
            } else {
                None
            };
            let store = redis.as_ref().map(|r| r.url());
            let mut extra = vec!["--rate-limit", "0"];
            if let Some(s) = &store {
                extra.extend(["--store", s.as_str()]);
            }
            let program = ferrosync_tests::bin("ferrosync-discovery");
            let p = DiscoveryProcess::start_with(
                on_cpu(&program, pinned.then_some(SERVER_CPU)),
                data,
                "127.0.0.1:0",
                &extra,
            );
            let (addr, pid) = (p.addr(), p.pid());
            Ok((Running::Ours(p, redis), addr, pid))
        }
        _ => {
            let program = which("stdiscosrv").ok_or("stdiscosrv is not installed")?;
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let d = dir.path();
            let child = on_cpu(&program, pinned.then_some(SERVER_CPU))
                .arg(format!("-listen=127.0.0.1:{port}"))
                .arg(format!("-db-dir={}", d.join("db").display()))
                .arg(format!("-cert={}", d.join("cert.pem").display()))
                .arg(format!("-key={}", d.join("key.pem").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let up = ferrosync_tests::poll(Duration::from_secs(20), || {
                std::net::TcpStream::connect(addr).ok()
            });
            up.ok_or("stdiscosrv did not start")?;
            let pid = child.id();
            Ok((Running::Theirs(child, dir), addr, pid))
        }
    }
}

/// One phase's figures.
#[derive(Default)]
struct Phase {
    requests: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

impl Phase {
    /// Gathers the workers' latencies and error counts; the wall time runs
    /// from `started` to the last worker's end.
    async fn collect(
        mut tasks: tokio::task::JoinSet<(Vec<Duration>, usize)>,
        started: Instant,
    ) -> Self {
        let mut phase = Phase::default();
        while let Some(Ok((lat, errors))) = tasks.join_next().await {
            phase.latencies.extend(lat);
            phase.errors += errors;
        }
        phase.wall = started.elapsed();
        phase.requests = phase.latencies.len();
        phase
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

async fn announce_all(addr: std::net::SocketAddr, certs: Arc<Vec<ClientCert>>, c: usize) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (next, certs) = (next.clone(), certs.clone());
        tasks.spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(cert) = certs.get(i) else { break };
                let body = format!(
                    r#"{{"addresses":["tcp://198.51.{}.{}:22000"]}}"#,
                    (i / 250) % 250,
                    i % 250 + 1
                );
                let t = Instant::now();
                let ok = match Connection::open(addr, Some(cert)).await {
                    Ok(mut conn) => conn
                        .request(
                            "POST",
                            "/v2/",
                            &[("content-type", "application/json")],
                            body.into_bytes(),
                        )
                        .await
                        .is_ok_and(|r| r.status == 204),
                    Err(_) => false,
                };
                lat.push(t.elapsed());
                errors += usize::from(!ok);
            }
            (lat, errors)
        });
    }
    Phase::collect(tasks, started).await
}

async fn lookup_all(
    addr: std::net::SocketAddr,
    ids: Arc<Vec<String>>,
    n: usize,
    c: usize,
) -> Phase {
    let left = Arc::new(AtomicUsize::new(n));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..c {
        let (left, ids) = (left.clone(), ids.clone());
        tasks.spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            let mut conn = None;
            let mut k = w * 7919;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok()
            {
                k = (k * 1_103_515_245 + 12_345) % (1 << 31);
                let path = format!("/v2/?device={}", ids[k % ids.len()]);
                let t = Instant::now();
                if conn.is_none() {
                    conn = Connection::open(addr, None).await.ok();
                }
                let ok = match conn.as_mut() {
                    Some(c) => match c.request("GET", &path, &[], Vec::new()).await {
                        Ok(r) => r.status == 200,
                        Err(_) => {
                            conn = None;
                            false
                        }
                    },
                    None => false,
                };
                lat.push(t.elapsed());
                errors += usize::from(!ok);
            }
            (lat, errors)
        });
    }
    Phase::collect(tasks, started).await
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // The load generator on one core, each server on the other: what is
    // measured is the server, not how the two share the cores.
    let pinned = o.pin && can_pin();
    if pinned {
        pin(std::process::id(), CLIENT_CPU);
    }
    eprintln!("generating {} device certificates", o.announces);
    let certs: Arc<Vec<ClientCert>> =
        Arc::new((0..o.announces).map(|_| ClientCert::generate()).collect());
    let ids: Arc<Vec<String>> = Arc::new(certs.iter().map(|c| c.id.to_string()).collect());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:<16} {:>10} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9} {:>7} {:>8} {:>9}",
        "server",
        "announce/s",
        "p50",
        "p99",
        "errors",
        "lookup/s",
        "p50",
        "p99",
        "errors",
        "CPU",
        "peak RSS"
    );
    for kind in &o.servers {
        let data = tempfile::tempdir().expect("tempdir");
        let (running, addr, pid) = match start(kind, data.path(), pinned) {
            Ok(x) => x,
            Err(e) => {
                println!("{kind:<16} skipped: {e}");
                continue;
            }
        };
        let mut a = rt.block_on(announce_all(addr, certs.clone(), o.concurrency));
        let cpu0 = cpu_time(pid).unwrap_or_default().as_secs_f64();
        let mut l = rt.block_on(lookup_all(addr, ids.clone(), o.lookups, o.concurrency));
        let busy = cpu_time(pid).unwrap_or_default().as_secs_f64() - cpu0;
        let cpu = format!("{:.0}%", 100.0 * busy / l.wall.as_secs_f64());
        let rss =
            peak_rss_kib(pid).map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        println!(
            "{:<16} {:>10.0} {:>9.2?} {:>9.2?} {:>7} {:>10.0} {:>9.2?} {:>9.2?} {:>7} {:>8} {:>9}",
            kind,
            a.rate(),
            a.percentile(0.5),
            a.percentile(0.99),
            a.errors,
            l.rate(),
            l.percentile(0.5),
            l.percentile(0.99),
            l.errors,
            cpu,
            rss
        );
        match running {
            Running::Ours(p, redis) => {
                p.stop();
                drop(redis);
            }
            Running::Theirs(mut c, _dir) => {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
