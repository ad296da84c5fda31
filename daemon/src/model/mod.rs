//! Per-folder actors: each folder has one runner that owns its state and
//! serialises the work on it (scans now; pulling joins in the sync issue).

pub mod folder;
pub mod puller;
