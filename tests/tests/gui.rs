//! The web GUI end to end: two real daemons, each driven through its own
//! GUI in headless Chromium by Playwright (`tests/gui/e2e.mjs`): pairing
//! by accepting the pending-device prompt, sharing a folder, a file
//! arriving with progress at 100 %, a conflict resolved from the conflicts
//! view, a version restored from the versions browser, ignores edited.
//! Screenshots of each main view go to `$FERROSYNC_GUI_SHOTS` (default: a
//! directory in the test's temporary home, removed afterwards).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferrosync_tests::{in_ci, poll, require, Device};

/// The script and its npm packages.
fn gui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gui")
}

/// Node, Chromium and `playwright-core` (installed by `scripts/test`).
fn prerequisites() -> bool {
    let tools = require("node", "nodejs").is_some() && require("chromium", "chromium").is_some();
    let playwright = gui_dir().join("node_modules/playwright-core").is_dir();
    if !playwright {
        assert!(
            !in_ci(),
            "playwright-core is required in CI: scripts/test runs npm ci in tests/gui"
        );
        eprintln!("SKIPPED: no tests/gui/node_modules (cd tests/gui && npm ci)");
    }
    tools && playwright
}

#[test]
fn the_gui_pairs_shares_syncs_resolves_restores_and_edits_ignores() {
    if !prerequisites() {
        return;
    }
    let (a, a_id) = Device::on_loopback("alpha");
    let (b, b_id) = Device::on_loopback("bravo");
    let (data_a, data_b) = (a.scratch().join("data"), b.scratch().join("data"));
    for d in [&data_a, &data_b] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let shots = std::env::var_os("FERROSYNC_GUI_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| a.scratch().join("shots"));
    std::fs::create_dir_all(&shots).expect("mkdir shots");
    let da = a.start();
    let db = b.start();
    let url = |d: &ferrosync_tests::daemon::Daemon| format!("{}/", d.api("").0);

    let mut child = Command::new("node")
        .arg(gui_dir().join("e2e.mjs"))
        .current_dir(gui_dir())
        .env("FS_A_URL", url(&da))
        .env("FS_B_URL", url(&db))
        .env("FS_A_ID", &a_id)
        .env("FS_B_ID", &b_id)
        .env("FS_A_LISTEN", da.listen_url("tcp"))
        .env("FS_B_LISTEN", db.listen_url("tcp"))
        .env("FS_A_DATA", &data_a)
        .env("FS_B_DATA", &data_b)
        .env("FS_SHOTS", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let finished = poll(Duration::from_secs(600), || child.try_wait().expect("wait"));
    if finished.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("node output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("e2e ok"),
        "the GUI test failed ({}):\n{text}\n--- A's log:\n{}\n--- B's log:\n{}",
        if finished.is_some() {
            "exited"
        } else {
            "timed out"
        },
        da.log(),
        db.log()
    );
    eprintln!("{text}screenshots in {}", shots.display());
    let taken = std::fs::read_dir(&shots).map_or(0, |d| d.count());
    assert!(taken >= 8, "{taken} screenshots in {}", shots.display());
}
