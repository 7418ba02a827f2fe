//! `pngcast-protocol`: everything between an encoded PNG and a socket, without the socket.
//!
//! Sans-IO: no sockets, no threads, no clocks. The transports (`pngcast-mio`,
//! `pngcast-blocking`) move the bytes this crate produces.
//!
//! - [`wire`]: ComfyUI's WebSocket messages (status, feature flags, announcements, type 1 and 4).
//! - [`sink`]: the [`sink::FrameSink`] trait transports implement, and an in-memory sink.
//! - [`queue`]: the per-client bounded queue with the `LatestWins` / `Reliable` policies.
//! - [`http`]: server configuration, request-head parsing, routing and responses.
//! - [`ingest`]: `POST /api/send`, a PNG or `.npy` body from any process: validation, the
//!   [`ingest::IngestHandler`] an application supplies, the answers.
//! - [`metrics`]: the encode-time histogram and ingest counters, and the Prometheus text served
//!   at `GET /metrics`.
//! - [`npy`]: reading `.npy` arrays into tensor views.
//! - [`io`]: the one piece that touches a socket: [`io::NoSigPipe`], the SIGPIPE-safe writer
//!   both transports write through (safe code over socket2).
//! - [`session`]: one WebSocket client's state machine (close codes, timers, inbound budget,
//!   counters) that both transports drive.
//! - [`sender`]: encodes a batch and hands each frame to a sink.
//! - [`error`]: [`Error`], what this crate refuses (malformed wire messages, configuration out of
//!   range), wrapping `pngcast-core`'s errors.
//!
//! ```
//! use std::sync::Arc;
//! use pngcast_core::{png::EncodeOptions, tensor::TensorView};
//! use pngcast_protocol::{sender::Sender, sink::MemorySink};
//! let pixels = vec![0.5f32; 2 * 2 * 3];
//! let tensor = TensorView::bhwc(&pixels[..], [1, 2, 2, 3]).unwrap();
//! let sink = Arc::new(MemorySink::new());
//! let sender = Sender::new(sink.clone(), EncodeOptions::default()).unwrap();
//! # let _ = (&tensor, &sender);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod http;
pub mod ingest;
pub mod io;
pub mod metrics;
pub mod npy;
pub mod queue;
pub mod sender;
pub mod session;
pub mod sink;
pub mod wire;

pub use error::{Error, Result};
