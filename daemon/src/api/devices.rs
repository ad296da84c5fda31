//! The device calls: this device's ID (and its QR code), the configured
//! devices, the pending requests (accept, ignore, dismiss) and the
//! settings `ferrosync config get|set` reaches.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{dto, edit_config, error, parse_device, ApiState, DeviceParam};
use crate::config::Config;

/// This device's ID.
#[utoipa::path(get, path = "/rest/id", tag = "devices",
    responses((status = 200, body = dto::DeviceIdAnswer)))]
pub(super) async fn id(State(s): State<Arc<ApiState>>) -> Response {
    Json(dto::DeviceIdAnswer {
        id: s.device_id.to_string(),
    })
    .into_response()
}

/// This device's ID as a QR code (SVG), for pairing from a phone.
#[utoipa::path(get, path = "/rest/id/qr.svg", tag = "devices",
    responses((status = 200, content_type = "image/svg+xml", body = String)))]
pub(super) async fn qr(State(s): State<Arc<ApiState>>) -> Response {
    match qrcode::QrCode::new(s.device_id.to_string().as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build();
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The configured devices.
#[utoipa::path(get, path = "/rest/devices", tag = "devices",
    responses((status = 200, body = Vec<dto::DeviceConfig>)))]
pub(super) async fn list(State(s): State<Arc<ApiState>>) -> Response {
    let list: Vec<dto::DeviceConfig> = s
        .peers
        .config()
        .devices
        .iter()
        .map(|d| dto::DeviceConfig {
            id: d.id.to_string(),
            name: d.name.clone(),
            addresses: d.addresses.clone(),
        })
        .collect();
    Json(list).into_response()
}

/// Adds a device by its ID (as `ferrosync device add`).
#[utoipa::path(post, path = "/rest/devices", tag = "devices",
    request_body = dto::NewDevice,
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn add(State(s): State<Arc<ApiState>>, Json(d): Json<dto::NewDevice>) -> Response {
    let id = match parse_device(&d.id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    add_device(&s, id, d.name, d.addresses).await
}

async fn add_device(
    s: &ApiState,
    id: proto::DeviceId,
    name: Option<String>,
    addresses: Vec<String>,
) -> Response {
    let own = s.device_id;
    let answer = edit_config(s, move |c| {
        c.add_device(&own, id, name.as_deref(), &addresses)
    })
    .await;
    if answer.status().is_success() {
        s.peers.dismiss_pending(&id);
    }
    answer
}

/// Removes a device and unshares every folder from it.
#[utoipa::path(delete, path = "/rest/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "The device ID")),
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn remove(
    State(s): State<Arc<ApiState>>,
    DeviceParam(id): DeviceParam,
) -> Response {
    edit_config(&s, move |c| c.remove_device(&id).map(drop)).await
}

/// Devices that asked to connect and folders offered to us.
#[utoipa::path(get, path = "/rest/pending", tag = "pending",
    responses((status = 200, body = dto::Pending)))]
pub(super) async fn pending(State(s): State<Arc<ApiState>>) -> Response {
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

/// Adds a device that asked to connect (named as it named itself unless
/// a name is given); it is dialled back as `dynamic`.
#[utoipa::path(post, path = "/rest/pending/devices/{id}/accept", tag = "pending",
    params(("id" = String, Path, description = "The device ID")),
    request_body(content = Option<dto::AcceptDevice>),
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError), (status = 404, body = dto::ApiError)))]
pub(super) async fn accept_device(
    State(s): State<Arc<ApiState>>,
    DeviceParam(id): DeviceParam,
    body: Option<Json<dto::AcceptDevice>>,
) -> Response {
    let Some(p) = s.peers.pending().into_iter().find(|p| p.id == id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("device {id} has not asked to connect"),
        );
    };
    let name = body.and_then(|b| b.0.name).unwrap_or(p.name);
    add_device(&s, id, Some(name), Vec::new()).await
}

/// Refuses a device's requests from now on without listing them.
#[utoipa::path(post, path = "/rest/pending/devices/{id}/ignore", tag = "pending",
    params(("id" = String, Path, description = "The device ID")),
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn ignore_device(
    State(s): State<Arc<ApiState>>,
    DeviceParam(id): DeviceParam,
) -> Response {
    let answer = edit_config(&s, move |c| c.ignore_device(&id).map(drop)).await;
    if answer.status().is_success() {
        s.peers.dismiss_pending(&id);
    }
    answer
}

/// Forgets a device's request (it is listed again if it asks again).
#[utoipa::path(delete, path = "/rest/pending/devices/{id}", tag = "pending",
    params(("id" = String, Path, description = "The device ID")),
    responses((status = 200, body = dto::Changed), (status = 400, body = dto::ApiError)))]
pub(super) async fn dismiss_device(
    State(s): State<Arc<ApiState>>,
    DeviceParam(id): DeviceParam,
) -> Response {
    Json(dto::Changed {
        changed: usize::from(s.peers.dismiss_pending(&id)),
    })
    .into_response()
}

/// Accepts a folder a configured device offers: shares ours with it, or
/// (not configured here) adds it at `path`, created if missing.
#[utoipa::path(post, path = "/rest/pending/folders/{id}/accept", tag = "pending",
    params(("id" = String, Path, description = "The folder ID")),
    request_body = dto::AcceptFolder,
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn accept_folder(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(a): Json<dto::AcceptFolder>,
) -> Response {
    let device = match parse_device(&a.device) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if s.peers.config().device(&device).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("device {device} is not configured"),
        );
    }
    let answer = if s.peers.config().folder(&id).is_some() {
        let fid = id.clone();
        edit_config(&s, move |c| c.share_folder(&fid, &device).map(drop)).await
    } else {
        let Some(path) = a.path.filter(|p| !p.is_empty()) else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("folder {id:?} is new here: give the path to keep it at"),
            );
        };
        super::folders::add_folder(
            &s,
            id.clone(),
            path.into(),
            true,
            crate::config::FolderType::SendReceive,
            vec![device],
            crate::config::Versioning::default(),
        )
        .await
    };
    if answer.status().is_success() {
        s.peers.dismiss_pending_folder(&device, &id);
    }
    answer
}

/// `?device=` of the folder-offer calls.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct OfferQuery {
    /// The device offering the folder.
    device: String,
}

/// Stops listing a device's offer of a folder.
#[utoipa::path(post, path = "/rest/pending/folders/{id}/ignore", tag = "pending",
    params(("id" = String, Path, description = "The folder ID"), OfferQuery),
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn ignore_folder(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<OfferQuery>,
) -> Response {
    let device = match parse_device(&q.device) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let fid = id.clone();
    let answer = edit_config(&s, move |c| c.ignore_folder(&device, &fid).map(drop)).await;
    if answer.status().is_success() {
        s.peers.dismiss_pending_folder(&device, &id);
    }
    answer
}

/// Forgets a device's offer of a folder (listed again when offered again).
#[utoipa::path(delete, path = "/rest/pending/folders/{id}", tag = "pending",
    params(("id" = String, Path, description = "The folder ID"), OfferQuery),
    responses((status = 200, body = dto::Changed), (status = 400, body = dto::ApiError)))]
pub(super) async fn dismiss_folder(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<OfferQuery>,
) -> Response {
    let device = match parse_device(&q.device) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    Json(dto::Changed {
        changed: usize::from(s.peers.dismiss_pending_folder(&device, &id)),
    })
    .into_response()
}

/// Every setting `ferrosync config get` reads, as text.
#[utoipa::path(get, path = "/rest/config", tag = "config",
    responses((status = 200, body = std::collections::BTreeMap<String, String>)))]
pub(super) async fn get_config(State(s): State<Arc<ApiState>>) -> Response {
    let c = s.peers.config();
    let all: std::collections::BTreeMap<String, String> = crate::config::keys::KEYS
        .iter()
        .filter_map(|k| Some((k.to_string(), c.get(k).ok()?)))
        .collect();
    Json(all).into_response()
}

/// Changes a setting (as `ferrosync config set`).
#[utoipa::path(put, path = "/rest/config/{key}", tag = "config",
    params(("key" = String, Path, description = "A key of GET /rest/config")),
    request_body = dto::ConfigValue,
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn set_config(
    State(s): State<Arc<ApiState>>,
    Path(key): Path<String>,
    Json(v): Json<dto::ConfigValue>,
) -> Response {
    // Checked on a copy first, so a bad value is a 400 here.
    if let Err(e) = (*s.peers.config()).clone().set(&key, &v.value) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    edit_config(&s, move |c: &mut Config| c.set(&key, &v.value)).await
}
