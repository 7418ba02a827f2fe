//! The SSE4.1 kernel: 4 lanes. f16 is widened with integer arithmetic (SSE4.1 CPUs need not have
//! F16C), bf16 by a 16-bit shift.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::convert::generic::{self, Isa, Source};
use crate::convert::kernels::{table, Kernel, Table};

/// Proof that the CPU has SSE4.1; the [`Isa`] of this kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sse41 {
    _priv: (),
}

impl Sse41 {
    /// True when this CPU can run the kernel (checked at run time; cheap after the first call).
    pub(crate) fn is_available() -> bool {
        is_x86_feature_detected!("sse4.1")
    }

    /// The kernel's token, if this CPU can run it.
    pub(crate) fn new() -> Option<Self> {
        Self::is_available().then_some(Sse41 { _priv: () })
    }

    /// The kernel handle.
    pub(crate) fn kernel(self) -> Kernel {
        // SAFETY: `self` exists only when `is_available()` said SSE4.1 is present, the one
        // feature `TABLE`'s functions are compiled for.
        unsafe { Kernel::from_table("sse4.1", &TABLE) }
    }
}

/// Quantises `src` into `dst` (`OUT` bytes per element).
///
/// # Safety
/// The CPU must have SSE4.1.
#[target_feature(enable = "sse4.1")]
unsafe fn quantize<S: Source, const OUT: usize, const ROUND: bool>(src: &[S], dst: &mut [u8]) {
    // SAFETY: this function is compiled for, and only called on CPUs with, SSE4.1.
    unsafe { generic::quantize::<Sse41, S, OUT, ROUND>(src, dst) }
}

/// Widens `src` into `dst`.
///
/// # Safety
/// The CPU must have SSE4.1.
#[target_feature(enable = "sse4.1")]
unsafe fn widen<S: Source>(src: &[S], dst: &mut [f32]) {
    // SAFETY: as in `quantize`.
    unsafe { generic::widen::<Sse41, S>(src, dst) }
}

static TABLE: Table = table!(quantize, widen);

/// f16 bits (zero-extended to 32-bit lanes) to f32, exactly. Fabian Giesen's
/// `half_to_float_fast2`: shift the exponent and mantissa into place and rebias; exponent 31
/// (inf/NaN) gets the rest of the f32 bias; exponent 0 (zero/subnormal) is renormalised by an
/// exact float subtraction of 2^-14. NaNs get the quiet bit, as `half` does.
///
/// # Safety
/// The CPU must have SSE4.1.
#[inline(always)]
unsafe fn f16_bits_to_f32(h: __m128i) -> __m128 {
    // SAFETY: SSE2/SSE4.1 register-only intrinsics; the caller guarantees SSE4.1.
    unsafe {
        let sign = _mm_slli_epi32::<16>(_mm_and_si128(h, _mm_set1_epi32(0x8000)));
        let o = _mm_slli_epi32::<13>(_mm_and_si128(h, _mm_set1_epi32(0x7fff)));
        let shifted_exp = _mm_set1_epi32(0x7c00 << 13);
        let exp = _mm_and_si128(o, shifted_exp);
        let o = _mm_add_epi32(o, _mm_set1_epi32((127 - 15) << 23));
        let infnan = _mm_cmpeq_epi32(exp, shifted_exp);
        let o = _mm_add_epi32(o, _mm_and_si128(infnan, _mm_set1_epi32((128 - 16) << 23)));
        let zero_or_sub = _mm_cmpeq_epi32(exp, _mm_setzero_si128());
        let renorm = _mm_castps_si128(_mm_sub_ps(
            _mm_castsi128_ps(_mm_add_epi32(o, _mm_set1_epi32(1 << 23))),
            _mm_castsi128_ps(_mm_set1_epi32(113 << 23)),
        ));
        let o = _mm_blendv_epi8(o, renorm, zero_or_sub);
        let mantissa = _mm_and_si128(h, _mm_set1_epi32(0x3ff));
        let nan = _mm_andnot_si128(_mm_cmpeq_epi32(mantissa, _mm_setzero_si128()), infnan);
        let o = _mm_or_si128(o, _mm_and_si128(nan, _mm_set1_epi32(0x0040_0000)));
        _mm_castsi128_ps(_mm_or_si128(o, sign))
    }
}

impl Isa for Sse41 {
    const LANES: usize = 4;
    type F = __m128;
    type I = __m128i;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m128 {
        // SAFETY: register-only; the caller guarantees SSE4.1.
        unsafe { _mm_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m128 {
        // SAFETY: the caller guarantees 4 readable f32 at `p` (unaligned load).
        unsafe { _mm_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m128 {
        // SAFETY: the caller guarantees 4 readable u16 (8 bytes) at `p` and SSE4.1.
        unsafe { f16_bits_to_f32(_mm_cvtepu16_epi32(_mm_loadl_epi64(p.cast()))) }
    }

    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m128 {
        // SAFETY: the caller guarantees 4 readable u16 (8 bytes) at `p` and SSE4.1.
        unsafe {
            let x = _mm_slli_epi32::<16>(_mm_cvtepu16_epi32(_mm_loadl_epi64(p.cast())));
            let magnitude = _mm_and_si128(x, _mm_set1_epi32(0x7fff_ffff));
            let nan = _mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x7f80_0000));
            _mm_castsi128_ps(_mm_or_si128(
                x,
                _mm_and_si128(nan, _mm_set1_epi32(0x0040_0000)),
            ))
        }
    }

    #[inline(always)]
    unsafe fn store_f32(p: *mut f32, v: __m128) {
        // SAFETY: the caller guarantees 4 writable f32 at `p`.
        unsafe { _mm_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn quantize<const ROUND: bool>(v: __m128, scale: __m128, max: __m128) -> __m128i {
        // SAFETY: register-only; the caller guarantees SSE4.1.
        unsafe {
            let t = _mm_mul_ps(v, scale);
            // maxps returns its second operand when either is NaN: NaN -> 0, -inf -> 0.
            // After it no lane is NaN, so minps clamps +inf and large values to `max`, and the
            // conversion below never sees an out-of-range value.
            let t = _mm_min_ps(_mm_max_ps(t, _mm_setzero_ps()), max);
            // Rounding after clamping to integer bounds equals clamping after rounding.
            let t = if ROUND {
                _mm_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t)
            } else {
                t
            };
            _mm_cvttps_epi32(t)
        }
    }

    #[inline(always)]
    unsafe fn store_u8x4(p: *mut u8, v: [__m128i; 4]) {
        // SAFETY: the caller guarantees 16 writable bytes at `p` and SSE4.1.
        unsafe {
            let ab = _mm_packus_epi32(v[0], v[1]);
            let cd = _mm_packus_epi32(v[2], v[3]);
            _mm_storeu_si128(p.cast(), _mm_packus_epi16(ab, cd));
        }
    }

    #[inline(always)]
    unsafe fn store_u16be_x2(p: *mut u8, v: [__m128i; 2]) {
        // SAFETY: the caller guarantees 16 writable bytes at `p` and SSE4.1 (SSSE3 pshufb).
        unsafe {
            let w = _mm_packus_epi32(v[0], v[1]);
            let swap = _mm_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
            _mm_storeu_si128(p.cast(), _mm_shuffle_epi8(w, swap));
        }
    }

    #[inline(always)]
    fn prefetch(p: *const u8) {
        // SAFETY: a prefetch is only a hint (SSE, baseline on x86_64): it never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }
}
