//! The delta set: a 256 MiB file synced, then 1 MiB in its middle changed
//! on the source; what crosses the wire and how soon it lands.

use super::*;

/// What one daemon pair measured on the delta set.
pub(super) struct DeltaFigures {
    /// The initial sync of the 256 MiB file.
    initial: SyncFigures,
    change: Change,
    /// ferrosync: how much more the destination reports in `pulled_bytes`.
    pulled: Option<u64>,
}

/// The change of the delta set, as it travelled.
struct Change {
    /// Rescan request sent until the destination file held the new content.
    land: Duration,
    /// Rescan request sent until the source reported the scan done.
    scan_done: Duration,
    /// TCP payload bytes the source sent (acknowledged) and received.
    sent: u64,
    received: u64,
}

/// A work directory on the data's disk with `src/delta.bin` (256 MiB,
/// seeded) and room for `dst`; removed on drop.
fn delta_work(dir: &Path) -> Result<(tempfile::TempDir, PathBuf, PathBuf), String> {
    let tmp = tempfile::Builder::new()
        .prefix("bench-sync-delta-")
        .tempdir_in(dir)
        .map_err(|e| format!("tempdir in {}: {e}", dir.display()))?;
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let mut rng = Rng::new(0xde17_a000);
    bench::write_random(&src.join(DELTA_FILE), DELTA_SIZE, &mut rng)
        .map_err(|e| format!("writing the delta file: {e}"))?;
    syncthing::create_folder_root(&src);
    Ok((tmp, src, dst))
}

/// Overwrites the changed MiB in place (same size, same inode) and returns
/// the SHA-256 the whole file now has.
fn write_change(file: &Path) -> Result<Vec<u8>, String> {
    let mut change = vec![0u8; CHANGE_LEN];
    Rng::new(0xc4a9_6e00).fill(&mut change);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| format!("open {}: {e}", file.display()))?;
    f.write_all_at(&change, CHANGE_AT)
        .map_err(|e| format!("write {}: {e}", file.display()))?;
    drop(f);
    sha256(file)
}

fn sha256(path: &Path) -> Result<Vec<u8>, String> {
    let mut f = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buf[..n]);
    }
}

/// What identifies one version of a file on disk: a puller that writes a
/// temporary file and renames it changes the inode, and the mtime is the
/// source's new one.
fn identity(path: &Path) -> Option<(u64, i64, i64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
}

/// Makes the change on the source, has `rescan` (run on its own thread,
/// returning when the source's scan is done) request a scan, and times the
/// new content's arrival on the destination; counts the bytes on the
/// connection between the source (TCP port `src_port`) and the destination
/// (`dst_port`).
fn measure_change(
    src_file: &Path,
    dst_file: &Path,
    (src_port, dst_port): (u16, u16),
    rescan: impl FnOnce() -> Result<(), String> + Send,
) -> Result<Change, String> {
    let before = tcp_counters(src_port, dst_port)?;
    let mut seen = identity(dst_file);
    let want = write_change(src_file)?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    let (land, scan_done) = std::thread::scope(|s| {
        let mut scan = Some(s.spawn(move || rescan().map(|()| Instant::now())));
        let mut scan_done = None;
        // Joins the rescan thread: its end, or why it failed.
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<Instant, String>>| {
            h.join()
                .map_err(|_| "the rescan panicked (see above)".to_string())?
        };
        let land = loop {
            let now = identity(dst_file);
            if now.is_some() && now != seen {
                let at = Instant::now();
                if sha256(dst_file)? == want {
                    break at;
                }
                seen = now;
            }
            // A failed rescan ends the wait at once; a finished one does
            // not, as the change may still be on its way.
            if let Some(h) = scan.take_if(|h| h.is_finished()) {
                scan_done = Some(join(h)?);
            }
            if Instant::now() >= deadline {
                return Err("the change did not arrive within 60 s".to_string());
            }
            std::thread::sleep(LAND_POLL);
        };
        let done = match (scan, scan_done) {
            (Some(h), _) => join(h)?,
            (None, Some(done)) => done,
            (None, None) => return Err("the rescan thread vanished".to_string()),
        };
        Ok::<_, String>((land - t0, done.saturating_duration_since(t0)))
    })?;
    let after = settled_counters(src_port, dst_port)?;
    if before.keys().ne(after.keys()) || after.is_empty() {
        return Err(format!(
            "the connection changed during the measurement: before {before:?}, after {after:?}"
        ));
    }
    let sum =
        |m: &BTreeMap<String, (u64, u64)>| m.values().fold((0, 0), |(s, r), (a, b)| (s + a, r + b));
    let (b, a) = (sum(&before), sum(&after));
    Ok(Change {
        land,
        scan_done,
        sent: a.0 - b.0,
        received: a.1 - b.1,
    })
}

/// The source's end of each TCP connection between the two daemons (the
/// one with the source's listen port as its local port, or the
/// destination's as its peer port), keyed by `local peer`, with its
/// `(bytes_acked, bytes_received)`.
fn tcp_counters(src_port: u16, dst_port: u16) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let filter = format!("( sport = :{src_port} or dport = :{dst_port} )");
    let out = Command::new("ss")
        .args(["-tinHO", "state", "established", &filter])
        .output()
        .map_err(|e| format!("running ss (iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!("ss: {}", ferrosync_tests::describe(&out)));
    }
    let mut sockets = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // With a state filter: Recv-Q Send-Q Local Peer, then the details.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(peer)) = (fields.get(2), fields.get(3)) else {
            continue;
        };
        let counter = |name: &str| {
            fields
                .iter()
                .find_map(|f| f.strip_prefix(name)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // bytes_acked counts the SYN as one byte on both readings: the
        // differences are exact.
        sockets.insert(
            format!("{local} {peer}"),
            (counter("bytes_acked:"), counter("bytes_received:")),
        );
    }
    Ok(sockets)
}

/// The counters once they have stopped moving for [`SETTLE`], so that the
/// acknowledgements and the index update that follow the data are in.
fn settled_counters(src_port: u16, dst_port: u16) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = tcp_counters(src_port, dst_port)?;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = tcp_counters(src_port, dst_port)?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= SETTLE || Instant::now() >= deadline {
            return Ok(last);
        }
    }
}

pub(super) fn delta_ferrosync(binary: &Path, dir: &Path) -> Result<DeltaFigures, String> {
    let (_work, src_root, dst_root) = delta_work(dir)?;
    let (pair, initial) = FsPair::sync(
        &run(binary, &src_root, &dst_root, 1, DELTA_SIZE, Start::Live),
        no_hook,
    )?;
    let pulled = |api: &Api| api.folder().ok()?["pulled_bytes"].as_u64();
    let pulled_before = pulled(&pair.dst_api);
    let src_api = pair.src_api.clone();
    let change = measure_change(
        &src_root.join(DELTA_FILE),
        &dst_root.join(DELTA_FILE),
        (pair.src_port, pair.dst_port),
        move || src_api.rescan().map(drop),
    )
    .map_err(|e| pair.logs(&e))?;
    let pulled_after = pulled(&pair.dst_api);
    same_content(&src_root, &dst_root).map_err(|e| pair.logs(&e))?;
    pair.stop()?;
    Ok(DeltaFigures {
        initial,
        change,
        pulled: pulled_after.zip(pulled_before).map(|(a, b)| a - b),
    })
}

pub(super) fn delta_syncthing(binary: &Path, dir: &Path) -> Result<DeltaFigures, String> {
    let (_work, src_root, dst_root) = delta_work(dir)?;
    let (pair, initial) = StPair::sync(
        &run(binary, &src_root, &dst_root, 1, DELTA_SIZE, Start::Live),
        |_, _| (),
    );
    let src = &pair.src;
    let change = measure_change(
        &src_root.join(DELTA_FILE),
        &dst_root.join(DELTA_FILE),
        pair.ports()?,
        // The blocking `POST /rest/db/scan` returns when the scan is done.
        move || {
            src.rescan(FOLDER);
            Ok(())
        },
    );
    let change = change.unwrap_or_else(|e| pair.dst.fail(&e));
    if let Err(e) = same_content(&src_root, &dst_root) {
        pair.dst.fail(&e);
    }
    pair.stop();
    Ok(DeltaFigures {
        initial,
        change,
        pulled: None,
    })
}

/// Checks that the delta file is the same on both sides, by SHA-256.
fn same_content(src_root: &Path, dst_root: &Path) -> Result<(), String> {
    let (a, b) = (
        sha256(&src_root.join(DELTA_FILE))?,
        sha256(&dst_root.join(DELTA_FILE))?,
    );
    if a != b {
        return Err("the delta file differs between source and destination".to_string());
    }
    same_files(src_root, dst_root, 1, DELTA_SIZE)?;
    eprintln!("checked: the SHA-256 of {DELTA_FILE} is the same on both sides");
    Ok(())
}

pub(super) fn delta_table(fs: Option<&DeltaFigures>, st: Option<&DeltaFigures>) -> String {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let rows = vec![
        Row::new(
            "initial sync of the 256 MiB file [s]",
            3,
            |f: &DeltaFigures| Some(f.initial.sync.as_secs_f64()),
        ),
        Row::new(
            "change: rescan request -> new content on dest [s]",
            3,
            |f: &DeltaFigures| Some(f.change.land.as_secs_f64()),
        )
        .target("< 0.5", |v| v < 0.5),
        Row::new(
            "  rescan request -> source scan done [s]",
            3,
            |f: &DeltaFigures| Some(f.change.scan_done.as_secs_f64()),
        ),
        Row::new(
            "  source scan done -> new content on dest [s]",
            3,
            |f: &DeltaFigures| {
                Some(
                    f.change
                        .land
                        .saturating_sub(f.change.scan_done)
                        .as_secs_f64(),
                )
            },
        ),
        Row::new(
            "change: TCP payload, both directions [MiB]",
            3,
            move |f: &DeltaFigures| Some(mib(f.change.sent + f.change.received)),
        )
        .target("<= 1.2", |v| v <= 1.2),
        Row::new(
            "  source -> destination [MiB]",
            3,
            move |f: &DeltaFigures| Some(mib(f.change.sent)),
        ),
        Row::new(
            "  destination -> source [MiB]",
            3,
            move |f: &DeltaFigures| Some(mib(f.change.received)),
        ),
        Row::new(
            "  (ferrosync) destination's pulled_bytes [MiB]",
            3,
            move |f: &DeltaFigures| f.pulled.map(mib),
        ),
    ];
    let heading = format!(
        "(c) delta: one {} MiB file; then {} MiB at offset {} MiB overwritten in place on \
         the source, and a rescan requested there",
        DELTA_SIZE >> 20,
        CHANGE_LEN >> 20,
        CHANGE_AT >> 20
    );
    let notes = [
        "ratio = ferrosync / syncthing. The change is timed from the rescan request \
         (so the source's rehash of the file is inside) to the destination file's \
         replacement, polled every 1 ms and checked by SHA-256. ferrosync's rescan returns \
         a ticket at once and is followed by the long poll; syncthing's blocks until \
         its scan is done."
            .to_string(),
        format!(
            "TCP payload: changes of bytes_acked / bytes_received of the source's end of \
             the daemons' connection (`ss -tinO`), read once unchanged for {} ms; TLS \
             records, BEP headers, index update and block requests included.",
            SETTLE.as_millis()
        ),
    ];
    bench::table(&heading, &rows, fs, st, &notes)
}
