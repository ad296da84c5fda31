//! The live set: small files written on the source one at a time, with no
//! rescan asked for; how soon each is complete on the destination. Both
//! daemons find the change with their file-system watcher: ferrosync at
//! its defaults, Syncthing with its watcher delay at 1 s (its default is
//! 10 s).

use super::*;

/// Files written, one after the other.
const LIVE_FILES: usize = 20;
/// How often the destination is looked at while a file travels.
const LIVE_POLL: Duration = Duration::from_millis(1);

/// One daemon pair's arrival times, sorted.
pub(super) struct LiveFigures {
    times: Vec<Duration>,
}

impl LiveFigures {
    fn quantile(&self, q: f64) -> f64 {
        let i = ((self.times.len() - 1) as f64 * q).round() as usize;
        self.times[i].as_secs_f64()
    }
}

/// A work directory on the data's disk with `src` (one seed file) and
/// room for `dst`; removed on drop.
fn live_work(dir: &Path) -> Result<(tempfile::TempDir, PathBuf, PathBuf), String> {
    let tmp = tempfile::Builder::new()
        .prefix("bench-sync-live-")
        .tempdir_in(dir)
        .map_err(|e| format!("tempdir in {}: {e}", dir.display()))?;
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    syncthing::create_folder_root(&src);
    std::fs::write(src.join("seed.txt"), b"seed").map_err(|e| format!("seed: {e}"))?;
    Ok((tmp, src, dst))
}

/// The `i`th file's content.
fn body(i: usize) -> String {
    format!("live edit number {i}\n")
}

/// Files and bytes the source holds after [`measure`].
fn expected() -> (u64, u64) {
    let bytes: usize = 4 + (0..LIVE_FILES).map(|i| body(i).len()).sum::<usize>();
    (1 + LIVE_FILES as u64, bytes as u64)
}

/// Writes the files one at a time; each is timed from its write (the
/// `write` call returning) to its full content on the destination.
fn measure(src: &Path, dst: &Path) -> Result<LiveFigures, String> {
    let mut times = Vec::with_capacity(LIVE_FILES);
    for i in 0..LIVE_FILES {
        let name = format!("live-{i}.txt");
        let body = body(i);
        std::fs::write(src.join(&name), &body).map_err(|e| format!("write {name}: {e}"))?;
        let t0 = Instant::now();
        loop {
            if std::fs::read(dst.join(&name)).is_ok_and(|b| b == body.as_bytes()) {
                times.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                return Err(format!("{name} did not arrive within 60 s"));
            }
            std::thread::sleep(LIVE_POLL);
        }
    }
    times.sort();
    Ok(LiveFigures { times })
}

pub(super) fn live_ferrosync(binary: &Path, dir: &Path) -> Result<LiveFigures, String> {
    let (_work, src_root, dst_root) = live_work(dir)?;
    let (pair, _) = FsPair::sync(
        &run(binary, &src_root, &dst_root, 1, 4, Start::Live),
        no_hook,
    )?;
    let figures = measure(&src_root, &dst_root).map_err(|e| pair.logs(&e))?;
    same_files(&src_root, &dst_root, expected().0, expected().1).map_err(|e| pair.logs(&e))?;
    pair.stop()?;
    Ok(figures)
}

pub(super) fn live_syncthing(binary: &Path, dir: &Path) -> Result<LiveFigures, String> {
    let (_work, src_root, dst_root) = live_work(dir)?;
    let (pair, _) = StPair::sync(
        &run(binary, &src_root, &dst_root, 1, 4, Start::Live),
        |_, _| (),
    );
    for st in [&pair.src, &pair.dst] {
        let path = format!("/rest/config/folders/{FOLDER}");
        let mut f = st.api("GET", &path, None);
        f["fsWatcherEnabled"] = true.into();
        f["fsWatcherDelayS"] = 1.into();
        st.put_config(&format!("folders/{FOLDER}"), &f);
        st.wait_folder_idle(FOLDER, Instant::now() + LIMIT);
    }
    let figures = measure(&src_root, &dst_root).unwrap_or_else(|e| pair.dst.fail(&e));
    if let Err(e) = same_files(&src_root, &dst_root, expected().0, expected().1) {
        pair.dst.fail(&e);
    }
    pair.stop();
    Ok(figures)
}

pub(super) fn live_table(fs: Option<&LiveFigures>, st: Option<&LiveFigures>) -> String {
    let rows = vec![
        Row::new(
            "write on source -> complete on dest, median [s]",
            3,
            |f: &LiveFigures| Some(f.quantile(0.5)),
        )
        .target("< 0.5", |v| v < 0.5),
        Row::new("  p95 [s]", 3, |f: &LiveFigures| Some(f.quantile(0.95))),
        Row::new("  fastest [s]", 3, |f: &LiveFigures| Some(f.quantile(0.0))),
        Row::new("  slowest [s]", 3, |f: &LiveFigures| Some(f.quantile(1.0))),
    ];
    let heading = format!(
        "(d) live: {LIVE_FILES} small files written on the source one after another, no \
         rescan asked for"
    );
    let notes = [
        "ratio = ferrosync / syncthing. Each file is timed from its write to its \
         full content on the destination (polled every 1 ms). ferrosync runs at its \
         defaults (watcher settle 150 ms); syncthing's watcher is on with its delay at \
         its minimum of 1 s (its default is 10 s)."
            .to_string(),
    ];
    bench::table(&heading, &rows, fs, st, &notes)
}
