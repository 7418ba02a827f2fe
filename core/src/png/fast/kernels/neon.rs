//! NEON kernel (aarch64): filters and filter costs, 16 bytes per step, scalar row heads and
//! tails; run search and literal emission use the scalar code.
#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::scalar;
use crate::png::fast::huffman::{CostTable, NEAR_MAX};

/// Proof that the CPU has NEON (always true on aarch64 Linux, still detected): the token of
/// this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Neon {
    _priv: (),
}

impl Neon {
    /// True when this CPU can run the kernel (NEON).
    pub(crate) fn is_available() -> bool {
        std::arch::is_aarch64_feature_detected!("neon")
    }

    /// The kernel's token, if this CPU can run it.
    pub(crate) fn new() -> Option<Self> {
        Self::is_available().then_some(Neon { _priv: () })
    }

    /// The kernel handle.
    pub(crate) fn kernel(self) -> super::Kernel {
        super::Kernel::Neon(self)
    }

    /// See [`super::Kernel::filter_costs`]; panics under the same conditions.
    pub(crate) fn filter_costs(
        self,
        raw: &[u8],
        prev: &[u8],
        bpp: usize,
        cost: &CostTable,
    ) -> [u64; 5] {
        super::check_row(raw, prev, bpp);
        // SAFETY: `self` exists only if the CPU has NEON; `prev.len() == raw.len()` and
        // `1 <= bpp <= 8` were just checked.
        unsafe { filter_costs(raw, prev, bpp, cost) }
    }

    /// See [`super::Kernel::filter_row`]; panics under the same conditions.
    pub(crate) fn filter_row(self, f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
        super::check_row(raw, prev, bpp);
        super::check_dst(raw, dst);
        // SAFETY: NEON as above; `prev.len() == raw.len()`, `1 <= bpp <= 8` and
        // `dst.len() >= raw.len()` were just checked.
        unsafe { filter_row(f, raw, prev, bpp, dst) }
    }
}

/// The Paeth predictor in 8-bit lanes.
///
/// # Safety
/// The CPU must have NEON.
#[inline(always)]
unsafe fn paeth(a: uint8x16_t, b: uint8x16_t, c: uint8x16_t) -> uint8x16_t {
    // SAFETY: (whole body) register intrinsics; NEON enabled by the caller.
    unsafe {
        let pa = vabdq_u8(b, c);
        let pb = vabdq_u8(a, c);
        let same = vceqq_u8(vcgeq_u8(b, c), vcgeq_u8(a, c));
        let pc = vbslq_u8(same, vqaddq_u8(pa, pb), vabdq_u8(pa, pb));
        let use_a = vandq_u8(vcleq_u8(pa, pb), vcleq_u8(pa, pc));
        let use_b = vcleq_u8(pb, pc);
        vbslq_u8(use_a, a, vbslq_u8(use_b, b, c))
    }
}

/// The residual of filter `f` for one vector of pixels.
///
/// # Safety
/// The CPU must have NEON.
#[inline(always)]
unsafe fn residual(
    f: u8,
    x: uint8x16_t,
    a: uint8x16_t,
    b: uint8x16_t,
    c: uint8x16_t,
) -> uint8x16_t {
    // SAFETY: register intrinsics.
    unsafe {
        match f {
            scalar::NONE => x,
            scalar::SUB => vsubq_u8(x, a),
            scalar::UP => vsubq_u8(x, b),
            // vhaddq_u8 is floor((a + b) / 2).
            scalar::AVG => vsubq_u8(x, vhaddq_u8(a, b)),
            _ => vsubq_u8(x, paeth(a, b, c)),
        }
    }
}

/// Loads x, a, b, c for bytes i..i+16.
///
/// # Safety
/// The CPU must have NEON; `prev.len() >= raw.len()`, `bpp <= i` and `i + 16 <= raw.len()`
/// (bytes `i - bpp .. i + 16` of both slices are read).
#[inline(always)]
unsafe fn load4(raw: &[u8], prev: &[u8], bpp: usize, i: usize) -> [uint8x16_t; 4] {
    // SAFETY: bpp <= i and i + 16 <= raw.len() <= prev.len() (this function's contract).
    unsafe {
        [
            vld1q_u8(raw.as_ptr().add(i)),
            vld1q_u8(raw.as_ptr().add(i - bpp)),
            vld1q_u8(prev.as_ptr().add(i)),
            vld1q_u8(prev.as_ptr().add(i - bpp)),
        ]
    }
}

/// See [`super::Kernel::filter_costs`].
///
/// # Safety
/// The CPU must have NEON, and `prev.len() >= raw.len()` (the vector loads read `prev` at
/// every offset they read `raw`). Any `bpp` is sound.
#[target_feature(enable = "neon")]
unsafe fn filter_costs(raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] {
    let n = raw.len();
    let head = bpp.min(n);
    let body_end = head + (n - head) / 16 * 16;
    let mut out = scalar::costs_between(raw, prev, bpp, 0, head, cost);
    // SAFETY: `near` is `[u8; 32]`: two 16-byte loads; register intrinsics; each `load4` is at
    // bpp.min(n) = head <= i (so bpp <= i) with i + 16 <= body_end <= n <= prev.len().
    unsafe {
        let tbl = uint8x16x2_t(
            vld1q_u8(cost.near.as_ptr()),
            vld1q_u8(cost.near.as_ptr().add(16)),
        );
        let near_max = vdupq_n_u8(NEAR_MAX);
        let mut i = head;
        while i < body_end {
            let [x, a, b, c] = load4(raw, prev, bpp, i);
            for f in 0..5u8 {
                let r = residual(f, x, a, b, c);
                // |r| as a signed byte (vabsq_s8(-128) = -128, i.e. 128), clamped.
                let d = vminq_u8(
                    vreinterpretq_u8_s8(vabsq_s8(vreinterpretq_s8_u8(r))),
                    near_max,
                );
                let v = vqtbl2q_u8(tbl, d);
                out[f as usize] += vaddlvq_u8(v) as u64;
            }
            // Four 16-byte steps per counted block, then skip one (scalar::cost_counted).
            i += 16;
            if (i - head) % (2 * scalar::COST_BLOCK) == scalar::COST_BLOCK {
                i += scalar::COST_BLOCK;
            }
        }
    }
    // The tail (< 16 bytes) lies within one block: counted whole or not at all.
    if body_end < n && scalar::cost_counted(body_end, bpp) {
        let t = scalar::costs_between(raw, prev, bpp, body_end, n, cost);
        for f in 0..5 {
            out[f] += t[f];
        }
    }
    out
}

/// See [`super::Kernel::filter_row`].
///
/// # Safety
/// The CPU must have NEON, `prev.len() >= raw.len()` and `dst.len() >= raw.len()`. `bpp > 8`
/// panics (scalar tail buffer), soundly.
#[target_feature(enable = "neon")]
unsafe fn filter_row(f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
    let n = raw.len();
    assert!(dst.len() >= n);
    let head = bpp.min(n);
    let body_end = head + (n - head) / 16 * 16;
    scalar::filter_row(f, &raw[..head], &prev[..head], bpp, &mut dst[..head]);
    let mut i = head;
    while i < body_end {
        // SAFETY: bpp <= i (as in `filter_costs`), i + 16 <= n <= prev.len() and
        // n <= dst.len() (asserted above).
        unsafe {
            let [x, a, b, c] = load4(raw, prev, bpp, i);
            vst1q_u8(dst.as_mut_ptr().add(i), residual(f, x, a, b, c));
        }
        i += 16;
    }
    if body_end < n {
        let k = bpp.min(body_end);
        let mut tmp = [0u8; 16 + 8];
        let len = n - body_end + k;
        scalar::filter_row(
            f,
            &raw[body_end - k..],
            &prev[body_end - k..],
            bpp,
            &mut tmp[..len],
        );
        dst[body_end..n].copy_from_slice(&tmp[k..len]);
    }
}
