//! The ferrosync daemon: it keeps shared folders identical across devices
//! by exchanging indexes and blocks with peers over BEP, and its CLI.
//!
//! Layers (each imports only the ones below it):
//! - L0 `config` (with the live config), `identity`, `home`, `fs`, `events`:
//!   settings, who we are, safe writes, what happened.
//! - L1 `index`: the sled-backed index (only `index/db.rs` knows sled);
//!   `net`: authenticated connections; `discovery`: where devices are.
//! - L2 `scanner`: walk, hash, ignore patterns; `peer`: BEP sessions;
//!   `watcher`: change notification (so far its event aggregator).
//! - L3 `model`: per-folder runners; `connect`: the dialler.
//! - L4 `api`: the local control API.
//! - L5 `daemon`: builds and wires the subsystems; `cli` drives it all.
//!
//! See `docs/ARCHITECTURE.md` for the full map.
#![deny(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod discovery;
pub mod events;
pub mod fs;
pub mod home;
pub mod identity;
pub mod index;
pub mod model;
pub mod net;
pub mod peer;
pub mod scanner;
pub mod watcher;
