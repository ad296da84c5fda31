//! Progress bars for long operations, drawn from the daemon's status.
//! They appear only on a terminal; scripts get the final line alone.

use std::time::Duration;

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::client::Client;
use crate::api::dto::{FolderStatus, Status};

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>12} {bar:30} {bytes}/{total_bytes} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn update(bar: &ProgressBar, f: &FolderStatus) {
    match f.scan_progress {
        Some(p) => {
            bar.set_length(p.bytes_total.max(1));
            bar.set_position(p.bytes_done);
            bar.set_message(format!(
                "scanning: {}/{} files",
                p.files_done, p.files_total
            ));
        }
        None if f.state == "syncing" => {
            // The bar's length is the most ever needed; what is left shrinks.
            let total = bar.length().unwrap_or(0).max(f.need_bytes).max(1);
            bar.set_length(total);
            bar.set_position(total - f.need_bytes.min(total));
            bar.set_message(format!("syncing: {} files left", f.need_files));
        }
        None => bar.set_message(f.state.clone()),
    }
}

/// Polls one folder until scan `target` is done, with a progress bar.
pub fn wait_for_scan(client: &Client, folder: &str, target: u64) -> Result<FolderStatus> {
    let bar = ProgressBar::new(1)
        .with_style(bar_style())
        .with_prefix(folder.to_string());
    loop {
        // The server holds this request up to 30 s, or until the scan ends;
        // a short wait here keeps the bar moving.
        let st: Status = client.get("/rest/status")?;
        let f = st
            .folders
            .into_iter()
            .find(|f| f.id == folder)
            .ok_or_else(|| {
                anyhow::anyhow!("folder {folder:?} is not configured in the running daemon")
            })?;
        if f.scans_completed >= target {
            bar.finish_and_clear();
            return Ok(f);
        }
        update(&bar, &f);
        let _: FolderStatus =
            client.get(&format!("/rest/folders/{folder}/scan/{target}?wait_ms=200"))?;
    }
}

/// Shows every folder's progress until all are idle (or in error).
pub fn watch(client: &Client) -> Result<()> {
    let multi = MultiProgress::new();
    let mut bars: Vec<(String, ProgressBar)> = Vec::new();
    loop {
        let st: Status = client.get("/rest/status")?;
        let mut busy = false;
        for f in &st.folders {
            let bar = match bars.iter().find(|(id, _)| *id == f.id) {
                Some((_, b)) => b.clone(),
                None => {
                    let b = multi.add(
                        ProgressBar::new(1)
                            .with_style(bar_style())
                            .with_prefix(f.id.clone()),
                    );
                    bars.push((f.id.clone(), b.clone()));
                    b
                }
            };
            update(&bar, f);
            busy |= f.state == "scanning" || f.state == "syncing";
        }
        if !busy {
            for (_, b) in &bars {
                b.finish();
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
