//! The prost-generated BEP wire types (`proto/bep.proto`). Code outside this
//! crate should not need them: [`crate::message`] converts to domain types at
//! the edge, validating as it goes.
#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bep.rs"));

/// The local discovery announcement (`proto/local.proto`); see
/// [`crate::local_discovery`].
pub mod local {
    include!(concat!(env!("OUT_DIR"), "/discover.rs"));
}
