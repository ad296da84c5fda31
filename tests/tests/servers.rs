use std::process::Command;

use ferrosync_tests::{bin, describe};

#[test]
fn the_relay_binary_refuses_bad_arguments_and_prints_its_uri() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = data.path().to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        Command::new(bin("ferrosync-relay"))
            .args(args)
            .output()
            .expect("spawn")
    };
    let out = run(&["--data", d, "run", "--help"]);
    assert!(out.status.success(), "{}", describe(&out));
    for flag in [
        "--listen",
        "--status",
        "--token",
        "--max-sessions",
        "--per-session-rate",
        "--global-rate",
    ] {
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
            vec!["--data", d, "run", "--max-sessions", "many"],
            "invalid digit",
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
    let out = run(&["--data", d, "id"]);
    assert!(out.status.success(), "{}", describe(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut child = Command::new(bin("ferrosync-relay"))
        .args(["--data", d, "run", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    ferrosync_tests::daemon::signal(&child, "TERM");
    assert!(child.wait().expect("wait").success());
    assert!(
        line.starts_with("relay://127.0.0.1:")
            && line.contains(&format!("/?id={id}&pingInterval=1m0s")),
        "{line}"
    );
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
