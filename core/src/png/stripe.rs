#![forbid(unsafe_code)]
//! One stripe of rows: the unit of parallel work. Every compression strategy (stored, miniz_oxide,
//! the fast coder) consumes a [`StripeJob`] and appends raw deflate bytes that concatenate with the
//! other stripes' into one valid zlib payload.

use super::deflate::{self, MinizScratch};
use super::filter::RowFilter;
use super::{Compression, Filter};

/// The input of one stripe's coder.
///
/// Output contract for every coder: append raw deflate data (no zlib header) to the output vector.
/// If `is_last`, the data ends with a block that has BFINAL set; otherwise it ends byte-aligned
/// (after a sync flush: an empty stored block, or a stored block), so that stripes concatenate.
/// The coder returns the Adler-32 (initial value 1) of exactly the bytes this stripe contributes to
/// the zlib payload: for each row, the filter type byte followed by the filtered row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StripeJob<'a> {
    /// The unfiltered row above this stripe's first row, or `None` for the image's first stripe.
    pub prev_row: Option<&'a [u8]>,
    /// This stripe's unfiltered rows, `row_bytes` each, tightly packed.
    pub rows: &'a [u8],
    /// Bytes per row (width * channels * bytes per sample).
    pub row_bytes: usize,
    /// Bytes per complete pixel (1..=8): the filter's left distance.
    pub bpp: usize,
    /// Row filter.
    pub filter: Filter,
    /// True for the image's last stripe, which ends the deflate stream.
    pub is_last: bool,
}

/// Per-worker scratch shared by every coder: taken by one rayon worker for the stripes it codes,
/// then returned to the encoder's free list, so a frame reuses the previous frame's buffers.
#[derive(Debug, Default)]
pub(crate) struct StripeScratch {
    /// Filter candidate rows.
    pub rows: RowFilter,
    /// miniz_oxide's compressor and the stripe's filtered bytes.
    pub miniz: MinizScratch,
    /// Converted samples for the tensor path: the row above the stripe, then its rows.
    pub convert: Vec<u8>,
    /// The fast coder's buffers.
    pub fast: super::fast::FastScratch,
}

impl StripeScratch {
    /// Allocates what coding a stripe of `stripe_bytes` filtered bytes with rows of `row_bytes`
    /// needs, so that the stripe itself allocates nothing. Cheap when already sized.
    pub(crate) fn reserve(
        &mut self,
        compression: Compression,
        row_bytes: usize,
        stripe_bytes: usize,
    ) {
        self.rows.prepare(row_bytes);
        match compression {
            Compression::Stored => {}
            Compression::Compact(level) => self.miniz.reserve(level, stripe_bytes),
            Compression::Fast(_) => self.fast.reserve(row_bytes, stripe_bytes),
        }
    }
}

/// Codes one stripe with the chosen compression: THE dispatch point. A new coder adds one arm.
/// Appends raw deflate to `out` and returns the Adler-32 of the stripe's filtered bytes.
pub(crate) fn code_stripe(
    job: &StripeJob<'_>,
    compression: Compression,
    scratch: &mut StripeScratch,
    out: &mut Vec<u8>,
) -> u32 {
    match compression {
        Compression::Stored => deflate::stored_stripe(job, &mut scratch.rows, out),
        Compression::Compact(level) => {
            deflate::compact_stripe(job, level, &mut scratch.rows, &mut scratch.miniz, out)
        }
        Compression::Fast(level) => super::fast::encode_stripe(job, level, &mut scratch.fast, out),
    }
}
