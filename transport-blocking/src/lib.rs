//! `pngcast-blocking`: pngcast's ComfyUI-compatible WebSocket service on blocking std threads,
//! and a blocking client.
//!
//! The server ([`Server`]) has one accept thread and, per connection, a reader thread (the
//! connection's own) and a writer thread. Frames are queued per client in a bounded
//! [`ClientQueue`](pngcast_protocol::queue::ClientQueue) and written straight from the shared
//! encoded buffers (`[ws header][prefix][png]` with vectored writes, no per-client copy of the
//! PNG). It behaves like `pngcast-mio`: same routes, same limits, same policies; the choice is
//! threads (simple, a few hundred clients) against a few event loops (thousands of clients).
//!
//! ```no_run
//! use std::sync::Arc;
//! use pngcast_blocking::Server;
//! use pngcast_protocol::http::ServerConfig;
//! use pngcast_protocol::sink::{FrameSink, Target};
//! use pngcast_protocol::wire::{ImageMeta, WireFrame};
//!
//! let server = Server::bind(ServerConfig::default())?;
//! println!("listening on ws://{}/ws", server.local_addr());
//! let png: Arc<Vec<u8>> = Arc::new(std::fs::read("frame.png")?);
//! let meta = ImageMeta { event: "preview".into(), index: 0, count: 1, width: 64, height: 64, ..Default::default() };
//! server.send_image(&Target::All, &WireFrame::new(&meta, png, true))?;
//! server.shutdown(std::time::Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod conn;
mod handshake;
mod hub;
mod input;
mod server;

pub use server::{Error, Server, DESCRIPTORS_PER_CLIENT};
