//! `/metrics`: the daemon's state and counters in Prometheus' text format,
//! read from the same sources as `/rest/status` at scrape time. The names
//! are listed in `docs/operations.md`.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::index::LOCAL;

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    /// Writes one sample with `labels` (pairs of name and value).
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Starts a family: its HELP and TYPE lines.
fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    Family { out, name }
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The metrics page.
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
pub(super) async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let index_dir = s.home.index_path();
    let index_size = tokio::task::spawn_blocking(move || dir_size(&index_dir))
        .await
        .unwrap_or(0);
    let config = s.peers.config();
    let folders: Vec<_> = config
        .folders
        .iter()
        .filter_map(|f| s.folder(&f.id))
        .collect();
    let mut out = String::new();

    family(
        &mut out,
        "ferrosync_build_info",
        "gauge",
        "The daemon's version.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);

    let mut f = family(
        &mut out,
        "ferrosync_folder_state",
        "gauge",
        "1 for the folder's current state.",
    );
    for h in &folders {
        let state = h.status().state;
        for name in ["idle", "scanning", "syncing", "paused", "error"] {
            f.sample(
                &[("folder", &h.config.id), ("state", name)],
                u8::from(state.as_str() == name),
            );
        }
    }

    let counts: Vec<_> = folders
        .iter()
        .map(|h| {
            let local = h
                .index
                .device_meta(LOCAL)
                .map(|m| m.counts)
                .unwrap_or_default();
            let fm = h.index.folder_meta().unwrap_or_default();
            (h, local, fm)
        })
        .collect();
    let mut f = family(
        &mut out,
        "ferrosync_folder_files",
        "gauge",
        "Files in the folder: here (local), in the newest versions (global), still needed here (need).",
    );
    for (h, local, fm) in &counts {
        let id = h.config.id.as_str();
        f.sample(&[("folder", id), ("scope", "local")], local.files);
        f.sample(&[("folder", id), ("scope", "global")], fm.global.files);
        f.sample(&[("folder", id), ("scope", "need")], fm.need.files);
    }
    let mut f = family(
        &mut out,
        "ferrosync_folder_bytes",
        "gauge",
        "Bytes of the folder's files, by the same scopes as ferrosync_folder_files.",
    );
    for (h, local, fm) in &counts {
        let id = h.config.id.as_str();
        f.sample(&[("folder", id), ("scope", "local")], local.bytes);
        f.sample(&[("folder", id), ("scope", "global")], fm.global.bytes);
        f.sample(&[("folder", id), ("scope", "need")], fm.need.bytes);
    }
    type PerFolder = fn(&crate::model::folder::FolderHandle) -> u64;
    let per_folder: [(&'static str, &str, &str, PerFolder); 4] = [
        (
            "ferrosync_folder_scans_total",
            "counter",
            "Scans completed since the daemon started.",
            |h| h.status().scans_completed,
        ),
        (
            "ferrosync_folder_pulled_bytes_total",
            "counter",
            "Bytes received from peers for the folder.",
            |h| h.fetched.load(Ordering::Relaxed),
        ),
        (
            "ferrosync_folder_pull_errors",
            "gauge",
            "Items the last pull pass could not bring up to date.",
            |h| h.status().pull_errors.len() as u64,
        ),
        (
            "ferrosync_folder_conflicts_total",
            "counter",
            "Conflicts met pulling (each makes a conflict copy).",
            |h| h.conflicts.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, get) in per_folder {
        let mut f = family(&mut out, name, kind, help);
        for h in &folders {
            f.sample(&[("folder", &h.config.id)], get(h));
        }
    }

    let mut f = family(
        &mut out,
        "ferrosync_device_connected",
        "gauge",
        "1 while a configured device is connected.",
    );
    for d in &config.devices {
        f.sample(
            &[("device", &d.id.to_string())],
            u8::from(s.peers.session(&d.id).is_some()),
        );
    }
    type Counter = fn(&crate::peer::DeviceStats) -> u64;
    let per_device: [(&'static str, &str, Counter); 4] = [
        (
            "ferrosync_device_received_bytes_total",
            "Bytes received from the device.",
            |x| x.received_bytes.load(Ordering::Relaxed),
        ),
        (
            "ferrosync_device_sent_bytes_total",
            "Bytes sent to the device.",
            |x| x.sent_bytes.load(Ordering::Relaxed),
        ),
        (
            "ferrosync_device_received_messages_total",
            "BEP messages received from the device.",
            |x| x.received_messages.load(Ordering::Relaxed),
        ),
        (
            "ferrosync_device_sent_messages_total",
            "BEP messages sent to the device.",
            |x| x.sent_messages.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in per_device {
        let mut f = family(&mut out, name, "counter", help);
        for d in &config.devices {
            f.sample(&[("device", &d.id.to_string())], get(&s.peers.stats(&d.id)));
        }
    }

    let sessions = s.peers.sessions();
    let mut f = family(
        &mut out,
        "ferrosync_connections",
        "gauge",
        "Device sessions now, by the transport carrying them.",
    );
    for t in ["tcp", "quic", "relay"] {
        f.sample(
            &[("transport", t)],
            sessions
                .iter()
                .filter(|x| {
                    if t == "relay" {
                        x.relay.is_some()
                    } else {
                        x.relay.is_none() && x.transport == t
                    }
                })
                .count(),
        );
    }
    family(
        &mut out,
        "ferrosync_pending_devices",
        "gauge",
        "Unknown devices that asked to connect.",
    )
    .sample(&[], s.peers.pending().len());
    family(
        &mut out,
        "ferrosync_pending_folders",
        "gauge",
        "Folders offered to us that we do not share.",
    )
    .sample(&[], s.peers.pending_folders().len());
    family(
        &mut out,
        "ferrosync_index_size_bytes",
        "gauge",
        "The index database's size on disk.",
    )
    .sample(&[], index_size);

    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
