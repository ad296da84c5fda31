//! What happened, in order, for the event stream (`GET /rest/events`) and
//! the recent-changes list: a bounded ring of numbered events that any
//! layer records into and the API long-polls. Lock held only to push or
//! copy; nothing here blocks a sync on a slow reader.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::Notify;

/// Events kept for readers that fall behind; older ones are dropped (a
/// reader asking for them gets what is left and sees the gap by the ids).
const KEEP: usize = 1000;

/// Changes to files kept for the recent-changes list.
const KEEP_CHANGES: usize = 500;

/// One event as readers see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Increasing from 1, without gaps at the source.
    pub id: u64,
    /// What kind of event (`FolderStateChanged`, `DeviceConnected`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When, RFC 3339 in UTC.
    pub time: String,
    /// The event's details; their keys depend on the kind.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// A change to a file, local or applied from a peer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Change {
    /// Increasing from 1.
    pub id: u64,
    /// Unix seconds.
    pub at: i64,
    /// The folder.
    pub folder: String,
    /// The file's name in the folder.
    pub name: String,
    /// `modified` or `deleted`.
    pub action: &'static str,
    /// `local`, or the device ID whose change was applied.
    pub origin: String,
}

#[derive(Default)]
struct Ring {
    next: u64,
    events: VecDeque<Event>,
    next_change: u64,
    changes: VecDeque<Change>,
}

/// The hub: record with [`Events::emit`], read with [`Events::since`].
#[derive(Default)]
pub struct Events {
    ring: Mutex<Ring>,
    added: Notify,
}

impl Events {
    /// Records an event.
    pub fn emit(&self, kind: &'static str, data: serde_json::Value) {
        {
            let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            r.next += 1;
            let id = r.next;
            if r.events.len() == KEEP {
                r.events.pop_front();
            }
            r.events.push_back(Event {
                id,
                kind,
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                data,
            });
        }
        self.added.notify_waiters();
    }

    /// Records a file changed in `folder` (by us when `origin` is
    /// `local`), as a change and as an event.
    pub fn changed(&self, folder: &str, name: &str, deleted: bool, origin: &str) {
        let action = if deleted { "deleted" } else { "modified" };
        {
            let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            r.next_change += 1;
            let id = r.next_change;
            if r.changes.len() == KEEP_CHANGES {
                r.changes.pop_front();
            }
            r.changes.push_back(Change {
                id,
                at: chrono::Utc::now().timestamp(),
                folder: folder.to_string(),
                name: name.to_string(),
                action,
                origin: origin.to_string(),
            });
        }
        let kind = if origin == "local" {
            "LocalChangeDetected"
        } else {
            "RemoteChangeApplied"
        };
        self.emit(
            kind,
            serde_json::json!({ "folder": folder, "name": name, "action": action, "origin": origin }),
        );
    }

    /// The id of the newest event (0 when none yet).
    pub fn last_id(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).next
    }

    /// Events after `since`, waiting up to `wait` for the first one.
    pub async fn since(&self, since: u64, wait: std::time::Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an event pushed in between
            // still wakes us.
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let found = self.after(since);
            if !found.is_empty() {
                return found;
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// An id beyond the last one given out comes from an earlier run of
    /// the daemon (ids restart at 1): such a reader gets everything kept
    /// rather than waiting for ids that mean something else now.
    fn after(&self, since: u64) -> Vec<Event> {
        let r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let since = if since > r.next { 0 } else { since };
        r.events.iter().filter(|e| e.id > since).cloned().collect()
    }

    /// Changes after `since`, oldest first.
    pub fn changes(&self, since: u64) -> Vec<Change> {
        let r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let since = if since > r.next_change { 0 } else { since };
        r.changes.iter().filter(|c| c.id > since).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_reader_gets_the_next_event_and_old_ones_roll_off() {
        let ev = std::sync::Arc::new(Events::default());
        let reader = {
            let ev = ev.clone();
            tokio::spawn(async move { ev.since(0, Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        ev.emit("Test", serde_json::json!({"n": 1}));
        let got = reader.await.expect("test");
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].id, got[0].kind), (1, "Test"));

        for n in 0..KEEP + 5 {
            ev.emit("Test", serde_json::json!({ "n": n }));
        }
        let all = ev.since(0, Duration::ZERO).await;
        assert_eq!(all.len(), KEEP);
        assert_eq!(all.last().expect("test").id, ev.last_id());
        assert!(ev.since(ev.last_id(), Duration::ZERO).await.is_empty());
    }

    #[test]
    fn changes_are_listed_after_an_id_and_also_make_events() {
        let ev = Events::default();
        ev.changed("f", "a", false, "local");
        ev.changed("f", "b", true, "DEVICE");
        let c = ev.changes(1);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].name.as_str(), c[0].action), ("b", "deleted"));
        assert_eq!(ev.last_id(), 2);
        assert_eq!(ev.changes(99).len(), 2, "an id from an earlier run");
    }

    #[tokio::test]
    async fn an_id_from_an_earlier_run_gets_everything_at_once() {
        let ev = Events::default();
        ev.emit("Test", serde_json::json!({}));
        let got = ev.since(1_000_000, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1);
    }
}
