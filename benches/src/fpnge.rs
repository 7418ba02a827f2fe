//! fpnge, the C++ peer, when `build.rs` could build it (`cfg(pngcast_fpnge)`): a safe wrapper
//! over the two-function C ABI of `benches/fpnge/shim.cc`.
#![allow(unsafe_code)]

use crate::Image;

/// fpnge's levels (its `FPNGEFillOptions`): 1 Up only, 2 Paeth only, 3 approximate per-row
/// choice, 4 (its default) best per-row choice, 5 as 4 with a larger Huffman sample.
pub const LEVELS: [u8; 5] = [1, 2, 3, 4, 5];

/// fpnge's default level.
pub const DEFAULT_LEVEL: u8 = 4;

/// True when fpnge was built into this binary.
pub fn available() -> bool {
    cfg!(pngcast_fpnge)
}

#[cfg(pngcast_fpnge)]
mod ffi {
    extern "C" {
        pub fn pngcast_fpnge_bound(channels: usize, width: usize, height: usize) -> usize;
        pub fn pngcast_fpnge_encode(
            level: i32,
            channels: usize,
            pixels: *const u8,
            width: usize,
            height: usize,
            out: *mut u8,
        ) -> usize;
    }
}

/// Encodes `img` (8-bit, 1..=4 channels) with fpnge at `level` (1..=5) into `out` (resized to the
/// PNG; its capacity is reused). Returns false when fpnge is not built in, or on bad input.
#[cfg(pngcast_fpnge)]
pub fn encode(img: &Image, level: u8, out: &mut Vec<u8>) -> bool {
    let (w, h, c) = (
        img.width as usize,
        img.height as usize,
        usize::from(img.channels),
    );
    if !(1..=4).contains(&c) || !(1..=5).contains(&level) || img.pixels.len() != w * h * c {
        return false;
    }
    // SAFETY: a pure size computation.
    let bound = unsafe { ffi::pngcast_fpnge_bound(c, w, h) };
    // Capacity, not length: `resize` would zero-fill the bytes past the last output every
    // call (a memset of most of a frame, timed as fpnge's), which our encoder never does.
    out.clear();
    out.reserve(bound);
    // SAFETY: `pixels` holds `h` rows of `w * c` bytes (checked above), read with stride
    // `w * c`; `out` has capacity for fpnge's own bound for this geometry
    // (FPNGEOutputAllocSize), which it writes through the raw pointer.
    let n = unsafe {
        ffi::pngcast_fpnge_encode(
            i32::from(level),
            c,
            img.pixels.as_ptr(),
            w,
            h,
            out.as_mut_ptr(),
        )
    };
    assert!(n > 0 && n <= bound, "fpnge wrote {n} of {bound} bytes");
    // SAFETY: fpnge initialised the first `n <= bound <= capacity` bytes.
    unsafe { out.set_len(n) };
    true
}

/// Without fpnge: always false.
#[cfg(not(pngcast_fpnge))]
pub fn encode(_img: &Image, _level: u8, _out: &mut Vec<u8>) -> bool {
    false
}
