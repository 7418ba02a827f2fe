//! The loops every SIMD kernel shares, written once over a small vector trait ([`Isa`]) the way
//! memchr's `generic` module is: each ISA module implements [`Isa`] with `#[inline(always)]`
//! intrinsics and instantiates these `#[inline(always)]` loops inside its own
//! `#[target_feature]` functions, so the whole loop is compiled for that ISA.
//!
//! A loop step handles one block of `4 * LANES` elements (four vectors, so that packing to bytes
//! works on whole registers). The last partial block is copied into a zero-padded stack block,
//! converted there and copied out: the tail goes through the very same vector code as the body.
#![allow(unsafe_code)]

use half::{bf16, f16};

/// Largest block (AVX-512: 4 vectors of 16 lanes).
const MAX_BLOCK: usize = 64;

/// What one ISA offers the shared loops. Every method is `unsafe` because it may only run on a
/// CPU with the ISA (the implementing module guarantees that by only calling the loops from its
/// `#[target_feature]` functions) and because pointer arguments must be valid for the access.
pub(crate) trait Isa {
    /// Float lanes per vector.
    const LANES: usize;
    /// A vector of `LANES` f32.
    type F: Copy;
    /// A vector of `LANES` 32-bit integers (quantised samples).
    type I: Copy;

    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::F;
    /// Loads `LANES` f32 from `p` (unaligned).
    unsafe fn load_f32(p: *const f32) -> Self::F;
    /// Loads `LANES` f16 from `p` and widens them exactly (NaNs quieted, payload kept, as `half`).
    unsafe fn load_f16(p: *const u16) -> Self::F;
    /// Loads `LANES` bf16 from `p` and widens them exactly (NaNs quieted, as `half`).
    unsafe fn load_bf16(p: *const u16) -> Self::F;
    /// Stores `LANES` f32 to `p` (unaligned).
    unsafe fn store_f32(p: *mut f32, v: Self::F);
    /// `q(clamp(scale * v, 0, max))` per lane, NaN -> 0, `q` = trunc or round-half-even, as
    /// integers in `0..=max` (or, where `store_*` saturate themselves, anything that saturates
    /// to the same result).
    unsafe fn quantize<const ROUND: bool>(v: Self::F, scale: Self::F, max: Self::F) -> Self::I;
    /// Packs four quantised vectors (values 0..=255) into `4 * LANES` bytes at `p`, in order.
    unsafe fn store_u8x4(p: *mut u8, v: [Self::I; 4]);
    /// Packs two quantised vectors (values 0..=65535) into `2 * LANES` big-endian u16 at `p`.
    unsafe fn store_u16be_x2(p: *mut u8, v: [Self::I; 2]);
    /// Asks for the cache line at `p` (a hint: any address is sound). Default: nothing.
    #[inline(always)]
    fn prefetch(_p: *const u8) {}
}

/// An element type the loops can read.
pub(crate) trait Source: Copy + Default {
    /// Loads `LANES` elements from `p` as f32.
    ///
    /// # Safety
    /// `p` must be valid for reading `V::LANES` elements and the CPU must have `V`'s ISA.
    unsafe fn load<V: Isa>(p: *const Self) -> V::F;
}

impl Source for f32 {
    #[inline(always)]
    unsafe fn load<V: Isa>(p: *const Self) -> V::F {
        // SAFETY: forwarded contract.
        unsafe { V::load_f32(p) }
    }
}

impl Source for f16 {
    #[inline(always)]
    unsafe fn load<V: Isa>(p: *const Self) -> V::F {
        // SAFETY: forwarded contract; f16 is `repr(transparent)` over u16.
        unsafe { V::load_f16(p.cast::<u16>()) }
    }
}

impl Source for bf16 {
    #[inline(always)]
    unsafe fn load<V: Isa>(p: *const Self) -> V::F {
        // SAFETY: forwarded contract; bf16 is `repr(transparent)` over u16.
        unsafe { V::load_bf16(p.cast::<u16>()) }
    }
}

/// How far ahead of the block being converted [`quantize`] asks for the source's cache lines.
/// The hardware prefetchers stop at 4 KiB page boundaries, and an f32 row of a 1024-wide RGB
/// tensor spans three pages. Measured on the 2-vCPU AMD VM (`coder_threads`, convert column,
/// one thread, 4 alternating rounds): 1 MP 0.27-0.31 -> 0.19-0.24 ms, 4 MP 1.64-1.85 -> 1.35-1.64
/// ms. 1 KiB and 2 KiB ahead gained less.
const PREFETCH_AHEAD: usize = 4096;

/// One block: `4 * LANES` elements from `s` to `4 * LANES * OUT` bytes at `d`.
///
/// # Safety
/// `s` readable and `d` writable for one block; the CPU has `V`'s ISA.
#[inline(always)]
unsafe fn block<V: Isa, S: Source, const OUT: usize, const ROUND: bool>(
    s: *const S,
    d: *mut u8,
    scale: V::F,
    max: V::F,
) {
    let l = V::LANES;
    // SAFETY: the caller guarantees one whole block is in bounds on both sides.
    unsafe {
        let a = V::quantize::<ROUND>(S::load::<V>(s), scale, max);
        let b = V::quantize::<ROUND>(S::load::<V>(s.add(l)), scale, max);
        let c = V::quantize::<ROUND>(S::load::<V>(s.add(2 * l)), scale, max);
        let e = V::quantize::<ROUND>(S::load::<V>(s.add(3 * l)), scale, max);
        if OUT == 1 {
            V::store_u8x4(d, [a, b, c, e]);
        } else {
            V::store_u16be_x2(d, [a, b]);
            V::store_u16be_x2(d.add(4 * l), [c, e]);
        }
    }
}

/// Quantises `src` into `dst`: `OUT` = 1 (u8) or 2 (u16 big-endian) bytes per element.
/// Converts `min(src.len(), dst.len() / OUT)` elements.
///
/// # Safety
/// The CPU must have `V`'s ISA.
#[inline(always)]
pub(crate) unsafe fn quantize<V: Isa, S: Source, const OUT: usize, const ROUND: bool>(
    src: &[S],
    dst: &mut [u8],
) {
    let n = src.len().min(dst.len() / OUT);
    let step = 4 * V::LANES;
    debug_assert!(step <= MAX_BLOCK);
    let max_val = if OUT == 1 { 255.0 } else { 65535.0 };
    // SAFETY: the caller guarantees the ISA.
    let (scale, max) = unsafe { (V::splat(max_val), V::splat(max_val)) };
    let s = src.as_ptr();
    let d = dst.as_mut_ptr();
    let mut i = 0;
    let block_bytes = step * std::mem::size_of::<S>();
    while i + step <= n {
        // The source lines PREFETCH_AHEAD bytes on, one hint per cache line of this block.
        let at = s
            .cast::<u8>()
            .wrapping_add(i * std::mem::size_of::<S>() + PREFETCH_AHEAD);
        let mut k = 0;
        while k < block_bytes {
            V::prefetch(at.wrapping_add(k));
            k += 64;
        }
        // SAFETY: i + step <= n, so elements i..i+step of `src` and bytes OUT*i..OUT*(i+step) of
        // `dst` are in bounds; the caller guarantees the ISA.
        unsafe { block::<V, S, OUT, ROUND>(s.add(i), d.add(OUT * i), scale, max) };
        i += step;
    }
    if i < n {
        let rest = n - i;
        let mut sbuf = [S::default(); MAX_BLOCK];
        let mut dbuf = [0u8; 2 * MAX_BLOCK];
        sbuf[..rest].copy_from_slice(&src[i..n]);
        // SAFETY: both stack blocks hold at least one whole block; the caller guarantees the ISA.
        unsafe { block::<V, S, OUT, ROUND>(sbuf.as_ptr(), dbuf.as_mut_ptr(), scale, max) };
        dst[OUT * i..OUT * n].copy_from_slice(&dbuf[..OUT * rest]);
    }
}

/// Widens `src` into `dst` (f16 or bf16 to f32), `min(src.len(), dst.len())` elements.
///
/// # Safety
/// The CPU must have `V`'s ISA.
#[inline(always)]
pub(crate) unsafe fn widen<V: Isa, S: Source>(src: &[S], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let l = V::LANES;
    let step = 4 * l;
    let s = src.as_ptr();
    let d = dst.as_mut_ptr();
    let mut i = 0;
    while i + step <= n {
        // SAFETY: i + step <= n bounds both slices; the caller guarantees the ISA.
        unsafe {
            let a = S::load::<V>(s.add(i));
            let b = S::load::<V>(s.add(i + l));
            let c = S::load::<V>(s.add(i + 2 * l));
            let e = S::load::<V>(s.add(i + 3 * l));
            V::store_f32(d.add(i), a);
            V::store_f32(d.add(i + l), b);
            V::store_f32(d.add(i + 2 * l), c);
            V::store_f32(d.add(i + 3 * l), e);
        }
        i += step;
    }
    while i < n {
        let rest = (n - i).min(l);
        let mut sbuf = [S::default(); MAX_BLOCK];
        let mut dbuf = [0f32; MAX_BLOCK];
        sbuf[..rest].copy_from_slice(&src[i..i + rest]);
        // SAFETY: the stack blocks hold at least one vector; the caller guarantees the ISA.
        unsafe { V::store_f32(dbuf.as_mut_ptr(), S::load::<V>(sbuf.as_ptr())) };
        dst[i..i + rest].copy_from_slice(&dbuf[..rest]);
        i += rest;
    }
}
