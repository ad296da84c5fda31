//! The CLI's client for a running daemon's local API.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::api::dto::ApiError;
use crate::api::KEY_HEADER;
use crate::config::Config;
use crate::home::Home;

/// A connection to the daemon running with a given home.
pub struct Client {
    base: String,
    key: String,
    agent: ureq::Agent,
}

impl Client {
    /// Finds the daemon of `home`, or says how to start one.
    pub fn connect(home: &Home) -> Result<Self> {
        let config = Config::load(&home.config_path())?;
        let addr = std::fs::read_to_string(home.api_address_path())
            .map(|s| s.trim().to_string())
            .map_err(|_| {
                anyhow!(
                    "the daemon is not running for {} (start it with `ferrosync --home {} run`)",
                    home.dir().display(),
                    home.dir().display()
                )
            })?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            base: format!("http://{addr}"),
            key: config.api.key,
            agent,
        })
    }

    fn handle<T: DeserializeOwned>(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut resp = r.map_err(|e| match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed => {
                anyhow!(
                    "the daemon is not answering at {} (is it running?)",
                    self.base
                )
            }
            e => anyhow!("{what}: {e}"),
        })?;
        let status = resp.status();
        if !status.is_success() {
            let msg = resp
                .body_mut()
                .read_json::<ApiError>()
                .map(|e| e.error)
                .unwrap_or_else(|_| status.to_string());
            bail!("{msg}");
        }
        resp.body_mut()
            .read_json::<T>()
            .with_context(|| format!("{what}: bad answer"))
    }

    /// GETs `path` and decodes the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.get_with(path, &[])
    }

    /// GETs `path` with query parameters (encoded here) and decodes the
    /// JSON answer.
    pub fn get_with<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .query_pairs(query.iter().copied())
            .header(KEY_HEADER, &self.key)
            .call();
        self.handle(path, r)
    }

    /// POSTs to `path` with query parameters and decodes the JSON answer.
    pub fn post_with<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .query_pairs(query.iter().copied())
            .header(KEY_HEADER, &self.key)
            .send_empty();
        self.handle(path, r)
    }

    /// POSTs to `path` and decodes the JSON answer.
    pub fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.post_with(path, &[])
    }
}
