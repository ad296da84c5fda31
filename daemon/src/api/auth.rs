//! Who may use the API: a client with the API key (`X-API-Key`, or
//! `Authorization: Bearer` as a Prometheus scrape sends it; compared in
//! constant time), or a browser with a session cookie from a GUI login,
//! which must also send the session's CSRF token (`X-CSRF-Token`) on
//! every request that changes something. On a loopback address the Host
//! header must name loopback too, so a web page whose name resolves to
//! 127.0.0.1 (DNS rebinding) cannot talk to the daemon.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap, Method, StatusCode};
use subtle::ConstantTimeEq;

/// The header carrying the API key.
pub const KEY_HEADER: &str = "X-API-Key";
/// The header carrying a cookie session's CSRF token.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// The session cookie's name.
pub const COOKIE: &str = "ferrosync_session";

/// A session lives this long after its last use.
const IDLE: Duration = Duration::from_secs(24 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 64;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or wrong ones: 401.
    Unauthenticated(&'static str),
    /// Credentials, but not enough for this request: 403.
    Forbidden(&'static str),
}

impl Refusal {
    /// The status code and message of the answer.
    pub fn answer(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, m),
        }
    }
}

struct Session {
    csrf: String,
    used: Instant,
}

/// The GUI sessions logged in.
#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
}

/// Equal, in time that depends only on the lengths.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session token in the request's cookies, if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

impl Sessions {
    /// Starts a session; answers its cookie token and CSRF token.
    pub fn start(&self) -> (String, String) {
        let (token, csrf) = (random_token(), random_token());
        let mut m = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, s| s.used.elapsed() < IDLE);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.used).map(|(t, _)| t.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(
            token.clone(),
            Session {
                csrf: csrf.clone(),
                used: Instant::now(),
            },
        );
        (token, csrf)
    }

    /// Ends the session of the request's cookie.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(t) = cookie_token(headers) {
            self.by_token
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(t);
        }
    }

    /// The CSRF token of the request's live session, if it has one.
    pub fn csrf(&self, headers: &HeaderMap) -> Option<String> {
        let t = cookie_token(headers)?;
        let mut m = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.get_mut(t).filter(|s| s.used.elapsed() < IDLE)?;
        s.used = Instant::now();
        Some(s.csrf.clone())
    }

    /// Whether the request may go on: the API key, or a live session
    /// (with its CSRF token unless the method only reads).
    pub fn check(&self, key: &str, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let bearer = || {
            headers
                .get(header::AUTHORIZATION)?
                .as_bytes()
                .strip_prefix(b"Bearer ")
        };
        if let Some(k) = headers
            .get(KEY_HEADER)
            .map(|k| k.as_bytes())
            .or_else(bearer)
        {
            return if !key.is_empty() && same(k, key.as_bytes()) {
                Ok(())
            } else {
                Err(Refusal::Unauthenticated("wrong API key"))
            };
        }
        let Some(csrf) = self.csrf(headers) else {
            return Err(Refusal::Unauthenticated(
                "not logged in: send X-API-Key, or log in at POST /rest/login",
            ));
        };
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        match headers.get(CSRF_HEADER) {
            Some(t) if same(t.as_bytes(), csrf.as_bytes()) => Ok(()),
            _ => Err(Refusal::Forbidden(
                "missing or wrong X-CSRF-Token for this session",
            )),
        }
    }
}

/// The Set-Cookie value for a session token (empty: one that ends it).
pub fn set_cookie(token: &str) -> String {
    if token.is_empty() {
        format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    } else {
        format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            IDLE.as_secs()
        )
    }
}

/// The argon2id hash (PHC string) of a GUI password.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` is the one `hash` was made from. No hash: only
/// the empty password matches (a loopback GUI without a password).
pub fn password_matches(hash: &str, password: &str) -> bool {
    if hash.is_empty() {
        return password.is_empty();
    }
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Whether an API address listens on loopback only.
pub fn is_loopback(address: &str) -> bool {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the request's Host header is acceptable for an API that
/// listens on loopback: loopback names and addresses only.
pub fn host_allowed(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_none_or(|h| is_loopback(h) || is_loopback(&format!("{h}:0")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_key_a_session_and_its_csrf_token_are_each_required_where_due() {
        let s = Sessions::default();
        let mut h = HeaderMap::new();
        assert!(matches!(
            s.check("k", &Method::GET, &h),
            Err(Refusal::Unauthenticated(_))
        ));
        h.insert(KEY_HEADER, HeaderValue::from_static("x"));
        assert!(s.check("k", &Method::GET, &h).is_err());
        h.insert(KEY_HEADER, HeaderValue::from_static("k"));
        assert!(s.check("k", &Method::POST, &h).is_ok());

        let (token, csrf) = s.start();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={token}")).expect("test"),
        );
        assert!(s.check("k", &Method::GET, &h).is_ok());
        assert!(matches!(
            s.check("k", &Method::POST, &h),
            Err(Refusal::Forbidden(_))
        ));
        h.insert(CSRF_HEADER, HeaderValue::from_str(&csrf).expect("test"));
        assert!(s.check("k", &Method::POST, &h).is_ok());
        s.end(&h);
        assert!(s.check("k", &Method::GET, &h).is_err());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").expect("test");
        assert!(h.starts_with("$argon2id$"));
        assert!(password_matches(&h, "correct horse"));
        assert!(!password_matches(&h, "wrong"));
        assert!(password_matches("", ""));
        assert!(!password_matches("", "x"));
        assert!(hash_password("").is_err());
    }

    #[test]
    fn loopback_addresses_and_hosts() {
        for a in ["127.0.0.1:8384", "[::1]:8384", "localhost:8384"] {
            assert!(is_loopback(a), "{a}");
        }
        for a in [
            "0.0.0.0:8384",
            "192.168.1.2:8384",
            "[::]:8384",
            "evil.example:80",
        ] {
            assert!(!is_loopback(a), "{a}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8384"));
        assert!(host_allowed(&h));
        h.insert(header::HOST, HeaderValue::from_static("localhost"));
        assert!(host_allowed(&h));
        h.insert(header::HOST, HeaderValue::from_static("evil.example:8384"));
        assert!(!host_allowed(&h));
    }
}
