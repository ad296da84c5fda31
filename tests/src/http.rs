//! Raw HTTP requests for tests that look at what an API refuses: any
//! method, any headers, and the answer whatever its status.

use std::time::Duration;

/// What came back.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Set-Cookie` header, if any.
    pub set_cookie: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

/// Sends `method url` with `headers` and, when given, a JSON `body`.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(70)))
            .build(),
    );
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let sent = match body {
        Some(b) => agent.run(req.body(b.to_string()).expect("request")),
        None => agent.run(req.body(()).expect("request")),
    };
    let mut resp = sent.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (set_cookie, content_type) = (header("set-cookie"), header("content-type"));
    Reply {
        status: resp.status().as_u16(),
        set_cookie,
        content_type,
        body: resp.body_mut().read_to_string().unwrap_or_default(),
    }
}
