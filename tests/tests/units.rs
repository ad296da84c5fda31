//! The systemd units in `docs/systemd/`: systemd's own checker finds
//! nothing to say about them, and their `ExecStart` lines run the real
//! binaries (the servers' with their data directory and ports moved to a
//! temporary directory and loopback): each server starts, prints what to
//! give devices, and stops cleanly on SIGTERM as systemd stops it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferrosync_tests::{bin, describe, poll, require};

const INSTALLED: &str = "/usr/local/bin/";

fn units() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/systemd");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("docs/systemd")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    v.sort();
    v
}

/// The unit's `ExecStart`: the program as installed, the built binary it
/// stands for, and the arguments.
fn exec_start(unit: &Path) -> (String, PathBuf, Vec<String>) {
    let text = std::fs::read_to_string(unit).expect("read unit");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{}: no ExecStart", unit.display()));
    let mut words = line.split_whitespace().map(str::to_string);
    let program = words.next().expect("a program");
    let name = program.strip_prefix(INSTALLED).unwrap_or_else(|| {
        panic!("{program}: not under {INSTALLED}, where docs/operations.md installs")
    });
    (program.clone(), bin(name), words.collect())
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let all = units();
    assert_eq!(all.len(), 4, "{all:?}");
    let Some(analyze) = require("systemd-analyze", "systemd") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for unit in all {
        let (installed, built, _) = exec_start(&unit);
        let text = std::fs::read_to_string(&unit).expect("read");
        let name = unit.file_name().expect("name").to_string_lossy();
        // A template is checked as an instance of itself.
        let name = name.replace("@.service", "@root.service");
        let copy = dir.path().join(&name);
        // systemd-analyze checks that the program exists.
        std::fs::write(
            &copy,
            text.replace(&installed, &built.display().to_string()),
        )
        .expect("write");
        let out = Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(&copy)
            .output()
            .expect("systemd-analyze");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            describe(&out)
        );
    }
}

/// The server's arguments with `/var/lib/…` moved to `data` and every
/// listen address to a free loopback port.
fn moved(args: &[String], data: &Path) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a.starts_with("/var/lib/") {
                data.display().to_string()
            } else if a.parse::<std::net::SocketAddr>().is_ok() {
                "127.0.0.1:0".to_string()
            } else {
                a.clone()
            }
        })
        .collect()
}

#[test]
fn the_server_units_start_their_servers_and_stop_on_sigterm() {
    for (unit, prints) in [
        ("ferrosync-relay.service", "relay://"),
        ("ferrosync-discovery.service", "https://"),
    ] {
        let path = units()
            .into_iter()
            .find(|p| p.ends_with(unit))
            .expect("unit");
        let (_, program, args) = exec_start(&path);
        let data = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(&program)
            .args(moved(&args, data.path()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert!(
            line.starts_with(prints),
            "{unit}: printed {line:?}, not {prints}…"
        );
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(term.success());
        let status = poll(Duration::from_secs(20), || child.try_wait().expect("wait"));
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{unit}: still running 20 s after SIGTERM")
        });
        assert!(status.success(), "{unit}: {status}");
    }
    for unit in ["ferrosync.service", "ferrosync@.service"] {
        let path = units()
            .into_iter()
            .find(|p| p.ends_with(unit))
            .expect("unit");
        let (_, program, args) = exec_start(&path);
        assert_eq!(args, ["run"], "{unit}");
        // The home is the user's default one, as systemd sets HOME.
        let out = Command::new(&program)
            .args(&args)
            .arg("--help")
            .output()
            .expect("spawn");
        assert!(out.status.success(), "{unit}: {}", describe(&out));
    }
}
