//! The local control API: HTTP on loopback, authenticated by the API key
//! from the config (`X-API-Key`). It serves the CLI now and a web GUI later.
//! Nothing imports this module; the daemon hands it the handles it reads.

pub mod dto;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};

use crate::index::LOCAL;
use crate::model::folder::FolderHandle;
use crate::peer::Peers;

/// What the API reads and acts on.
pub struct ApiState {
    /// This device's ID.
    pub device_id: proto::DeviceId,
    /// The key clients must send.
    pub api_key: String,
    /// Running folders by ID (changed by reloads).
    pub folders: Arc<RwLock<HashMap<String, FolderHandle>>>,
    /// Sessions, pending devices, and the configuration in force.
    pub peers: Arc<Peers>,
    /// Asks the daemon to re-read and apply its configuration file.
    pub reload: mpsc::Sender<Reload>,
    /// The relay client.
    pub relays: Arc<crate::net::relay::listen::Relays>,
    /// The router's port mappings.
    pub nat: Arc<crate::net::nat::Nat>,
    /// The STUN client (none without a QUIC listener).
    pub stun: Option<Arc<crate::net::stun::Stun>>,
    /// Where dialled connections' addresses came from.
    pub sources: Arc<crate::connect::Sources>,
    /// The global discovery client.
    pub global: Arc<crate::discovery::global::Global>,
    /// LAN discovery.
    pub lan: Arc<crate::discovery::lan::Lan>,
}

/// A request to reload the configuration; the reply carries notes for the
/// user or why the new configuration was not applied.
pub struct Reload {
    /// A change the daemon makes to the saved configuration first (and
    /// saves); none: the file is re-read as it is.
    pub edit: Option<ConfigEdit>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<Vec<String>, String>>,
}

/// A change to the configuration, refused with a reason.
pub type ConfigEdit =
    Box<dyn FnOnce(&mut crate::config::Config) -> Result<(), crate::config::ConfigError> + Send>;

impl ApiState {
    fn folder(&self, id: &str) -> Option<FolderHandle> {
        self.folders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The folder, or the 404 answer saying it is not configured.
    fn known_folder(&self, id: &str) -> Result<FolderHandle, Box<Response>> {
        self.folder(id).ok_or_else(|| {
            Box::new(error(
                StatusCode::NOT_FOUND,
                format!("folder {id:?} is not configured"),
            ))
        })
    }
}

/// The answer to a request a paused folder cannot take.
fn paused(id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        format!("folder {id:?} is paused (`ferrosync folder resume {id}`)"),
    )
}

/// The header carrying the API key.
pub const KEY_HEADER: &str = "X-API-Key";

/// Builds the router.
pub fn router(state: Arc<ApiState>) -> Router {
    let key = state.api_key.clone();
    Router::new()
        .route("/rest/status", get(status))
        .route("/rest/folders/{id}/rescan", post(rescan))
        .route("/rest/folders/{id}/accept-deletes", post(accept_deletes))
        .route("/rest/folders/{id}/versions", get(versions))
        .route("/rest/folders/{id}/pause", post(pause))
        .route("/rest/folders/{id}/resume", post(resume))
        .route("/rest/doctor", get(doctor))
        .route("/rest/folders/{id}/override", post(override_changes))
        .route("/rest/folders/{id}/revert", post(revert_changes))
        .route("/rest/folders/{id}/restore", post(restore))
        .route("/rest/folders/{id}/scan/{n}", get(wait_scan))
        .route("/rest/folders/{id}/entries", get(entries))
        .route("/rest/pending", get(pending))
        .route("/rest/config/reload", post(reload))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let key = key.clone();
            async move {
                let ok = req
                    .headers()
                    .get(KEY_HEADER)
                    .is_some_and(|v| !key.is_empty() && v.as_bytes() == key.as_bytes());
                if ok {
                    next.run(req).await
                } else {
                    error(StatusCode::FORBIDDEN, "missing or wrong X-API-Key")
                }
            }
        }))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(dto::ApiError { error: msg.into() })).into_response()
}

async fn status(State(s): State<Arc<ApiState>>) -> Response {
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
            dto::DeviceStatus {
                id: d.id.to_string(),
                name: d.name.clone(),
                connected: session.is_some(),
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

fn folder_status(
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
        scan_progress: scanning.then(|| dto::ScanProgress {
            files_total: p.files_total.load(Ordering::Relaxed),
            files_done: p.files_done.load(Ordering::Relaxed),
            bytes_total: p.bytes_total.load(Ordering::Relaxed),
            bytes_done: p.bytes_done.load(Ordering::Relaxed),
        }),
    })
}

async fn rescan(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match s.folder(&id) {
        Some(h) if h.config.paused => paused(&id),
        Some(h) => Json(dto::RescanTicket {
            scan: h.request_rescan(),
        })
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("folder {id:?} is not configured"),
        ),
    }
}

/// Lets the deletions the folder's delete guard holds go on; answers the
/// scan to wait for, like a rescan.
async fn accept_deletes(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let h = match s.known_folder(&id) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    match h.accept_deletes() {
        Some(scan) => Json(dto::RescanTicket { scan }).into_response(),
        None => error(
            StatusCode::CONFLICT,
            format!("folder {id:?} holds no deletions"),
        ),
    }
}

/// `?folder=` and `&path=` of the doctor.
#[derive(serde::Deserialize)]
struct DoctorQuery {
    folder: Option<String>,
    path: Option<String>,
}

/// Why each folder (or the one asked for, or one file in it) is not in
/// sync.
async fn doctor(State(s): State<Arc<ApiState>>, Query(q): Query<DoctorQuery>) -> Response {
    let config = s.peers.config();
    let ids: Vec<String> = match &q.folder {
        Some(id) if s.folder(id).is_none() => {
            return error(
                StatusCode::NOT_FOUND,
                format!("folder {id:?} is not configured"),
            )
        }
        Some(id) => vec![id.clone()],
        None => config.folders.iter().map(|f| f.id.clone()).collect(),
    };
    if q.path.is_some() && q.folder.is_none() {
        return error(StatusCode::BAD_REQUEST, "a path needs its folder");
    }
    let handles: Vec<FolderHandle> = ids.iter().filter_map(|id| s.folder(id)).collect();
    let peers = s.peers.clone();
    let found = tokio::task::spawn_blocking(move || {
        handles
            .iter()
            .map(|h| crate::model::doctor::diagnose(h, &peers, q.path.as_deref()))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match found {
        Ok(Ok(d)) => Json(d).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Send-only: makes our version of every name the cluster changed win.
async fn override_changes(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    folder_op(&s, &id, crate::model::folder::Op::Override).await
}

/// Receive-only: drops our local changes for the global version.
async fn revert_changes(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    folder_op(&s, &id, crate::model::folder::Op::Revert).await
}

async fn folder_op(s: &ApiState, id: &str, op: crate::model::folder::Op) -> Response {
    let h = match s.known_folder(id) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    match h.run(op).await {
        Ok(changed) => Json(dto::Changed { changed }).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// `?path=` (and `&at=`, Unix seconds) of the versions calls.
#[derive(serde::Deserialize)]
struct VersionQuery {
    #[serde(default)]
    path: String,
    at: Option<i64>,
}

fn version_dto(v: crate::model::versioner::Version) -> dto::Version {
    let at =
        v.at.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
    dto::Version {
        at_local: crate::model::versioner::local_time(v.at),
        name: v.name,
        stored: v.stored,
        at,
        size: v.size,
    }
}

/// The versions kept of a file, or of everything under a path (all when
/// none is given), by name, oldest first.
async fn versions(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Response {
    let h = match s.known_folder(&id) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let root = h.config.path.clone();
    let listed = tokio::task::spawn_blocking(move || {
        crate::model::versioner::list(&root, q.path.trim_matches('/'))
    })
    .await;
    match listed {
        Ok(Ok(v)) => Json(v.into_iter().map(version_dto).collect::<Vec<_>>()).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing versions: {e}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Brings back the version of `path` kept last (at or before `at`); the
/// file there now is kept as a version first. The rescan it asks for
/// records the change, which then syncs out like any local edit.
async fn restore(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Response {
    let h = match s.known_folder(&id) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    if h.config.paused {
        return paused(&id);
    }
    let name = q.path.trim_matches('/').to_string();
    if name.is_empty()
        || crate::fs::is_internal(&name)
        || name
            .split('/')
            .any(|p| p == ".." || p == "." || p.is_empty())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a file name in the folder", q.path),
        );
    }
    let at =
        q.at.map(|t| std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64));
    let (root, versioning, index) = (h.config.path.clone(), h.config.versioning, h.index.clone());
    let done = tokio::task::spawn_blocking(move || {
        let v = crate::model::versioner::restore(
            &root,
            versioning,
            &name,
            at,
            std::time::SystemTime::now(),
        )?;
        if let Err(e) = index.unmap_version(&v.stored) {
            tracing::warn!(version = v.stored, "block map: {e}");
        }
        Ok::<_, String>(v)
    })
    .await;
    match done {
        Ok(Ok(v)) => Json(dto::Restored {
            version: version_dto(v),
            scan: h.request_rescan(),
        })
        .into_response(),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `?wait_ms=` of the long poll.
#[derive(serde::Deserialize)]
struct Wait {
    wait_ms: Option<u64>,
}

/// Long poll: answers the folder's status once it finished scan `n`, or
/// after `wait_ms` (at most 30 s), whichever comes first.
async fn wait_scan(
    State(s): State<Arc<ApiState>>,
    Path((id, n)): Path<(String, u64)>,
    Query(w): Query<Wait>,
) -> Response {
    let h = match s.known_folder(&id) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let wait = std::time::Duration::from_millis(w.wait_ms.unwrap_or(30_000).min(30_000));
    let _ = tokio::time::timeout(wait, h.wait_for_scan(n)).await;
    match folder_status(&h, &s.peers) {
        Ok(f) => Json(f).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `?blocks=` of the entries listing.
#[derive(serde::Deserialize)]
struct EntriesQuery {
    #[serde(default)]
    blocks: bool,
}

async fn entries(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<EntriesQuery>,
) -> Response {
    let h = match s.known_folder(&id) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let index = h.index.clone();
    let listed = tokio::task::spawn_blocking(move || {
        index
            .entries(LOCAL)
            .map(|e| e.map(|e| entry_dto(&e.info, q.blocks)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match listed {
        Ok(Ok(list)) => Json(list).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn entry_dto(f: &proto::message::FileInfo, blocks: bool) -> dto::Entry {
    use proto::message::FileKind;
    let hex = |h: &[u8]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    dto::Entry {
        name: f.name.to_string(),
        kind: match f.kind {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
        }
        .to_string(),
        size: f.size,
        deleted: f.deleted,
        invalid: f.invalid,
        permissions: f.permissions,
        sequence: f.sequence,
        block_size: f.block_size,
        block_count: f.blocks.len(),
        blocks: if blocks {
            f.blocks.iter().map(|b| hex(&b.hash)).collect()
        } else {
            Vec::new()
        },
        symlink_target: String::from_utf8_lossy(&f.symlink_target).into_owned(),
    }
}

async fn pending(State(s): State<Arc<ApiState>>) -> Response {
    let devices = s
        .peers
        .pending()
        .into_iter()
        .map(|p| dto::PendingDevice {
            id: p.id.to_string(),
            name: p.name,
            address: p.address,
            seen: p
                .seen
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
        .collect();
    let folders = s
        .peers
        .pending_folders()
        .into_iter()
        .map(|f| dto::PendingFolder {
            id: f.id,
            label: f.label,
            device: f.device.to_string(),
            seen: f
                .seen
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
        .collect();
    Json(dto::Pending { devices, folders }).into_response()
}

async fn reload(State(s): State<Arc<ApiState>>) -> Response {
    apply_config(&s, None).await
}

/// Pauses a folder: saved in the configuration, applied at once.
async fn pause(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    set_paused(&s, id, true).await
}

/// Resumes a paused folder: saved in the configuration, applied at once.
async fn resume(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    set_paused(&s, id, false).await
}

async fn set_paused(s: &ApiState, id: String, paused: bool) -> Response {
    if let Err(r) = s.known_folder(&id) {
        return *r;
    }
    let edit: ConfigEdit = Box::new(move |c| c.pause_folder(&id, paused).map(drop));
    apply_config(s, Some(edit)).await
}

/// Has the daemon make `edit` to its configuration (if any) and apply it.
async fn apply_config(s: &ApiState, edit: Option<ConfigEdit>) -> Response {
    let (reply, rx) = oneshot::channel();
    if s.reload.send(Reload { edit, reply }).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    }
    match rx.await {
        Ok(Ok(notes)) => Json(dto::Reloaded { notes }).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}
