//! Per-folder actors: each folder has one runner that owns its state and
//! serialises the work on it (scans and pull passes).

pub mod conflict;
mod direction;
pub mod doctor;
pub mod folder;
mod local_blocks;
pub mod pull_error;
pub mod puller;
mod temp_file;
pub mod verify;
pub mod versioner;
