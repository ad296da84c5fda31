//! Bad links (network namespaces joined by the link emulator of
//! `ferrosync_tests::links`): a file crosses each of the
//! issue's link shapes over TCP and over QUIC whole and without a stall,
//! and crosses a link whose cable is pulled every few seconds fetching at
//! most 10 % of its bytes twice. The short forms of what `bench-wan`
//! measures at 256 MiB beside Syncthing.

use std::time::Duration;

use ferrosync_tests::links::{Link, Shape, SHAPES};
use ferrosync_tests::transfer::{self, Transport};

/// A stretch without a byte more at the destination that counts as a
/// stall: far above what a lost packet costs (a few round trips).
const STALL: Duration = Duration::from_secs(10);

fn source(mib: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    transfer::make_source(dir.path(), mib << 20);
    dir
}

#[test]
fn a_file_crosses_every_link_shape_whole_without_a_stall() {
    let src = source(16);
    for shape in SHAPES {
        for t in [Transport::Tcp, Transport::Quic] {
            let Some(link) = Link::new(shape) else {
                return;
            };
            let r = transfer::ferrosync(&link, t, src.path(), Duration::from_secs(120), |_| {})
                .unwrap_or_else(|e| panic!("{}: {e}", shape.name));
            eprintln!(
                "{} over {}: {:.1} MB/s, longest stall {:?}, fetched {:?}",
                shape.name,
                t.scheme(),
                r.mb_per_s,
                r.longest_stall,
                r.fetched
            );
            assert!(
                r.longest_stall < STALL,
                "{} over {}: no progress for {:?}",
                shape.name,
                t.scheme(),
                r.longest_stall
            );
        }
    }
}

/// A link slow enough that the file is still on its way when the cable
/// is pulled (24 MiB at 20 Mbit/s: ten seconds).
const FLAPPING: Shape = Shape {
    name: "20 ms RTT, 20 Mbit/s",
    delay: Duration::from_millis(10),
    loss: 0.0,
    reorder: 0.0,
    rate_bps: 20_000_000,
};

#[test]
fn a_flapping_link_refetches_at_most_a_tenth() {
    let size = 24u64 << 20;
    let src = source(24);
    for t in [Transport::Tcp, Transport::Quic] {
        let Some(link) = Link::new(FLAPPING) else {
            return;
        };
        // Down for 1.5 s of every 4 s, from the first second on.
        let mut down = false;
        let mut flaps = 0;
        let r = transfer::ferrosync(&link, t, src.path(), Duration::from_secs(300), |elapsed| {
            let phase = elapsed.as_millis() % 4000;
            let want_down = elapsed > Duration::from_secs(1) && phase < 1500;
            if want_down != down {
                link.set_cut(want_down);
                down = want_down;
                flaps += usize::from(want_down);
            }
        });
        link.set_cut(false);
        let r = r.unwrap_or_else(|e| panic!("flapping, over {}: {e}", t.scheme()));
        let fetched = r.fetched.expect("pulled_bytes");
        eprintln!(
            "flapping link over {}: {flaps} cable pulls, {:.1} MB/s, fetched {fetched} bytes for {size}",
            t.scheme(),
            r.mb_per_s
        );
        assert!(flaps >= 2, "the link flapped {flaps} times only");
        assert!(
            fetched * 10 <= size * 11,
            "over {}: fetched {fetched} bytes for a {size}-byte file",
            t.scheme()
        );
    }
}
