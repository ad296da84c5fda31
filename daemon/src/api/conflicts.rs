//! The conflicts view: each conflict copy in a folder beside the file it
//! is a copy of, and resolving one (keep the original, the copy, or both).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{blocking, dto, error, paused, Known};
use crate::index::LOCAL;
use crate::model::conflict::{parse_copy_name, resolve as resolve_copy, Resolution};

/// Modification time of a file in Unix seconds, and its size.
fn stat(path: &std::path::Path) -> Option<(u64, i64)> {
    let m = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some((m.len(), t.as_secs() as i64))
}

/// The folder's conflict copies (as its index has them), with both
/// versions' sizes and times from the disk.
#[utoipa::path(get, path = "/rest/folders/{id}/conflicts", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    responses((status = 200, body = Vec<dto::Conflict>), (status = 404, body = dto::ApiError)))]
pub(super) async fn list(Known(h): Known) -> Response {
    let listed = blocking(move || {
        let root = &h.config.path;
        let mut out = Vec::new();
        for e in h.index.entries(LOCAL) {
            let e = e.map_err(|e| e.to_string())?;
            if e.info.deleted || !e.info.name.as_str().contains(".sync-conflict-") {
                continue;
            }
            let name = e.info.name.as_str();
            let Some((original, device)) = parse_copy_name(name) else {
                continue;
            };
            let Some((size, modified)) =
                crate::fs::safe_path(root, name).ok().and_then(|p| stat(&p))
            else {
                continue;
            };
            let orig = crate::fs::safe_path(root, &original)
                .ok()
                .and_then(|p| stat(&p));
            out.push(dto::Conflict {
                conflict: name.to_string(),
                original,
                device,
                conflict_size: size,
                conflict_modified: modified,
                original_exists: orig.is_some(),
                original_size: orig.map(|o| o.0),
                original_modified: orig.map(|o| o.1),
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

/// Resolves one conflict; answers the rescan that records the outcome
/// (and so sends it to the other devices).
#[utoipa::path(post, path = "/rest/folders/{id}/conflicts/resolve", tag = "folders",
    params(("id" = String, Path, description = "The folder")),
    request_body = dto::Resolve,
    responses((status = 200, body = dto::RescanTicket), (status = 400, body = dto::ApiError),
              (status = 404, body = dto::ApiError), (status = 409, body = dto::ApiError)))]
pub(super) async fn resolve(Known(h): Known, Json(r): Json<dto::Resolve>) -> Response {
    let id = h.config.id.clone();
    if h.config.paused {
        return paused(&id);
    }
    let how = match r.keep.as_str() {
        "original" => Resolution::Original,
        "conflict" | "copy" => Resolution::Copy,
        "both" => Resolution::Both,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("keep {other:?}: say original, conflict or both"),
            )
        }
    };
    let (root, versioning) = (h.config.path.clone(), h.config.versioning);
    let done =
        tokio::task::spawn_blocking(move || resolve_copy(&root, versioning, &r.conflict, how))
            .await;
    match done {
        Ok(Ok(_)) => Json(dto::RescanTicket {
            scan: h.request_rescan(),
        })
        .into_response(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
