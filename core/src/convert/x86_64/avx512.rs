//! The AVX-512 kernel (F + BW): 16 lanes; f16 widened by `vcvtph2ps zmm`, bf16 by a shift.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::convert::generic::{self, Isa, Source};
use crate::convert::kernels::{table, Kernel, Table};

/// Proof that the CPU has AVX-512F and AVX-512BW; the [`Isa`] of this kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512 {
    _priv: (),
}

impl Avx512 {
    /// True when this CPU can run the kernel (AVX-512F and AVX-512BW).
    pub(crate) fn is_available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// The kernel's token, if this CPU can run it.
    pub(crate) fn new() -> Option<Self> {
        Self::is_available().then_some(Avx512 { _priv: () })
    }

    /// The kernel handle.
    pub(crate) fn kernel(self) -> Kernel {
        // SAFETY: `self` exists only when `is_available()` said AVX-512F and BW are present,
        // the features `TABLE`'s functions are compiled for.
        unsafe { Kernel::from_table("avx512", &TABLE) }
    }
}

/// Quantises `src` into `dst` (`OUT` bytes per element).
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize<S: Source, const OUT: usize, const ROUND: bool>(src: &[S], dst: &mut [u8]) {
    // SAFETY: this function is compiled for, and only called on CPUs with, AVX-512F/BW.
    unsafe { generic::quantize::<Avx512, S, OUT, ROUND>(src, dst) }
}

/// Widens `src` into `dst`.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn widen<S: Source>(src: &[S], dst: &mut [f32]) {
    // SAFETY: as in `quantize`.
    unsafe { generic::widen::<Avx512, S>(src, dst) }
}

static TABLE: Table = table!(quantize, widen);

impl Isa for Avx512 {
    const LANES: usize = 16;
    type F = __m512;
    type I = __m512i;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        // SAFETY: register-only; the caller guarantees AVX-512F.
        unsafe { _mm512_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m512 {
        // SAFETY: the caller guarantees 16 readable f32 at `p` (unaligned load).
        unsafe { _mm512_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m512 {
        // SAFETY: the caller guarantees 16 readable u16 at `p` and AVX-512F. vcvtph2ps is exact
        // and quiets NaNs keeping the payload, like `half`.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m512 {
        // SAFETY: the caller guarantees 16 readable u16 at `p` and AVX-512F.
        unsafe {
            let x = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())));
            let magnitude = _mm512_and_si512(x, _mm512_set1_epi32(0x7fff_ffff));
            let nan = _mm512_cmpgt_epi32_mask(magnitude, _mm512_set1_epi32(0x7f80_0000));
            _mm512_castsi512_ps(_mm512_mask_or_epi32(
                x,
                nan,
                x,
                _mm512_set1_epi32(0x0040_0000),
            ))
        }
    }

    #[inline(always)]
    unsafe fn store_f32(p: *mut f32, v: __m512) {
        // SAFETY: the caller guarantees 16 writable f32 at `p`.
        unsafe { _mm512_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn quantize<const ROUND: bool>(v: __m512, scale: __m512, max: __m512) -> __m512i {
        // SAFETY: register-only; the caller guarantees AVX-512F.
        unsafe {
            let t = _mm512_mul_ps(v, scale);
            // vmaxps returns its second operand when either is NaN: NaN -> 0, -inf -> 0; then
            // vminps bounds every lane, so the conversion stays in range.
            let t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), max);
            if ROUND {
                _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t)
            } else {
                _mm512_cvttps_epi32(t)
            }
        }
    }

    #[inline(always)]
    unsafe fn store_u8x4(p: *mut u8, v: [__m512i; 4]) {
        // SAFETY: the caller guarantees 64 writable bytes at `p` and AVX-512F/BW.
        unsafe {
            // Per 128-bit lane k the packs leave the dwords a_k, b_k, c_k, d_k (4 samples each);
            // gather a_0..a_3, b_0..b_3, ... with one cross-lane permute.
            let ab = _mm512_packus_epi32(v[0], v[1]);
            let cd = _mm512_packus_epi32(v[2], v[3]);
            let x = _mm512_packus_epi16(ab, cd);
            let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            _mm512_storeu_si512(p.cast(), _mm512_permutexvar_epi32(idx, x));
        }
    }

    #[inline(always)]
    unsafe fn store_u16be_x2(p: *mut u8, v: [__m512i; 2]) {
        // SAFETY: the caller guarantees 64 writable bytes at `p` and AVX-512F/BW.
        unsafe {
            // qwords after the pack: a_0, b_0, a_1, b_1, ... -> a_0..a_3, b_0..b_3.
            let w = _mm512_packus_epi32(v[0], v[1]);
            let w = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), w);
            let swap = _mm512_broadcast_i32x4(_mm_setr_epi8(
                1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14,
            ));
            _mm512_storeu_si512(p.cast(), _mm512_shuffle_epi8(w, swap));
        }
    }

    #[inline(always)]
    fn prefetch(p: *const u8) {
        // SAFETY: a prefetch is only a hint (SSE, baseline on x86_64): it never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }
}
