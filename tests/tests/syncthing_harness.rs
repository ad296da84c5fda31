//! The Syncthing harness itself: a real Syncthing starts in a temporary
//! home, takes a folder over REST, and scans it.

use std::time::{Duration, Instant};

use ferrosync_tests::require;
use ferrosync_tests::syncthing::{write_files, FolderType, Options, Syncthing};

/// Syncthing starts on loopback, scans a new folder, and counts its files.
#[test]
fn syncthing_scans_a_folder_added_over_rest() {
    let Some(binary) = require("syncthing", "syncthing") else {
        return;
    };
    let st = Syncthing::start(Options {
        binary,
        ..Options::default()
    });
    assert_eq!(st.system_status()["myID"], st.device_id());
    assert!(st.tcp_address().is_some() && st.quic_address().is_some());

    let root = st.scratch().join("folder");
    std::fs::create_dir_all(&root).expect("mkdir folder");
    let files: [(&str, &[u8]); 4] = [
        ("a.txt", b"alpha"),
        ("b.bin", &[7u8; 200_000]),
        ("sub/c.txt", b"gamma"),
        ("sub/deeper/d.txt", b""),
    ];
    write_files(&root, &files);
    st.add_folder("harness", &root, &[], FolderType::SendReceive);
    st.rescan("harness");
    let status = st.wait_folder_idle("harness", Instant::now() + Duration::from_secs(60));
    assert_eq!(status["localFiles"], files.len(), "{status:#}");
    assert_eq!(status["localDirectories"], 2, "{status:#}");
    // Syncthing counts each directory as 128 bytes.
    assert_eq!(status["localBytes"], 200_010 + 2 * 128, "{status:#}");
    assert!(st.peak_rss_kib() > 0);
    assert!(st.stop().success(), "{}", st.log_tail(40));
}
