#![forbid(unsafe_code)]
//! Adler-32 for the zlib trailer: one-shot and streaming through `simd-adler32`, and
//! [`adler32_combine`], which neither `simd-adler32` nor `adler2` offers.
//!
//! Each stripe computes the Adler-32 of its own bytes in parallel; the zlib trailer needs the
//! checksum of their concatenation, which `adler32_combine` derives in O(1) per stripe.

/// The Adler-32 modulus: the largest prime below 2^16.
const BASE: u64 = 65521;

/// Adler-32 (initial value 1) of `data`, with the fastest kernel `simd-adler32` finds.
/// Costs one pass over `data` (tens of GB/s with AVX2/AVX-512).
pub(crate) fn adler32(data: &[u8]) -> u32 {
    simd_adler32::adler32(&data)
}

/// `adler` (the Adler-32 of some bytes) extended by `data`. One pass through `simd-adler32`.
pub(crate) fn adler32_update(adler: u32, data: &[u8]) -> u32 {
    let mut h = simd_adler32::Adler32::from_checksum(adler);
    h.write(data);
    h.finish()
}

/// `adler` extended by a span of `n` bytes `d_0..d_{n-1}` known only by two sums:
/// `s1 = sum d_j` and `t = sum j * d_j`. Appending the span adds `s1` to the first half and
/// `n * a + sum (n - j) d_j = n * a + n * s1 - t` to the second (`a` the first half before),
/// mod 65521. For kernels that sum bytes while they produce them (the fast coder's fused
/// filter and checksum pass). Needs `n * s1` and `t` within `u64`: any span of at most 2^24
/// bytes.
pub(crate) fn adler32_extend(adler: u32, n: u64, s1: u64, t: u64) -> u32 {
    debug_assert!(t <= n.saturating_mul(s1));
    let a = u64::from(adler & 0xffff);
    let b = u64::from(adler >> 16);
    let a2 = (a + s1 % BASE) % BASE;
    let tail = (n * s1 - t) % BASE;
    let b2 = (b + (n % BASE) * a % BASE + tail) % BASE;
    (a2 as u32) | ((b2 as u32) << 16)
}

/// The Adler-32 of `A ++ B` given `adler_a = adler32(A)`, `adler_b = adler32(B)` and
/// `len_b = B.len()`. O(1).
///
/// With `A = a1` the sum of bytes of A plus one and `A2` the sum of the running sums (both mod
/// 65521), appending B of length n shifts every running sum of B by `a1 - 1`:
/// `s1 = a1 + b1 - 1` and `s2 = a2 + b2 + n * (a1 - 1)`, all mod 65521. This is zlib's
/// `adler32_combine`, written with 64-bit intermediates so that no step can overflow.
pub fn adler32_combine(adler_a: u32, adler_b: u32, len_b: u64) -> u32 {
    let rem = len_b % BASE;
    let a1 = u64::from(adler_a & 0xffff);
    let a2 = u64::from(adler_a >> 16);
    let b1 = u64::from(adler_b & 0xffff);
    let b2 = u64::from(adler_b >> 16);
    // a1 - 1 may be -1 when a1 == 0; add BASE first so that everything stays non-negative.
    let s1 = (a1 + b1 + BASE - 1) % BASE;
    let s2 = (a2 + b2 + rem * ((a1 + BASE - 1) % BASE)) % BASE;
    // Both are < 65521, so they fit the 16-bit halves.
    (s1 as u32) | ((s2 as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        a | (b << 16)
    }

    /// Extending by a span's two sums equals checksumming the span, from any start value.
    #[test]
    fn extend_by_sums_matches_the_bytes() {
        let mut rng = fastrand::Rng::with_seed(3);
        for len in [0usize, 1, 2, 63, 64, 65, 5552, 5553, 70_000, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let s1: u64 = data.iter().map(|&d| u64::from(d)).sum();
            let t: u64 = data
                .iter()
                .enumerate()
                .map(|(j, &d)| j as u64 * u64::from(d))
                .sum();
            for start in [1u32, naive(b"abc"), 0xFFF0_FFF0, 0] {
                let want = adler32_update(start, &data);
                assert_eq!(adler32_extend(start, len as u64, s1, t), want, "len {len}");
            }
        }
        assert_eq!(adler32_update(1, b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn one_shot_matches_naive() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for len in [0, 1, 2, 15, 16, 17, 5552, 5553, 65521, 100_000] {
            assert_eq!(adler32(&data[..len]), naive(&data[..len]), "len {len}");
        }
    }

    #[test]
    fn combine_edge_values() {
        // Empty B leaves A unchanged; empty A (adler 1) gives B.
        for a in [1u32, 0, 0xfff0_fff0, 0x0001_0000, 0xffee_ffee] {
            assert_eq!(adler32_combine(a, 1, 0), a, "a={a:#x}");
        }
        let data = [0xffu8; 70_000];
        for split in [0, 1, 65520, 65521, 65522, 70_000] {
            let (x, y) = data.split_at(split);
            assert_eq!(
                adler32_combine(naive(x), naive(y), y.len() as u64),
                naive(&data)
            );
        }
    }
}
