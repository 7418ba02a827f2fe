//! AVX2 kernel: filters, filter costs (two 16-entry `vpshufb` lookups) and the zero-run search,
//! 32 bytes per step, scalar row heads and tails. Literal emission uses the scalar table coder
//! (AVX2 has no 256-entry byte lookup; the AVX-512 kernel vectorises that part).
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::scalar;
use crate::png::fast::huffman::{CostTable, NEAR_MAX};

/// Proof that the CPU has AVX2: the token of this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx2 {
    _priv: (),
}

impl Avx2 {
    /// True when this CPU can run the kernel (AVX2).
    pub(crate) fn is_available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// The kernel's token, if this CPU can run it.
    pub(crate) fn new() -> Option<Self> {
        Self::is_available().then_some(Avx2 { _priv: () })
    }

    /// The kernel handle.
    pub(crate) fn kernel(self) -> super::Kernel {
        super::Kernel::Avx2(self)
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
        // SAFETY: `self` exists only if the CPU has AVX2; `prev.len() == raw.len()` and
        // `1 <= bpp <= 8` were just checked (the `# Safety` of `filter_costs`).
        unsafe { filter_costs(raw, prev, bpp, cost) }
    }

    /// See [`super::Kernel::filter_row`]; panics under the same conditions.
    pub(crate) fn filter_row(self, f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
        super::check_row(raw, prev, bpp);
        super::check_dst(raw, dst);
        // SAFETY: AVX2 as above; `prev.len() == raw.len()`, `1 <= bpp <= 8` and
        // `dst.len() >= raw.len()` were just checked.
        unsafe { filter_row(f, raw, prev, bpp, dst) }
    }

    /// See [`super::Kernel::find_run`]; panics under the same conditions.
    pub(crate) fn find_run(self, seg: &[u8], from: usize, min: usize) -> Option<usize> {
        super::check_pos(seg, from);
        // SAFETY: AVX2 as above; `from <= seg.len()` was just checked.
        unsafe {
            match min {
                super::MIN_RUN => find_run::<{ super::MIN_RUN }>(seg, from),
                super::LONG_RUN => find_run::<{ super::LONG_RUN }>(seg, from),
                _ => scalar::find_run(seg, from, min),
            }
        }
    }

    /// See [`super::Kernel::zero_run`]; panics under the same conditions.
    pub(crate) fn zero_run(self, seg: &[u8], start: usize) -> usize {
        super::check_pos(seg, start);
        // SAFETY: AVX2 as above; `start <= seg.len()` was just checked.
        unsafe { zero_run(seg, start) }
    }
}

/// Unsigned a <= b per byte, as a 0/0xFF mask.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn le_u8(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: register intrinsics; AVX2 enabled by the caller.
    unsafe { _mm256_cmpeq_epi8(_mm256_min_epu8(a, b), a) }
}

/// The Paeth predictor in 8-bit lanes (see the AVX-512 kernel for the derivation).
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn paeth(a: __m256i, b: __m256i, c: __m256i) -> __m256i {
    // SAFETY: (whole body) register intrinsics; AVX2 enabled by the caller.
    unsafe {
        let pa = _mm256_or_si256(_mm256_subs_epu8(b, c), _mm256_subs_epu8(c, b));
        let pb = _mm256_or_si256(_mm256_subs_epu8(a, c), _mm256_subs_epu8(c, a));
        // b >= c and a >= c as masks; same sign when equal.
        let same = _mm256_cmpeq_epi8(le_u8(c, b), le_u8(c, a));
        let diff = _mm256_or_si256(_mm256_subs_epu8(pa, pb), _mm256_subs_epu8(pb, pa));
        let pc = _mm256_blendv_epi8(diff, _mm256_adds_epu8(pa, pb), same);
        let use_a = _mm256_and_si256(le_u8(pa, pb), le_u8(pa, pc));
        let use_b = le_u8(pb, pc);
        let bc = _mm256_blendv_epi8(c, b, use_b);
        _mm256_blendv_epi8(bc, a, use_a)
    }
}

/// `floor((a + b) / 2)` per byte.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn avg(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: register intrinsics.
    unsafe {
        let one = _mm256_set1_epi8(1);
        _mm256_sub_epi8(
            _mm256_avg_epu8(a, b),
            _mm256_and_si256(_mm256_xor_si256(a, b), one),
        )
    }
}

/// Loads x, a, b, c for bytes i..i+32.
///
/// # Safety
/// The CPU must have AVX2; `prev.len() >= raw.len()`, `bpp <= i` and `i + 32 <= raw.len()`
/// (bytes `i - bpp .. i + 32` of both slices are read).
#[inline(always)]
unsafe fn load4(raw: &[u8], prev: &[u8], bpp: usize, i: usize) -> [__m256i; 4] {
    debug_assert!(i >= bpp && i + 32 <= raw.len());
    // SAFETY: bytes i - bpp .. i + 32 are within both slices (same length).
    unsafe {
        [
            _mm256_loadu_si256(raw.as_ptr().add(i) as *const _),
            _mm256_loadu_si256(raw.as_ptr().add(i - bpp) as *const _),
            _mm256_loadu_si256(prev.as_ptr().add(i) as *const _),
            _mm256_loadu_si256(prev.as_ptr().add(i - bpp) as *const _),
        ]
    }
}

/// True when every byte equals its three neighbours (`x == a == b == c`): there every filter
/// but None predicts `x` exactly (a zero residual). Flat graphics and screenshot margins are
/// mostly such steps.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
unsafe fn is_flat(x: __m256i, a: __m256i, b: __m256i, c: __m256i) -> bool {
    // SAFETY: avx2 enabled by the caller; register intrinsics only.
    unsafe {
        let eq = _mm256_and_si256(
            _mm256_cmpeq_epi8(x, a),
            _mm256_and_si256(_mm256_cmpeq_epi8(x, b), _mm256_cmpeq_epi8(x, c)),
        );
        _mm256_movemask_epi8(eq) == -1
    }
}

/// Asks for the cache line at offset `i` of the row after `raw` (rows lie back to back in
/// every caller's buffer); see the AVX-512 kernel's `prefetch_next_row`.
#[inline(always)]
fn prefetch_next_row(raw: &[u8], i: usize) {
    let line = raw.as_ptr().wrapping_add(raw.len() + i);
    // SAFETY: a prefetch is only a hint: it never faults and reads nothing into the program,
    // so any address (here possibly past the buffer's end) is sound.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) }
}

/// See [`super::Kernel::filter_costs`].
///
/// # Safety
/// The CPU must have AVX2, and `prev.len() >= raw.len()` (the vector loads read `prev` at every
/// offset they read `raw`). `1 <= bpp <= 8` is the documented range; any `bpp` is sound.
#[target_feature(enable = "avx2")]
unsafe fn filter_costs(raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] {
    let n = raw.len();
    let head = bpp.min(n);
    let body_end = head + (n - head) / 32 * 32;
    let mut out = scalar::costs_between(raw, prev, bpp, 0, head, cost);
    // SAFETY: near is 32 bytes: entries 0..16 and 16..32, each broadcast to both lanes.
    let (lo, hi) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(cost.near.as_ptr() as *const _)),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(cost.near.as_ptr().add(16) as *const _)),
        )
    };
    let near_max = _mm256_set1_epi8(NEAR_MAX as i8);
    let sixteen = _mm256_set1_epi8(16);
    let to_hi = _mm256_set1_epi8(0x70);
    let zero = _mm256_setzero_si256();
    let mut acc = [zero; 5];
    // d = min(|r|, NEAR_MAX). pshufb gives 0 where the index has bit 7 set, so d + 0x70
    // (saturating) looks up entries 0..16 only for d < 16, and d - 16 entries 16..32 only for
    // d >= 16: exactly one lookup is live. Returns the costs summed per 8 bytes.
    let cost_of = |r: __m256i| {
        let d = _mm256_min_epu8(_mm256_abs_epi8(r), near_max);
        let v = _mm256_or_si256(
            _mm256_shuffle_epi8(lo, _mm256_adds_epu8(d, to_hi)),
            _mm256_shuffle_epi8(hi, _mm256_sub_epi8(d, sixteen)),
        );
        _mm256_sad_epu8(v, zero)
    };
    // Bytes of flat steps (see `is_flat`): `near[0]` each under Sub, Up, Average and Paeth,
    // added at the end (the sums the full pass would make); None's cost is looked up as usual.
    let mut flat_bytes = 0u64;
    let mut i = head;
    while i < body_end {
        if (i - head).is_multiple_of(2 * scalar::COST_BLOCK) {
            // The block this pass skips is read by the filter next: fetch both.
            prefetch_next_row(raw, i);
            prefetch_next_row(raw, i + scalar::COST_BLOCK);
        }
        // SAFETY: bpp.min(n) = head <= i with i < body_end <= n, so bpp <= i; i + 32 <=
        // body_end <= n = raw.len() <= prev.len() (contract).
        let [x, a, b, c] = unsafe { load4(raw, prev, bpp, i) };
        // SAFETY: register intrinsics.
        if unsafe { is_flat(x, a, b, c) } {
            flat_bytes += 32;
            acc[0] = _mm256_add_epi64(acc[0], cost_of(x));
        } else {
            // SAFETY: register intrinsics.
            let r = unsafe {
                [
                    x,
                    _mm256_sub_epi8(x, a),
                    _mm256_sub_epi8(x, b),
                    _mm256_sub_epi8(x, avg(a, b)),
                    _mm256_sub_epi8(x, paeth(a, b, c)),
                ]
            };
            for f in 0..5 {
                acc[f] = _mm256_add_epi64(acc[f], cost_of(r[f]));
            }
        }
        // Two 32-byte steps per counted block, then skip one block (scalar::cost_counted).
        i += 32;
        if (i - head) % (2 * scalar::COST_BLOCK) == scalar::COST_BLOCK {
            i += scalar::COST_BLOCK;
        }
    }
    // The tail (< 32 bytes) lies within one block: counted whole or not at all.
    let tail = if body_end < n && scalar::cost_counted(body_end, bpp) {
        scalar::costs_between(raw, prev, bpp, body_end, n, cost)
    } else {
        [0; 5]
    };
    for f in 0..5 {
        let mut lanes = [0u64; 4];
        // SAFETY: 32-byte array.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, acc[f]) };
        out[f] += lanes.iter().sum::<u64>() + tail[f];
    }
    for o in &mut out[1..] {
        *o += flat_bytes * u64::from(cost.near[0]);
    }
    out
}

/// See [`super::Kernel::filter_row`].
///
/// # Safety
/// The CPU must have AVX2, `prev.len() >= raw.len()` and `dst.len() >= raw.len()` (vector loads
/// and stores at every offset of `raw`). `bpp > 8` panics (scalar tail buffer), soundly.
#[target_feature(enable = "avx2")]
unsafe fn filter_row(f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
    let n = raw.len();
    assert!(dst.len() >= n);
    let head = bpp.min(n);
    let body_end = head + (n - head) / 32 * 32;
    scalar::filter_row(f, &raw[..head], &prev[..head], bpp, &mut dst[..head]);
    // Every filter but None leaves zeros in flat steps (see `is_flat`).
    let predicts_flat = f != scalar::NONE;
    let mut i = head;
    while i < body_end {
        if (i - head).is_multiple_of(64) {
            prefetch_next_row(raw, i);
        }
        // SAFETY: bpp.min(n) = head <= i with i < body_end <= n, so bpp <= i; i + 32 <=
        // body_end <= n = raw.len() <= prev.len() (contract).
        let [x, a, b, c] = unsafe { load4(raw, prev, bpp, i) };
        // SAFETY: register intrinsics.
        let r = unsafe {
            match f {
                _ if predicts_flat && is_flat(x, a, b, c) => _mm256_setzero_si256(),
                scalar::NONE => x,
                scalar::SUB => _mm256_sub_epi8(x, a),
                scalar::UP => _mm256_sub_epi8(x, b),
                scalar::AVG => _mm256_sub_epi8(x, avg(a, b)),
                _ => _mm256_sub_epi8(x, paeth(a, b, c)),
            }
        };
        // SAFETY: i + 32 <= n <= dst.len().
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut _, r) };
        i += 32;
    }
    if body_end < n {
        let k = bpp.min(body_end);
        let mut tmp = [0u8; 32 + 8];
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

/// Zero-byte bit mask of the 32 bytes at `p`.
///
/// # Safety
/// The CPU must have AVX2, and `p + 32 <= seg.len()`.
#[inline(always)]
unsafe fn zero_mask(seg: &[u8], p: usize) -> u32 {
    // SAFETY: p + 32 <= seg.len() (caller).
    unsafe {
        let v = _mm256_loadu_si256(seg.as_ptr().add(p) as *const _);
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256())) as u32
    }
}

/// See [`super::Kernel::find_run`].
///
/// # Safety
/// The CPU must have AVX2. Sound for any `from` (loads only while `from + 32 <= seg.len()`).
#[target_feature(enable = "avx2")]
unsafe fn find_run<const R: usize>(seg: &[u8], from: usize) -> Option<usize> {
    let n = seg.len();
    let mut p = from;
    while p + 32 <= n {
        // SAFETY: p + 32 <= n.
        let z = unsafe { zero_mask(seg, p) };
        // Candidates at bits 0..=32-R are final (they need bits t..t+R-1).
        let mut cand = z & ((1u32 << (33 - R)) - 1);
        for k in 1..R {
            cand &= z >> k;
        }
        if cand != 0 {
            return Some(p + cand.trailing_zeros() as usize);
        }
        p += 33 - R;
    }
    scalar::find_run(seg, p.min(n), R)
}

/// See [`super::Kernel::zero_run`].
///
/// # Safety
/// The CPU must have AVX2. Sound for any `start` (loads only while `start + 32 <= seg.len()`;
/// the scalar tail panics past the end).
#[target_feature(enable = "avx2")]
unsafe fn zero_run(seg: &[u8], start: usize) -> usize {
    let n = seg.len();
    let mut p = start;
    while p + 32 <= n {
        // SAFETY: p + 32 <= n.
        let z = unsafe { zero_mask(seg, p) };
        if z != u32::MAX {
            return p + (!z).trailing_zeros() as usize - start;
        }
        p += 32;
    }
    p - start + scalar::zero_run(seg, p)
}
