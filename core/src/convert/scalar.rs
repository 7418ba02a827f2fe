//! The scalar kernel: the oracle every SIMD kernel is tested against, and the path on CPUs
//! without one (or under `--cfg pngcast_force_scalar`). Plain Rust, one element at a time:
//! `(max * x) as uN` already clamps, truncates and maps NaN to 0, which is exactly ComfyUI's
//! `np.clip(max * x, 0, max).astype(uintN)`; `Round` rounds half to even first.
#![forbid(unsafe_code)]

use half::{bf16, f16};

use super::kernels::Table;

/// An element the scalar kernel can read as f32.
pub(crate) trait ToF32: Copy {
    /// The exact f32 value (half widening keeps NaN payloads, quieted).
    fn to_f32(self) -> f32;
}

impl ToF32 for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
}

impl ToF32 for f16 {
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl ToF32 for bf16 {
    #[inline]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// `q(clamp(255 * x, 0, 255))`, NaN -> 0.
#[inline]
pub(crate) fn quantize_u8<const ROUND: bool>(x: f32) -> u8 {
    let v = 255.0f32 * x;
    if ROUND {
        v.round_ties_even() as u8
    } else {
        v as u8
    }
}

/// `q(clamp(65535 * x, 0, 65535))`, NaN -> 0.
#[inline]
pub(crate) fn quantize_u16<const ROUND: bool>(x: f32) -> u16 {
    let v = 65535.0f32 * x;
    if ROUND {
        v.round_ties_even() as u16
    } else {
        v as u16
    }
}

/// Quantises `min(src.len(), dst.len() / OUT)` elements into u8 (`OUT` = 1) or u16 big-endian
/// (`OUT` = 2).
pub(crate) fn quantize<S: ToF32, const OUT: usize, const ROUND: bool>(src: &[S], dst: &mut [u8]) {
    if OUT == 1 {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = quantize_u8::<ROUND>(x.to_f32());
        }
    } else {
        for (d, &x) in dst.chunks_exact_mut(2).zip(src) {
            d.copy_from_slice(&quantize_u16::<ROUND>(x.to_f32()).to_be_bytes());
        }
    }
}

/// Widens `min(src.len(), dst.len())` half-precision elements to f32.
pub(crate) fn widen<S: ToF32>(src: &[S], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = x.to_f32();
    }
}

/// The scalar kernel's function table.
pub(crate) static TABLE: Table = crate::convert::kernels::table!(quantize, widen);
