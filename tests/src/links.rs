//! Bad links in a box: two hosts of a [`Lab`] whose packets to each other
//! cross a link emulator in this process (delay, loss, reordering, a rate
//! limit, a cable that can be cut), for the netem and fault suites and
//! `bench-wan`.
//!
//! `tc netem` would do this in the kernel, but kernels without
//! `CONFIG_NET_SCH_NETEM` (this project's CI machines among them) have
//! no qdisc that delays. So each host gets a TUN interface, `wan0`, and a
//! /32 route to the other host's address through it: the hosts keep their
//! segment addresses (which the test process reaches their APIs on), but
//! what they send each other goes through the TUN devices, whose other
//! ends are read and written here, a packet at a time, as netem would
//! treat it.
//!
//! Needs what [`Lab`] needs, and `/dev/net/tun`.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::{ip, Host, Lab};

/// A link shape, applied to each direction alike.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// A short name for tables.
    pub name: &'static str,
    /// One-way delay (the round trip is twice this).
    pub delay: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet skips the delay, overtaking the packets
    /// before it (netem's `reorder`).
    pub reorder: f64,
    /// Bits per second, 0 for no limit.
    pub rate_bps: u64,
}

/// The shapes: a long fat link, the same with loss, and a
/// shorter one with loss and reordering.
pub const SHAPES: [Shape; 3] = [
    Shape {
        name: "100 ms RTT",
        delay: Duration::from_millis(50),
        loss: 0.0,
        reorder: 0.0,
        rate_bps: 0,
    },
    Shape {
        name: "100 ms RTT, 1 % loss",
        delay: Duration::from_millis(50),
        loss: 0.01,
        reorder: 0.0,
        rate_bps: 0,
    },
    Shape {
        name: "20 ms RTT, 0.1 % loss, 1 % reordered",
        delay: Duration::from_millis(10),
        loss: 0.001,
        reorder: 0.01,
        rate_bps: 0,
    },
];

/// Packets queued per direction before more are dropped (netem's
/// `limit`, set high: a real path's queue is not what is tested).
const QUEUE_LIMIT: usize = 200_000;
/// The link's MTU: the internet's.
const MTU: usize = 1500;

/// Two hosts, `a` and `b`, whose packets to each other cross the
/// emulated link. Dropping it stops the emulator and deletes the lab.
pub struct Link {
    /// One end.
    pub a: Host,
    /// The other end.
    pub b: Host,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Counts>>,
    /// The namespaces.
    pub lab: Lab,
}

/// What one direction of the emulator did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Packets passed on.
    pub passed: u64,
    /// Packets dropped (loss, a cut cable, a full queue).
    pub dropped: u64,
}

impl Link {
    /// A new lab with two hosts joined by a `shape` link; `None` where
    /// labs cannot be made and `CI` is not set.
    pub fn new(shape: Shape) -> Option<Self> {
        let mut lab = Lab::new()?;
        let mut seg = lab.segment();
        let a = lab.host(&mut seg, "a");
        let b = lab.host(&mut seg, "b");
        let tun_a = wan(&a, &b);
        let tun_b = wan(&b, &a);
        let (cut, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let threads = vec![
            direction(&tun_a, &tun_b, shape, 1, cut.clone(), stop.clone()),
            direction(&tun_b, &tun_a, shape, 2, cut.clone(), stop.clone()),
        ];
        Some(Self {
            a,
            b,
            cut,
            stop,
            threads,
            lab,
        })
    }

    /// Cuts the cable (every packet lost, both ways) or mends it.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Gives `h` a TUN interface `wan0` that its packets to `peer` take;
/// returns this process's end of it.
fn wan(h: &Host, peer: &Host) -> Arc<tun::Device> {
    let name = format!("w{}", h.ns.trim_start_matches("fs"));
    let name: String = name.chars().take(15).collect();
    let tun = open_tun(&name);
    ip(&["link", "set", &name, "netns", &h.ns]);
    ip(&["-n", &h.ns, "link", "set", &name, "name", "wan0"]);
    ip(&[
        "-n",
        &h.ns,
        "link",
        "set",
        "wan0",
        "mtu",
        &MTU.to_string(),
        "up",
    ]);
    ip(&[
        "-n",
        &h.ns,
        "route",
        "add",
        &format!("{}/32", peer.ip),
        "dev",
        "wan0",
        "src",
        &h.ip.to_string(),
    ]);
    // Packets from the peer arrive on wan0 for an address of eth0.
    for k in ["all", "wan0"] {
        let _ = h
            .command("sysctl")
            .args(["-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")])
            .output();
    }
    tun
}

fn open_tun(name: &str) -> Arc<tun::Device> {
    let mut config = tun::Configuration::default();
    config.tun_name(name).mtu(MTU as u16);
    Arc::new(tun::create(&config).unwrap_or_else(|e| panic!("TUN device {name}: {e}")))
}

/// A packet waiting for its time.
struct Due {
    at: Instant,
    seq: u64,
    data: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    // The earliest first, out of a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction: reads what `from`'s host sends, writes it into `to`'s
/// host when due.
fn direction(
    from: &Arc<tun::Device>,
    to: &Arc<tun::Device>,
    shape: Shape,
    seed: u64,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Counts> {
    let (from, to) = (from.clone(), to.clone());
    std::thread::spawn(move || {
        let mut rng = crate::bench::Rng::new(seed);
        let mut chance =
            move |p: f64| p > 0.0 && (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p;
        let mut queue = BinaryHeap::new();
        let (mut seq, mut counts) = (0u64, Counts::default());
        // When the rate limit lets the next packet onto the wire.
        let mut wire_free = Instant::now();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while queue.peek().is_some_and(|d: &Due| d.at <= now) {
                let d = queue.pop().expect("peeked");
                let _ = to.send(&d.data);
                counts.passed += 1;
            }
            let wait = queue
                .peek()
                .map_or(Duration::from_millis(100), |d: &Due| d.at - now)
                .min(Duration::from_millis(100));
            let n = match from.recv_timeout(&mut buf, wait) {
                Ok(n) if n > 0 => n,
                _ => continue,
            };
            let now = Instant::now();
            if cut.load(Ordering::Relaxed) || chance(shape.loss) || queue.len() >= QUEUE_LIMIT {
                counts.dropped += 1;
                continue;
            }
            let mut at = now;
            if let Some(ns) = (n as u64 * 8 * 1_000_000_000).checked_div(shape.rate_bps) {
                wire_free = wire_free.max(now) + Duration::from_nanos(ns);
                at = wire_free;
            }
            if !chance(shape.reorder) {
                at += shape.delay;
            }
            seq += 1;
            queue.push(Due {
                at,
                seq,
                data: buf[..n].to_vec(),
            });
        }
        counts
    })
}
