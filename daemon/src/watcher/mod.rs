//! Change notification for folders (layer L2). Built so far: the pure
//! [`aggregate::Aggregator`], which turns a stream of changed paths into
//! scan requests (time passed in, stepped by its tests). Still to come in
//! this module: the notify watches (the only user of notify), the watch
//! limit check, and the hook-up to the folder runners.

pub mod aggregate;
