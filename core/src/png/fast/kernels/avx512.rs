//! AVX-512 kernel (F + BW + VBMI): 64 bytes per step, masked loads for row tails, and the
//! literal coder fully vectorised: 256-entry table lookups with two `vpermi2b` each, then codes
//! packed pairwise 16 -> 32 -> 64 bits with variable shifts, so the bit writer takes four (or
//! eight) literals per write; blocks whose codes are all at most 8 bits skip the packing and go
//! out eight codes per `pext` ([`emit_short`]). Segments in [`RunMode::Blocks`] go through
//! [`emit_segment_blocks`], a loop of one zero test per window.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{scalar, RunMode};
use crate::png::fast::bitwriter::{BitWriter, Bits};
use crate::png::fast::huffman::{CostTable, Table, NEAR_MAX};

/// Proof that the CPU has AVX-512 F, BW and VBMI (and BMI2, for variable shifts in the
/// writer): the token of this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx512 {
    _priv: (),
}

impl Avx512 {
    /// True when this CPU can run the kernel (AVX-512 F, BW, VBMI and BMI2).
    pub(crate) fn is_available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vbmi")
            && is_x86_feature_detected!("bmi2")
    }

    /// The kernel's token, if this CPU can run it.
    pub(crate) fn new() -> Option<Self> {
        Self::is_available().then_some(Avx512 { _priv: () })
    }

    /// The kernel handle.
    pub(crate) fn kernel(self) -> super::Kernel {
        super::Kernel::Avx512(self)
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
        // SAFETY: `self` exists only if the CPU has the features `filter_costs` enables;
        // `prev.len() == raw.len()` and `1 <= bpp <= 8` were just checked.
        unsafe { filter_costs(raw, prev, bpp, cost) }
    }

    /// See [`super::Kernel::filter_row`]; panics under the same conditions.
    pub(crate) fn filter_row(self, f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
        super::check_row(raw, prev, bpp);
        super::check_dst(raw, dst);
        // SAFETY: features as above; `prev.len() == raw.len()`, `1 <= bpp <= 8` and
        // `dst.len() >= raw.len()` were just checked.
        unsafe { filter_row_impl::<false>(f, raw, prev, bpp, dst) };
    }

    /// [`Self::filter_row`], also returning the sums of the filtered bytes `d_j` that
    /// [`crate::png::adler::adler32_extend`] takes: `(sum d_j, sum j * d_j)`. Panics under the
    /// same conditions, and for rows over [`super::FUSED_ADLER_MAX`] bytes.
    pub(crate) fn filter_row_sums(
        self,
        f: u8,
        raw: &[u8],
        prev: &[u8],
        bpp: usize,
        dst: &mut [u8],
    ) -> (u64, u64) {
        super::check_row(raw, prev, bpp);
        super::check_dst(raw, dst);
        assert!(
            raw.len() <= super::FUSED_ADLER_MAX,
            "row too long for fused sums"
        );
        // SAFETY: features as above; `prev.len() == raw.len()`, `1 <= bpp <= 8`,
        // `dst.len() >= raw.len()` and the row length bound were just checked.
        unsafe { filter_row_impl::<true>(f, raw, prev, bpp, dst) }
    }

    /// See [`super::Kernel::find_run`]; panics under the same conditions.
    pub(crate) fn find_run(self, seg: &[u8], from: usize, min: usize) -> Option<usize> {
        super::check_pos(seg, from);
        // SAFETY: features as above; `from <= seg.len()` was just checked.
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
        // SAFETY: features as above; `start <= seg.len()` was just checked.
        unsafe { zero_run(seg, start) }
    }

    /// See [`super::Kernel::emit_segment`].
    pub(crate) fn emit_segment(
        self,
        seg: &[u8],
        table: &Table,
        bw: &mut BitWriter<'_>,
        mode: RunMode,
    ) {
        // SAFETY: features as above. `emit_segment` needs nothing else: it checks the writer's
        // room itself (falling back to the bounds-checked writer) and reads `seg` by masks.
        unsafe { emit_segment(seg, table, bw, mode) }
    }

    /// See [`super::Kernel::emit_literals`].
    pub(crate) fn emit_literals(self, bytes: &[u8], table: &Table, bw: &mut BitWriter<'_>) {
        // SAFETY: features as above; the literal tables are `[u8; 256]` by type and the writer
        // is bounds-checked, so nothing else is required.
        unsafe { emit_literals(bytes, table, bw) }
    }
}

/// Asks for the cache line at offset `i` of the row after `raw` (in every caller, rows lie back
/// to back in one buffer), so that it is in L1 when that row is estimated and filtered.
/// Without it each row's first read was a memory stall: on a 1 MP photo the cost pass and the
/// filter took turns paying it, and on the 25 MB 4K graphic `Balanced` ran 1.4x slower.
#[inline(always)]
fn prefetch_next_row(raw: &[u8], i: usize) {
    let line = raw.as_ptr().wrapping_add(raw.len() + i);
    // SAFETY: a prefetch is only a hint: it never faults and reads nothing into the program,
    // so any address (here possibly past the buffer's end) is sound.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) }
}

/// Lane mask for the `rem` bytes left (all 64 when `rem >= 64`).
#[inline(always)]
fn lanes(rem: usize) -> u64 {
    if rem >= 64 {
        !0
    } else {
        (1u64 << rem) - 1
    }
}

/// The five filters' residuals for one vector of pixels.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn residuals(x: __m512i, a: __m512i, b: __m512i, c: __m512i) -> [__m512i; 5] {
    // SAFETY: (whole body) the caller runs with avx512f+bw enabled; intrinsics only.
    unsafe {
        let one = _mm512_set1_epi8(1);
        // floor((a + b) / 2) = rounding average minus the rounding bit.
        let avg = _mm512_sub_epi8(
            _mm512_avg_epu8(a, b),
            _mm512_and_si512(_mm512_xor_si512(a, b), one),
        );
        [
            x,
            _mm512_sub_epi8(x, a),
            _mm512_sub_epi8(x, b),
            _mm512_sub_epi8(x, avg),
            _mm512_sub_epi8(x, paeth(a, b, c)),
        ]
    }
}

/// The Paeth predictor in 8-bit lanes: pa = |b - c|, pb = |a - c| and pc = |pa ± pb| (a sum when
/// b - c and a - c have the same sign, saturated: only its order against pa and pb matters).
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn paeth(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    // SAFETY: (whole body) avx512f+bw enabled by the caller; intrinsics only.
    unsafe {
        let pa = _mm512_or_si512(_mm512_subs_epu8(b, c), _mm512_subs_epu8(c, b));
        let pb = _mm512_or_si512(_mm512_subs_epu8(a, c), _mm512_subs_epu8(c, a));
        let same = !(_mm512_cmpge_epu8_mask(b, c) ^ _mm512_cmpge_epu8_mask(a, c));
        let diff = _mm512_or_si512(_mm512_subs_epu8(pa, pb), _mm512_subs_epu8(pb, pa));
        let pc = _mm512_mask_blend_epi8(same, diff, _mm512_adds_epu8(pa, pb));
        let use_a = _mm512_cmple_epu8_mask(pa, pb) & _mm512_cmple_epu8_mask(pa, pc);
        let use_b = _mm512_cmple_epu8_mask(pb, pc);
        let bc = _mm512_mask_blend_epi8(use_b, c, b);
        _mm512_mask_blend_epi8(use_a, bc, a)
    }
}

/// Loads x, a (left), b (up), c (up-left) at `i >= bpp`, zero beyond the lanes in `m`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2; `prev.len() >= raw.len()`, `bpp <= i < raw.len()`: the lanes of `m`
/// must lie within `i..raw.len()` (bytes `i - bpp ..` of both slices are read under `m`).
#[inline(always)]
unsafe fn load4(raw: &[u8], prev: &[u8], bpp: usize, i: usize, m: u64) -> [__m512i; 4] {
    debug_assert!(i >= bpp && i < raw.len());
    // SAFETY: lanes in `m` cover bytes i..min(i + 64, len) of slices of length len, and
    // i - bpp >= 0; masked-off lanes are not accessed (AVX-512 fault suppression).
    unsafe {
        [
            _mm512_maskz_loadu_epi8(m, raw.as_ptr().add(i) as *const i8),
            _mm512_maskz_loadu_epi8(m, raw.as_ptr().add(i - bpp) as *const i8),
            _mm512_maskz_loadu_epi8(m, prev.as_ptr().add(i) as *const i8),
            _mm512_maskz_loadu_epi8(m, prev.as_ptr().add(i - bpp) as *const i8),
        ]
    }
}

/// Lanes where the pixel equals its three neighbours (`x == a == b == c`): there every filter
/// but None predicts `x` exactly, so Sub, Up, Average and Paeth leave a zero residual. Flat
/// graphics and screenshot margins are mostly such blocks (rows that differ from the row above
/// only in a plot line or a word); costing or filtering them in full is most of the work there.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn flat_lanes(x: __m512i, a: __m512i, b: __m512i, c: __m512i) -> u64 {
    // SAFETY: avx512bw enabled by the caller; intrinsics on registers only.
    unsafe {
        _mm512_cmpeq_epi8_mask(x, a) & _mm512_cmpeq_epi8_mask(x, b) & _mm512_cmpeq_epi8_mask(x, c)
    }
}

/// See [`super::Kernel::filter_costs`].
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2, and `prev.len() >= raw.len()` (the masked loads read
/// `prev` at every offset they read `raw`). Any `bpp` is sound.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn filter_costs(raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] {
    let n = raw.len();
    let head = bpp.min(n);
    // The first bpp bytes have no left neighbour: scalar (a = c = 0 there).
    let mut out = scalar::costs_between(raw, prev, bpp, 0, head, cost);
    // SAFETY: near is 32 bytes; the upper half of the register is never indexed.
    let tbl = unsafe { _mm512_castsi256_si512(_mm256_loadu_si256(cost.near.as_ptr() as *const _)) };
    let near_max = _mm512_set1_epi8(NEAR_MAX as i8);
    let zero = _mm512_setzero_si512();
    let mut acc = [zero; 5];
    // The costs of the residuals `r` in the lanes of `m`, summed per 8 bytes: |r| as a signed
    // byte (|-128| = 128), clamped, is the cost table's index.
    let cost_of = |r: __m512i, m: u64| {
        let d = _mm512_min_epu8(_mm512_abs_epi8(r), near_max);
        _mm512_sad_epu8(_mm512_maskz_permutexvar_epi8(m, d, tbl), zero)
    };
    // Bytes of flat blocks: each costs `near[0]` under Sub, Up, Average and Paeth (added at the
    // end, the same sums the full pass would make); None's cost is looked up as usual.
    let mut flat_bytes = 0u64;
    let mut i = head;
    while i < n {
        // The blocks this pass skips are read by the filter next: fetch both lines.
        prefetch_next_row(raw, i);
        prefetch_next_row(raw, i + 64);
        let m = lanes(n - i);
        // SAFETY: i >= bpp and i < n; see load4.
        let [x, a, b, c] = unsafe { load4(raw, prev, bpp, i, m) };
        // SAFETY: register intrinsics, features enabled on this function.
        if unsafe { flat_lanes(x, a, b, c) } & m == m {
            flat_bytes += u64::from(m.count_ones());
            acc[0] = _mm512_add_epi64(acc[0], cost_of(x, m));
        } else {
            // SAFETY: intrinsics on registers, features enabled on this function.
            let r = unsafe { residuals(x, a, b, c) };
            for f in 0..5 {
                acc[f] = _mm512_add_epi64(acc[f], cost_of(r[f], m));
            }
        }
        // Every other block (scalar::cost_counted).
        i += 2 * scalar::COST_BLOCK;
    }
    for f in 0..5 {
        out[f] += _mm512_reduce_add_epi64(acc[f]) as u64;
    }
    for o in &mut out[1..] {
        *o += flat_bytes * u64::from(cost.near[0]);
    }
    out
}

/// See [`super::Kernel::filter_row`]. With `SUMS`, also returns `(sum d_j, sum j * d_j)` over
/// the filtered bytes (exact for rows of up to [`super::FUSED_ADLER_MAX`] bytes; `(0, 0)`
/// without).
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2, `prev.len() >= raw.len()` and `dst.len() >= raw.len()`
/// (masked loads and stores at every offset of `raw`). Any `bpp` is sound.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn filter_row_impl<const SUMS: bool>(
    f: u8,
    raw: &[u8],
    prev: &[u8],
    bpp: usize,
    dst: &mut [u8],
) -> (u64, u64) {
    let n = raw.len();
    assert!(dst.len() >= n);
    let head = bpp.min(n);
    scalar::filter_row(f, &raw[..head], &prev[..head], bpp, &mut dst[..head]);
    // Every filter but None leaves zeros in flat blocks (see `flat_lanes`).
    let predicts_flat = f != scalar::NONE;
    // Adler sums (SUMS): bytes per 8-byte group (u64 lanes), each block's byte sum times its
    // offset (u64 lanes), and each byte times its index in the block (u32 lanes, 4 bytes
    // each). A flat block is zeros and adds nothing.
    let zero = _mm512_setzero_si512();
    let (mut s1, mut offset_s1, mut weighted) = (zero, zero, zero);
    // SAFETY: a 64-byte load of a 64-byte constant.
    let index = unsafe { _mm512_loadu_si512(BYTE_INDEX.as_ptr() as *const _) };
    let mut i = head;
    while i < n {
        prefetch_next_row(raw, i);
        let m = lanes(n - i);
        // SAFETY: i >= bpp and i < n; see load4.
        let [x, a, b, c] = unsafe { load4(raw, prev, bpp, i, m) };
        // SAFETY: register intrinsics, features enabled on this function.
        if predicts_flat && unsafe { flat_lanes(x, a, b, c) } & m == m {
            // SAFETY: as the store below.
            unsafe {
                _mm512_mask_storeu_epi8(
                    dst.as_mut_ptr().add(i) as *mut i8,
                    m,
                    _mm512_setzero_si512(),
                )
            };
            i += 64;
            continue;
        }
        let one = _mm512_set1_epi8(1);
        let r = match f {
            scalar::NONE => x,
            scalar::SUB => _mm512_sub_epi8(x, a),
            scalar::UP => _mm512_sub_epi8(x, b),
            scalar::AVG => _mm512_sub_epi8(
                x,
                _mm512_sub_epi8(
                    _mm512_avg_epu8(a, b),
                    _mm512_and_si512(_mm512_xor_si512(a, b), one),
                ),
            ),
            // SAFETY: intrinsics on registers.
            _ => _mm512_sub_epi8(x, unsafe { paeth(a, b, c) }),
        };
        // SAFETY: dst.len() >= n; only the lanes in m (bytes i..min(i+64, n)) are written.
        unsafe { _mm512_mask_storeu_epi8(dst.as_mut_ptr().add(i) as *mut i8, m, r) };
        if SUMS {
            // Lanes past the row's end hold residuals of zeros: not part of the row.
            let r = _mm512_maskz_mov_epi8(m, r);
            let sad = _mm512_sad_epu8(r, zero);
            s1 = _mm512_add_epi64(s1, sad);
            // i < 2^20 (FUSED_ADLER_MAX) and each lane's sum < 2^11: a 32x32-bit product.
            offset_s1 = _mm512_add_epi64(
                offset_s1,
                _mm512_mul_epu32(sad, _mm512_set1_epi64(i as i64)),
            );
            // Byte times index (0..63): pairs in i16 (at most 255 * (62 + 63)), then quads in
            // i32; never negative, so the 32-bit lanes add as unsigned.
            let w = _mm512_madd_epi16(_mm512_maddubs_epi16(r, index), _mm512_set1_epi16(1));
            weighted = _mm512_add_epi32(weighted, w);
        }
        i += 64;
    }
    if !SUMS {
        return (0, 0);
    }
    // The head bytes (filtered by the scalar kernel) at their indices 0..head.
    let (mut hs1, mut ht) = (0u64, 0u64);
    for (j, &d) in dst[..head].iter().enumerate() {
        hs1 += u64::from(d);
        ht += j as u64 * u64::from(d);
    }
    // u32 lanes widened before the horizontal sum: 16 lanes of < 2^30 each.
    let w_lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(weighted));
    let w_hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(weighted));
    let w = _mm512_reduce_add_epi64(_mm512_add_epi64(w_lo, w_hi)) as u64;
    let sum = _mm512_reduce_add_epi64(s1) as u64;
    let off = _mm512_reduce_add_epi64(offset_s1) as u64;
    (hs1 + sum, ht + off + w)
}

/// 0, 1, ..., 63: each byte's index in a 64-byte block (`vpmaddubsw` weights).
const BYTE_INDEX: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// Zero-byte mask of `seg[p..]`'s next 64 bytes (lanes past the end are not zeros).
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2, and `p <= seg.len()` (else the lane mask wraps past `seg`).
#[inline(always)]
unsafe fn zero_mask(seg: &[u8], p: usize) -> (u64, u64) {
    let m = lanes(seg.len() - p);
    // SAFETY: lanes in m are within seg; masked-off lanes are not accessed.
    unsafe {
        let v = _mm512_maskz_loadu_epi8(m, seg.as_ptr().add(p) as *const i8);
        (_mm512_testn_epi8_mask(v, v) & m, m)
    }
}

/// See [`super::Kernel::find_run`].
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2. Sound for any `from` (loads only while `from < seg.len()`).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn find_run<const R: usize>(seg: &[u8], from: usize) -> Option<usize> {
    let n = seg.len();
    let mut p = from;
    while p < n {
        // SAFETY: p < n.
        let (z, _) = unsafe { zero_mask(seg, p) };
        let mut cand = z;
        for k in 1..R {
            cand &= z >> k;
        }
        // A candidate at bit t needs bits t..t+R-1: final for t <= 64 - R, or everywhere when
        // the window reaches the end of the segment.
        let last = n - p <= 64;
        let cand = if last {
            cand
        } else {
            cand & ((1u64 << (65 - R)) - 1)
        };
        if cand != 0 {
            return Some(p + cand.trailing_zeros() as usize);
        }
        if last {
            return None;
        }
        p += 65 - R;
    }
    None
}

/// See [`super::Kernel::zero_run`].
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2. Sound for any `start` (loads only while `start < seg.len()`).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn zero_run(seg: &[u8], start: usize) -> usize {
    let n = seg.len();
    let mut p = start;
    // Long runs (plots, margins: a thousand bytes and more) 256 bytes a step, four plain loads
    // OR-ed, until a step holds a non-zero byte; the 64-byte steps below then find it.
    while p + 256 <= n {
        // SAFETY: p + 256 <= n: four full 64-byte loads within seg.
        let any = unsafe {
            let q = seg.as_ptr().add(p);
            let v = _mm512_or_si512(
                _mm512_or_si512(
                    _mm512_loadu_si512(q as *const _),
                    _mm512_loadu_si512(q.add(64) as *const _),
                ),
                _mm512_or_si512(
                    _mm512_loadu_si512(q.add(128) as *const _),
                    _mm512_loadu_si512(q.add(192) as *const _),
                ),
            );
            _mm512_test_epi8_mask(v, v)
        };
        if any != 0 {
            break;
        }
        p += 256;
    }
    while p < n {
        // SAFETY: p < n.
        let (z, m) = unsafe { zero_mask(seg, p) };
        let nonzero = !z & m;
        if nonzero != 0 {
            return p + nonzero.trailing_zeros() as usize - start;
        }
        p += 64;
    }
    n - start
}

/// A 256-entry byte table as four registers.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn load_table(t: &[u8; 256]) -> [__m512i; 4] {
    // SAFETY: t is 256 bytes: four 64-byte loads.
    unsafe {
        [
            _mm512_loadu_si512(t.as_ptr() as *const _),
            _mm512_loadu_si512(t.as_ptr().add(64) as *const _),
            _mm512_loadu_si512(t.as_ptr().add(128) as *const _),
            _mm512_loadu_si512(t.as_ptr().add(192) as *const _),
        ]
    }
}

/// `t[x]` per byte: two 128-entry `vpermi2b` lookups, chosen by the index's top bit.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn lookup(t: &[__m512i; 4], x: __m512i, top: u64, m: u64) -> __m512i {
    // SAFETY: intrinsics on registers; avx512bw+vbmi enabled by the caller.
    unsafe {
        let lo = _mm512_permutex2var_epi8(t[0], x, t[1]);
        let hi = _mm512_permutex2var_epi8(t[2], x, t[3]);
        _mm512_maskz_mov_epi8(m, _mm512_mask_blend_epi8(top, lo, hi))
    }
}

/// Eight 64-bit lanes in memory, aligned like a vector register.
#[repr(align(64))]
struct Lanes([u64; 8]);

impl Lanes {
    /// The lanes of `v`, stored (one aligned 64-byte store).
    #[inline(always)]
    fn of(v: __m512i) -> Self {
        let mut l = Lanes([0; 8]);
        // SAFETY: an aligned 64-byte store into a 64-byte aligned local; `__m512i` values exist
        // only in functions compiled with avx512f, into which this is inlined.
        unsafe { _mm512_store_si512(l.0.as_mut_ptr() as *mut _, v) };
        l
    }

    /// Lane `j`, read from memory. The compiler would otherwise turn the store-then-load into
    /// register extracts (`vextracti32x4`, `vpextrq`, `vmovq`), which run on the same two
    /// vector ports as the coding itself, the emitter's bottleneck; a load from a forwarded
    /// store uses a load port instead.
    #[inline(always)]
    fn get(&self, j: usize) -> u64 {
        // SAFETY: j < 8 is checked by the index; a volatile read of an initialised u64.
        unsafe { core::ptr::read_volatile(&self.0[j]) }
    }
}

/// The literal tables of one [`Table`] in registers.
struct LitRegs {
    len: [__m512i; 4],
    lo: [__m512i; 4],
    hi: [__m512i; 4],
    /// Try [`emit_short`] first ([`SHORT_MIN_PER_MILLE`]).
    short: bool,
}

/// The literal tables of `table`, loaded.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn lit_regs(table: &Table) -> LitRegs {
    // SAFETY: 256-byte tables.
    unsafe {
        LitRegs {
            len: load_table(&table.lit_len),
            lo: load_table(&table.lit_lo),
            hi: load_table(&table.lit_hi),
            short: table.short_per_mille >= SHORT_MIN_PER_MILLE,
        }
    }
}

/// Emits the literals of the lanes of `x` selected by the contiguous-from-0 mask `m`.
///
/// Codes are looked up per byte (256-entry tables, two `vpermi2b` each) and compacted into the
/// bit stream by `pext`, which runs on a scalar port, not on the two vector ports the lookups
/// need: eight codes per `pext` when all of the block's codes are at most 8 bits
/// ([`emit_short`]), else four ([`emit_long`]). The bit writer, the serial part, takes up to
/// eight codes per write either way.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2; `m` selects lanes `0..k` for some `k`.
#[inline(always)]
unsafe fn emit_block(x: __m512i, m: u64, t: &LitRegs, bw: &mut impl Bits) {
    if m == !0 {
        // SAFETY: same contract; a separate instance whose loops have constant trip counts.
        unsafe { emit_block_n::<true>(x, m, t, bw) }
    } else {
        // SAFETY: same contract.
        unsafe { emit_block_n::<false>(x, m, t, bw) }
    }
}

/// [`emit_block`] tries [`emit_short`] first when at least this many per mille of a stripe's
/// sampled literals have codes of at most 8 bits. Below that, most blocks hold a longer code and
/// the test only adds work and mispredicted branches. Measured with the path on for every stripe
/// against off, one process, alternating: +4-11% kodim23, +10-12% retina, +7.5%
/// the painting, -3..0% hubble (noise-like, few short blocks), -2..-1% the screenshot; at 950 the
/// gain stays on the photos and the painting and the losses go (hubble, screenshot +-0.5%).
const SHORT_MIN_PER_MILLE: u32 = 950;

/// 16-entry `vpshufb` tables of the bytes of `(1 << len) - 1` for a code length `len` < 16,
/// repeated in each 128-bit lane: the low byte (`high == false`) or the high one.
const fn len_mask_table(high: bool) -> [u8; 64] {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let mask = (1u32 << (i % 16)) - 1;
        t[i] = if high { (mask >> 8) as u8 } else { mask as u8 };
        i += 1;
    }
    t
}

/// Low byte of `(1 << len) - 1`: a code of `len` <= 8 bits is all in it.
const MASK_BYTE: [u8; 64] = len_mask_table(false);
/// High byte of `(1 << len) - 1` (zero up to 8 bits).
const MASK_HIGH_BYTE: [u8; 64] = len_mask_table(true);

/// One block of up to 64 literals being coded: the bytes, their top bits (the lookup's table
/// half), the lanes in play (`m`, contiguous from 0, `live` of them) and their code lengths.
#[derive(Clone, Copy)]
struct Block {
    x: __m512i,
    top: u64,
    m: u64,
    live: usize,
    l8: __m512i,
}

/// The short path of [`emit_block`]: every code of the block is at most 8 bits long (the
/// common case in smooth parts of photos). One byte per code: each group of 8 codes (bytes,
/// stream order) is compacted by one `pext` under a mask of each byte's low `len` bits; the
/// group's length is one `vpsadbw` sum. (`pext` is slow only on AMD before Zen 3, which lacks
/// AVX-512 VBMI and never runs this.)
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn emit_short(b: Block, t: &LitRegs, bw: &mut impl Bits) {
    // SAFETY: (whole body) register intrinsics and `pext`; avx512f+bw+vbmi and bmi2 enabled by
    // the caller.
    unsafe {
        let c = Lanes::of(lookup(&t.lo, b.x, b.top, b.m));
        let k = Lanes::of(_mm512_shuffle_epi8(
            _mm512_loadu_si512(MASK_BYTE.as_ptr() as *const _),
            b.l8,
        ));
        let n = Lanes::of(_mm512_sad_epu8(b.l8, _mm512_setzero_si512()));
        for j in 0..b.live.div_ceil(8) {
            let bits = _pext_u64(c.get(j), k.get(j));
            let len = n.get(j) as u32;
            if len > 56 {
                // Eight codes of 7-8 bits: more than one write takes.
                bw.write(bits & 0xFFFF, 16);
                bw.write(bits >> 16, len - 16);
            } else {
                bw.write(bits, len);
            }
        }
    }
}

/// The general path of [`emit_block`]: codes of up to 14 bits as 16-bit lanes, four codes
/// (<= 56 bits) compacted per `pext` under 16-bit masks of each code's low `len` bits, and two
/// such groups merged into one write when they fit 56 bits together (eight codes averaging
/// under 7 bits, common on photos). The byte unpacks interleave within 128-bit lanes, so the
/// groups of lane `k` are words `2k, 2k + 1` of the low unpack, then of the high one: stream
/// order without a permutation.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn emit_long(b: Block, t: &LitRegs, bw: &mut impl Bits) {
    // SAFETY: (whole body) register intrinsics and `pext`; avx512f+bw+vbmi and bmi2 enabled by
    // the caller.
    unsafe {
        let lo8 = lookup(&t.lo, b.x, b.top, b.m);
        let hi8 = lookup(&t.hi, b.x, b.top, b.m);
        let mask_lo = _mm512_shuffle_epi8(_mm512_loadu_si512(MASK_BYTE.as_ptr() as *const _), b.l8);
        let mask_hi = _mm512_shuffle_epi8(
            _mm512_loadu_si512(MASK_HIGH_BYTE.as_ptr() as *const _),
            b.l8,
        );
        let codes = [
            Lanes::of(_mm512_unpacklo_epi8(lo8, hi8)),
            Lanes::of(_mm512_unpackhi_epi8(lo8, hi8)),
        ];
        let masks = [
            Lanes::of(_mm512_unpacklo_epi8(mask_lo, mask_hi)),
            Lanes::of(_mm512_unpackhi_epi8(mask_lo, mask_hi)),
        ];
        // Code lengths summed per four bytes: group g's length in 32-bit lane g.
        let n = Lanes::of(_mm512_madd_epi16(
            _mm512_maddubs_epi16(b.l8, _mm512_set1_epi8(1)),
            _mm512_set1_epi16(1),
        ));
        // Pairs of groups: g = 2p and 2p + 1, i.e. lane p / 2, unpack half p % 2.
        for p in 0..b.live.div_ceil(8) {
            let (half, w) = (p % 2, p / 2 * 2);
            let (c, k) = (&codes[half], &masks[half]);
            let b0 = _pext_u64(c.get(w), k.get(w));
            let b1 = _pext_u64(c.get(w + 1), k.get(w + 1));
            let lens = n.get(p);
            let (n0, n1) = (lens as u32, (lens >> 32) as u32);
            if n0 + n1 <= 56 {
                bw.write(b0 | b1 << n0, n0 + n1);
            } else {
                bw.write(b0, n0);
                bw.write(b1, n1);
            }
        }
    }
}

/// [`emit_block`], specialised for a full block (`FULL`, `m == !0`) or a partial one.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2; `m` selects lanes `0..k` for some `k` (all 64 when `FULL`).
#[inline(always)]
unsafe fn emit_block_n<const FULL: bool>(x: __m512i, m: u64, t: &LitRegs, bw: &mut impl Bits) {
    let live = if FULL {
        64
    } else {
        64 - m.leading_zeros() as usize
    };
    // SAFETY: register intrinsics; the paths' contract is this function's.
    unsafe {
        // Code lengths in stream order; lanes past `live` get length 0.
        let top = _mm512_movepi8_mask(x);
        let l8 = lookup(&t.len, x, top, m);
        let b = Block {
            x,
            top,
            m,
            live,
            l8,
        };
        if t.short && _mm512_cmpgt_epu8_mask(l8, _mm512_set1_epi8(8)) == 0 {
            emit_short(b, t, bw);
        } else {
            emit_long(b, t, bw);
        }
    }
}

/// See [`super::Kernel::emit_literals`].
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2. Sound for any span and writer.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn emit_literals(bytes: &[u8], table: &Table, bw: &mut BitWriter<'_>) {
    let n = bytes.len();
    if n < 16 {
        // Short spans are cheaper through the scalar table.
        scalar::emit_literals(bytes, table, bw);
        return;
    }
    // SAFETY: reads two tables.
    let t = unsafe { lit_regs(table) };
    let mut w = bw.detach();
    let mut i = 0;
    while i < n {
        let m = lanes(n - i);
        // SAFETY: lanes in m are within bytes; masked-off lanes are not accessed.
        unsafe {
            let x = _mm512_maskz_loadu_epi8(m, bytes.as_ptr().add(i) as *const i8);
            emit_block(x, m, &t, &mut w);
        }
        i += 64;
    }
    *bw = w;
}

/// Bit `t` of the result: bits `t..t + R` of the 128-bit `z | zn << 64` are all set, i.e. a
/// run of `R` ([`super::MIN_RUN`] or [`super::LONG_RUN`]) zero bytes starts at `t`. Four
/// doubling steps (1+1, 2+2, 4+4, then 8 at t and t+R-8) in scalar registers, which are idle
/// while the vector units code literals.
#[inline(always)]
fn run_starts<const R: usize>(z: u64, zn: u64) -> u64 {
    const { assert!(R > 8 && R <= 16) };
    /// Runs of twice the length, as `k` apart: bits t and t + k both set.
    #[inline(always)]
    fn step(x: u64, xn: u64, k: usize) -> (u64, u64) {
        (x & (x >> k | xn << (64 - k)), xn & xn >> k)
    }
    let (a, an) = step(z, zn, 1);
    let (b, bn) = step(a, an, 2);
    let (c, cn) = step(b, bn, 4);
    step(c, cn, R - 8).0
}

/// Nonzero when a run of `R` zero bytes may start in the window `x` (followed by `xn`): a bit
/// per `T = (R - 3) / 4` consecutive all-zero aligned 4-byte groups (2 for [`super::MIN_RUN`],
/// 3 for [`super::LONG_RUN`]) starting at group `g` of `x` (`g` up to 16: the groups run on
/// into `xn`). A run of `R` from byte `s` covers the `T` groups from the first multiple of 4 at
/// or after `s` (they end by `s + 3 + 4T <= s + R`), so a zero result proves that no run starts
/// in `x`. Two vector tests, two mask moves and a few scalar steps, against the byte masks and
/// the doubling steps of [`run_starts`]; photos' windows hold few such groups.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2.
#[inline(always)]
unsafe fn zero_groups<const R: usize>(x: __m512i, xn: __m512i) -> u32 {
    const { assert!(R == super::MIN_RUN || R == super::LONG_RUN) };
    // SAFETY: register intrinsics; avx512f enabled by the caller.
    let (g, gn) = unsafe {
        (
            _mm512_testn_epi32_mask(x, x) as u32,
            _mm512_testn_epi32_mask(xn, xn) as u32,
        )
    };
    let g = g | gn << 16;
    // Starts of T zero groups in a row, at groups 0..=16.
    let mut starts = g;
    for k in 1..(R - 3) / 4 {
        starts &= g >> k;
    }
    starts & 0x1_FFFF
}

/// `seg[p..]`'s next 64 bytes (zero past the end) and their zero-byte mask.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2, and `p <= seg.len()` (else the lane mask wraps past `seg`).
#[inline(always)]
unsafe fn load_window(seg: &[u8], p: usize) -> (__m512i, u64) {
    let m = lanes(seg.len() - p);
    // SAFETY: lanes in m are within seg; masked-off lanes are not accessed.
    unsafe {
        let v = _mm512_maskz_loadu_epi8(m, seg.as_ptr().add(p) as *const i8);
        (v, _mm512_testn_epi8_mask(v, v) & m)
    }
}

/// A bit writer without bounds checks for the segment loop (the same writes as
/// [`BitWriter::write`]: an 8-byte store of the accumulator, then advance by whole bytes).
struct RawBits {
    ptr: *mut u8,
    pos: usize,
    acc: u64,
    nbits: u32,
}

/// Upper bound of the bytes a segment of `n` bytes codes to, plus the store slack: a literal
/// takes at most 14 bits, a run of k >= 12 zeros at most 14 + 20 * ceil((k - 1) / 258) bits,
/// and every write stores 8 bytes.
fn segment_room(n: usize) -> usize {
    n * 2 + 16
}

impl RawBits {
    /// A writer at `ptr`, continuing the accumulator `acc` of `nbits` bits.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `room` bytes, and the writes made through the result
    /// must complete at most `room - 8` bytes (every write stores 8 bytes from `pos`).
    unsafe fn new(ptr: *mut u8, acc: u64, nbits: u32) -> Self {
        Self {
            ptr,
            pos: 0,
            acc,
            nbits,
        }
    }
}

impl Bits for RawBits {
    #[inline(always)]
    fn write(&mut self, bits: u64, n: u32) {
        debug_assert!(n <= 56 && (n == 64 || bits >> n == 0));
        self.acc |= bits << self.nbits;
        self.nbits += n;
        // SAFETY: `new`'s contract: emit_segment built this writer over segment_room(seg.len())
        // bytes, and coding the segment completes fewer than that minus 8 bytes.
        unsafe { (self.ptr.add(self.pos) as *mut u64).write_unaligned(self.acc.to_le()) };
        let bytes = self.nbits >> 3;
        self.pos += bytes as usize;
        self.nbits &= 7;
        self.acc >>= bytes * 8;
    }
}

/// The fused segment coder: per 64-byte window, the zero masks of this window and the next
/// give every run start in the window; the literals before it go out in one masked block.
/// The next window is loaded once and carried over when no run interrupts.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2. Sound for any segment and writer (the
/// writer's room is checked).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn emit_segment(seg: &[u8], table: &Table, bw: &mut BitWriter<'_>, mode: RunMode) {
    let n = seg.len();
    if n == 0 {
        return;
    }
    let (tail, acc, nbits) = bw.tail();
    if tail.len() < segment_room(n) {
        // Cannot happen with the coder's buffer sizing; stay correct anyway.
        // SAFETY: same features.
        unsafe { emit_segment_mode(seg, table, bw, mode) };
        return;
    }
    // SAFETY: tail is valid for tail.len() >= segment_room(n) bytes.
    let mut w = unsafe { RawBits::new(tail.as_mut_ptr(), acc, nbits) };
    // SAFETY: same features.
    unsafe { emit_segment_mode(seg, table, &mut w, mode) };
    debug_assert!(w.pos + 8 <= segment_room(n));
    bw.resume(w.pos, w.acc, w.nbits);
}

/// [`emit_segment`] in `mode`, over any bit writer.
///
/// # Safety
/// As [`emit_segment_with`].
#[inline(always)]
unsafe fn emit_segment_mode(seg: &[u8], table: &Table, bw: &mut impl Bits, mode: RunMode) {
    // SAFETY: the callee's contract is this function's.
    unsafe {
        match mode {
            RunMode::Any => emit_segment_with::<{ super::MIN_RUN }>(seg, table, bw),
            RunMode::Long => emit_segment_with::<{ super::LONG_RUN }>(seg, table, bw),
            RunMode::Blocks => emit_segment_blocks(seg, table, bw),
        }
    }
}

/// [`emit_segment`] in [`RunMode::Blocks`] ([`scalar::block_tokens`], the oracle): per
/// 64-byte window one zero test; only a window that ends in zeros looks at the next one.
///
/// # Safety
/// As [`emit_segment_with`].
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn emit_segment_blocks(seg: &[u8], table: &Table, bw: &mut impl Bits) {
    let n = seg.len();
    if n == 0 {
        return;
    }
    // SAFETY: reads the tables.
    let t = unsafe { lit_regs(table) };
    let (mut pos, mut run) = (0usize, 0usize);
    // SAFETY: 0 < n.
    let (mut x, _) = unsafe { load_window(seg, 0) };
    loop {
        if run == 0 && n - pos >= 128 {
            // Two whole windows, neither all zeros (the common case): the block goes out
            // whole. Two 8-lane tests instead of the next window's byte mask.
            // SAFETY: pos + 128 <= n: two whole windows in seg.
            let xn = unsafe { _mm512_loadu_si512(seg.as_ptr().add(pos + 64) as *const _) };
            let zero = |v| _mm512_testn_epi64_mask(v, v) == 0xFF;
            if !zero(x) && !zero(xn) {
                // SAFETY: a full block; register work and writes through bw.
                unsafe { emit_block_n::<true>(x, !0, &t, bw) };
                pos += 64;
                x = xn;
                continue;
            }
        }
        // The window's zero bytes (lanes past the end were loaded as zeros: masked out).
        let z = _mm512_testn_epi8_mask(x, x) & lanes(n - pos);
        if z == !0 {
            // A whole zero window (z == !0 implies all 64 lanes are real).
            run += 64;
            pos += 64;
        } else if run > 0 {
            // The run takes the zeros that start this window; the next window starts after.
            let lz = (!z).trailing_zeros() as usize;
            super::emit_run(run + lz, table, bw);
            run = 0;
            pos += lz;
        } else {
            let m = lanes(n - pos);
            // The next window, loaded here (not only when this one ends in zeros) so that
            // the test below is data, not a branch: half of a photo's windows end in a zero.
            let zn = if n - pos > 64 {
                // SAFETY: pos + 64 < n.
                unsafe { load_window(seg, pos + 64) }.1
            } else {
                0
            };
            // Zeros that end this window start a run when the next window is all zeros
            // (which implies this one is full).
            let tz = (!z).leading_zeros();
            let split = if zn == !0 { tz } else { 0 };
            // SAFETY: register work and writes through bw; `m >> split` keeps lanes 0..k,
            // k >= 1 (split < 64, as z != !0).
            unsafe { emit_block(x, m >> split, &t, bw) };
            run = split as usize;
            pos += 64;
        }
        if pos >= n {
            break;
        }
        // SAFETY: pos < n.
        (x, _) = unsafe { load_window(seg, pos) };
    }
    if run > 0 {
        super::emit_run(run, table, bw);
    }
}

/// [`emit_segment`]'s loop, over any bit writer.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VBMI and BMI2. Sound for any segment; `bw` must be sound for the bytes the
/// segment codes to (as [`RawBits::new`] requires of its buffer).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,bmi2")]
unsafe fn emit_segment_with<const R: usize>(seg: &[u8], table: &Table, bw: &mut impl Bits) {
    let n = seg.len();
    // SAFETY: reads the tables.
    let t = unsafe { lit_regs(table) };
    let mut pos = 0;
    // SAFETY: 0 < n.
    let (mut x, _) = unsafe { load_window(seg, 0) };
    loop {
        let (m, xn, z, zn) = if n - pos >= 128 {
            // Two whole windows: first the cheap test of `zero_groups`. Most windows of a
            // photo hold no run, and this spares them the byte masks and `run_starts`.
            // SAFETY: pos + 128 <= n: two whole windows in seg.
            let xn = unsafe { _mm512_loadu_si512(seg.as_ptr().add(pos + 64) as *const _) };
            // SAFETY: register intrinsics.
            if unsafe { zero_groups::<R>(x, xn) } == 0 {
                // SAFETY: a full block; register work and writes through bw.
                unsafe { emit_block_n::<true>(x, !0, &t, bw) };
                pos += 64;
                x = xn;
                continue;
            }
            let z = _mm512_testn_epi8_mask(x, x);
            (!0, xn, z, _mm512_testn_epi8_mask(xn, xn))
        } else {
            let m = lanes(n - pos);
            // Lanes past the end were loaded as zeros: masked out.
            let z = _mm512_testn_epi8_mask(x, x) & m;
            let (xn, zn) = if n - pos > 64 {
                // SAFETY: pos + 64 < n.
                unsafe { load_window(seg, pos + 64) }
            } else {
                (_mm512_setzero_si512(), 0)
            };
            (m, xn, z, zn)
        };
        let cand = run_starts::<R>(z, zn);
        if cand == 0 {
            // SAFETY: register work and writes through bw.
            unsafe { emit_block(x, m, &t, bw) };
            pos += 64;
            if pos >= n {
                break;
            }
            x = xn;
            continue;
        }
        let s = cand.trailing_zeros() as usize;
        if s > 0 {
            // SAFETY: as above.
            unsafe { emit_block(x, (1u64 << s) - 1, &t, bw) };
        }
        let zz = z as u128 | (zn as u128) << 64;
        let ones = (!(zz >> s)).trailing_zeros() as usize;
        let k = if s + ones < 128 {
            ones
        } else {
            // SAFETY: pos + 128 <= n here (all 128 bits were zeros of real bytes).
            128 - s + unsafe { zero_run(seg, pos + 128) }
        };
        super::emit_run(k, table, bw);
        pos += s + k;
        if pos >= n {
            break;
        }
        // SAFETY: pos < n.
        (x, _) = unsafe { load_window(seg, pos) };
    }
}
