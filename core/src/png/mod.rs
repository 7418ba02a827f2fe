//! The hand-rolled PNG writer: chunks, filters, deflate stripes encoded in parallel on rayon.
//!
//! CONTRACT (skeleton): the public types and `Encoder` methods below are the API other modules
//! and crates use; the implementation lives in submodules (`chunk`, `filter`, `adler`, `deflate`,
//! `stripe`, `parallel`, and later `fast`).

mod fast;
mod stripe;

pub use fast::FastLevel;

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use crate::convert::{BitDepth, ConvertOptions};
use crate::error::Result;
use crate::tensor::ImageView;

/// How the filtered rows are deflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Stored (uncompressed) deflate blocks: the speed ceiling, about raw size.
    Stored,
    /// miniz_oxide at this level (1..=9; 1 is what ComfyUI's Pillow `compress_level=1` uses).
    Compact(u8),
}

impl Default for Compression {
    /// miniz_oxide level 1, until the fast coder lands.
    fn default() -> Self {
        Compression::Compact(1)
    }
}

/// The PNG row filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Filter {
    /// Filter type 0.
    None,
    /// Filter type 1: difference with the pixel to the left.
    Sub,
    /// Filter type 2: difference with the pixel above.
    Up,
    /// Filter type 3: difference with the mean of left and above.
    Average,
    /// Filter type 4: Paeth predictor.
    Paeth,
    /// Per row, the filter with the minimum sum of absolute residuals (as signed bytes).
    #[default]
    Adaptive,
}

/// Where stripes are encoded.
#[derive(Debug, Clone, Default)]
pub enum Threads {
    /// The rayon pool of the calling context (the global pool unless inside `install`).
    #[default]
    Global,
    /// A private pool with this many threads, built once by the encoder. 1 means no parallelism.
    Fixed(NonZeroUsize),
    /// A caller-supplied pool.
    Pool(Arc<rayon::ThreadPool>),
}

/// What the pixel buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageInfo {
    /// Width in pixels, 1..=2^31-1.
    pub width: u32,
    /// Height in pixels, 1..=2^31-1.
    pub height: u32,
    /// Channels per pixel, 1..=4 (colour types 0, 4, 2, 6).
    pub channels: u8,
    /// Bits per sample.
    pub bit_depth: BitDepth,
}

/// Encoder settings. `#[non_exhaustive]`: build with `EncodeOptions::default()` and the setters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EncodeOptions {
    /// Deflate strategy. Default: [`Compression::Compact`]`(1)`.
    pub compression: Compression,
    /// Row filter. Default: [`Filter::Adaptive`].
    pub filter: Filter,
    /// Where stripes run. Default: [`Threads::Global`].
    pub threads: Threads,
    /// Rows per stripe; `None` picks a size from the image (small images use one stripe).
    /// The output depends on this value but never on the thread count.
    pub stripe_rows: Option<NonZeroU32>,
    /// `tEXt` chunks written before the image data, in order.
    pub text: Vec<(String, String)>,
}

impl EncodeOptions {
    /// Sets the compression.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
    /// Sets the filter.
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = f;
        self
    }
    /// Sets the threads.
    pub fn threads(mut self, t: Threads) -> Self {
        self.threads = t;
        self
    }
    /// Sets the rows per stripe.
    pub fn stripe_rows(mut self, rows: Option<NonZeroU32>) -> Self {
        self.stripe_rows = rows;
        self
    }
    /// Adds a `tEXt` chunk.
    pub fn text(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.text.push((key.into(), value.into()));
        self
    }
}

/// A reusable PNG encoder. Holds per-stripe scratch buffers so that encoding another frame of the
/// same size allocates nothing.
#[derive(Debug)]
pub struct Encoder {
    options: EncodeOptions,
}

impl Encoder {
    /// Validates `options` and builds an encoder.
    pub fn new(options: EncodeOptions) -> Result<Self> {
        Ok(Self { options })
    }

    /// The settings.
    pub fn options(&self) -> &EncodeOptions {
        &self.options
    }

    /// Replaces the `tEXt` chunks for the next frames (reuses the vector).
    pub fn set_text(&mut self, text: &[(String, String)]) {
        self.options.text.clear();
        self.options.text.extend_from_slice(text);
    }

    /// Encodes tightly packed sample rows (8-bit, or 16-bit big-endian) into a complete PNG,
    /// replacing the contents of `out` (its capacity is reused).
    pub fn encode_into(&mut self, info: &ImageInfo, pixels: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let _ = (info, pixels, out);
        unimplemented!("skeleton: implemented by the PNG writer work")
    }

    /// Converts a tensor image and encodes it, replacing the contents of `out`.
    pub fn encode_image_into(
        &mut self,
        img: &ImageView<'_>,
        convert: ConvertOptions,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let _ = (img, convert, out);
        unimplemented!("skeleton: implemented by the PNG writer work")
    }
}

/// One-shot convenience: encodes into a new vector.
pub fn encode(info: &ImageInfo, pixels: &[u8], options: &EncodeOptions) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    Encoder::new(options.clone())?.encode_into(info, pixels, &mut out)?;
    Ok(out)
}
