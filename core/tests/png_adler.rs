//! `adler32_combine` against simd-adler32's one-shot checksum, over random data and random splits.

use pngcast_core::png::adler32_combine;

#[test]
fn combine_equals_one_shot_over_random_splits() {
    let mut rng = fastrand::Rng::with_seed(0xad1e);
    let data: Vec<u8> = (0..300_000).map(|_| rng.u8(..)).collect();
    let constant = vec![0xffu8; 300_000];
    for iter in 0..2_000 {
        let src = if iter % 4 == 3 { &constant } else { &data };
        let len = match iter % 3 {
            0 => rng.usize(..64),
            1 => rng.usize(..70_000),
            _ => rng.usize(..=src.len()),
        };
        let whole = &src[..len];
        let want = simd_adler32::adler32(&whole);
        // Cut into 1..=8 pieces at random points (pieces may be empty).
        let mut cuts: Vec<usize> = (0..rng.usize(0..8)).map(|_| rng.usize(..=len)).collect();
        cuts.push(0);
        cuts.push(len);
        cuts.sort_unstable();
        let mut got = 1u32;
        for w in cuts.windows(2) {
            let piece = &whole[w[0]..w[1]];
            got = adler32_combine(got, simd_adler32::adler32(&piece), piece.len() as u64);
        }
        assert_eq!(got, want, "iteration {iter}, len {len}, cuts {cuts:?}");
    }
}

#[test]
fn combine_with_lengths_beyond_the_modulus_and_u32() {
    // B is `len_b` zero bytes, some lengths past multiples of 65521 and past 2^32; the reference
    // streams A then B through one hasher, in chunks rather than one huge allocation.
    let mut rng = fastrand::Rng::with_seed(5);
    let a: Vec<u8> = (0..1000).map(|_| rng.u8(..)).collect();
    for len_b in [65_520u64, 65_521, 65_522, 1 << 20, (1 << 32) + 7] {
        let zeros = vec![0u8; 1 << 20];
        let mut h = simd_adler32::Adler32::new();
        let mut b = simd_adler32::Adler32::new();
        h.write(&a);
        let mut left = len_b;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            h.write(&zeros[..n]);
            b.write(&zeros[..n]);
            left -= n as u64;
        }
        let combined = adler32_combine(simd_adler32::adler32(&a.as_slice()), b.finish(), len_b);
        assert_eq!(combined, h.finish(), "len_b {len_b}");
    }
}
