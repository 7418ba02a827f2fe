#![forbid(unsafe_code)]
//! The one error type of `pngcast-core`.

use thiserror::Error;

/// Everything that can go wrong in `pngcast-core`: bad tensor shapes, sizes PNG cannot hold,
/// options out of range. Core does no I/O, so there is no I/O variant.
///
/// The enum is `#[non_exhaustive]`: new kinds may appear in minor releases.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A dimension was zero (an image with no pixels cannot be encoded).
    #[error("tensor dimension `{axis}` is zero")]
    ZeroDimension {
        /// Which axis: `batch`, `height`, `width` or `channels`.
        axis: &'static str,
    },
    /// The channel count is outside 1..=4.
    #[error(
        "unsupported channel count {0}: expected 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)"
    )]
    UnsupportedChannels(usize),
    /// The tensor has a rank the API does not accept.
    #[error("unsupported tensor rank {0}: expected [B,H,W,C], [H,W,C] or [B,H,W]")]
    UnsupportedRank(usize),
    /// The data buffer is shorter than the shape and strides need.
    #[error("buffer holds {got} elements but the shape and strides need {need}")]
    BufferTooShort {
        /// Elements the view needs.
        need: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// A size computation (elements, bytes, strides) overflowed `usize`.
    #[error("tensor size overflows: {0}")]
    SizeOverflow(&'static str),
    /// Width or height beyond what PNG allows (1..=2^31-1).
    #[error("image {width}x{height} is beyond what PNG allows (each side 1..=2147483647)")]
    ImageTooLarge {
        /// Requested width.
        width: usize,
        /// Requested height.
        height: usize,
    },
    /// A batch index past the end of the batch.
    #[error("batch index {index} is out of range for a batch of {batch}")]
    IndexOutOfRange {
        /// Requested index.
        index: usize,
        /// Batch size.
        batch: usize,
    },
    /// The pixel buffer handed to the encoder does not match the image description.
    #[error("pixel buffer holds {got} bytes but a {width}x{height} image with {channels} channel(s) at {bit_depth} bits needs {need}")]
    PixelBufferSize {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
        /// Channels per pixel.
        channels: u8,
        /// Bits per sample.
        bit_depth: u8,
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// An option is out of its documented range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A text key or value PNG cannot store (the key is not a PNG keyword, or the value holds NUL).
    #[error("invalid PNG text chunk (tEXt/iTXt): {0}")]
    InvalidText(String),
}

/// `Result` with [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
