//! `bench-relay`: relayed throughput and CPU per GiB of `ferrosync-relay`
//! and, in the same run, Syncthing's `strelaysrv`, on the same load.
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-relay -- \
//!     [--size MIB] [--sessions N] [--session-size MIB] \
//!     [--server ferrosync|strelaysrv|all] [--no-pin]
//! ```
//!
//! For each relay, started fresh as a process on 127.0.0.1:
//! 1. one session carrying `--size` MiB (default 1024) one way;
//! 2. `--sessions` sessions at once (default 50), `--session-size` MiB each
//!    (default 32).
//!
//! Each session is set up as devices do it (a device joins, another asks
//! for a session, both join it with their keys); the time runs from the
//! first byte written to the last byte read. Reported: MiB/s, the relay's
//! CPU seconds per GiB relayed, its peak RSS. With two cores or more the
//! load generator runs on CPU 0 and each relay starts on CPU 1.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferrosync_relay::testing::session_pair;
use ferrosync_tests::bench::{can_pin, cpu_time, on_cpu, pin, which, CLIENT_CPU, SERVER_CPU};
use ferrosync_tests::syncthing::peak_rss_kib;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USAGE: &str = "usage: bench-relay [--size MIB] [--sessions N] [--session-size MIB] \
[--server ferrosync|strelaysrv|all] [--no-pin]";

struct Opts {
    size: u64,
    sessions: usize,
    session_size: u64,
    servers: Vec<&'static str>,
    pin: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        size: 1024,
        sessions: 50,
        session_size: 32,
        servers: vec!["ferrosync", "strelaysrv"],
        pin: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{a}: {v:?} is not a positive number"))
        };
        match a.as_str() {
            "--size" => o.size = number(value()?)?,
            "--sessions" => o.sessions = number(value()?)? as usize,
            "--session-size" => o.session_size = number(value()?)?,
            "--server" => {
                o.servers = match value()?.as_str() {
                    "ferrosync" => vec!["ferrosync"],
                    "strelaysrv" => vec!["strelaysrv"],
                    "all" => vec!["ferrosync", "strelaysrv"],
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

/// Starts a relay on a free loopback port; returns it and its address.
fn start(
    kind: &str,
    dir: &Path,
    cpu: Option<u32>,
) -> Result<(Child, std::net::SocketAddr), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let child = if kind == "ferrosync" {
        on_cpu(&ferrosync_tests::bin("ferrosync-relay"), cpu)
            .arg("--data")
            .arg(dir)
            .args(["run", "--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .spawn()
    } else {
        let program = which("strelaysrv").ok_or("strelaysrv is not installed")?;
        on_cpu(&program, cpu)
            .arg(format!("-listen={addr}"))
            .args(["-pools=", "-status-srv="])
            .arg(format!("-keys={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }
    .map_err(|e| e.to_string())?;
    ferrosync_tests::poll(Duration::from_secs(20), || {
        std::net::TcpStream::connect(addr).ok()
    })
    .ok_or(format!("{kind} did not start"))?;
    Ok((child, addr))
}

/// Sets up one session and carries `bytes` through it; returns the time
/// from the first byte written to the last byte read.
async fn one_session(addr: std::net::SocketAddr, bytes: u64) -> Result<Duration, String> {
    let p = session_pair(addr).await.map_err(|e| e.to_string())?;
    let (mut rx, mut tx, _control) = (p.joined, p.dialer, p.control);
    let e = |e: std::io::Error| e.to_string();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 256 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            tx.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        tx.flush().await?;
        Ok::<_, std::io::Error>(tx)
    });
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < bytes {
        let n = rx.read(&mut buf).await.map_err(e)?;
        if n == 0 {
            return Err(format!("the session ended after {got} of {bytes} bytes"));
        }
        got += n as u64;
    }
    let took = started.elapsed();
    let _ = writer.await;
    Ok(took)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let pinned = o.pin && can_pin();
    if pinned {
        pin(std::process::id(), CLIENT_CPU);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:<12} {:>14} {:>12} {:>22} {:>12} {:>10}",
        "relay", "1 session MiB/s", "CPU s/GiB", "N sessions total MiB/s", "CPU s/GiB", "peak RSS"
    );
    for kind in &o.servers {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut child, addr) = match start(kind, dir.path(), pinned.then_some(SERVER_CPU)) {
            Ok(x) => x,
            Err(e) => {
                println!("{kind:<12} skipped: {e}");
                continue;
            }
        };
        let pid = child.id();
        let cpu = || cpu_time(pid).unwrap_or_default().as_secs_f64();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;

        let size = o.size << 20;
        let c0 = cpu();
        let one = rt.block_on(one_session(addr, size));
        let one_cpu = cpu() - c0;

        let each = o.session_size << 20;
        let c0 = cpu();
        let started = Instant::now();
        let many: Vec<Result<Duration, String>> = rt.block_on(async {
            let tasks: Vec<_> = (0..o.sessions)
                .map(|_| tokio::spawn(one_session(addr, each)))
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
            }
            out
        });
        let wall = started.elapsed();
        let many_cpu = cpu() - c0;
        let failed = many.iter().filter(|r| r.is_err()).count();
        let total = each * (o.sessions - failed) as u64;
        let rss = peak_rss_kib(pid).map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let one_cell = match &one {
            Ok(d) => format!("{:.0}", mib(size) / d.as_secs_f64()),
            Err(e) => format!("failed: {e}"),
        };
        println!(
            "{:<12} {:>14} {:>12.3} {:>22} {:>12.3} {:>10}",
            kind,
            one_cell,
            one_cpu / gib(size),
            format!(
                "{:.0}{}",
                mib(total) / wall.as_secs_f64(),
                if failed > 0 {
                    format!(" ({failed} failed)")
                } else {
                    String::new()
                }
            ),
            many_cpu / gib(total.max(1)),
            rss
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
