use std::process::Command;

use ferrosync_tests::{bin, describe};

#[test]
fn the_relay_binary_parses_its_arguments() {
    let out = Command::new(bin("ferrosync-relay"))
        .arg("--help")
        .output()
        .expect("spawn");
    assert!(out.status.success(), "--help: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--listen"));
    let out = Command::new(bin("ferrosync-relay"))
        .args(["--listen", "not-an-address"])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid socket address"));
}

#[test]
fn the_discovery_binary_refuses_bad_arguments_with_a_reason() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = data.path().to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        Command::new(bin("ferrosync-discovery"))
            .args(args)
            .output()
            .expect("spawn")
    };
    let out = run(&["--data", d, "run", "--help"]);
    assert!(out.status.success(), "{}", describe(&out));
    for flag in ["--listen", "--metrics", "--store", "--rate-limit"] {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(flag),
            "{flag}"
        );
    }
    for (args, says) in [
        (
            vec!["--data", d, "run", "--listen", "not-an-address"],
            "invalid socket address",
        ),
        (
            vec!["--data", d, "run", "--store", "mysql://x"],
            "expected `sled` or a `redis://HOST:PORT` URL",
        ),
        (vec!["run"], "--data"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            describe(&out)
        );
    }
    let out = run(&["--data", d, "run", "--rate-limit=-1"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--rate-limit"),
        "{}",
        describe(&out)
    );
}
