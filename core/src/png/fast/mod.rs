//! The fast coder: a deflate encoder specialised for filtered PNG rows (`Compression::Fast`).
//!
//! Per frame, or per stripe in frames of up to 384 KiB ([`shares_code`]):
//! 1. **Sample.** About one byte in eight (at most 24 pieces), in 2 KiB pieces spread over the
//!    rows and across their width, is filtered (per-row choice under a prior cost model) and
//!    tokenised into a symbol histogram ([`FrameCode::sample`]).
//! 2. **Table.** One dynamic Huffman code, limited to 14 bits, is built from the histogram (every
//!    symbol keeps a code, so unsampled rows may hold anything). The table also yields a cost
//!    model shaped for SIMD: the mean code length of residuals `+d`/`-d` for `|d| < 31`, one
//!    mean for the rest (a 32-entry table). [`FastLevel::Fastest`] may shape the code instead
//!    ([`CodeShape::NearShort`]: every residual near zero at most 8 bits, so whole blocks of
//!    them take the kernels' cheapest literal path) when that costs at most 2.5% on the sample.
//!
//! Per stripe (each its own deflate block, with the code in its header):
//! 3. **Code.** Each row is filtered (the filter with the least estimated bits, estimated on
//!    every other 64-byte block of the row, unless the block of 8 rows it is in started with 4
//!    rows agreeing on Paeth or Average, or with 1 choosing the filter the block before locked;
//!    or a fixed filter), Adler-32'd as it is filtered (in the same pass on AVX-512), and
//!    coded: literals, except that a run of >= 12 zero residuals
//!    becomes one literal zero followed by distance-1 matches (zero runs are the only repeats
//!    worth finding in filtered rows; anything longer-range costs more time than it saves).
//!    [`FastLevel::Balanced`] takes only runs of >= 16 ([`RunMode::Long`]) when its sample
//!    codes at most 1.5% larger that way: fewer runs split fewer rows into short literal spans.
//!    [`FastLevel::Fastest`] takes only runs that cover a whole 64-byte window
//!    ([`RunMode::Blocks`]): one test per window instead of a run search.
//! 4. **Fallback.** If the coded stripe would be larger than stored blocks, it is written as
//!    stored blocks (filter None) instead: output never exceeds stored size + 5 bytes per 64 KiB.
//!
//! The kernels (filter costs, filtering, run search, literal emission) live in [`kernels`], per
//! ISA, with the scalar one as the oracle.
#![deny(unsafe_code)]

pub(crate) mod bitwriter;
pub(crate) mod huffman;
pub(crate) mod kernels;

use bitwriter::BitWriter;
use huffman::{length_symbol, CodeShape, CostTable, Table, NUM_LITLEN};
use kernels::{scalar, Kernel, RunMode};

use super::adler::adler32_update;
use super::stripe::{StripeJob, StripeOut};
use super::Filter;

/// One of the fast coder's per-ISA kernels (scalar, AVX2, AVX-512, NEON), proven available on
/// this CPU. All write identical bytes; they differ in speed only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastKernel(Kernel);

impl FastKernel {
    /// Every kernel this CPU can run, fastest first, the scalar one last.
    pub fn available() -> Vec<FastKernel> {
        Kernel::all().iter().copied().map(FastKernel).collect()
    }

    /// The kernel used when none is pinned: the best available (scalar under
    /// `--cfg pngcast_force_scalar`).
    pub fn best() -> FastKernel {
        FastKernel(Kernel::best())
    }

    /// Its short name: `scalar`, `avx2`, `avx512` or `neon`.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// What the fast coder trades between speed and size. Both levels decode with any inflater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FastLevel {
    /// One filter (Paeth) for every row, no per-row choice, zero runs only where they cover a
    /// whole 64-byte window, and a code that keeps small residuals within 8 bits when that
    /// costs little: the fastest setting. On the corpus, 3-6% larger than
    /// [`FastLevel::Balanced`] on photos and the painting, 23% on the screenshot; 1.1-1.55x
    /// its speed on photos and the painting, 1.15x on the screenshot.
    Fastest,
    /// Per row, the filter (None, Sub, Up, Average or Paeth) with the fewest estimated coded bits
    /// under the stripe's own Huffman table, estimated for all five filters in one SIMD pass over
    /// every other 64-byte block of the row; in each block of 8 rows whose first 4 all chose
    /// Paeth (or all Average), the other 4 take it without estimating, and in a block after
    /// such a block, the other 7 when its first row chose the same. Zero runs of 16 or
    /// more become matches, or of 12 or more where the frame's sample says 16 would cost over
    /// 1.5% in size. The default.
    #[default]
    Balanced,
}

/// Bytes in one sampled piece of a stripe (a window of a wide row, or whole narrow rows).
/// Measured on the corpus against whole-row sampling of 12 rows per stripe (21-29% of the
/// data): 2 KiB pieces, one byte in 8 sampled, cost 0-0.3% in size on photos and the painting,
/// 2% on the 4K graphic and the screenshot (whose rows differ most), and save ~10% of the time.
const SAMPLE_PIECE: usize = 2048;
/// About one byte in this many of a stripe is sampled for its histogram...
const SAMPLE_FRACTION: usize = 8;
/// ...in at least this many pieces...
const SAMPLE_PIECES_MIN: usize = 4;
/// ...and at most this many.
const SAMPLE_PIECES_MAX: usize = 24;
/// Filter lock ([`FastLevel::Balanced`]): rows are taken in blocks of this many...
const LOCK_BLOCK: usize = 8;
/// ...and when the first this-many rows of a block all chose Paeth, or all chose Average, the
/// rest of the block uses that filter without estimating costs. Smooth photo regions keep one
/// of those two filters for many rows; text and plots switch among None, Sub and Up, and a
/// lead of 4 (not 3) kept their choices exact. Measured in one process, switched between runs:
/// +3-7% speed on the photos and the painting with sizes within 0.05%, the
/// screenshot's size unchanged (a lead of 3, or locking any filter, cost it 1.4-4%).
const LOCK_LEAD: usize = 4;
/// ...or this many, when the block before locked the same filter: a photo's smooth regions
/// keep one filter for dozens of rows, and one confirming row is enough there. Measured
/// against a lead of 4 throughout, alternating builds (best of 5x30 runs): +4% hubble and
/// retina, +3% kodim23, +2% the painting, with sizes equal or a few hundred bytes smaller on
/// every corpus image (a lead of 2 gained half as much).
const LOCK_LEAD_AGAIN: usize = 1;
/// Rows are filtered and coded in chunks of about this many bytes (a whole row at least).
const CHUNK_BYTES: usize = 16 * 1024;
/// The filter [`FastLevel::Fastest`] uses.
const FASTEST_FILTER: u8 = scalar::PAETH;
/// [`FastLevel::Fastest`] tries codes with every residual in -h..h at most 8 bits
/// ([`CodeShape::NearShort`]), widest first, so blocks of such residuals take the AVX-512
/// kernel's one-byte-per-code path. On kodim23 (where the free code gives 9-bit codes to
/// residuals around +-10) -16..16 gave +9% speed for +1% size; on retina it cost 10% in size
/// (its code is so skewed that 32 codes of at most 8 bits take room from the shortest), -8..8
/// 1.8%; -32..32 cost more on every photo.
const FASTEST_NEAR: &[u8] = &[16, 8, 4];
/// ...and keeps it only when at least this many per mille of the sampled literals then have
/// codes of at most 8 bits (below it, most 64-byte blocks still hold a longer code and the
/// short path only adds mispredicted tests: hubble at 959 lost 10%, kodim23 at 972 gained)...
const SHAPED_MIN_SHORT_PER_MILLE: u32 = 965;
/// ...and it codes the sample in at most this many per mille more bits than the free code.
const SHAPED_MAX_COST_PER_MILLE: u64 = 25;

/// [`FastLevel::Balanced`] codes only runs of at least [`kernels::LONG_RUN`] zeros when its
/// sample codes in at most this many per mille more bits that way than with runs of
/// [`kernels::MIN_RUN`] (estimated under the latter's code). Measured (estimate / actual
/// size): the painting 1024^2 crop 9.8 / 9.5, the full painting 13.7 / 12.6 (0.3% under png
/// `Fast` after it), rocket 22.6 / 22 (would end 1.6% over png `Fast`), retina 25.6-31 /
/// 17-32; kodim23 0.3, hubble 0.
const LONG_RUN_MAX_COST_PER_MILLE: u64 = 15;

/// Reusable buffers of the fast coder: after the first stripe of a given size, encoding
/// allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct FastScratch {
    /// Zeros: the "row above" of the image's first row.
    zeros: Vec<u8>,
    /// A chunk of filtered rows, each with its filter byte in front.
    row: Vec<u8>,
    /// The kernel to use; `None` means the cached best one.
    kernel: Option<Kernel>,
}

impl FastScratch {
    /// Sizes the buffers for stripes of `stripe_bytes` filtered bytes (rows of `row_bytes` plus
    /// their filter bytes), so that coding such a stripe allocates nothing.
    pub fn reserve(&mut self, row_bytes: usize, stripe_bytes: usize) {
        let chunk = chunk_size(row_bytes, stripe_bytes / (row_bytes + 1));
        grow(&mut self.zeros, row_bytes);
        grow(&mut self.row, chunk);
    }

    /// Pins the kernel (`None`: the best one).
    pub fn pin_kernel(&mut self, kernel: Option<FastKernel>) {
        self.kernel = kernel.map(|k| k.0);
    }

    /// Scratch pinned to one kernel (tests compare kernels).
    #[cfg(test)]
    pub(crate) fn with_kernel(kernel: Kernel) -> Self {
        Self {
            kernel: Some(kernel),
            ..Self::default()
        }
    }
}

/// Resizes `v` to at least `n` bytes (never shrinks).
fn grow(v: &mut Vec<u8>, n: usize) {
    if v.len() < n {
        v.resize(n, 0);
    }
}

/// Rows filtered and coded together, and rows per histogram sample group.
fn chunk_rows(row_bytes: usize, nrows: usize) -> (usize, usize) {
    let coded = (CHUNK_BYTES / (row_bytes + 1)).clamp(1, nrows.max(1));
    let sampled = (SAMPLE_PIECE / (row_bytes + 1)).max(1);
    (coded, sampled)
}

/// Bytes of the chunk buffer for a stripe of `nrows` rows.
fn chunk_size(row_bytes: usize, nrows: usize) -> usize {
    let (coded, sampled) = chunk_rows(row_bytes, nrows);
    (coded * (row_bytes + 1))
        .max(sampled * (row_bytes + 1))
        .max(SAMPLE_PIECE + 9)
}

/// Room the coder may ask for after the output's current length for a stripe of `nrows` rows
/// (a caller that reserves this much never sees the output grow): anything up to stored size
/// plus one worst-case chunk (14 bits a byte; the coder checks after every chunk), the header
/// and the writer's slack.
pub(crate) fn out_bound(row_bytes: usize, nrows: usize) -> usize {
    let (coded, _) = chunk_rows(row_bytes, nrows);
    stored_size(nrows * (row_bytes + 1)) + coded * (row_bytes + 1) * 2 + CODE_SLACK
}

/// Room beyond a chunk's worst case: the block header (286 4-bit code lengths and the fields
/// before them, 147 bytes), the end of block and a sync flush, and the writer's 8-byte stores.
const CODE_SLACK: usize = 512;

/// Size of `data_len` bytes written as stored blocks (5 header bytes per 65535 bytes).
fn stored_size(data_len: usize) -> usize {
    data_len + 5 * data_len.div_ceil(65535).max(1)
}

/// Unfiltered rows for the sampler: a whole frame, or one stripe's job ([`JobRows`]).
pub(crate) trait RowSource {
    /// Number of rows.
    fn height(&self) -> usize;
    /// Rows `first..first + n` (`n >= 1`, tightly packed), and the unfiltered row above
    /// `first`, empty when there is none (the image's first row: its "row above" is zeros).
    fn window(&mut self, first: usize, n: usize) -> (&[u8], &[u8]);
}

/// The rows of a [`StripeJob`] as a [`RowSource`] (the job's `prev_row` is the row above its
/// first row).
pub(crate) struct JobRows<'j, 'a>(pub &'j StripeJob<'a>);

impl RowSource for JobRows<'_, '_> {
    fn height(&self) -> usize {
        self.0.rows.len() / self.0.row_bytes
    }

    fn window(&mut self, first: usize, n: usize) -> (&[u8], &[u8]) {
        let rb = self.0.row_bytes;
        let above = if first > 0 {
            &self.0.rows[(first - 1) * rb..first * rb]
        } else {
            self.0.prev_row.unwrap_or(&[])
        };
        (above, &self.0.rows[first * rb..(first + n) * rb])
    }
}

/// The literal/length code the stripes of a frame share, from one histogram sampled over the
/// whole frame (sampling and building a table once per frame, not once per stripe: on one
/// thread the per-stripe samples and tables were ~15% of a photo's coding time).
#[derive(Debug, Clone)]
pub(crate) struct FrameCode {
    table: Table,
    /// How the stripes find zero runs ([`FastLevel::Balanced`]: [`RunMode::Long`] unless the
    /// sample says it costs too much; [`FastLevel::Fastest`]: [`RunMode::Blocks`]).
    runs: RunMode,
    /// Predicted at 63/64 of stored size or more (noise codes to exactly 8 bits a byte): every
    /// stripe is written stored; coding would save at most ~1.5% and cost the whole pass.
    stored: bool,
}

impl FrameCode {
    /// Samples `src` (rows of `row_bytes`, `bpp` bytes per pixel) as the stripes will filter it
    /// and builds the code. Uses `scratch`'s buffers and kernel.
    pub(crate) fn sample(
        src: &mut impl RowSource,
        row_bytes: usize,
        bpp: usize,
        filter: Filter,
        level: FastLevel,
        scratch: &mut FastScratch,
    ) -> Self {
        let rb = row_bytes;
        assert!(rb > 0 && (1..=8).contains(&bpp) && bpp <= rb);
        let nrows = src.height();
        let kernel = scratch.kernel.unwrap_or_else(Kernel::best);
        let data_len = nrows * (rb + 1);
        grow(&mut scratch.zeros, rb);
        grow(&mut scratch.row, chunk_size(rb, nrows));
        let fixed = fixed_filter(filter, level);
        let zeros = &scratch.zeros[..rb];

        // A few pieces of about SAMPLE_PIECE bytes spread over the rows, about
        // 1/SAMPLE_FRACTION of them (narrow rows: groups of whole consecutive rows, so zero
        // runs across rows are seen; wide rows: a window of one row, its position moving
        // across the width from piece to piece).
        let mut hist = Histogram::new();
        let mode = run_mode(level);
        let prior = CostTable::prior();
        let (_, group) = chunk_rows(rb, nrows);
        let mut sampled_bytes = 0usize;
        let piece = SAMPLE_PIECE;
        let pieces =
            (data_len / (piece * SAMPLE_FRACTION)).clamp(SAMPLE_PIECES_MIN, SAMPLE_PIECES_MAX);
        if rb < piece {
            let groups = nrows.div_ceil(group);
            let samples = groups.min(pieces);
            for s in 0..samples {
                let r0 = (s * groups / samples) * group;
                let rows_here = group.min(nrows - r0);
                let (above, rows) = src.window(r0, rows_here);
                let buf = &mut scratch.row[..rows_here * (rb + 1)];
                for (i, seg) in buf.chunks_exact_mut(rb + 1).enumerate() {
                    let raw = &rows[i * rb..(i + 1) * rb];
                    let prev = if i == 0 {
                        or_zeros(above, zeros)
                    } else {
                        &rows[(i - 1) * rb..i * rb]
                    };
                    let f = fixed.unwrap_or_else(|| choose(kernel, raw, prev, bpp, &prior));
                    seg[0] = f;
                    kernel.filter_row(f, raw, prev, bpp, &mut seg[1..]);
                }
                count_tokens(kernel, buf, &mut hist, mode);
                sampled_bytes += buf.len();
            }
        } else {
            let span = rb - piece;
            for s in 0..pieces {
                let r = s * nrows / pieces;
                // Window start: a multiple of bpp, with bpp bytes of left context when not at 0.
                let o = (2 * s + 1) * span / (2 * pieces) / bpp * bpp;
                let lo = o.saturating_sub(bpp);
                let (above, row) = src.window(r, 1);
                let raw = &row[lo..o + piece];
                let prev = &or_zeros(above, zeros)[lo..o + piece];
                let f = fixed.unwrap_or_else(|| choose(kernel, raw, prev, bpp, &prior));
                let buf = &mut scratch.row[..raw.len() + 1];
                kernel.filter_row(f, raw, prev, bpp, &mut buf[1..]);
                // The filter byte goes just before the window's first counted byte.
                buf[o - lo] = f;
                let buf = &buf[o - lo..];
                count_tokens(kernel, buf, &mut hist, mode);
                sampled_bytes += buf.len();
            }
        }
        let (counts, short_runs) = hist.finish();
        let mut table = choose_table(&counts, level);
        let mut predicted = table.coded_bits(&counts);
        let mut runs = mode;
        if mode == RunMode::Any {
            if short_runs.iter().all(|&n| n == 0) {
                // No run shorter than LONG_RUN: both modes count the same symbols, so the
                // same code (no second table to build).
                runs = RunMode::Long;
            } else {
                // The same sample in RunMode::Long: its runs shorter than LONG_RUN become
                // zeros.
                let long = long_run_counts(&counts, &short_runs);
                // Estimated under the table at hand (an upper bound of the long code's bits).
                let bits = table.coded_bits(&long);
                if bits * 1000 <= predicted * (1000 + LONG_RUN_MAX_COST_PER_MILLE) {
                    table = choose_table(&long, level);
                    predicted = table.coded_bits(&long);
                    runs = RunMode::Long;
                }
            }
        }
        let stored = predicted * 64 >= 63 * 8 * sampled_bytes as u64;
        Self {
            table,
            runs,
            stored,
        }
    }
}

/// The code for `counts` at `level`: for [`FastLevel::Balanced`] the free (optimal) code; for
/// [`FastLevel::Fastest`] the widest near-short code of [`FASTEST_NEAR`] that keeps the short
/// path on and costs little more than the free code, else the free code.
fn choose_table(counts: &[u32; NUM_LITLEN], level: FastLevel) -> Table {
    let free = Table::from_counts(counts);
    if level != FastLevel::Fastest {
        return free;
    }
    let fb = free.coded_bits(counts);
    for &half in FASTEST_NEAR {
        let shaped = Table::from_counts_shaped(counts, CodeShape::NearShort(half));
        let sb = shaped.coded_bits(counts);
        if shaped.short_per_mille >= SHAPED_MIN_SHORT_PER_MILLE
            && sb * 1000 <= fb * (1000 + SHAPED_MAX_COST_PER_MILLE)
        {
            return shaped;
        }
    }
    free
}

/// How each level finds zero runs.
fn run_mode(level: FastLevel) -> RunMode {
    match level {
        FastLevel::Fastest => RunMode::Blocks,
        FastLevel::Balanced => RunMode::Any,
    }
}

/// The row above (`above`), or `zeros` when there is none.
fn or_zeros<'a>(above: &'a [u8], zeros: &'a [u8]) -> &'a [u8] {
    if above.is_empty() {
        zeros
    } else {
        above
    }
}

/// Whether the stripes of a frame of `height` rows of `row_bytes` share one [`FrameCode`]:
/// when its sample is capped at [`SAMPLE_PIECES_MAX`] pieces, i.e. thinner than the stripes'
/// own samples together. Smaller frames sample as densely either way, so their stripes keep
/// their own codes, which adapt to their part of the frame (1.7% smaller on the 512x512 gray
/// photo than one shared code) at the cost of a table per stripe only.
pub(crate) fn shares_code(height: usize, row_bytes: usize) -> bool {
    height.saturating_mul(row_bytes + 1) > SAMPLE_PIECES_MAX * SAMPLE_PIECE * SAMPLE_FRACTION
}

/// Encodes one stripe (see [`StripeJob`] for the output contract) with its own code, sampled
/// from the stripe alone, and returns the Adler-32 of the bytes it contributes (filter byte +
/// filtered row, per row).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn encode_stripe(
    job: &StripeJob<'_>,
    level: FastLevel,
    scratch: &mut FastScratch,
    out: &mut StripeOut,
) -> u32 {
    check_job(job);
    let code = FrameCode::sample(
        &mut JobRows(job),
        job.row_bytes,
        job.bpp,
        job.filter,
        level,
        scratch,
    );
    encode_stripe_with(job, level, &code, scratch, out)
}

/// Panics (a programmer error) unless the job holds whole rows, a PNG pixel size and a row
/// above of a row's length.
fn check_job(job: &StripeJob<'_>) {
    let rb = job.row_bytes;
    assert!(
        rb > 0 && job.rows.len().is_multiple_of(rb),
        "StripeJob rows must be whole rows"
    );
    assert!((1..=8).contains(&job.bpp) && job.bpp <= rb);
    if let Some(p) = job.prev_row {
        assert_eq!(p.len(), rb);
    }
}

/// Encodes one stripe with a code shared by the frame ([`FrameCode::sample`] over the frame's
/// rows, same filter and level); see [`encode_stripe`].
pub(crate) fn encode_stripe_with(
    job: &StripeJob<'_>,
    level: FastLevel,
    code: &FrameCode,
    scratch: &mut FastScratch,
    out: &mut StripeOut,
) -> u32 {
    check_job(job);
    let rb = job.row_bytes;
    let nrows = job.rows.len() / rb;
    let kernel = scratch.kernel.unwrap_or_else(Kernel::best);
    let data_len = nrows * (rb + 1);
    let stored_len = stored_size(data_len);
    grow(&mut scratch.zeros, rb);
    grow(&mut scratch.row, chunk_size(rb, nrows));
    let fixed = fixed_filter(job.filter, level);
    let (rows_per_chunk, _) = chunk_rows(rb, nrows);
    let table = &code.table;
    if code.stored {
        return write_stored(job, out);
    }

    // 2. Code, in place after the output's current end. Rows are filtered into a chunk of about
    // CHUNK_BYTES, which is then Adler-32'd and tokenised as one segment (so zero runs continue
    // across the rows of narrow images). The writer takes the room already initialised (all of
    // it in a slot sized for the stripe) and grows it a chunk at a time past that: an output
    // coded over the previous frame's bytes zero-fills only past them, about one chunk's worst
    // case, not the stripe's.
    let bound = out_bound(rb, nrows);
    let mut bw = BitWriter::new(out.spare_within(CODE_SLACK, bound));
    bw.write(job.is_last as u64, 1);
    bw.write(2, 2); // BTYPE = 10: dynamic Huffman
    write_header(table, &mut bw);

    // The stripe's Adler-32: extended row by row in the filter's own pass where the kernel
    // fuses the two for rows this long, else chunk by chunk after filtering.
    let mut adler = 1u32;
    let fused = kernel.fuses_adler(rb);
    let cost = &table.cost;
    let mut repeating = false;
    // The filter lock's state for the current block of LOCK_BLOCK rows: the lead rows' common
    // choice so far, how many agreed, and the locked filter.
    let (mut lead, mut agreed, mut locked): (Option<u8>, usize, Option<u8>) = (None, 0, None);
    // The filter the previous block locked, if it did.
    let mut was_locked: Option<u8> = None;
    let mut r = 0;
    while r < nrows {
        let n = rows_per_chunk.min(nrows - r);
        let chunk = &mut scratch.row[..n * (rb + 1)];
        for (i, seg) in chunk.chunks_exact_mut(rb + 1).enumerate() {
            let raw = row(job, r + i);
            let prev = prev_of(job, r + i, &scratch.zeros[..rb]);
            // A row equal to the one above (flat fills, margins) is all zeros under Up, the
            // cheapest any filter can do: no cost pass, no filter. The comparison is tried
            // while rows keep repeating, and on every 8th row otherwise (rows of plots and
            // screenshots often match until late in the row, which makes a failed comparison
            // cost nearly a pass).
            if fixed.is_none() && (repeating || (r + i) % 8 == 0) {
                repeating = raw == prev;
                if repeating {
                    seg[0] = scalar::UP;
                    seg[1..].fill(0);
                    if fused {
                        adler = adler32_update(adler, seg);
                    }
                    continue;
                }
            }
            let y = r + i;
            if y % LOCK_BLOCK == 0 {
                was_locked = locked;
                (lead, agreed, locked) = (None, 0, None);
            }
            let f = match (fixed, locked) {
                (Some(f), _) | (None, Some(f)) => f,
                (None, None) => {
                    let f = choose(kernel, raw, prev, job.bpp, cost);
                    if y % LOCK_BLOCK < LOCK_LEAD && lead.is_none_or(|l| l == f) {
                        lead = Some(f);
                        agreed += 1;
                        let need = if was_locked == Some(f) {
                            LOCK_LEAD_AGAIN
                        } else {
                            LOCK_LEAD
                        };
                        if agreed == need && (f == scalar::PAETH || f == scalar::AVG) {
                            locked = Some(f);
                        }
                    }
                    f
                }
            };
            seg[0] = f;
            if fused {
                adler = kernel.filter_row_adler(f, raw, prev, job.bpp, &mut seg[1..], adler);
            } else {
                kernel.filter_row(f, raw, prev, job.bpp, &mut seg[1..]);
            }
        }
        if !fused {
            adler = adler32_update(adler, chunk);
        }
        let need = bw.len_bytes() + chunk.len() * 2 + CODE_SLACK;
        if bw.room() < need {
            let state = bw.into_state();
            bw = BitWriter::continue_on(out.spare_within(need, bound), state);
        }
        emit_tokens(kernel, chunk, table, &mut bw, code.runs);
        if bw.len_bytes() > stored_len {
            return write_stored(job, out);
        }
        r += n;
    }
    // End of block.
    let need = bw.len_bytes() + CODE_SLACK;
    if bw.room() < need {
        let state = bw.into_state();
        bw = BitWriter::continue_on(out.spare_within(need, bound), state);
    }
    bw.write(table.codes[256] as u64, table.lens[256] as u32);
    if !job.is_last {
        // Sync flush: an empty stored block ends the stripe on a byte boundary.
        bw.write(0, 3);
        bw.align();
        bw.write(0xFFFF_0000, 32);
    }
    let n = bw.finish();
    if n > stored_len {
        return write_stored(job, out);
    }
    out.commit(n);
    adler
}

/// The filter every row uses, or `None` for a per-row choice.
fn fixed_filter(filter: Filter, level: FastLevel) -> Option<u8> {
    match filter {
        Filter::None => Some(scalar::NONE),
        Filter::Sub => Some(scalar::SUB),
        Filter::Up => Some(scalar::UP),
        Filter::Average => Some(scalar::AVG),
        Filter::Paeth => Some(scalar::PAETH),
        Filter::Adaptive => match level {
            FastLevel::Fastest => Some(FASTEST_FILTER),
            FastLevel::Balanced => None,
        },
    }
}

/// The filter with the fewest estimated bits; ties go to the lower filter type.
#[inline]
fn choose(kernel: Kernel, raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> u8 {
    let c = kernel.filter_costs(raw, prev, bpp, cost);
    let mut best = 0;
    for f in 1..5 {
        if c[f] < c[best] {
            best = f;
        }
    }
    best as u8
}

fn row<'a>(job: &StripeJob<'a>, r: usize) -> &'a [u8] {
    &job.rows[r * job.row_bytes..(r + 1) * job.row_bytes]
}

fn prev_of<'a>(job: &StripeJob<'a>, r: usize, zeros: &'a [u8]) -> &'a [u8] {
    if r > 0 {
        row(job, r - 1)
    } else {
        job.prev_row.unwrap_or(zeros)
    }
}

/// Writes HLIT/HDIST/HCLEN and the code lengths. The code-length code gives each length 0..=15
/// a 4-bit code (a complete code, so no run-length symbols and no second table to build):
/// 144 bytes per stripe, a fraction of a percent of a typical stripe.
fn write_header(table: &Table, bw: &mut BitWriter<'_>) {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    bw.write((NUM_LITLEN - 257) as u64, 5);
    bw.write(0, 5); // one distance code
    bw.write(15, 4); // 19 code-length code lengths
    for &s in &ORDER {
        bw.write(if s < 16 { 4 } else { 0 }, 3);
    }
    // With every length symbol at 4 bits, symbol s's canonical code is s itself.
    for &l in &table.lens {
        bw.write((l as u16).reverse_bits() as u64 >> 12, 4);
    }
    bw.write(1u16.reverse_bits() as u64 >> 12, 4); // distance code 0: length 1
}

/// Codes one segment (filtered rows, each with its filter byte): literals, and zero runs as
/// matches.
#[inline]
fn emit_tokens(kernel: Kernel, seg: &[u8], table: &Table, bw: &mut BitWriter<'_>, mode: RunMode) {
    kernel.emit_segment(seg, table, bw, mode);
}

/// A symbol histogram being counted: literals in four interleaved tables (so that repeated
/// bytes do not serialise on one counter), match lengths in deflate symbols.
struct Histogram {
    lit: [[u32; 256]; 4],
    counts: [u32; NUM_LITLEN],
    /// Runs counted in [`RunMode::Any`] that [`RunMode::Long`] would leave as literals, by
    /// length - [`kernels::MIN_RUN`].
    short_runs: ShortRuns,
}

/// Counts of zero runs of [`kernels::MIN_RUN`]..[`kernels::LONG_RUN`] bytes.
type ShortRuns = [u32; kernels::LONG_RUN - kernels::MIN_RUN];

impl Histogram {
    fn new() -> Self {
        Self {
            lit: [[0; 256]; 4],
            counts: [0; NUM_LITLEN],
            short_runs: [0; kernels::LONG_RUN - kernels::MIN_RUN],
        }
    }

    fn literals(&mut self, bytes: &[u8]) {
        let mut quads = bytes.chunks_exact(4);
        for q in &mut quads {
            self.lit[0][q[0] as usize] += 1;
            self.lit[1][q[1] as usize] += 1;
            self.lit[2][q[2] as usize] += 1;
            self.lit[3][q[3] as usize] += 1;
        }
        for &b in quads.remainder() {
            self.lit[0][b as usize] += 1;
        }
    }

    /// The counts of all symbols, and the short runs among them.
    fn finish(mut self) -> ([u32; NUM_LITLEN], ShortRuns) {
        for (b, c) in self.counts[..256].iter_mut().enumerate() {
            *c += self.lit[0][b] + self.lit[1][b] + self.lit[2][b] + self.lit[3][b];
        }
        (self.counts, self.short_runs)
    }
}

/// The symbol counts of a sample counted in [`RunMode::Any`] (`counts`, with `short` its runs
/// shorter than [`kernels::LONG_RUN`]) as [`RunMode::Long`] would count it: each such run of
/// `k` zeros is `k` literal zeros instead of one and a match of `k - 1`. Exact: in both modes a
/// run is a whole span of zeros, so the longer runs are the same runs.
fn long_run_counts(counts: &[u32; NUM_LITLEN], short: &ShortRuns) -> [u32; NUM_LITLEN] {
    let mut long = *counts;
    for (i, &n) in short.iter().enumerate() {
        let k = kernels::MIN_RUN + i;
        long[0] += n * (k as u32 - 1);
        long[257 + length_symbol(k - 1)] -= n;
    }
    long
}

/// Counts the symbols [`emit_tokens`] would write for `seg`.
fn count_tokens(kernel: Kernel, seg: &[u8], hist: &mut Histogram, mode: RunMode) {
    if mode == RunMode::Blocks {
        scalar::block_tokens(seg, |t| match t {
            scalar::Token::Literals(a, b) => hist.literals(&seg[a..b]),
            scalar::Token::Run(k) => count_run(k, &mut hist.counts),
        });
        return;
    }
    let mut i = 0;
    let min = mode.min_run();
    while let Some(s) = kernel.find_run(seg, i, min) {
        hist.literals(&seg[i..s]);
        let k = kernel.zero_run(seg, s);
        count_run(k, &mut hist.counts);
        if k < kernels::LONG_RUN {
            hist.short_runs[k - kernels::MIN_RUN] += 1;
        }
        i = s + k;
    }
    hist.literals(&seg[i..]);
}

/// Counts the symbols of a run of `k` zeros ([`kernels::emit_run`]).
fn count_run(k: usize, counts: &mut [u32; NUM_LITLEN]) {
    counts[0] += 1;
    let mut m = k - 1;
    while m >= 258 + 3 {
        counts[257 + length_symbol(258)] += 1;
        m -= 258;
    }
    if m > 258 {
        counts[257 + length_symbol(m - 3)] += 1;
        m = 3;
    }
    counts[257 + length_symbol(m)] += 1;
}

/// Writes the stripe as stored blocks of filter-None rows; returns their Adler-32.
fn write_stored(job: &StripeJob<'_>, out: &mut StripeOut) -> u32 {
    let rb = job.row_bytes;
    let nrows = job.rows.len() / rb;
    let data_len = nrows * (rb + 1);
    out.reserve(stored_size(data_len));
    let mut adler = simd_adler32::Adler32::new();
    let mut left_in_block = 0usize;
    let mut remaining = data_len;
    let mut put = |bytes: &[u8], out: &mut StripeOut, left_in_block: &mut usize| {
        let mut bytes = bytes;
        while !bytes.is_empty() {
            if *left_in_block == 0 {
                let len = remaining.min(65535);
                let last = job.is_last && len == remaining;
                out.push(last as u8);
                out.extend_from_slice(&(len as u16).to_le_bytes());
                out.extend_from_slice(&(!(len as u16)).to_le_bytes());
                *left_in_block = len;
            }
            let take = bytes.len().min(*left_in_block);
            out.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            *left_in_block -= take;
            remaining -= take;
        }
    };
    for r in 0..nrows {
        let raw = row(job, r);
        adler.write(&[0]);
        adler.write(raw);
        put(&[0], out, &mut left_in_block);
        put(raw, out, &mut left_in_block);
    }
    adler.finish()
}

#[cfg(test)]
mod tests;
