//! `pngcast-core`: image tensors to PNG frames, fast. No I/O, no async.
//!
//! - [`tensor`]: borrowed, validated views over `[B,H,W,C]` / `[H,W,C]` / `[B,H,W]` tensors.
//! - [`convert`]: SIMD quantisation to 8- or 16-bit samples, bit-exact with ComfyUI by default.
//! - [`png`]: the parallel PNG writer.
//! - [`wire`]: ComfyUI's WebSocket messages (status, feature flags, announcements, type 1 and 4).
//! - [`sink`]: the [`sink::FrameSink`] trait transports implement, and an in-memory sink.
//! - [`queue`]: the per-client bounded queue with the `LatestWins` / `Reliable` policies.
//! - [`http`]: server configuration, request-head parsing, routing and responses.
//! - [`sender`]: encodes a batch and hands each frame to a sink.
//!
//! ```
//! use pngcast_core::{convert::ConvertOptions, png::{EncodeOptions, Encoder}, tensor::TensorView};
//! let pixels = vec![0.5f32; 4 * 4 * 3];
//! let tensor = TensorView::bhwc(&pixels[..], [1, 4, 4, 3]).unwrap();
//! let mut encoder = Encoder::new(EncodeOptions::default()).unwrap();
//! let mut png = Vec::new();
//! encoder.encode_image_into(&tensor.image(0).unwrap(), ConvertOptions::default(), &mut png).unwrap();
//! assert_eq!(&png[1..4], b"PNG");
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod convert;
pub mod error;
pub mod http;
pub mod png;
pub mod queue;
pub mod sender;
pub mod sink;
pub mod tensor;
pub mod wire;

pub use error::{Error, Result};
