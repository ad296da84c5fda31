use std::process::Command;

use ferrosync_tests::{bin, describe};

#[test]
fn relay_and_discovery_binaries_parse_their_arguments() {
    for name in ["ferrosync-relay", "ferrosync-discovery"] {
        let out = Command::new(bin(name))
            .arg("--help")
            .output()
            .expect("spawn");
        assert!(out.status.success(), "{name} --help: {}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("--listen"));
        let out = Command::new(bin(name))
            .args(["--listen", "not-an-address"])
            .output()
            .expect("spawn");
        assert_eq!(out.status.code(), Some(2), "{name}: {}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid socket address"));
    }
}
