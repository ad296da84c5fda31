//! GUI login: the calls that start and end a cookie session, say whether
//! one is live, and set the GUI password (stored as an argon2 hash).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{auth, dto, edit_config, error, ApiState};

/// Whether a GUI password is set and whether this client is logged in
/// (with its session's CSRF token).
#[utoipa::path(get, path = "/rest/auth", tag = "auth", security(()),
    responses((status = 200, body = dto::AuthState)))]
pub(super) async fn auth_state(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let csrf = s.sessions.csrf(&headers);
    let by_key = headers
        .get(auth::KEY_HEADER)
        .is_some_and(|k| auth::same(k.as_bytes(), s.api_key.as_bytes()));
    Json(dto::AuthState {
        password_required: !s.peers.config().api.password_hash.is_empty(),
        logged_in: by_key || csrf.is_some(),
        csrf,
    })
    .into_response()
}

/// Starts a GUI session: the cookie comes with the answer, and the CSRF
/// token to send with every request that changes something. Without a
/// GUI password (a loopback API only) the empty password logs in.
#[utoipa::path(post, path = "/rest/login", tag = "auth", security(()),
    request_body = dto::Login,
    responses((status = 200, body = dto::LoggedIn), (status = 401, body = dto::ApiError)))]
pub(super) async fn login(State(s): State<Arc<ApiState>>, Json(l): Json<dto::Login>) -> Response {
    let hash = s.peers.config().api.password_hash.clone();
    // argon2 takes tens of milliseconds by design: off the async threads.
    let ok = tokio::task::spawn_blocking(move || auth::password_matches(&hash, &l.password))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::info!("GUI login refused: wrong password");
        return error(StatusCode::UNAUTHORIZED, "wrong password");
    }
    let (token, csrf) = s.sessions.start();
    (
        [(header::SET_COOKIE, auth::set_cookie(&token))],
        Json(dto::LoggedIn { csrf }),
    )
        .into_response()
}

/// Ends this GUI session.
#[utoipa::path(post, path = "/rest/logout", tag = "auth",
    responses((status = 200, body = dto::Changed)))]
pub(super) async fn logout(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    s.sessions.end(&headers);
    (
        [(header::SET_COOKIE, auth::set_cookie(""))],
        Json(dto::Changed { changed: 1 }),
    )
        .into_response()
}

/// Sets the GUI password (as `ferrosync gui password`).
#[utoipa::path(put, path = "/rest/gui/password", tag = "auth",
    request_body = dto::NewPassword,
    responses((status = 200, body = dto::Reloaded), (status = 400, body = dto::ApiError)))]
pub(super) async fn set_password(
    State(s): State<Arc<ApiState>>,
    Json(p): Json<dto::NewPassword>,
) -> Response {
    let hashed = tokio::task::spawn_blocking(move || auth::hash_password(&p.password)).await;
    let hash = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    edit_config(&s, move |c| {
        c.api.password_hash = hash;
        Ok(())
    })
    .await
}
