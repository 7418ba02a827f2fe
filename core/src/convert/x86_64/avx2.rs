//! The AVX2 kernel: 8 lanes; f16 widened by F16C (`vcvtph2ps`), bf16 by a 16-bit shift.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::convert::generic::{self, Isa, Source};
use crate::convert::kernels::{table, Kernel, Table};

/// Proof that the CPU has AVX2 and F16C; the [`Isa`] of this kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2 {
    _priv: (),
}

impl Avx2 {
    /// True when this CPU can run the kernel (AVX2 and F16C).
    pub(crate) fn is_available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")
    }

    /// The kernel's token, if this CPU can run it.
    pub(crate) fn new() -> Option<Self> {
        Self::is_available().then_some(Avx2 { _priv: () })
    }

    /// The kernel handle.
    pub(crate) fn kernel(self) -> Kernel {
        // SAFETY: `self` exists only when `is_available()` said AVX2 and F16C are present, the
        // features `TABLE`'s functions are compiled for.
        unsafe { Kernel::from_table("avx2", &TABLE) }
    }
}

/// Quantises `src` into `dst` (`OUT` bytes per element).
///
/// # Safety
/// The CPU must have AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn quantize<S: Source, const OUT: usize, const ROUND: bool>(src: &[S], dst: &mut [u8]) {
    // SAFETY: this function is compiled for, and only called on CPUs with, AVX2 and F16C.
    unsafe { generic::quantize::<Avx2, S, OUT, ROUND>(src, dst) }
}

/// Widens `src` into `dst`.
///
/// # Safety
/// The CPU must have AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn widen<S: Source>(src: &[S], dst: &mut [f32]) {
    // SAFETY: as in `quantize`.
    unsafe { generic::widen::<Avx2, S>(src, dst) }
}

static TABLE: Table = table!(quantize, widen);

impl Isa for Avx2 {
    const LANES: usize = 8;
    type F = __m256;
    type I = __m256i;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        // SAFETY: register-only; the caller guarantees AVX2.
        unsafe { _mm256_set1_ps(x) }
    }

    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f32 at `p` (unaligned load).
        unsafe { _mm256_loadu_ps(p) }
    }

    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable u16 at `p` and F16C. vcvtph2ps is exact and
        // quiets NaNs keeping the payload, like `half`.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }

    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable u16 at `p` and AVX2.
        unsafe {
            let x = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())));
            let magnitude = _mm256_and_si256(x, _mm256_set1_epi32(0x7fff_ffff));
            let nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7f80_0000));
            let quiet = _mm256_and_si256(nan, _mm256_set1_epi32(0x0040_0000));
            _mm256_castsi256_ps(_mm256_or_si256(x, quiet))
        }
    }

    #[inline(always)]
    unsafe fn store_f32(p: *mut f32, v: __m256) {
        // SAFETY: the caller guarantees 8 writable f32 at `p`.
        unsafe { _mm256_storeu_ps(p, v) }
    }

    #[inline(always)]
    unsafe fn quantize<const ROUND: bool>(v: __m256, scale: __m256, max: __m256) -> __m256i {
        // SAFETY: register-only; the caller guarantees AVX2.
        unsafe {
            let t = _mm256_mul_ps(v, scale);
            // vmaxps returns its second operand when either is NaN: NaN -> 0, -inf -> 0; then
            // no lane is NaN and vminps bounds everything, so the conversion stays in range.
            let t = _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), max);
            let t = if ROUND {
                _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t)
            } else {
                t
            };
            _mm256_cvttps_epi32(t)
        }
    }

    #[inline(always)]
    unsafe fn store_u8x4(p: *mut u8, v: [__m256i; 4]) {
        // SAFETY: the caller guarantees 32 writable bytes at `p` and AVX2.
        unsafe {
            // The packs work per 128-bit half: the result holds, as dwords, the low halves of
            // a, b, c, d then their high halves; one cross-lane permute restores the order.
            let ab = _mm256_packus_epi32(v[0], v[1]);
            let cd = _mm256_packus_epi32(v[2], v[3]);
            let x = _mm256_packus_epi16(ab, cd);
            let x = _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(p.cast(), x);
        }
    }

    #[inline(always)]
    unsafe fn store_u16be_x2(p: *mut u8, v: [__m256i; 2]) {
        // SAFETY: the caller guarantees 32 writable bytes at `p` and AVX2.
        unsafe {
            // qwords after the pack: a.lo, b.lo, a.hi, b.hi -> a.lo, a.hi, b.lo, b.hi.
            let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(v[0], v[1]));
            let swap = _mm256_broadcastsi128_si256(_mm_setr_epi8(
                1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14,
            ));
            _mm256_storeu_si256(p.cast(), _mm256_shuffle_epi8(w, swap));
        }
    }

    #[inline(always)]
    fn prefetch(p: *const u8) {
        // SAFETY: a prefetch is only a hint (SSE, baseline on x86_64): it never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }
}
