//! Small networks of Linux network namespaces for tests: LAN segments (a
//! bridge each, in a "switch" namespace of the lab's own), hosts on them
//! (a namespace each, with loopback up and a default route via the
//! segment's router address), and optionally a router namespace that
//! forwards between segments. The test process itself (the root
//! namespace) gets an address on every segment, so it can reach each
//! host's API. Everything is named after the process and a counter, and
//! deleting the namespaces on drop removes every link with them.
//!
//! Needs root and `ip` (iproute2). [`Lab::new`] returns `None` (the test
//! skips) elsewhere, and panics under `CI`, where both are required.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A lab: its namespaces, removed on drop.
pub struct Lab {
    id: String,
    switch: String,
    namespaces: Vec<String>,
    segments: u8,
    third_octet: u8,
    links: u32,
}

/// One LAN segment: `198.18.N.0/24` (the benchmarking range, RFC 2544,
/// which no real network uses); the test process is `.1`, a router `.254`.
#[derive(Debug, Clone)]
pub struct Segment {
    bridge: String,
    /// The third octet of its addresses.
    pub n: u8,
    next_host: u8,
}

impl Segment {
    /// The address `.host` on this segment.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, host)
    }

    /// The address of the test process on it.
    pub fn root_ip(&self) -> Ipv4Addr {
        self.ip(1)
    }
}

/// A host: a namespace with one address on one segment.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace.
    pub ns: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

impl Host {
    /// `program` run inside the host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }
}

/// Runs `ip ARGS`, panicking with its error output if it fails.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all);
}

impl Lab {
    /// A new, empty lab; `None` if this process cannot make one (not root,
    /// or no `ip`) and `CI` is not set.
    pub fn new() -> Option<Self> {
        let root = is_root();
        let ip_ok = Command::new("ip")
            .args(["-V"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !root || !ip_ok {
            assert!(
                !crate::in_ci(),
                "network-namespace tests need root and iproute2 in CI (root: {root}, ip: {ip_ok})"
            );
            eprintln!("SKIPPED: network-namespace tests need root and iproute2");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}x{n}", std::process::id() % 100_000);
        let switch = format!("fs{id}sw");
        ip(&["netns", "add", &switch]);
        // Segments of concurrent labs (tests run in parallel) must differ.
        let third_octet = ((std::process::id() % 16) * 16 + n % 16) as u8;
        Some(Self {
            id,
            namespaces: vec![switch.clone()],
            switch,
            segments: 0,
            third_octet,
            links: 0,
        })
    }

    /// A new segment, with the test process on it at `.1`.
    pub fn segment(&mut self) -> Segment {
        let k = self.segments;
        self.segments += 1;
        assert!(k < 4, "at most four segments per lab");
        let n = self.third_octet.wrapping_add(k * 64);
        let bridge = format!("br{k}");
        in_ns(&self.switch, &["link", "add", &bridge, "type", "bridge"]);
        in_ns(&self.switch, &["link", "set", &bridge, "up"]);
        let seg = Segment {
            bridge,
            n,
            next_host: 2,
        };
        // The root end of this veth stays in the root namespace; it goes
        // when the switch namespace (holding its peer) is deleted.
        let root_if = format!("fs{}r{k}", self.id);
        let sw_if = format!("r{k}");
        ip(&[
            "link",
            "add",
            &root_if,
            "type",
            "veth",
            "peer",
            "name",
            &sw_if,
            "netns",
            &self.switch,
        ]);
        in_ns(
            &self.switch,
            &["link", "set", &sw_if, "master", &seg.bridge, "up"],
        );
        ip(&[
            "addr",
            "add",
            &format!("{}/24", seg.root_ip()),
            "dev",
            &root_if,
        ]);
        ip(&["link", "set", &root_if, "up"]);
        seg
    }

    fn namespace(&mut self, name: &str) -> String {
        let ns = format!("fs{}{name}", self.id);
        ip(&["netns", "add", &ns]);
        in_ns(&ns, &["link", "set", "lo", "up"]);
        self.namespaces.push(ns.clone());
        ns
    }

    /// Plugs `ns` into `seg` at `.host`.
    fn plug(&mut self, ns: &str, seg: &Segment, host: u8, ifname: &str) -> Ipv4Addr {
        self.links += 1;
        let sw_if = format!("p{}", self.links);
        ip(&[
            "link",
            "add",
            ifname,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            &sw_if,
            "netns",
            &self.switch,
        ]);
        in_ns(
            &self.switch,
            &["link", "set", &sw_if, "master", &seg.bridge, "up"],
        );
        let addr = seg.ip(host);
        in_ns(ns, &["addr", "add", &format!("{addr}/24"), "dev", ifname]);
        in_ns(ns, &["link", "set", ifname, "up"]);
        addr
    }

    /// A new host on `seg`, its default route via the segment's `.254`.
    pub fn host(&mut self, seg: &mut Segment, name: &str) -> Host {
        let ns = self.namespace(name);
        let host = seg.next_host;
        seg.next_host += 1;
        let ip = self.plug(&ns, seg, host, "eth0");
        in_ns(
            &ns,
            &["route", "add", "default", "via", &seg.ip(254).to_string()],
        );
        Host { ns, ip }
    }

    /// Three segments joined by a router, with one host (named `names`) on
    /// each: devices that can reach each other only through the router.
    pub fn three_subnets(&mut self, names: [&str; 3]) -> [Host; 3] {
        let mut segs = [self.segment(), self.segment(), self.segment()];
        self.router(&[&segs[0], &segs[1], &segs[2]]);
        let [s0, s1, s2] = &mut segs;
        [
            self.host(s0, names[0]),
            self.host(s1, names[1]),
            self.host(s2, names[2]),
        ]
    }

    /// A home NAT router between `wan` and a LAN segment of its own (at
    /// `.254` there, which its hosts route through): what goes out is
    /// masqueraded (MASQUERADE keeps source ports where it can), and
    /// nothing from the WAN gets in, to the LAN or to the router, but
    /// answers to what went out. Unsolicited packets are dropped, not
    /// refused, as home routers do (a refusal would also leave conntrack
    /// entries that make MASQUERADE change ports). Returns the router
    /// (its address is its WAN address) and the LAN.
    pub fn nat(&mut self, wan: &mut Segment, name: &str) -> (Host, Segment) {
        self.nat_router(wan, name, "iptables", false)
    }

    /// A NAT router as [`Lab::nat`] makes, ready for `miniupnpd` (its
    /// iptables build): the rules in the legacy tables it writes to, and
    /// its chains hooked in before the drops, so the ports it maps get in.
    pub fn upnp_nat(&mut self, wan: &mut Segment, name: &str) -> (Host, Segment) {
        self.nat_router(wan, name, "iptables-legacy", true)
    }

    fn nat_router(
        &mut self,
        wan: &mut Segment,
        name: &str,
        iptables: &str,
        upnp: bool,
    ) -> (Host, Segment) {
        let lan = self.segment();
        let ns = self.namespace(name);
        let host = wan.next_host;
        wan.next_host += 1;
        let wan_ip = self.plug(&ns, wan, host, "eth0");
        self.plug(&ns, &lan, 254, "eth1");
        let router = Host {
            ns: ns.clone(),
            ip: wan_ip,
        };
        // One command line per rule, words split on spaces.
        let run = |line: &str| {
            let args: Vec<&str> = line.split_whitespace().collect();
            let out = router
                .command(args[0])
                .args(&args[1..])
                .output()
                .expect(args[0]);
            assert!(out.status.success(), "{line}: {out:?}");
        };
        run("sysctl -qw net.ipv4.ip_forward=1");
        let ipt = |rule: &str| run(&format!("{iptables} -w {rule}"));
        if upnp {
            // miniupnpd's chains, hooked in before the drops below.
            ipt("-t nat -N MINIUPNPD");
            ipt("-t nat -N MINIUPNPD-POSTROUTING");
            ipt("-t filter -N MINIUPNPD");
            ipt("-t nat -A PREROUTING -i eth0 -j MINIUPNPD");
            ipt("-t nat -A POSTROUTING -o eth0 -j MINIUPNPD-POSTROUTING");
            ipt("-A FORWARD -i eth0 ! -o eth0 -j MINIUPNPD");
        }
        ipt("-t nat -A POSTROUTING -o eth0 -j MASQUERADE");
        for chain in ["FORWARD", "INPUT"] {
            ipt(&format!(
                "-A {chain} -i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
            ));
            ipt(&format!("-A {chain} -i eth0 -j DROP"));
        }
        (router, lan)
    }

    /// A router at `.254` on each of `segs`, forwarding between them.
    pub fn router(&mut self, segs: &[&Segment]) {
        let ns = self.namespace("rt");
        for (i, s) in segs.iter().enumerate() {
            self.plug(&ns, s, 254, &format!("eth{i}"));
        }
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .output()
            .expect("sysctl");
        assert!(out.status.success(), "enabling forwarding: {out:?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn is_root() -> bool {
    // The effective UID, from /proc (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
