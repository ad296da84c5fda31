//! `bench-connect`: how long two devices behind separate NATs take to get
//! a session through a relay, ferrosync beside Syncthing 1.19.2, in the
//! same topology and run (needs root: network namespaces).
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-connect -- [--runs N] [--syncthing-runs N] [--limit SECONDS]
//! ```
//!
//! The lab: a WAN segment with one server host running `ferrosync-discovery`
//! and `ferrosync-relay`, and two home NAT routers (MASQUERADE; nothing in
//! but answers; UDP blocked at one of them, so no hole can be punched and
//! the relay is the only way) with one device behind each. Both devices
//! know only each other's ID, the discovery server and the relay (both
//! systems use the same servers, so what is timed is the clients). The
//! time runs from starting both devices at once (two threads) to the
//! moment both report the other connected (ferrosync: `/rest/status`;
//! Syncthing: `/rest/system/connections`), polled every 25 ms. A fresh lab
//! and fresh homes for every run.

use std::time::{Duration, Instant};

use ferrosync_tests::syncthing::{Listen, Options, Syncthing};
use ferrosync_tests::wan::Wan;
use ferrosync_tests::Device;

const USAGE: &str =
    "usage: bench-connect [--runs N] [--syncthing-runs N] [--limit SECONDS] (as root)";

struct Opts {
    runs: usize,
    syncthing_runs: usize,
    limit: Duration,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        runs: 5,
        syncthing_runs: 1,
        limit: Duration::from_secs(600),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{a}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--runs" => o.runs = number(value()?)?,
            "--syncthing-runs" => o.syncthing_runs = number(value()?)?,
            "--limit" => o.limit = Duration::from_secs(number(value()?)? as u64),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(o)
}

/// One run's topology: the WAN with its servers, two devices behind
/// NATs, UDP blocked at the first router (so the relay is the only way).
fn world() -> Option<(Wan, [ferrosync_tests::netns::Host; 2])> {
    let mut w = Wan::new()?;
    let (nat_a, a) = w.behind_nat("a");
    let (_, b) = w.behind_nat("b");
    Wan::block_udp(&nat_a, true);
    Some((w, [a, b]))
}

/// How long after `started` `connected` first holds (polled every 25 ms),
/// if it does within `limit`.
fn until(limit: Duration, started: Instant, connected: impl Fn() -> bool) -> Option<Duration> {
    ferrosync_tests::poll(limit.saturating_sub(started.elapsed()), || {
        connected().then(|| started.elapsed())
    })
}

fn ferrosync_run(limit: Duration) -> Result<Duration, String> {
    let (w, hosts) = world().ok_or("needs root and iproute2")?;
    let (a, a_id) = Device::in_netns("alpha", &hosts[0]);
    let (b, b_id) = Device::in_netns("bravo", &hosts[1]);
    for (d, other) in [(&a, &b_id), (&b, &a_id)] {
        d.ok(&["config", "set", "discovery.global", &w.disco.url]);
        d.ok(&["config", "set", "relays", &w.relay.uri]);
        d.ok(&["device", "add", other, "--name", "peer"]);
    }
    let started = Instant::now();
    let (da, db) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.start());
        let tb = s.spawn(|| b.start());
        (ta.join().expect("start a"), tb.join().expect("start b"))
    });
    let up = |d: &ferrosync_tests::daemon::Daemon| {
        d.status()
            .is_some_and(|s| s["devices"][0]["connected"] == true)
    };
    let took = until(limit, started, || up(&da) && up(&db));
    let transport = da
        .status()
        .and_then(|s| s["devices"][0]["transport"].as_str().map(String::from))
        .unwrap_or_default();
    da.stop();
    db.stop();
    drop(w);
    match took {
        Some(t) if transport == "relay" => Ok(t),
        Some(t) => Err(format!(
            "connected after {t:?} over {transport}, not the relay"
        )),
        None => Err(format!("not connected within {limit:?}")),
    }
}

fn syncthing_run(limit: Duration) -> Result<Duration, String> {
    let binary = ferrosync_tests::bench::which("syncthing").ok_or("syncthing is not installed")?;
    let (w, hosts) = world().ok_or("needs root and iproute2")?;
    let start = |h: &ferrosync_tests::netns::Host| {
        Syncthing::start(Options {
            binary: binary.clone(),
            listen: Listen::Tcp,
            netns: Some(h.clone()),
            global_discovery: Some(w.disco.url.replace("/?id=", "/v2/?id=")),
            relay: Some(w.relay.uri.clone()),
            ..Options::default()
        })
    };
    let (mut a, mut b) = (start(&hosts[0]), start(&hosts[1]));
    a.add_device(b.device_id(), "b", &[]);
    b.add_device(a.device_id(), "a", &[]);
    a.stop();
    b.stop();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| a.restart());
        s.spawn(|| b.restart());
    });
    let up = |x: &Syncthing, other: &str| {
        x.request("GET", "/rest/system/connections", None)
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .is_some_and(|v| v["connections"][other]["connected"] == true)
    };
    let (ida, idb) = (a.device_id().to_string(), b.device_id().to_string());
    let took = until(limit, started, || up(&a, &idb) && up(&b, &ida));
    let kind = a
        .request("GET", "/rest/system/connections", None)
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| {
            v["connections"][idb.as_str()]["type"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_default();
    a.stop();
    b.stop();
    match took {
        Some(t) if kind.starts_with("relay") => Ok(t),
        Some(t) => Err(format!("connected after {t:?} over {kind}, not the relay")),
        None => Err(format!("not connected within {limit:?}")),
    }
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!(
        "{:<10} {:>4} {:>22}",
        "system", "run", "first relayed session"
    );
    let report = |system: &str, runs: usize, run: &dyn Fn() -> Result<Duration, String>| {
        let mut times = Vec::new();
        for i in 1..=runs {
            match run() {
                Ok(t) => {
                    println!("{system:<10} {i:>4} {:>20.2} s", t.as_secs_f64());
                    times.push(t);
                }
                Err(e) => println!("{system:<10} {i:>4} {e}"),
            }
        }
        times.sort();
        if let Some(m) = times.get(times.len() / 2) {
            println!("{system:<10} {:>4} {:>20.2} s", "med", m.as_secs_f64());
        }
    };
    report("ferrosync", o.runs, &|| ferrosync_run(o.limit));
    report("syncthing", o.syncthing_runs, &|| syncthing_run(o.limit));
}
