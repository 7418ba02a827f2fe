#![forbid(unsafe_code)]
//! The scalar kernel: the oracle every SIMD kernel must match bit for bit, and the fallback on
//! CPUs without them (or under `--cfg pngcast_force_scalar`).

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

/// Paeth as [`paeth`], written to compile without branches (photos make the branches of the
/// spec's form mispredict about a third of the time): `p - a = b - c`, `p - b = a - c`,
/// `p - c = a + b - 2c`, and the choice by comparisons (conditional moves).
#[inline(always)]
fn paeth_select(a: u8, b: u8, c: u8) -> u8 {
    let (a16, b16, c16) = (a as i16, b as i16, c as i16);
    let pa = (b16 - c16).abs();
    let pb = (a16 - c16).abs();
    let pc = (a16 + b16 - 2 * c16).abs();
    let bc = if pb <= pc { b } else { c };
    if pa <= pb && pa <= pc {
        a
    } else {
        bc
    }
}

/// Estimated coded bits of `raw` under each of the five filters (`cost.full` per residual),
/// over the bytes [`cost_counted`] selects.
pub(crate) fn filter_costs(raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] {
    let n = raw.len();
    let prev = &prev[..n];
    let head = bpp.min(n);
    // The first bpp bytes have no left neighbour; then every other COST_BLOCK-byte block.
    let mut out = costs_between(raw, prev, bpp, 0, head, cost);
    let t = &cost.full;
    let mut s = head;
    while s < n {
        let e = (s + COST_BLOCK).min(n);
        let x = &raw[s..e];
        let a = &raw[s - bpp..e - bpp];
        let b = &prev[s..e];
        let c = &prev[s - bpp..e - bpp];
        // Five scalar accumulators (an array would be kept in memory: a store-to-load chain
        // per add).
        let (mut s0, mut s1, mut s2, mut s3, mut s4) = (0u32, 0u32, 0u32, 0u32, 0u32);
        for (((&x, &a), &b), &c) in x.iter().zip(a).zip(b).zip(c) {
            let avg = ((a as u16 + b as u16) >> 1) as u8;
            s0 += t[x as usize] as u32;
            s1 += t[x.wrapping_sub(a) as usize] as u32;
            s2 += t[x.wrapping_sub(b) as usize] as u32;
            s3 += t[x.wrapping_sub(avg) as usize] as u32;
            s4 += t[x.wrapping_sub(paeth_select(a, b, c)) as usize] as u32;
        }
        for (o, v) in out.iter_mut().zip([s0, s1, s2, s3, s4]) {
            *o += v as u64;
        }
        s += 2 * COST_BLOCK;
    }
    out
}

/// Costs of every byte in `from..to` (no block selection), with their true neighbours: the
/// first `bpp` bytes of a row (every kernel) and the tails of the AVX2 and NEON kernels.
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

/// Writes the residuals of filter `f` for `raw` (row above `prev`) into `dst`: the first `bpp`
/// bytes through [`residual`], the rest one loop per filter over zipped slices (no bounds
/// checks, no per-byte dispatch; the compiler may vectorise them).
pub(crate) fn filter_row(f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
    let n = raw.len();
    let prev = &prev[..n];
    let head = bpp.min(n);
    for (i, d) in dst[..head].iter_mut().enumerate() {
        *d = residual(f, raw, prev, bpp, i);
    }
    let d = &mut dst[head..n];
    let x = &raw[head..];
    let a = &raw[..n - head];
    let b = &prev[head..];
    let c = &prev[..n - head];
    match f {
        NONE => d.copy_from_slice(x),
        SUB => {
            for ((d, &x), &a) in d.iter_mut().zip(x).zip(a) {
                *d = x.wrapping_sub(a);
            }
        }
        UP => {
            for ((d, &x), &b) in d.iter_mut().zip(x).zip(b) {
                *d = x.wrapping_sub(b);
            }
        }
        AVG => {
            for (((d, &x), &a), &b) in d.iter_mut().zip(x).zip(a).zip(b) {
                *d = x.wrapping_sub(((a as u16 + b as u16) >> 1) as u8);
            }
        }
        _ => {
            for ((((d, &x), &a), &b), &c) in d.iter_mut().zip(x).zip(a).zip(b).zip(c) {
                *d = x.wrapping_sub(paeth_select(a, b, c));
            }
        }
    }
}

/// The start of the first run of at least `min` (>= 1) zero bytes in `seg[from..]`, if any.
pub(crate) fn find_run(seg: &[u8], from: usize, min: usize) -> Option<usize> {
    debug_assert!(min >= 1);
    let mut zeros = 0;
    for (i, &b) in seg.iter().enumerate().skip(from) {
        if b == 0 {
            zeros += 1;
            if zeros == min {
                return Some(i + 1 - min);
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

/// One token of a segment coded in [`super::RunMode::Blocks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// The bytes `seg[a..b]`, as literals.
    Literals(usize, usize),
    /// A run of this many zeros (at least 64).
    Run(usize),
}

/// The tokens of `seg` in [`super::RunMode::Blocks`], in stream order (the oracle of the
/// kernels' block-run coders). The segment is walked in windows of 64 bytes from its start; a
/// run is made of whole zero windows, extended back over the zeros that end the window before
/// it and forward over the zeros that start the window after it (which then starts after the
/// run, so later windows shift). Everything else is literals, one span per window.
pub(crate) fn block_tokens(seg: &[u8], mut token: impl FnMut(Token)) {
    const W: usize = BLOCK;
    let n = seg.len();
    let zero = |a: usize, b: usize| seg[a..b].iter().all(|&x| x == 0);
    let (mut pos, mut run) = (0usize, 0usize);
    while pos < n {
        let w = W.min(n - pos);
        if w == W && zero(pos, pos + W) {
            run += W;
            pos += W;
            continue;
        }
        if run > 0 {
            let lz = zero_run(&seg[..pos + w], pos);
            token(Token::Run(run + lz));
            run = 0;
            pos += lz;
            continue;
        }
        let tz = if w == W {
            seg[pos..pos + W]
                .iter()
                .rev()
                .take_while(|&&x| x == 0)
                .count()
        } else {
            0
        };
        if tz > 0 && pos + 2 * W <= n && zero(pos + W, pos + 2 * W) {
            token(Token::Literals(pos, pos + W - tz));
            run = tz;
        } else {
            token(Token::Literals(pos, pos + w));
        }
        pos += w;
    }
    if run > 0 {
        token(Token::Run(run));
    }
}

/// Window of [`block_tokens`].
pub(crate) const BLOCK: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_free_paeth_is_paeth() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in (0..=255u8).step_by(3).chain([254, 255]) {
                    assert_eq!(paeth_select(a, b, c), paeth(a, b, c), "{a} {b} {c}");
                }
            }
        }
    }

    #[test]
    fn fast_loops_match_the_definition() {
        let mut seed = 12345u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        let cost = CostTable::prior();
        for n in [0usize, 1, 3, 7, 64, 65, 200, 515] {
            for bpp in 1..=8 {
                let raw: Vec<u8> = (0..n).map(|_| rnd()).collect();
                let prev: Vec<u8> = (0..n).map(|_| rnd()).collect();
                let mut want = [0u64; 5];
                for f in 0..5u8 {
                    let mut dst = vec![0u8; n];
                    filter_row(f, &raw, &prev, bpp, &mut dst);
                    for (i, &got) in dst.iter().enumerate() {
                        let r = residual(f, &raw, &prev, bpp, i);
                        assert_eq!(got, r, "filter {f} n {n} bpp {bpp} byte {i}");
                        if cost_counted(i, bpp) {
                            want[f as usize] += cost.full[r as usize] as u64;
                        }
                    }
                }
                assert_eq!(
                    filter_costs(&raw, &prev, bpp, &cost),
                    want,
                    "n {n} bpp {bpp}"
                );
            }
        }
    }
}
