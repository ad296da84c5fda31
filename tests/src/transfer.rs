//! One file across a shaped [`Link`]: a source device on `a` holding it,
//! a destination on `b` that the folder is added to once the two are
//! connected (the clock starts), until the file is whole under its own
//! name at the destination (the clock stops), then checked by SHA-256.
//! The same user action and end state for ferrosync and for Syncthing,
//! each over TCP or QUIC; used by the netem suite and `bench-wan`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::links::Link;
use crate::syncthing::{FolderType, Listen, Options, Syncthing};
use crate::Device;

/// Which transport carries the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP.
    Tcp,
    /// QUIC.
    Quic,
}

impl Transport {
    /// The URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

/// What one transfer took.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// From the folder's addition at the destination to the whole file
    /// there.
    pub time: Duration,
    /// Bytes of the file per second of `time`, in MB/s (10^6).
    pub mb_per_s: f64,
    /// The longest time the destination's bytes did not grow.
    pub longest_stall: Duration,
    /// Bytes the destination fetched from the source (ferrosync only:
    /// its `pulled_bytes`; at least the file's size).
    pub fetched: Option<u64>,
    /// Peak resident memory of the destination, KiB.
    pub dst_rss_kib: u64,
}

const FOLDER: &str = "f";
const NAME: &str = "big.bin";

/// Writes the file the transfers carry: `size` bytes that do not
/// compress, into `dir/NAME`.
pub fn make_source(dir: &Path, size: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join(NAME);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return;
    }
    let mut rng = crate::bench::Rng::new(size);
    crate::bench::write_random(&path, size, &mut rng).expect("write source");
}

fn sha256(path: &Path) -> [u8; 32] {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf).expect("read") {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    h.finalize().into()
}

/// Watches `dst/NAME` until it has `size` bytes under its own name,
/// calling `during` every look (to flap a link, say); returns the time
/// and the longest stretch in which the destination's bytes (temp file
/// or final) did not grow.
fn watch(
    dst: &Path,
    size: u64,
    t0: Instant,
    limit: Duration,
    mut during: impl FnMut(Duration),
) -> Result<(Duration, Duration), String> {
    let tmp = dst.join(format!(".syncthing.{NAME}.tmp"));
    let (mut last, mut last_at, mut stall) = (0u64, t0, Duration::ZERO);
    let whole = crate::poll(limit.saturating_sub(t0.elapsed()), || {
        let now = Instant::now();
        if std::fs::metadata(dst.join(NAME)).is_ok_and(|m| m.len() == size) {
            return Some((now - t0, stall.max(now - last_at)));
        }
        // Allocated bytes, not the length: both set the temp file's
        // length up front.
        let have = std::fs::metadata(&tmp)
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
            .unwrap_or(0);
        if have > last {
            stall = stall.max(now - last_at);
            (last, last_at) = (have, now);
        }
        during(now - t0);
        None
    });
    whole.ok_or_else(|| format!("not whole after {limit:?} ({last} bytes in the temp file)"))
}

fn port(url: &str) -> String {
    url.rsplit(':').next().expect("port").to_string()
}

/// ferrosync carries `src_dir/NAME` from `link.a` to `link.b` over
/// `transport`. `during` runs every look while it travels.
pub fn ferrosync(
    link: &Link,
    transport: Transport,
    src_dir: &Path,
    limit: Duration,
    during: impl FnMut(Duration),
) -> Result<Transfer, String> {
    let size = std::fs::metadata(src_dir.join(NAME))
        .map_err(|e| e.to_string())?
        .len();
    let (src, src_id) = Device::in_netns("source", &link.a);
    let (dst, dst_id) = Device::in_netns("destination", &link.b);
    src.ok(&["device", "add", &dst_id, "--name", "destination"]);
    src.ok(&[
        "folder",
        "add",
        FOLDER,
        src_dir.to_str().expect("utf-8"),
        "--share",
        &dst_id,
    ]);
    let mut ds = src.start();
    ds.wait_scanned(FOLDER);
    let url = format!(
        "{}://{}:{}",
        transport.scheme(),
        link.a.ip,
        port(&ds.listen_url(transport.scheme()))
    );
    dst.ok(&[
        "device",
        "add",
        &src_id,
        "--name",
        "source",
        "--address",
        &url,
    ]);
    let mut dd = dst.start();
    dd.wait_until("connected", Duration::from_secs(60), |s| {
        s["devices"]
            .as_array()
            .is_some_and(|v| v.iter().any(|d| d["connected"] == true))
    });
    let root = dst.scratch().join("f");
    let t0 = Instant::now();
    dst.ok(&[
        "folder",
        "add",
        FOLDER,
        root.to_str().expect("utf-8"),
        "--create",
        "--share",
        &src_id,
    ]);
    let watched = watch(&root, size, t0, limit, during);
    let (time, longest_stall) = watched.map_err(|e| {
        format!(
            "ferrosync over {}: {e}\n--- source log:\n{}\n--- destination log:\n{}",
            transport.scheme(),
            ds.log(),
            dd.log()
        )
    })?;
    if sha256(&root.join(NAME)) != sha256(&src_dir.join(NAME)) {
        return Err("ferrosync: the file arrived with other bytes".into());
    }
    let status = dd.wait_until("the pull recorded", Duration::from_secs(30), |s| {
        crate::daemon::folder(s, FOLDER).is_some_and(|f| f["need_files"] == 0)
    });
    let fetched = crate::daemon::folder(&status, FOLDER).and_then(|f| f["pulled_bytes"].as_u64());
    let dst_rss_kib = dd.peak_rss_kib().unwrap_or(0);
    dd.stop();
    ds.stop();
    Ok(Transfer {
        time,
        mb_per_s: size as f64 / time.as_secs_f64() / 1e6,
        longest_stall,
        fetched,
        dst_rss_kib,
    })
}

/// Syncthing carries `src_dir/NAME` from `link.a` to `link.b` over
/// `transport` (its binary: `binary`).
pub fn syncthing(
    binary: &Path,
    link: &Link,
    transport: Transport,
    src_dir: &Path,
    limit: Duration,
) -> Result<Transfer, String> {
    let size = std::fs::metadata(src_dir.join(NAME))
        .map_err(|e| e.to_string())?
        .len();
    let opts = |host: &crate::netns::Host| Options {
        binary: binary.to_path_buf(),
        listen: match transport {
            Transport::Tcp => Listen::Tcp,
            Transport::Quic => Listen::Quic,
        },
        netns: Some(host.clone()),
        ..Options::default()
    };
    let src = Syncthing::start(opts(&link.a));
    let dst = Syncthing::start(opts(&link.b));
    let address = |st: &Syncthing| match transport {
        Transport::Tcp => st.tcp_address(),
        Transport::Quic => st.quic_address(),
    };
    let (src_id, dst_id) = (src.device_id().to_string(), dst.device_id().to_string());
    let deadline = Instant::now() + Duration::from_secs(120);
    src.add_device(&dst_id, "destination", &[]);
    dst.add_device(&src_id, "source", &[&address(&src).expect("address")]);
    src.add_folder(FOLDER, src_dir, &[&dst_id], FolderType::SendReceive);
    src.wait_folder_idle(FOLDER, deadline);
    dst.wait_connected(&src_id, deadline);
    let root = dst.scratch().join("f");
    let t0 = Instant::now();
    dst.add_folder(FOLDER, &root, &[&src_id], FolderType::SendReceive);
    let (time, longest_stall) = watch(&root, size, t0, limit, |_| {}).map_err(|e| {
        format!(
            "syncthing over {}: {e}\n{}",
            transport.scheme(),
            dst.log_tail(40)
        )
    })?;
    if sha256(&root.join(NAME)) != sha256(&src_dir.join(NAME)) {
        return Err("syncthing: the file arrived with other bytes".into());
    }
    let dst_rss_kib = dst.peak_rss_kib();
    dst.stop();
    src.stop();
    Ok(Transfer {
        time,
        mb_per_s: size as f64 / time.as_secs_f64() / 1e6,
        longest_stall,
        fetched: None,
        dst_rss_kib,
    })
}
