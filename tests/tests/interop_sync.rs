use std::fs;
use std::time::{Duration, Instant};

use ferrosync_tests::syncthing::{FolderType, Listen, Options, Syncthing};
use ferrosync_tests::trees::tree;
use ferrosync_tests::{require, Device};

/// A ferrosync device and a Syncthing device share a folder over one
/// transport; each starts with files of its own and both must end with the
/// union, byte for byte.
fn folder_converges_with_syncthing_over(listen: Listen, scheme: &str) {
    let Some(_) = require("syncthing", "syncthing") else {
        return;
    };
    let st = Syncthing::start(Options {
        listen,
        ..Options::default()
    });
    let (fs_dev, fs_id) = Device::on_loopback("ferro");
    let root = fs_dev.scratch().join("data");
    fs::create_dir_all(root.join("from-ferrosync")).expect("mkdir");
    for i in 0..10 {
        fs::write(
            root.join(format!("from-ferrosync/f{i}.txt")),
            format!("ferrosync file {i}"),
        )
        .expect("write");
    }
    let st_addr = match scheme {
        "tcp" => st.tcp_address(),
        _ => st.quic_address(),
    }
    .expect("syncthing address");
    fs_dev.ok(&[
        "device",
        "add",
        st.device_id(),
        "--name",
        "syncthing",
        "--address",
        &st_addr,
    ]);
    fs_dev.ok(&[
        "folder",
        "add",
        "shared",
        root.to_str().expect("utf-8"),
        "--share",
        st.device_id(),
    ]);
    let mut daemon = fs_dev.start();
    daemon.wait_scanned("shared");

    let st_root = st.scratch().join("shared");
    fs::create_dir_all(st_root.join("from-syncthing")).expect("mkdir");
    for i in 0..10 {
        fs::write(
            st_root.join(format!("from-syncthing/s{i}.txt")),
            format!("syncthing file {i}"),
        )
        .expect("write");
    }
    st.add_device(&fs_id, "ferro", &[&daemon.listen_url(scheme)]);
    st.add_folder("shared", &st_root, &[&fs_id], FolderType::SendReceive);

    let start = Instant::now();
    loop {
        let (a, b) = (tree(&root), tree(&st_root));
        if a == b && a.len() == 22 {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            panic!(
                "no convergence\nferrosync: {a:#?}\nsyncthing: {b:#?}\nferrosync log:\n{}\nsyncthing log:\n{}",
                daemon.log(),
                st.log_tail(80)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Syncthing has nothing to complain about: no warning names us.
    let short = &fs_id[..7];
    let complaints: Vec<String> = st
        .log_tail(2000)
        .lines()
        .filter(|l| l.contains("WARNING") && l.contains(short))
        .map(str::to_string)
        .collect();
    assert!(
        complaints.is_empty(),
        "Syncthing warned about us: {complaints:#?}"
    );
    daemon.stop();
}

#[test]
fn a_folder_converges_with_syncthing_over_tcp() {
    folder_converges_with_syncthing_over(Listen::Tcp, "tcp");
}

#[test]
fn a_folder_converges_with_syncthing_over_quic() {
    folder_converges_with_syncthing_over(Listen::Quic, "quic");
}
