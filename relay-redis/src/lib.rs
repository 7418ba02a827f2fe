#![forbid(unsafe_code)]
//! Scale-out for pngcast through Redis (or Valkey) pub/sub, on the synchronous `redis` client
//! (no async runtime).
//!
//! - [`Publisher`] is a [`FrameSink`](core_api::FrameSink): give it to a `Sender` and every frame
//!   is encoded once and published once on `pngcast:{namespace}:frames`; the newest frame of each
//!   event sent to everyone is also kept under `pngcast:{namespace}:latest:{event}` with an expiry.
//!   A bounded queue and a publisher thread keep the caller off the network.
//! - [`Edge`] subscribes to that channel and feeds a local sink (a pngcast server), resyncing from
//!   the newest-frame keys each time it (re)subscribes.
//!
//! Messages are [`envelope`]s. See `docs/scale-out.md` for the design and its failure behaviour.

/// Every path this crate takes from the pngcast protocol crate, in one place.
pub(crate) mod core_api {
    pub use pngcast_protocol::queue::Policy;
    pub use pngcast_protocol::sink::{FrameSink, SinkError, SinkStats, Target};
    pub use pngcast_protocol::wire::{ImageMeta, WireFrame};
}

mod config;
mod edge;
pub mod envelope;
mod publisher;

pub use config::{RedisUrl, RelayError};
pub use edge::{Edge, EdgeConfig, EdgeStats};
pub use publisher::{Publisher, PublisherConfig, PublisherStats};
