//! `bench-wan`: one file across long, lossy and reordering links (network
//! namespaces with `tc netem`), ferrosync and Syncthing side by side, each
//! over TCP and over QUIC, in the same run on the same links.
//!
//! ```text
//! cargo run --release -p ferrosync-tests --bin bench-wan -- [SIZE_MIB] [SHAPE ...]
//! ```
//!
//! SIZE_MIB defaults to 256; SHAPE is an index into
//! [`ferrosync_tests::links::SHAPES`] (default: all). Needs root. For each
//! shape and transport, each system is timed from the folder's addition on
//! the connected destination to the whole file there (see
//! `ferrosync_tests::transfer`); the table shows MB/s, the ratio, the
//! longest stall and the destination's peak RSS.

use std::time::Duration;

use ferrosync_tests::links::{Link, SHAPES};
use ferrosync_tests::transfer::{self, Transport};

const LIMIT: Duration = Duration::from_secs(1800);

fn main() {
    let mut args = std::env::args().skip(1);
    let size_mib: u64 = match args.next().map(|a| a.parse()) {
        None => 256,
        Some(Ok(n)) if n > 0 => n,
        _ => {
            eprintln!("usage: bench-wan [SIZE_MIB] [SHAPE_INDEX ...]");
            std::process::exit(2);
        }
    };
    let shapes: Vec<usize> = args
        .map(|a| match a.parse::<usize>() {
            Ok(i) if i < SHAPES.len() => i,
            _ => {
                eprintln!("bench-wan: no shape {a:?} (0..{})", SHAPES.len());
                std::process::exit(2);
            }
        })
        .collect();
    let shapes = if shapes.is_empty() {
        (0..SHAPES.len()).collect()
    } else {
        shapes
    };
    let syncthing = ferrosync_tests::bench::which("syncthing");
    let data = std::path::PathBuf::from(format!("/tmp/ferrosync-bench-wan-{size_mib}"));
    transfer::make_source(&data, size_mib << 20);
    println!(
        "{size_mib} MiB, one file; MB/s from the folder's addition on the connected destination to the whole file there"
    );
    println!(
        "{:<36} {:<5} {:>10} {:>10} {:>6} {:>22} {:>18}",
        "link",
        "via",
        "ferrosync",
        "syncthing",
        "ratio",
        "longest stall fs/st",
        "dst RSS fs/st MiB"
    );
    for i in shapes {
        let shape = SHAPES[i];
        for t in [Transport::Tcp, Transport::Quic] {
            let link = Link::new(shape).expect("bench-wan needs root and iproute2");
            let fs = transfer::ferrosync(&link, t, &data, LIMIT, |_| {});
            drop(link);
            let st = syncthing.as_ref().map(|bin| {
                let link = Link::new(shape).expect("lab");
                transfer::syncthing(bin, &link, t, &data, LIMIT)
            });
            let show = |r: &Result<transfer::Transfer, String>| match r {
                Ok(x) => format!("{:.1}", x.mb_per_s),
                Err(e) => {
                    eprintln!("{e}");
                    "failed".into()
                }
            };
            let (f, s) = (show(&fs), st.as_ref().map_or("-".into(), show));
            let ratio = match (&fs, &st) {
                (Ok(a), Some(Ok(b))) => format!("{:.2}x", a.mb_per_s / b.mb_per_s),
                _ => "-".into(),
            };
            let stall = |r: Option<&transfer::Transfer>| {
                r.map_or("-".into(), |x| {
                    format!("{:.1}", x.longest_stall.as_secs_f64())
                })
            };
            let rss = |r: Option<&transfer::Transfer>| {
                r.map_or("-".into(), |x| format!("{}", x.dst_rss_kib >> 10))
            };
            let (fo, so) = (fs.as_ref().ok(), st.as_ref().and_then(|r| r.as_ref().ok()));
            println!(
                "{:<36} {:<5} {:>10} {:>10} {:>6} {:>22} {:>18}",
                shape.name,
                t.scheme(),
                f,
                s,
                ratio,
                format!("{} / {} s", stall(fo), stall(so)),
                format!("{} / {}", rss(fo), rss(so)),
            );
            if let Some(x) = fo.and_then(|x| x.fetched) {
                eprintln!("  ferrosync fetched {x} bytes for {} MiB", size_mib);
            }
        }
    }
}
