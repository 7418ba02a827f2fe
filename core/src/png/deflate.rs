#![forbid(unsafe_code)]
//! Raw deflate for one stripe: stored blocks (the speed ceiling) or miniz_oxide (`Compact`).
//!
//! Both follow the [`StripeJob`] contract: append raw deflate, end byte-aligned (BFINAL only on
//! the image's last stripe), return the Adler-32 of the stripe's filtered bytes.

use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use simd_adler32::Adler32;

use super::filter::{for_each_filtered_row, RowFilter};
use super::stripe::{StripeJob, StripeOut};

/// The largest stored block payload deflate allows.
const MAX_STORED: usize = 65535;

/// Bytes of stored-block framing for `n` payload bytes: a 5-byte header per block of up to
/// 65535 bytes (at least one block, even when empty).
pub(crate) fn stored_overhead(n: usize) -> usize {
    5 * n.div_ceil(MAX_STORED).max(1)
}

/// Writes a payload of known total length as stored blocks, in pieces of any size: the block
/// headers are emitted as the running position crosses each 65535-byte boundary.
struct StoredWriter {
    /// Payload bytes not yet written.
    remaining: usize,
    /// Payload bytes left in the current block.
    block_left: usize,
    /// Whether the last block carries BFINAL.
    is_last: bool,
}

impl StoredWriter {
    fn new(total: usize, is_last: bool) -> Self {
        Self {
            remaining: total,
            block_left: 0,
            is_last,
        }
    }

    fn header(&mut self, out: &mut StripeOut) {
        let len = self.remaining.min(MAX_STORED);
        let bfinal = u8::from(self.is_last && len == self.remaining);
        let len16 = len as u16;
        out.push(bfinal); // BFINAL bit, BTYPE = 00 (stored), padding to the byte boundary.
        out.extend_from_slice(&len16.to_le_bytes());
        out.extend_from_slice(&(!len16).to_le_bytes());
        self.block_left = len;
    }

    fn push(&mut self, out: &mut StripeOut, mut data: &[u8]) {
        while !data.is_empty() {
            if self.block_left == 0 {
                self.header(out);
            }
            let take = self.block_left.min(data.len());
            out.extend_from_slice(&data[..take]);
            self.block_left -= take;
            self.remaining -= take;
            data = &data[take..];
        }
    }
}

/// Stored-block coder: filters each row (hot in L1), appends it framed as stored blocks and
/// folds it into the Adler-32. Costs one filter pass plus one copy per byte.
pub(crate) fn stored_stripe(job: &StripeJob<'_>, rf: &mut RowFilter, out: &mut StripeOut) -> u32 {
    let n_rows = job.rows.len() / job.row_bytes;
    let total = n_rows * (job.row_bytes + 1);
    out.reserve(total + stored_overhead(total));
    let mut w = StoredWriter::new(total, job.is_last);
    let mut adler = Adler32::new();
    for_each_filtered_row(job, rf, |k, row| {
        w.push(out, &[k]);
        w.push(out, row);
        adler.write(&[k]);
        adler.write(row);
    });
    debug_assert_eq!(w.remaining, 0);
    adler.finish()
}

/// Per-worker state of the miniz_oxide coder: the compressor (about 300 KiB of tables, reset,
/// never rebuilt, per stripe) and the stripe's filtered bytes.
#[derive(Default)]
pub(crate) struct MinizScratch {
    compressor: Option<Box<CompressorOxide>>,
    /// The level `compressor` is set to.
    level: u8,
    /// The stripe's filtered bytes (type byte + residuals per row).
    filtered: Vec<u8>,
}

impl std::fmt::Debug for MinizScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinizScratch")
            .field("level", &self.level)
            .field("filtered_capacity", &self.filtered.capacity())
            .finish_non_exhaustive()
    }
}

/// miniz_oxide flags for raw deflate (no zlib wrapper: we write our own) at `level`.
fn raw_flags(level: u8) -> u32 {
    // Negative window bits select raw deflate; strategy 0 is the default.
    create_comp_flags_from_zip_params(i32::from(level), -15, 0)
}

impl MinizScratch {
    /// Allocates the compressor and a buffer for `stripe_bytes` filtered bytes, if not yet done,
    /// so that [`compact_stripe`] allocates nothing. Does no other work.
    pub(crate) fn reserve(&mut self, level: u8, stripe_bytes: usize) {
        if self.compressor.is_none() {
            self.compressor = Some(Box::new(CompressorOxide::new(raw_flags(level))));
            self.level = level;
        }
        self.filtered.clear();
        self.filtered.reserve(stripe_bytes);
    }

    /// Readies the compressor for a new stripe at `level`: reset (clears its tables, no
    /// allocation) rather than rebuilt. Returns it.
    fn start(&mut self, level: u8) -> &mut CompressorOxide {
        let level_changed = self.level != level;
        self.level = level;
        let comp = self
            .compressor
            .get_or_insert_with(|| Box::new(CompressorOxide::new(raw_flags(level))));
        comp.reset();
        if level_changed {
            comp.set_format_and_level(miniz_oxide::DataFormat::Raw, level);
        }
        comp
    }
}

/// miniz_oxide coder: filters the stripe into the scratch buffer, one-shot Adler-32 over it, then
/// raw deflate at `level` ending with a sync flush (an empty stored block) or, for the last
/// stripe, the final block. Costs what miniz_oxide costs (tens of MP/s at level 1).
pub(crate) fn compact_stripe(
    job: &StripeJob<'_>,
    level: u8,
    rf: &mut RowFilter,
    scratch: &mut MinizScratch,
    out: &mut StripeOut,
) -> u32 {
    let n_rows = job.rows.len() / job.row_bytes;
    // Moved out and back so the compressor can be borrowed beside it; an empty Vec costs nothing.
    let mut filtered = std::mem::take(&mut scratch.filtered);
    filtered.clear();
    filtered.reserve(n_rows * (job.row_bytes + 1));
    for_each_filtered_row(job, rf, |k, row| {
        filtered.push(k);
        filtered.extend_from_slice(row);
    });
    let adler = super::adler::adler32(&filtered);
    let flush = if job.is_last {
        TDEFLFlush::Finish
    } else {
        TDEFLFlush::Sync
    };
    let comp = scratch.start(level);
    let mut input: &[u8] = &filtered;
    // One call normally consumes everything; loop in case miniz_oxide returns early.
    loop {
        let (status, consumed) = compress_to_output(comp, input, flush, |chunk| {
            out.extend_from_slice(chunk);
            true
        });
        input = &input[consumed..];
        match status {
            TDEFLStatus::Done => break,
            TDEFLStatus::Okay if input.is_empty() => break,
            TDEFLStatus::Okay if consumed > 0 => continue,
            // BadParam / PutBufFailed / no progress cannot happen with a freshly reset
            // compressor and a callback that accepts everything: a bug here, not bad input.
            other => unreachable!(
                "miniz_oxide returned {other:?} with {} bytes left",
                input.len()
            ),
        }
    }
    scratch.filtered = filtered;
    adler
}
