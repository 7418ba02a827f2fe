#![forbid(unsafe_code)]
//! The scalar kernel: the oracle every SIMD kernel must match bit for bit, and the fallback on
//! CPUs without them (or under `--cfg pngcast_force_scalar`).

use super::MIN_RUN;
use crate::png::fast::bitwriter::BitWriter;
use crate::png::fast::huffman::{CostTable, Table};

/// PNG filter types in the order the cost array uses.
pub(crate) const NONE: u8 = 0;
pub(crate) const SUB: u8 = 1;
pub(crate) const UP: u8 = 2;
pub(crate) const AVG: u8 = 3;
pub(crate) const PAETH: u8 = 4;

/// The Paeth predictor (PNG spec 9.4), exactly.
#[inline(always)]
pub(crate) fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = a as i16 + b as i16 - c as i16;
    let pa = (p - a as i16).abs();
    let pb = (p - b as i16).abs();
    let pc = (p - c as i16).abs();
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// The residual of filter `f` at byte `i`.
#[inline(always)]
fn residual(f: u8, raw: &[u8], prev: &[u8], bpp: usize, i: usize) -> u8 {
    let x = raw[i];
    let b = prev[i];
    let (a, c) = if i >= bpp {
        (raw[i - bpp], prev[i - bpp])
    } else {
        (0, 0)
    };
    match f {
        NONE => x,
        SUB => x.wrapping_sub(a),
        UP => x.wrapping_sub(b),
        AVG => x.wrapping_sub(((a as u16 + b as u16) >> 1) as u8),
        _ => x.wrapping_sub(paeth(a, b, c)),
    }
}

/// Filter costs are estimated on every other block of this many bytes (after the first `bpp`
/// bytes, which are always counted): half the work of the full row. Measured on the corpus,
/// the rows chosen give output within 0.2% of full-row estimates.
pub(crate) const COST_BLOCK: usize = 64;

/// True if byte `i` of a row counts towards the filter-cost estimate.
#[inline]
pub(crate) fn cost_counted(i: usize, bpp: usize) -> bool {
    i < bpp || ((i - bpp) / COST_BLOCK).is_multiple_of(2)
}

/// Estimated coded bits of `raw` under each of the five filters (`cost.full` per residual),
/// over the bytes [`cost_counted`] selects.
pub(crate) fn filter_costs(raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] {
    let mut out = [0u64; 5];
    for i in 0..raw.len() {
        if cost_counted(i, bpp) {
            for (f, o) in out.iter_mut().enumerate() {
                *o += cost.full[residual(f as u8, raw, prev, bpp, i) as usize] as u64;
            }
        }
    }
    out
}

/// Costs of every byte in `from..to` (no block selection), with their true neighbours: the
/// heads and tails of the SIMD kernels.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn costs_between(
    raw: &[u8],
    prev: &[u8],
    bpp: usize,
    from: usize,
    to: usize,
    cost: &CostTable,
) -> [u64; 5] {
    let mut out = [0u64; 5];
    for i in from..to {
        for (f, o) in out.iter_mut().enumerate() {
            *o += cost.full[residual(f as u8, raw, prev, bpp, i) as usize] as u64;
        }
    }
    out
}

/// Writes the residuals of filter `f` for `raw` (row above `prev`) into `dst`.
pub(crate) fn filter_row(f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
    for (i, d) in dst[..raw.len()].iter_mut().enumerate() {
        *d = residual(f, raw, prev, bpp, i);
    }
}

/// The start of the first run of at least [`MIN_RUN`] zero bytes in `seg[from..]`, if any.
pub(crate) fn find_run(seg: &[u8], from: usize) -> Option<usize> {
    let mut zeros = 0;
    for (i, &b) in seg.iter().enumerate().skip(from) {
        if b == 0 {
            zeros += 1;
            if zeros == MIN_RUN {
                return Some(i + 1 - MIN_RUN);
            }
        } else {
            zeros = 0;
        }
    }
    None
}

/// The number of zero bytes starting at `seg[start]`.
pub(crate) fn zero_run(seg: &[u8], start: usize) -> usize {
    seg[start..].iter().take_while(|&&b| b == 0).count()
}

/// Emits every byte of `bytes` as a literal, four codes (<= 56 bits) per write.
pub(crate) fn emit_literals(bytes: &[u8], table: &Table, bw: &mut BitWriter<'_>) {
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        let mut acc = 0u64;
        let mut n = 0u32;
        for &b in c {
            let e = table.lit_packed[b as usize];
            acc |= ((e & 0xFFFF) as u64) << n;
            n += e >> 16;
        }
        bw.write(acc, n);
    }
    for &b in chunks.remainder() {
        let e = table.lit_packed[b as usize];
        bw.write((e & 0xFFFF) as u64, e >> 16);
    }
}
