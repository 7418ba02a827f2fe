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

/// One stripe's output bytes, kept across frames.
///
/// Bytes `..len` are the output. Unlike a `Vec`'s spare capacity, `buf` stays initialised past
/// `len`, so a coder that writes in place (the fast coder's bit writer takes a `&mut [u8]`) gets
/// its room with [`StripeOut::spare`] without zeroing it each frame, and without coding into a
/// scratch buffer first and copying. Growing zero-fills once; a frame of a size seen before
/// neither allocates nor fills.
#[derive(Debug, Default)]
pub(crate) struct StripeOut {
    buf: Vec<u8>,
    len: usize,
}

impl StripeOut {
    /// An empty output over `buf`: its bytes are kept as initialised room (a PNG buffer from
    /// the previous frame, coded over in place), none of them as output.
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Self { buf, len: 0 }
    }

    /// The output as a vector (the room past it is dropped from the length, not freed).
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }

    /// Overwrites output bytes `at..at + bytes.len()` (already written, e.g. a chunk's length
    /// field reserved before its data was coded).
    pub fn patch(&mut self, at: usize, bytes: &[u8]) {
        self.buf[..self.len][at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Empties the output (keeps the buffer).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes of output.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The output.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Makes room for `additional` more bytes (allocating and zero-filling only on growth).
    pub fn reserve(&mut self, additional: usize) {
        let need = self.len + additional;
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
    }

    /// Appends one byte.
    pub fn push(&mut self, b: u8) {
        self.extend_from_slice(&[b]);
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.spare(bytes.len()).copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The `n` bytes after the output, to be written in place and kept with
    /// [`StripeOut::commit`]. Their contents are whatever an earlier frame left.
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        self.reserve(n);
        &mut self.buf[self.len..self.len + n]
    }

    /// Like [`StripeOut::spare`], with as many bytes as are already initialised past the
    /// output, but at least `min` (zero-filling up to them) and at most `max`: room without a
    /// memset where there is room.
    pub fn spare_within(&mut self, min: usize, max: usize) -> &mut [u8] {
        let have = self.buf.len() - self.len;
        self.spare(have.min(max).max(min))
    }

    /// Bytes allocated (tests check that a repeated frame does not grow it).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Keeps the first `n` bytes of the last [`StripeOut::spare`] as output.
    pub fn commit(&mut self, n: usize) {
        assert!(self.len + n <= self.buf.len());
        self.len += n;
    }
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
/// `fast` is the frame's shared code when the compression is `Fast` (`None`: the stripe samples
/// its own).
pub(crate) fn code_stripe(
    job: &StripeJob<'_>,
    compression: Compression,
    fast: Option<&super::fast::FrameCode>,
    scratch: &mut StripeScratch,
    out: &mut StripeOut,
) -> u32 {
    match compression {
        Compression::Stored => deflate::stored_stripe(job, &mut scratch.rows, out),
        Compression::Compact(level) => {
            deflate::compact_stripe(job, level, &mut scratch.rows, &mut scratch.miniz, out)
        }
        Compression::Fast(level) => match fast {
            Some(code) => super::fast::encode_stripe_with(job, level, code, &mut scratch.fast, out),
            None => super::fast::encode_stripe(job, level, &mut scratch.fast, out),
        },
    }
}
