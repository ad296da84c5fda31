//! `bench-scan`: how fast ferrosync and Syncthing scan the same data, side
//! by side, on a warm page cache.
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-scan -- \
//!     [--set large|small|all] [--dir DIR] [--daemon ferrosync|syncthing|both] \
//!     [--ferrosync PATH]
//! ```
//!
//! Data sets (seeded pseudo-random, incompressible; generated once under
//! `DIR`, default `/tmp/ferrosync-bench-data`, and reused while intact):
//! (a) `large`: 1 GiB in 4 files; (b) `small`: 20,000 files of 1–64 KiB in
//! 200 leaf directories. Every file is read once before the daemons run.
//!
//! For each daemon, on a fresh home with the data set as its only folder:
//! startup (spawn until its API answers), initial scan (spawn until the
//! folder is idle with every file counted; nothing subtracted), throughput,
//! for (b) a rescan with nothing changed (median of three), and the peak
//! RSS (`VmHWM`) of the daemon process. Syncthing runs when it is on `PATH`.
//!
//! Spawn → idle includes daemon startup (Syncthing self-tests for ~1.4 s)
//! and polling granularity, so each scan is also timed as the daemon itself
//! reports it, and the scan targets are judged on that figure:
//! - ferrosync: `last_scan_ms` of the folder in `GET /rest/status` (scan
//!   start to end inside the daemon, whole milliseconds); the rescan is
//!   `POST /rest/folders/{id}/rescan` plus the long poll
//!   `GET /rest/folders/{id}/scan/{n}`.
//! - Syncthing: the time between the `StateChanged` events into and out of
//!   `scanning`, read from `GET /rest/events`. Their `time` fields are used,
//!   not `duration`: 1.19 truncates the state-change instant to whole
//!   seconds, so `duration` overstates by up to 1 s. The events come from
//!   the default subscription, which exists from startup; one filtered
//!   with `events=` is only created on first request and would miss the
//!   scan. The rescan is the blocking `POST /rest/db/scan`.

use std::path::Path;
use std::time::{Duration, Instant};

use ferrosync_tests::bench::{self, median, rate, Args, DataSet, Home, Row, Set, FOLDER};
use ferrosync_tests::syncthing::{FolderSpec, FolderType, Options, Syncthing};
use serde_json::Value;

/// How long a daemon may take to answer its API after the spawn.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// How long one initial scan may take before the run counts as failed.
const SCAN_LIMIT: Duration = Duration::from_secs(600);
/// How many unchanged rescans are timed (the median is reported).
const RESCANS: usize = 3;

fn main() {
    let args = Args::from_env(USAGE, vec![Set::Large, Set::Small], |v| match v {
        "large" => Some(vec![Set::Large]),
        "small" => Some(vec![Set::Small]),
        "all" => Some(vec![Set::Large, Set::Small]),
        _ => None,
    });
    let syncthing = args.syncthing_binary();
    let ferrosync = args.ferrosync_binary();
    let mut report = String::new();
    for set in &args.sets {
        let data = DataSet::prepare_warm(*set, &args.dir);
        let fs = ferrosync.as_ref().and_then(|bin| {
            eprintln!("{}: running ferrosync", set.label());
            run_ferrosync(bin, &data)
                .map_err(|e| eprintln!("ferrosync failed on {}: {e}", set.label()))
                .ok()
        });
        let st = syncthing.as_ref().map(|bin| {
            eprintln!("{}: running syncthing", set.label());
            run_syncthing(bin, &data)
        });
        report.push_str(&table(&data, fs.as_ref(), st.as_ref()));
    }
    println!("{report}");
}

const USAGE: &str = "usage: bench-scan [--set large|small|all] [--dir DIR] \
[--daemon ferrosync|syncthing|both] [--ferrosync PATH]";

/// What one daemon measured on one data set.
struct Figures {
    /// Spawn until the API first answered.
    startup: Duration,
    /// Spawn until the folder was idle with every file counted.
    scan: Duration,
    /// The first scan's duration as the daemon reports it.
    scan_reported: Option<Duration>,
    /// Median client round trip of the unchanged rescans (small set only).
    rescan: Option<Duration>,
    /// Median daemon-reported duration of those rescans.
    rescan_reported: Option<Duration>,
    /// Peak RSS of the daemon process, KiB.
    rss_kib: u64,
}

fn run_syncthing(binary: &Path, data: &DataSet) -> Figures {
    let n = data.files.len();
    let st = Syncthing::start(Options {
        binary: binary.to_path_buf(),
        folders: vec![FolderSpec {
            id: FOLDER.to_string(),
            path: data.root.clone(),
            folder_type: FolderType::SendReceive,
        }],
        ..Options::default()
    });
    st.wait_folder(
        FOLDER,
        st.spawned_at() + SCAN_LIMIT,
        "idle with every file counted",
        |s| s["state"] == "idle" && s["localFiles"] == n,
    );
    let scan = st.spawned_at().elapsed();
    let mut events = StEvents::default();
    let scan_reported = events
        .next_scan(&st)
        .map_err(|e| eprintln!("syncthing: no daemon-reported scan time: {e}"))
        .ok();
    let (rescan, rescan_reported) = if data.set == Set::Small {
        let mut trips = Vec::new();
        let mut reported = Vec::new();
        for _ in 0..RESCANS {
            let t = Instant::now();
            st.rescan(FOLDER);
            trips.push(t.elapsed());
            match events.next_scan(&st) {
                Ok(d) => reported.push(d),
                Err(e) => eprintln!("syncthing: no daemon-reported rescan time: {e}"),
            }
        }
        // A median over fewer rescans than ran would hide the failures.
        let reported = (reported.len() == RESCANS).then(|| median(reported));
        (Some(median(trips)), reported)
    } else {
        (None, None)
    };
    let figures = Figures {
        startup: st.startup_time(),
        scan,
        scan_reported,
        rescan,
        rescan_reported,
        rss_kib: st.peak_rss_kib(),
    };
    st.stop();
    figures
}

/// Reads Syncthing's `StateChanged` events for [`FOLDER`] in order, so that
/// each call to [`next_scan`](Self::next_scan) times the next scan.
#[derive(Default)]
struct StEvents {
    /// The last event ID seen (`since=` of the next read).
    since: u64,
    /// `StateChanged` events of the folder not consumed yet.
    pending: Vec<Value>,
    /// When the folder last entered `scanning` (ns since the epoch).
    scanning_since: Option<i128>,
}

impl StEvents {
    /// How long the next scan stayed in `scanning`, from the times of the
    /// events into and out of that state; waits (long polls of 1 s, up to
    /// 30 s) for the event that ends it.
    fn next_scan(&mut self, st: &Syncthing) -> Result<Duration, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while !self.pending.is_empty() {
                let ev = self.pending.remove(0);
                let time = ev["time"]
                    .as_str()
                    .and_then(parse_rfc3339_ns)
                    .ok_or_else(|| format!("event without a readable time: {ev}"))?;
                let data = &ev["data"];
                if data["to"] == "scanning" {
                    self.scanning_since = Some(time);
                } else if data["from"] == "scanning" {
                    let start = self.scanning_since.take().ok_or_else(|| {
                        format!("scan end without its start (event buffer overrun?): {ev}")
                    })?;
                    let ns = u64::try_from(time - start)
                        .map_err(|_| format!("scan ends before it starts: {ev}"))?;
                    let took = Duration::from_nanos(ns);
                    // Shown for comparison: the field Syncthing means for
                    // this, quantised by its whole-second state clock.
                    eprintln!(
                        "syncthing: scanning -> {} after {:.3} s by event times; \
                         its `duration` field says {}",
                        data["to"].as_str().unwrap_or("?"),
                        took.as_secs_f64(),
                        data["duration"]
                    );
                    return Ok(took);
                }
            }
            if Instant::now() >= deadline {
                return Err("no scanning -> idle event within 30 s".to_string());
            }
            self.pull(st)?;
        }
    }

    /// One read of the event buffer after `since`; returns at once when
    /// there are events, else after Syncthing's 1 s timeout.
    fn pull(&mut self, st: &Syncthing) -> Result<(), String> {
        // No `events=` filter: that subscription would start now, while the
        // default one has buffered everything since startup.
        let path = format!("/rest/events?since={}&timeout=1", self.since);
        let list = st.api("GET", &path, None);
        for ev in list.as_array().ok_or("events are not a JSON array")? {
            let id = ev["id"].as_u64().ok_or("event without an id")?;
            if self.since == 0 && id > 1 {
                eprintln!("syncthing: events before {id} were dropped from the buffer");
            }
            self.since = self.since.max(id);
            if ev["type"] == "StateChanged" && ev["data"]["folder"] == FOLDER {
                self.pending.push(ev.clone());
            }
        }
        Ok(())
    }
}

/// An RFC 3339 time as Syncthing writes it (`2024-05-01T12:00:00.123Z`,
/// fraction of 0–9 digits, `Z` or `±hh:mm`), in ns since the Unix epoch.
fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset_s) = match rest.strip_suffix('Z') {
        Some(clock) => (clock, 0),
        None => {
            let at = rest.rfind(['+', '-'])?;
            let (clock, off) = rest.split_at(at);
            let (h, m) = off[1..].split_once(':')?;
            let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            (clock, if off.starts_with('-') { -secs } else { secs })
        }
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|v| v.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i128 = format!("{frac:0<9}").parse().ok()?;
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec - offset_s;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `last_scan_ms` of a folder object, as a duration.
fn last_scan(folder: &Value) -> Option<Duration> {
    folder["last_scan_ms"].as_u64().map(Duration::from_millis)
}

/// Sets ferrosync up through its CLI contract (`init`, `config set`,
/// `config get`, `folder add`), runs it, and times it through its HTTP API.
fn run_ferrosync(binary: &Path, data: &DataSet) -> Result<Figures, String> {
    let tmp = tempfile::Builder::new()
        .prefix("bench-ferrosync-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let home = Home::new(binary, tmp.path().join("home"));
    home.init("bench", "")?;
    let root = data.root.to_str().ok_or("data path is not UTF-8")?;
    home.cli(&["folder", "add", FOLDER, root])?;
    let key = home.api_key()?;

    let mut daemon = home.spawn(tmp.path().join("daemon.log"))?;
    let spawned_at = daemon.spawned_at();
    let api = daemon.api(&home, &key, spawned_at + STARTUP_LIMIT)?;
    let startup = spawned_at.elapsed();
    let n = data.files.len() as u64;
    let folder = daemon.wait(
        spawned_at + SCAN_LIMIT,
        "the folder to be idle with every file counted",
        || {
            let f = api.folder().ok()?;
            (f["state"] == "idle" && f["local_files"].as_u64() == Some(n)).then_some(f)
        },
    )?;
    let scan = spawned_at.elapsed();
    // `last_scan_ms` is the latest scan's; only while that is the first
    // does it time the initial scan.
    let scan_reported = match folder["scans_completed"].as_u64() {
        Some(1) => last_scan(&folder),
        other => {
            eprintln!(
                "ferrosync: {other:?} scans completed by the time it was idle; \
                 no daemon-reported initial scan time"
            );
            None
        }
    };
    let (rescan, rescan_reported) = if data.set == Set::Small {
        let mut trips = Vec::new();
        let mut reported = Vec::new();
        for _ in 0..RESCANS {
            let t = Instant::now();
            let f = api.rescan().map_err(|e| daemon.with_log(&e))?;
            trips.push(t.elapsed());
            reported.push(last_scan(&f).ok_or_else(|| format!("no last_scan_ms: {f}"))?);
        }
        (Some(median(trips)), Some(median(reported)))
    } else {
        (None, None)
    };
    let rss_kib = ferrosync_tests::syncthing::peak_rss_kib(daemon.pid())
        .ok_or_else(|| daemon.with_log("cannot read VmHWM"))?;
    daemon.stop()?;
    Ok(Figures {
        startup,
        scan,
        scan_reported,
        rescan,
        rescan_reported,
        rss_kib,
    })
}

fn rows(data: &DataSet) -> Vec<Row<'_, Figures>> {
    let files = data.files.len() as f64;
    let gb = data.bytes as f64 / 1e9;
    let mut rows = vec![
        Row::new("startup: spawn -> API answers [s]", 3, |f: &Figures| {
            Some(f.startup.as_secs_f64())
        }),
        Row::new(
            "initial scan: spawn -> idle, all counted [s]",
            3,
            |f: &Figures| Some(f.scan.as_secs_f64()),
        ),
        Row::new("initial scan: daemon-reported [s]", 3, |f: &Figures| {
            f.scan_reported.map(|d| d.as_secs_f64())
        }),
    ];
    match data.set {
        Set::Large => {
            rows.push(Row::new(
                "throughput: spawn -> idle [GB/s]",
                3,
                move |f: &Figures| rate(gb, f.scan),
            ));
            rows.push(Row::new(
                "  (informational) excl. startup [GB/s]",
                3,
                move |f: &Figures| rate(gb, f.scan.saturating_sub(f.startup)),
            ));
            rows.push(
                Row::new(
                    "throughput: daemon-reported [GB/s]",
                    3,
                    move |f: &Figures| rate(gb, f.scan_reported?),
                )
                .target(">= 3.0", |v| v >= 3.0),
            );
        }
        Set::Small => {
            rows.push(Row::new(
                "throughput: spawn -> idle [files/s]",
                0,
                move |f: &Figures| rate(files, f.scan),
            ));
            rows.push(Row::new(
                "  (informational) excl. startup [files/s]",
                0,
                move |f: &Figures| rate(files, f.scan.saturating_sub(f.startup)),
            ));
            rows.push(
                Row::new(
                    "throughput: daemon-reported [files/s]",
                    0,
                    move |f: &Figures| rate(files, f.scan_reported?),
                )
                .target(">= 25000", |v| v >= 25_000.0),
            );
            rows.push(
                Row::new(
                    "rescan, unchanged: client round trip [s]",
                    3,
                    |f: &Figures| f.rescan.map(|d| d.as_secs_f64()),
                )
                .target("< 0.3", |v| v < 0.3),
            );
            rows.push(Row::new(
                "rescan, unchanged: daemon-reported [s]",
                3,
                |f: &Figures| f.rescan_reported.map(|d| d.as_secs_f64()),
            ));
        }
    }
    let rss = Row::new("peak RSS (VmHWM) [MiB]", 1, |f: &Figures| {
        Some(f.rss_kib as f64 / 1024.0)
    });
    rows.push(if data.set == Set::Small {
        rss.target("< 60", |v| v < 60.0)
    } else {
        rss
    });
    rows
}

fn table(data: &DataSet, fs: Option<&Figures>, st: Option<&Figures>) -> String {
    let heading = format!(
        "{}: {} files, {:.1} MiB, {} directories, in {}",
        data.set.label(),
        data.files.len(),
        data.bytes as f64 / (1 << 20) as f64,
        data.directories,
        data.root.display()
    );
    let notes = [
        format!("ratio = ferrosync / syncthing; rescans: median of {RESCANS}"),
        "daemon-reported: ferrosync `last_scan_ms` (1 ms steps); syncthing \
         StateChanged event times into and out of `scanning`"
            .to_string(),
    ];
    bench::table(&heading, &rows(data), fs, st, &notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2000-03-01T00:00:01.5Z"),
            Some((951_868_800 + 1) * 1_000_000_000 + 500_000_000)
        );
        // The same instant written with an offset.
        assert_eq!(
            parse_rfc3339_ns("2026-11-21T07:17:09.584229796+02:00"),
            parse_rfc3339_ns("2026-11-21T05:17:09.584229796Z")
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-21T05:17:09.588389049Z")
                .zip(parse_rfc3339_ns("2026-11-21T05:17:09.584247752Z"))
                .map(|(a, b)| a - b),
            Some(4_141_297)
        );
        assert_eq!(parse_rfc3339_ns("2026-11-21 05:17:09Z"), None);
        assert_eq!(parse_rfc3339_ns("2026-11-21T05:17:09.1234567890Z"), None);
    }
}
