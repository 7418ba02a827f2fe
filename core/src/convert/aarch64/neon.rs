//! The NEON kernel: 4 lanes. NEON's float-to-unsigned conversions (`fcvtzu`, `fcvtnu`) saturate
//! and map NaN to 0 exactly as Rust's `as` does, and the narrowing moves (`uqxtn`) saturate, so
//! no explicit clamp is needed. f16 is widened by `fcvtl` (base ARMv8 AdvSIMD; written as inline
//! assembly because the f16 intrinsics are not stable), bf16 by a 16-bit shift.
#![allow(unsafe_code)]

use core::arch::aarch64::*;
use core::arch::asm;

use crate::convert::generic::{self, Isa, Source};
use crate::convert::kernels::{table, Kernel, Table};

/// Proof that the CPU has NEON; the [`Isa`] of this kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Neon {
    _priv: (),
}

impl Neon {
    /// True when this CPU can run the kernel (every aarch64 Linux CPU has NEON).
    pub(crate) fn is_available() -> bool {
        std::arch::is_aarch64_feature_detected!("neon")
    }

    /// The kernel's token, if this CPU can run it.
    pub(crate) fn new() -> Option<Self> {
        Self::is_available().then_some(Neon { _priv: () })
    }

    /// The kernel handle.
    pub(crate) fn kernel(self) -> Kernel {
        // SAFETY: `self` exists only when `is_available()` said NEON is present, the feature
        // `TABLE`'s functions are compiled for.
        unsafe { Kernel::from_table("neon", &TABLE) }
    }
}

/// Quantises `src` into `dst` (`OUT` bytes per element).
///
/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
unsafe fn quantize<S: Source, const OUT: usize, const ROUND: bool>(src: &[S], dst: &mut [u8]) {
    // SAFETY: this function is compiled for, and only called on CPUs with, NEON.
    unsafe { generic::quantize::<Neon, S, OUT, ROUND>(src, dst) }
}

/// Widens `src` into `dst`.
///
/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
unsafe fn widen<S: Source>(src: &[S], dst: &mut [f32]) {
    // SAFETY: as in `quantize`.
    unsafe { generic::widen::<Neon, S>(src, dst) }
}

static TABLE: Table = table!(quantize, widen);

impl Isa for Neon {
    const LANES: usize = 4;
    type F = float32x4_t;
    type I = uint32x4_t;

    #[inline(always)]
    unsafe fn splat(x: f32) -> float32x4_t {
        // SAFETY: register-only; the caller guarantees NEON.
        unsafe { vdupq_n_f32(x) }
    }

    #[inline(always)]
    unsafe fn load_f32(p: *const f32) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable f32 at `p`.
        unsafe { vld1q_f32(p) }
    }

    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable u16 at `p` and NEON.
        let h = unsafe { vld1_u16(p) };
        let out: float32x4_t;
        // SAFETY: `fcvtl` only reads and writes the named vector registers; it is exact and
        // quiets NaNs keeping the payload (FPCR.DN is 0 under Linux), like `half`.
        unsafe {
            asm!(
                "fcvtl {out:v}.4s, {h:v}.4h",
                h = in(vreg) h,
                out = lateout(vreg) out,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        out
    }

    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable u16 at `p` and NEON.
        unsafe {
            let x = vshll_n_u16::<16>(vld1_u16(p));
            let magnitude = vandq_u32(x, vdupq_n_u32(0x7fff_ffff));
            let nan = vcgtq_u32(magnitude, vdupq_n_u32(0x7f80_0000));
            vreinterpretq_f32_u32(vorrq_u32(x, vandq_u32(nan, vdupq_n_u32(0x0040_0000))))
        }
    }

    #[inline(always)]
    unsafe fn store_f32(p: *mut f32, v: float32x4_t) {
        // SAFETY: the caller guarantees 4 writable f32 at `p`.
        unsafe { vst1q_f32(p, v) }
    }

    #[inline(always)]
    unsafe fn quantize<const ROUND: bool>(
        v: float32x4_t,
        scale: float32x4_t,
        _max: float32x4_t,
    ) -> uint32x4_t {
        // SAFETY: register-only; the caller guarantees NEON.
        unsafe {
            let t = vmulq_f32(v, scale);
            // Saturating to 0..=u32::MAX with NaN -> 0; the narrowing stores saturate further.
            if ROUND {
                vcvtnq_u32_f32(t)
            } else {
                vcvtq_u32_f32(t)
            }
        }
    }

    #[inline(always)]
    unsafe fn store_u8x4(p: *mut u8, v: [uint32x4_t; 4]) {
        // SAFETY: the caller guarantees 16 writable bytes at `p` and NEON.
        unsafe {
            let ab = vcombine_u16(vqmovn_u32(v[0]), vqmovn_u32(v[1]));
            let cd = vcombine_u16(vqmovn_u32(v[2]), vqmovn_u32(v[3]));
            vst1q_u8(p, vcombine_u8(vqmovn_u16(ab), vqmovn_u16(cd)));
        }
    }

    #[inline(always)]
    unsafe fn store_u16be_x2(p: *mut u8, v: [uint32x4_t; 2]) {
        // SAFETY: the caller guarantees 16 writable bytes at `p` and NEON.
        unsafe {
            let w = vcombine_u16(vqmovn_u32(v[0]), vqmovn_u32(v[1]));
            vst1q_u8(p, vrev16q_u8(vreinterpretq_u8_u16(w)));
        }
    }
}
