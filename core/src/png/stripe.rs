#![forbid(unsafe_code)]
//! One stripe of rows: the unit of parallel work. Every compression strategy (stored, miniz_oxide,
//! the fast coder) consumes a [`StripeJob`] and appends raw deflate bytes that concatenate with the
//! other stripes' into one valid zlib payload.

use super::Filter;

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
