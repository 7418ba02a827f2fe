//! `pngcast-core`: image tensors to PNG frames, fast. No I/O, no async; the wire format,
//! HTTP front, queues and the `Sender` live in `pngcast-protocol`.
//!
//! - [`tensor`]: borrowed, validated views over `[B,H,W,C]` / `[H,W,C]` / `[B,H,W]` tensors.
//! - [`convert`]: SIMD quantisation to 8- or 16-bit samples, bit-exact with ComfyUI by default.
//! - [`png`]: the parallel PNG writer.
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
pub mod png;
pub mod tensor;

pub use error::{Error, Result};
