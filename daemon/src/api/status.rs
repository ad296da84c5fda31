//! `GET /rest/status` and the scan long-poll: what every folder and
//! device is doing, from the runners' status and the index counts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{dto, error, ApiState, Known};
use crate::index::LOCAL;
use crate::model::folder::FolderHandle;
use crate::peer::Peers;

/// What the daemon is doing: every folder and device.
#[utoipa::path(get, path = "/rest/status", tag = "status",
    responses((status = 200, body = dto::Status)))]
pub(super) async fn status(State(s): State<Arc<ApiState>>) -> Response {
    let config = s.peers.config();
    let mut folders = Vec::with_capacity(config.folders.len());
    for fc in &config.folders {
        let Some(h) = s.folder(&fc.id) else {
            continue;
        };
        match folder_status(&h, &s.peers) {
            Ok(f) => folders.push(f),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    let devices = config
        .devices
        .iter()
        .map(|d| {
            let session = s.peers.session(&d.id);
            let source = session.as_ref().map(|x| {
                match (x.outgoing, s.sources.get(&d.id)) {
                    (true, Some((_, src))) => src.as_str(),
                    (true, None) => "dialled",
                    (false, _) => "incoming",
                }
                .to_string()
            });
            let stats = s.peers.stats(&d.id);
            let (in_rate, out_rate) = stats.rates();
            dto::DeviceStatus {
                id: d.id.to_string(),
                name: d.name.clone(),
                connected: session.is_some(),
                addresses: d.addresses.clone(),
                in_bytes_total: stats.received_bytes.load(Ordering::Relaxed),
                out_bytes_total: stats.sent_bytes.load(Ordering::Relaxed),
                in_rate,
                out_rate,
                completion: completion(&s, &d.id),
                connected_since: session.as_ref().and_then(|x| {
                    x.since
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()
                        .map(|t| t.as_secs())
                }),
                address: session.as_ref().map(|x| x.address.to_string()),
                transport: session.as_ref().map(|x| x.transport.to_string()),
                relay: session.and_then(|x| x.relay),
                source,
            }
        })
        .collect();
    Json(dto::Status {
        device_id: s.device_id.to_string(),
        name: config.name.clone(),
        transport_prefer: config.transport.prefer.as_str().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        listening: s.listening.clone(),
        folders,
        devices,
        discovery: {
            let lan = s.lan.status();
            std::iter::once(dto::DiscoveryStatus {
                source: "lan".to_string(),
                server: None,
                ok: lan.ok,
                error: lan.error,
            })
            .chain(
                s.global
                    .status()
                    .into_iter()
                    .map(|(server, st)| dto::DiscoveryStatus {
                        source: "global".to_string(),
                        server: Some(server),
                        ok: st.ok,
                        error: st.error,
                    }),
            )
            .collect()
        },
        relays: s
            .relays
            .status()
            .into_iter()
            .map(|r| dto::RelayStatus {
                entry: r.entry,
                relay: r.relay,
                joined: r.joined,
                latency_ms: r.latency_ms,
                error: r.error,
            })
            .collect(),
        nat: {
            let n = s.nat.status();
            dto::NatStatus {
                enabled: config.nat,
                gateway: n.gateway,
                external: n.external,
                error: n.error,
            }
        },
        stun: {
            let st = s.stun.as_ref().map(|x| x.status()).unwrap_or_default();
            dto::StunStatus {
                servers: config.stun.clone(),
                external: st.external,
                error: st.error,
            }
        },
    })
    .into_response()
}

pub(super) fn folder_status(
    h: &FolderHandle,
    peers: &Peers,
) -> Result<dto::FolderStatus, crate::index::DbError> {
    let mut remote_sequences = std::collections::BTreeMap::new();
    for d in &h.config.devices {
        let n = peers.index.device_number(d)?;
        remote_sequences.insert(d.to_string(), h.index.device_meta(n)?.max_sequence);
    }
    let st = h.status();
    let local = h.index.device_meta(LOCAL)?;
    let fm = h.index.folder_meta()?;
    let p = &h.progress;
    let scanning = st.state == crate::model::folder::FolderState::Scanning;
    Ok(dto::FolderStatus {
        id: h.config.id.clone(),
        path: h.config.path.display().to_string(),
        kind: h.config.kind.as_str().to_string(),
        state: st.state.as_str().to_string(),
        error: match &st.state {
            crate::model::folder::FolderState::Error(e)
            | crate::model::folder::FolderState::NoSpace(e) => Some(e.clone()),
            _ => None,
        },
        hold: match &st.state {
            crate::model::folder::FolderState::Paused(Some(why)) => Some(why.clone()),
            _ if st.deletes_held > 0 => Some(format!(
                "waiting for confirmation: a remote update would delete {} of this folder's files; \
                 the rest keeps syncing (to let it: `ferrosync folder resume {} --accept-deletes`)",
                st.deletes_held, h.config.id
            )),
            _ => None,
        },
        deletes_held: st.deletes_held,
        local_files: local.counts.files,
        local_bytes: local.counts.bytes,
        local_directories: local.counts.directories,
        local_symlinks: local.counts.symlinks,
        local_deleted: local.counts.deleted,
        global_files: fm.global.files,
        global_bytes: fm.global.bytes,
        global_directories: fm.global.directories,
        need_files: fm.need.files + fm.need.directories + fm.need.symlinks + fm.need.deleted,
        need_bytes: fm.need.bytes,
        sequence: local.max_sequence,
        remote_sequences,
        errors: st.errors,
        pull_errors: st
            .pull_errors
            .iter()
            .map(|e| dto::PullError {
                name: e.name.clone(),
                kind: e.kind_str().to_string(),
                message: e.kind.to_string(),
            })
            .collect(),
        scans_completed: st.scans_completed,
        watch_scans: st.watch_scans,
        watch_scanned_paths: st.watch_scanned_paths,
        watch: st.watch.as_str().to_string(),
        watch_problem: st.watch.problem(),
        last_scan_ms: st.last_scan.map(|d| d.as_millis() as u64),
        pulled_bytes: h.fetched.load(Ordering::Relaxed),
        devices: h.config.devices.iter().map(ToString::to_string).collect(),
        versioning: h.config.versioning.to_string(),
        paused: h.config.paused,
        conflicts: h.conflicts.load(Ordering::Relaxed),
        scan_progress: scanning.then(|| dto::ScanProgress {
            files_total: p.files_total.load(Ordering::Relaxed),
            files_done: p.files_done.load(Ordering::Relaxed),
            bytes_total: p.bytes_total.load(Ordering::Relaxed),
            bytes_done: p.bytes_done.load(Ordering::Relaxed),
        }),
    })
}

/// `?wait_ms=` of the long poll.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct Wait {
    wait_ms: Option<u64>,
}

/// Long poll: answers the folder's status once it finished scan `n`, or
/// after `wait_ms` (at most 30 s), whichever comes first.
#[utoipa::path(get, path = "/rest/folders/{id}/scan/{n}", tag = "folders",
    params(("id" = String, Path, description = "The folder"),
           ("n" = u64, Path, description = "The scan number a rescan answered"),
           ("wait_ms" = Option<u64>, Query, description = "Longest wait, at most 30000")),
    responses((status = 200, body = dto::FolderStatus), (status = 404, body = dto::ApiError)))]
pub(super) async fn wait_scan(
    State(s): State<Arc<ApiState>>,
    Known(h): Known,
    Path((_id, n)): Path<(String, u64)>,
    Query(w): Query<Wait>,
) -> Response {
    let wait = std::time::Duration::from_millis(w.wait_ms.unwrap_or(30_000).min(30_000));
    let _ = tokio::time::timeout(wait, h.wait_for_scan(n)).await;
    match folder_status(&h, &s.peers) {
        Ok(f) => Json(f).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// How much of what is shared with `device` it has: its index's bytes
/// over the global bytes of those folders, in percent (100 with nothing
/// shared).
fn completion(s: &ApiState, device: &proto::DeviceId) -> f64 {
    let Ok(n) = s.peers.index.device_number(device) else {
        return 0.0;
    };
    let (mut have, mut global) = (0u64, 0u64);
    for h in s.folders.read().unwrap_or_else(|e| e.into_inner()).values() {
        if !h.config.devices.contains(device) {
            continue;
        }
        if let (Ok(m), Ok(fm)) = (h.index.device_meta(n), h.index.folder_meta()) {
            have += m.counts.bytes.min(fm.global.bytes);
            global += fm.global.bytes;
        }
    }
    if global == 0 {
        100.0
    } else {
        (have as f64 * 100.0 / global as f64).min(100.0)
    }
}
