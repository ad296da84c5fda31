//! Change notification for folders (layer L2): [`watch`] holds a folder's
//! notify watches (the only user of notify) and checks the OS watch limit
//! first; [`aggregate::Aggregator`], pure and stepped by its tests, turns
//! the stream of changed paths into scan requests for the folder runner.

pub mod aggregate;
pub mod watch;

pub use aggregate::{ScanRequest, Settings};
pub use watch::{FolderWatch, WatchState};
