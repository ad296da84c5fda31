//! The event stream (`GET /rest/events`, a long poll like Syncthing's)
//! and recent changes (`GET /rest/changes`), both read from
//! [`crate::events::Events`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::ApiState;

/// `?since=` and `&timeout=` of the event poll.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct EventsQuery {
    /// Answer events with a greater id [default 0: all kept].
    since: Option<u64>,
    /// Seconds to wait for one [default 30, at most 60].
    timeout: Option<u64>,
}

/// Events after `since`, as soon as there is one (an empty list when
/// `timeout` passes first). Event types: `FolderStateChanged`,
/// `FolderSummary`, `ItemStarted`, `ItemFinished`, `DeviceConnected`,
/// `DeviceDisconnected`, `PendingDevicesChanged`, `PendingFoldersChanged`,
/// `ConfigSaved`, `LocalChangeDetected`, `RemoteChangeApplied`.
#[utoipa::path(get, path = "/rest/events", tag = "events",
    params(EventsQuery),
    responses((status = 200, body = Vec<crate::events::Event>)))]
pub(super) async fn events(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let wait = Duration::from_secs(q.timeout.unwrap_or(30).min(60));
    Json(s.peers.events.since(q.since.unwrap_or(0), wait).await).into_response()
}

/// `?since=` of the changes list.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(super) struct ChangesQuery {
    /// Answer changes with a greater id [default 0: all kept].
    since: Option<u64>,
}

/// Recent changes to files, local or from other devices, oldest first
/// (the last 500).
#[utoipa::path(get, path = "/rest/changes", tag = "events",
    params(ChangesQuery),
    responses((status = 200, body = Vec<crate::events::Change>)))]
pub(super) async fn changes(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<ChangesQuery>,
) -> Response {
    Json(s.peers.events.changes(q.since.unwrap_or(0))).into_response()
}
