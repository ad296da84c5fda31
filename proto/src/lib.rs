//! Wire formats and pure protocol logic shared by every ferrosync component:
//! device IDs and the certificates they come from, BEP messages and their
//! framing, version vectors, the block-size rule, canonical file names,
//! the grammar of sync addresses, and the local discovery packet.
//!
//! No sockets, no async runtime, no disk: everything here is a function of
//! its inputs, so it is tested byte for byte against Syncthing's encodings.
#![deny(missing_docs)]

pub mod addr;
pub mod block_size;
pub mod cert;
mod convert;
pub mod device_id;
pub mod frame;
pub mod local_discovery;
pub mod message;
pub mod name;
pub mod natpmp;
pub mod relay;
pub mod stun;
#[cfg(feature = "tls")]
pub mod tls;
pub mod version;
pub mod wire;

pub use convert::MessageError;
pub use device_id::{DeviceId, DeviceIdError, ShortId};
pub use message::Message;
pub use name::{Name, NameError};
pub use version::Vector;
