//! The folder calls: configure folders, act on them (rescan, pause,
//! override, restore, …) and look into them (entries, what is needed,
//! versions, ignore patterns, the doctor).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{bad_request, blocking, dto, edit_config, error, paused, ApiState, ConfigEdit, Known};
use crate::config::{FolderType, Versioning};
use crate::index::LOCAL;
use crate::model::folder::FolderHandle;

#[utoipa::path(post, path = "/rest/folders/{id}/rescan", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::RescanTicket), (status = 404, body = dto::ApiError), (status = 409, body = dto::ApiError)))]
pub(super) async fn rescan(Known(h): Known) -> Response {
    if h.config.paused {
        return paused(&h.config.id);
    }
    Json(dto::RescanTicket {
        scan: h.request_rescan(),
    })
    .into_response()
}

/// Lets the deletions the folder's delete guard holds go on; answers the
/// scan to wait for, like a rescan.
#[utoipa::path(post, path = "/rest/folders/{id}/accept-deletes", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::RescanTicket), (status = 404, body = dto::ApiError), (status = 409, body = dto::ApiError)))]
pub(super) async fn accept_deletes(Known(h): Known) -> Response {
    let id = h.config.id.clone();
    match h.accept_deletes() {
        Some(scan) => Json(dto::RescanTicket { scan }).into_response(),
        None => error(
            StatusCode::CONFLICT,
            format!("folder {id:?} holds no deletions"),
        ),
    }
}

/// `?folder=` and `&path=` of the doctor.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct DoctorQuery {
    folder: Option<String>,
    path: Option<String>,
}

/// Why each folder (or the one asked for, or one file in it) is not in
/// sync.
#[utoipa::path(get, path = "/rest/doctor", tag = "folders",
    params(DoctorQuery),
    responses((status = 200, body = Vec<dto::Diagnosis>), (status = 400, body = dto::ApiError), (status = 404, body = dto::ApiError)))]
pub(super) async fn doctor(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<DoctorQuery>,
) -> Response {
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

/// Rehashes the folder and compares it with the index, entry by entry and
/// file by file (`folder verify`); read-only, and as slow as a full scan.
#[utoipa::path(get, path = "/rest/folders/{id}/verify", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::Verified), (status = 404, body = dto::ApiError), (status = 500, body = dto::ApiError)))]
pub(super) async fn verify(State(s): State<Arc<ApiState>>, Known(h): Known) -> Response {
    let ignores = match s.peers.ignores(&h.config) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let found = tokio::task::spawn_blocking(move || {
        crate::model::verify::verify(&h.config.path, &h.index, &ignores)
    })
    .await;
    match found {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Send-only: makes our version of every name the cluster changed win.
#[utoipa::path(post, path = "/rest/folders/{id}/override", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::Changed), (status = 404, body = dto::ApiError), (status = 409, body = dto::ApiError)))]
pub(super) async fn override_changes(Known(h): Known) -> Response {
    folder_op(&h, crate::model::folder::Op::Override).await
}

/// Receive-only: drops our local changes for the global version.
#[utoipa::path(post, path = "/rest/folders/{id}/revert", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::Changed), (status = 404, body = dto::ApiError), (status = 409, body = dto::ApiError)))]
pub(super) async fn revert_changes(Known(h): Known) -> Response {
    folder_op(&h, crate::model::folder::Op::Revert).await
}

async fn folder_op(h: &FolderHandle, op: crate::model::folder::Op) -> Response {
    match h.run(op).await {
        Ok(changed) => Json(dto::Changed { changed }).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// `?path=` (and `&at=`, Unix seconds) of the versions calls.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct VersionQuery {
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
#[utoipa::path(get, path = "/rest/folders/{id}/versions", tag = "folders",
    params(("id" = String, Path, description = "The folder"), VersionQuery),
    responses((status = 200, body = Vec<dto::Version>), (status = 404, body = dto::ApiError)))]
pub(super) async fn versions(Known(h): Known, Query(q): Query<VersionQuery>) -> Response {
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
#[utoipa::path(post, path = "/rest/folders/{id}/restore", tag = "folders",
    params(("id" = String, Path, description = "The folder"), VersionQuery),
    responses((status = 200, body = dto::Restored), (status = 400, body = dto::ApiError), (status = 404, body = dto::ApiError), (status = 409, body = dto::ApiError)))]
pub(super) async fn restore(Known(h): Known, Query(q): Query<VersionQuery>) -> Response {
    let id = h.config.id.clone();
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

/// `?blocks=` of the entries listing.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct EntriesQuery {
    #[serde(default)]
    blocks: bool,
}

#[utoipa::path(get, path = "/rest/folders/{id}/entries", tag = "folders",
    params(("id" = String, Path, description = "The folder"), EntriesQuery),
    responses((status = 200, body = Vec<dto::Entry>), (status = 404, body = dto::ApiError)))]
pub(super) async fn entries(Known(h): Known, Query(q): Query<EntriesQuery>) -> Response {
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

/// Pauses a folder: saved in the configuration, applied at once.
#[utoipa::path(post, path = "/rest/folders/{id}/pause", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::Reloaded), (status = 404, body = dto::ApiError)))]
pub(super) async fn pause(State(s): State<Arc<ApiState>>, Known(h): Known) -> Response {
    set_paused(&s, h.config.id.clone(), true).await
}

/// Resumes a paused folder: saved in the configuration, applied at once.
#[utoipa::path(post, path = "/rest/folders/{id}/resume", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::Reloaded), (status = 404, body = dto::ApiError)))]
pub(super) async fn resume(State(s): State<Arc<ApiState>>, Known(h): Known) -> Response {
    set_paused(&s, h.config.id.clone(), false).await
}

async fn set_paused(s: &ApiState, id: String, paused: bool) -> Response {
    let edit: ConfigEdit = Box::new(move |c| c.pause_folder(&id, paused).map(drop));
    super::apply_config(s, Some(edit)).await
}

/// The configured folders.
#[utoipa::path(get, path = "/rest/folders", tag = "folders",
    responses((status = 200, body = Vec<dto::FolderConfig>)))]
pub(super) async fn list(State(s): State<Arc<ApiState>>) -> Response {
    let list: Vec<dto::FolderConfig> = s
        .peers
        .config()
        .folders
        .iter()
        .map(|f| dto::FolderConfig {
            id: f.id.clone(),
            path: f.path.display().to_string(),
            kind: f.kind.as_str().to_string(),
            devices: f.devices.iter().map(ToString::to_string).collect(),
            versioning: f.versioning.to_string(),
            paused: f.paused,
        })
        .collect();
    Json(list).into_response()
}

/// A folder type by name, with or without its dashes (`send-only`,
/// `sendonly`).
fn parse_kind(kind: Option<&str>) -> Result<Option<FolderType>, Box<Response>> {
    use clap::ValueEnum;
    kind.map(|k| {
        let plain = k.replace('-', "");
        FolderType::value_variants()
            .iter()
            .copied()
            .find(|v| v.as_str().replace('-', "") == plain)
            .ok_or_else(|| {
                bad_request(format!(
                    "{k:?} is not a folder type (send-receive, send-only, receive-only)"
                ))
            })
    })
    .transpose()
}

fn parse_versioning(v: Option<&str>) -> Result<Option<Versioning>, Box<Response>> {
    v.map(|v| {
        v.parse::<Versioning>()
            .map_err(|e| bad_request(e.to_string()))
    })
    .transpose()
}

fn parse_devices(ids: &[String]) -> Result<Vec<proto::DeviceId>, Box<Response>> {
    ids.iter().map(|d| super::parse_device(d)).collect()
}

/// Shares a directory as a folder (as `ferrosync folder add`): the
/// directory is created if asked, marked, and the folder starts.
#[utoipa::path(post, path = "/rest/folders", tag = "folders",
    request_body = dto::NewFolder,
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn add(State(s): State<Arc<ApiState>>, Json(f): Json<dto::NewFolder>) -> Response {
    let kind = match parse_kind(f.kind.as_deref()) {
        Ok(k) => k.unwrap_or(FolderType::SendReceive),
        Err(r) => return *r,
    };
    let versioning = match parse_versioning(f.versioning.as_deref()) {
        Ok(v) => v.unwrap_or_default(),
        Err(r) => return *r,
    };
    let devices = match parse_devices(&f.devices) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    add_folder(&s, f.id, f.path.into(), f.create, kind, devices, versioning).await
}

/// Adds a folder: checked against the configuration first, so bad input
/// leaves no directory or marker behind.
pub(super) async fn add_folder(
    s: &ApiState,
    id: String,
    path: std::path::PathBuf,
    create: bool,
    kind: FolderType,
    devices: Vec<proto::DeviceId>,
    versioning: Versioning,
) -> Response {
    if !path.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{} is not an absolute path", path.display()),
        );
    }
    let mut check = (*s.peers.config()).clone();
    let created = create && !path.exists();
    if created {
        if let Err(e) = std::fs::create_dir_all(&path) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("creating {}: {e}", path.display()),
            );
        }
    }
    if let Err(e) = check.add_folder(&id, &path, kind, &devices) {
        if created {
            let _ = std::fs::remove_dir(&path);
        }
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    if let Err(e) = crate::fs::ensure_marker(&path) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("creating the folder marker in {}: {e}", path.display()),
        );
    }
    edit_config(s, move |c| {
        c.add_folder(&id, &path, kind, &devices)?;
        c.set_versioning(&id, versioning).map(drop)
    })
    .await
}

/// Changes a folder's versioning or type.
#[utoipa::path(patch, path = "/rest/folders/{id}", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    request_body = dto::FolderPatch,
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError), (status = 404, body = dto::ApiError)))]
pub(super) async fn patch(
    State(s): State<Arc<ApiState>>,
    Known(h): Known,
    Json(p): Json<dto::FolderPatch>,
) -> Response {
    let id = h.config.id.clone();
    let (kind, versioning) = match (
        parse_kind(p.kind.as_deref()),
        parse_versioning(p.versioning.as_deref()),
    ) {
        (Ok(k), Ok(v)) => (k, v),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    edit_config(&s, move |c| {
        if let Some(v) = versioning {
            c.set_versioning(&id, v)?;
        }
        if let Some(k) = kind {
            c.set_kind(&id, k)?;
        }
        Ok(())
    })
    .await
}

/// Stops sharing a folder: it leaves the configuration; its files stay.
#[utoipa::path(delete, path = "/rest/folders/{id}", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::Reloaded), (status = 404, body = dto::ApiError)))]
pub(super) async fn remove(State(s): State<Arc<ApiState>>, Known(h): Known) -> Response {
    let id = h.config.id.clone();
    edit_config(&s, move |c| c.remove_folder(&id)).await
}

/// Shares a folder with one more configured device.
#[utoipa::path(post, path = "/rest/folders/{id}/share", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    request_body = dto::DeviceRef,
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError), (status = 404, body = dto::ApiError)))]
pub(super) async fn share(
    State(s): State<Arc<ApiState>>,
    Known(h): Known,
    Json(d): Json<dto::DeviceRef>,
) -> Response {
    let id = h.config.id.clone();
    let device = match parse_devices(std::slice::from_ref(&d.device)) {
        Ok(d) => d[0],
        Err(r) => return *r,
    };
    edit_config(&s, move |c| c.share_folder(&id, &device).map(drop)).await
}

/// `?limit=` of the need listing.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct NeedQuery {
    /// At most this many items [default 1000].
    limit: Option<usize>,
}

/// What this device needs of the folder (out of sync), by name.
#[utoipa::path(get, path = "/rest/folders/{id}/need", tag = "folders",
    params(("id" = String, Path, description = "The folder"), NeedQuery),
    responses((status = 200, body = Vec<dto::NeedItem>), (status = 404, body = dto::ApiError)))]
pub(super) async fn need(
    State(s): State<Arc<ApiState>>,
    Known(h): Known,
    Query(q): Query<NeedQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let peers = s.peers.clone();
    let listed = blocking(move || {
        let config = peers.config();
        let known: Vec<(u32, String)> = config
            .devices
            .iter()
            .filter_map(|d| {
                let n = peers.index.device_number(&d.id).ok()?;
                Some((n, d.id.to_string()))
            })
            .collect();
        let mut out = Vec::new();
        for r in h.index.need_summaries().take(limit) {
            let (name, _) = r.map_err(|e| e.to_string())?;
            let Some((global, info)) = h.index.global_file(&name).map_err(|e| e.to_string())?
            else {
                continue;
            };
            let from = known
                .iter()
                .filter(|(n, _)| global.devices.contains(n))
                .map(|(_, id)| id.clone())
                .collect();
            out.push(dto::NeedItem {
                name,
                kind: kind_str(info.kind).to_string(),
                size: info.size,
                modified: info.modified_s,
                deleted: info.deleted,
                from,
            });
        }
        Ok(out)
    })
    .await;
    match listed {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

fn kind_str(k: proto::message::FileKind) -> &'static str {
    use proto::message::FileKind;
    match k {
        FileKind::File => "file",
        FileKind::Directory => "directory",
        FileKind::Symlink => "symlink",
    }
}

/// The folder's `.stignore` and its patterns.
#[utoipa::path(get, path = "/rest/folders/{id}/ignores", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = dto::IgnoreFile), (status = 404, body = dto::ApiError)))]
pub(super) async fn get_ignores(Known(h): Known) -> Response {
    let path = h.config.path.join(".stignore");
    match std::fs::read_to_string(&path) {
        Ok(text) => Json(ignore_file(text)).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Json(ignore_file(String::new())).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading {}: {e}", path.display()),
        ),
    }
}

fn ignore_file(text: String) -> dto::IgnoreFile {
    let patterns = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(String::from)
        .collect();
    dto::IgnoreFile { text, patterns }
}

/// Replaces the folder's `.stignore` once the new text parses (nothing
/// is written otherwise), then rescans so the patterns take effect.
#[utoipa::path(put, path = "/rest/folders/{id}/ignores", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    request_body = dto::IgnoreText,
    responses((status = 200, body = dto::IgnoreFile), (status = 400, body = dto::ApiError), (status = 404, body = dto::ApiError)))]
pub(super) async fn put_ignores(Known(h): Known, Json(t): Json<dto::IgnoreText>) -> Response {
    let root = h.config.path.clone();
    if let Err(e) = crate::scanner::ignore::Ignores::parse(&t.text, &root) {
        return error(StatusCode::BAD_REQUEST, format!(".stignore: {e}"));
    }
    let text = t.text.clone();
    let written = blocking(move || {
        crate::fs::write_atomic(&root.join(".stignore"), text.as_bytes(), 0o644)
            .map_err(|e| format!("writing .stignore: {e}"))
    })
    .await;
    if let Err(r) = written {
        return r;
    }
    if !h.config.paused {
        h.request_rescan();
    }
    Json(ignore_file(t.text)).into_response()
}
