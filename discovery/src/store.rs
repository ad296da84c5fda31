//! Where announcements live: one record per device, replaced whole by its
//! next announcement and gone two hours after it. Two backends behind one
//! interface: embedded sled (the default; survives restarts) and Redis
//! (keys with a TTL), so several stateless front ends can share one
//! Redis when one machine is not enough.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::DeviceId;
use serde::{Deserialize, Serialize};

/// How long an announcement stays (Syncthing's 2 h).
pub const LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// What a device announced, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its addresses, fixed up and sorted.
    pub addresses: Vec<String>,
    /// When it announced, in milliseconds since the Unix epoch.
    pub seen_ms: u64,
}

impl Record {
    /// A record seen now.
    pub fn now(addresses: Vec<String>) -> Self {
        Self {
            addresses,
            seen_ms: now_ms(),
        }
    }

    /// The lookup answer for this record, as served:
    /// `{"seen":"<RFC 3339>","addresses":[…]}`. Stored rendered, so a
    /// lookup sends bytes without decoding or encoding anything.
    pub fn answer(&self) -> Vec<u8> {
        let seen = chrono::DateTime::from_timestamp_millis(self.seen_ms as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        serde_json::to_vec(&Answer {
            seen,
            addresses: self.addresses.clone(),
        })
        .unwrap_or_default()
    }

    /// The record an answer was rendered from.
    fn from_answer(answer: &[u8]) -> Result<Self, StoreError> {
        let a: Answer = serde_json::from_slice(answer)?;
        let seen_ms = chrono::DateTime::parse_from_rfc3339(&a.seen)
            .map(|t| t.timestamp_millis().max(0) as u64)
            .unwrap_or(0);
        Ok(Self {
            addresses: a.addresses,
            seen_ms,
        })
    }
}

/// A lookup's answer (the wire shape of global discovery v3).
#[derive(Serialize, Deserialize)]
struct Answer {
    seen: String,
    addresses: Vec<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A store failure (the request answers 500).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored record does not decode.
    #[error("a stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Which backend, from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// sled in the data directory.
    Sled,
    /// A Redis server (`redis://HOST:PORT[/DB]`).
    Redis(String),
}

impl std::str::FromStr for StoreConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sled" {
            Ok(Self::Sled)
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            redis::Client::open(s).map_err(|e| format!("{s}: {e}"))?;
            Ok(Self::Redis(s.to_string()))
        } else {
            Err(format!(
                "{s:?}: expected `sled` or a `redis://HOST:PORT` URL"
            ))
        }
    }
}

/// An open store.
#[derive(Clone)]
pub enum Store {
    /// Embedded sled.
    Sled(sled::Tree),
    /// Redis through a reconnecting connection.
    Redis(redis::aio::ConnectionManager),
}

/// Key prefix in Redis, so a shared Redis can hold other data too.
const REDIS_PREFIX: &str = "ferrosync-discovery:";

impl Store {
    /// Opens the configured backend (`data` holds sled's files).
    pub async fn open(config: &StoreConfig, data: &Path) -> Result<Self, StoreError> {
        match config {
            StoreConfig::Sled => {
                let db = sled::Config::new()
                    .path(data.join("announcements"))
                    .cache_capacity(32 << 20)
                    .flush_every_ms(Some(1000))
                    .open()?;
                Ok(Self::Sled(db.open_tree("devices")?))
            }
            StoreConfig::Redis(url) => {
                let client = redis::Client::open(url.as_str())?;
                Ok(Self::Redis(client.get_connection_manager().await?))
            }
        }
    }

    /// Replaces `device`'s record. sled keeps the time it was seen (8
    /// bytes, big-endian milliseconds) before the rendered answer, Redis
    /// the answer alone (its TTL does the expiry).
    pub async fn put(&self, device: &DeviceId, record: &Record) -> Result<(), StoreError> {
        let value = record.answer();
        match self {
            Self::Sled(t) => {
                let mut v = Vec::with_capacity(8 + value.len());
                v.extend_from_slice(&record.seen_ms.to_be_bytes());
                v.extend_from_slice(&value);
                t.insert(device.as_bytes(), v)?;
            }
            Self::Redis(c) => {
                let mut c = c.clone();
                redis::cmd("SET")
                    .arg(redis_key(device))
                    .arg(value)
                    .arg("PX")
                    .arg(LIFETIME.as_millis() as u64)
                    .query_async::<()>(&mut c)
                    .await?;
            }
        }
        Ok(())
    }

    /// The lookup answer for `device`, if it has a record that has not
    /// expired.
    pub async fn answer(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Sled(t) => Ok(t.get(device.as_bytes())?.and_then(|v| {
                let (seen, answer) = split_sled(&v)?;
                (!expired(seen, now_ms())).then(|| answer.to_vec())
            })),
            Self::Redis(c) => {
                let mut c = c.clone();
                Ok(redis::cmd("GET")
                    .arg(redis_key(device))
                    .query_async(&mut c)
                    .await?)
            }
        }
    }

    /// `device`'s record, if it has one that has not expired.
    pub async fn get(&self, device: &DeviceId) -> Result<Option<Record>, StoreError> {
        self.answer(device)
            .await?
            .map(|a| Record::from_answer(&a))
            .transpose()
    }

    /// Removes expired records (Redis expires its own); returns how many
    /// records remain.
    pub fn purge(&self) -> Result<Option<u64>, StoreError> {
        let Self::Sled(t) = self else {
            return Ok(None);
        };
        let now = now_ms();
        let mut left = 0;
        for kv in t.iter() {
            let (k, v) = kv?;
            match split_sled(&v) {
                Some((seen, _)) if !expired(seen, now) => left += 1,
                _ => {
                    t.remove(k)?;
                }
            }
        }
        Ok(Some(left))
    }

    /// Makes every write so far durable (at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        if let Self::Sled(t) = self {
            t.flush_async().await?;
        }
        Ok(())
    }
}

/// Whether a record seen at `seen_ms` has expired by `now_ms`.
fn expired(seen_ms: u64, now_ms: u64) -> bool {
    now_ms >= seen_ms.saturating_add(LIFETIME.as_millis() as u64)
}

/// A sled value's seen time and answer.
fn split_sled(v: &[u8]) -> Option<(u64, &[u8])> {
    let (seen, answer) = v.split_at_checked(8)?;
    Some((u64::from_be_bytes(seen.try_into().ok()?), answer))
}

fn redis_key(device: &DeviceId) -> String {
    format!("{REDIS_PREFIX}{device}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sled_replaces_records_and_keeps_them_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = DeviceId::from_bytes([1; 32]);
        {
            let s = Store::open(&StoreConfig::Sled, dir.path())
                .await
                .expect("open");
            s.put(&id, &Record::now(vec!["tcp://192.0.2.1:1".into()]))
                .await
                .expect("put");
            s.put(&id, &Record::now(vec!["tcp://192.0.2.2:2".into()]))
                .await
                .expect("put");
            s.flush().await.expect("flush");
        }
        let s = Store::open(&StoreConfig::Sled, dir.path())
            .await
            .expect("reopen");
        let r = s.get(&id).await.expect("get").expect("record");
        assert_eq!(r.addresses, ["tcp://192.0.2.2:2"], "replaced, not merged");
        assert_eq!(
            s.get(&DeviceId::from_bytes([2; 32])).await.expect("get"),
            None
        );
    }

    #[tokio::test]
    async fn expired_records_are_not_returned_and_are_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&StoreConfig::Sled, dir.path())
            .await
            .expect("open");
        let (old, new) = (DeviceId::from_bytes([1; 32]), DeviceId::from_bytes([2; 32]));
        let stale = Record {
            addresses: vec!["tcp://192.0.2.1:1".into()],
            seen_ms: now_ms() - LIFETIME.as_millis() as u64 - 1,
        };
        s.put(&old, &stale).await.expect("put");
        s.put(&new, &Record::now(vec!["tcp://192.0.2.2:2".into()]))
            .await
            .expect("put");
        assert_eq!(s.get(&old).await.expect("get"), None);
        assert_eq!(s.purge().expect("purge"), Some(1));
        let Store::Sled(t) = &s else { unreachable!() };
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn store_option_parses() {
        assert_eq!("sled".parse::<StoreConfig>(), Ok(StoreConfig::Sled));
        assert!(matches!(
            "redis://127.0.0.1:6379".parse::<StoreConfig>(),
            Ok(StoreConfig::Redis(_))
        ));
        assert!("mysql://x".parse::<StoreConfig>().is_err());
    }
}
