#![forbid(unsafe_code)]
//! The per-stripe Huffman table: code lengths from a sampled histogram, limited to
//! [`MAX_LIT_BITS`], canonical codes, and the derived lookup tables the kernels read.
//!
//! The literal/length alphabet is deflate's 286 symbols (0..=255 literals, 256 end of block,
//! 257..=285 match lengths). Every symbol gets a code, because the rows that were not sampled may
//! hold any byte and any zero-run length. The distance alphabet has one code (distance 1, 1 bit).

/// Longest literal/length code. 14 (not deflate's 15) so that four literal codes fit in 56 bits:
/// the SIMD emitters pack four symbols per 64-bit write, and the bit writer takes at most 56 bits.
pub(crate) const MAX_LIT_BITS: u8 = 14;

/// Number of literal/length symbols written in the header (HLIT = 286 - 257).
pub(crate) const NUM_LITLEN: usize = 286;

/// Base match length of each length symbol 257..=285 and its number of extra bits (RFC 1951).
const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// The length symbol (0-based, add 257) for a match length 3..=258.
#[inline]
pub(crate) fn length_symbol(len: usize) -> usize {
    debug_assert!((3..=258).contains(&len));
    LEN_SYMBOL[len - 3] as usize
}

/// [`length_symbol`] as a table indexed by `len - 3`, computed at compile time: the symbol is
/// the last base <= len (258 has its own symbol).
const LEN_SYMBOL: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let len = i + 3;
        let mut s = 0;
        while s + 1 < 28 && LEN_BASE[s + 1] as usize <= len {
            s += 1;
        }
        t[i] = if len == 258 { 28 } else { s as u8 };
        i += 1;
    }
    t
};

/// Longest residual magnitude with its own cost in [`CostTable::near`]; larger ones share one.
pub(crate) const NEAR_MAX: u8 = 31;

/// The estimated cost of each filtered byte value, shaped so SIMD kernels compute it in three
/// steps: the residual's magnitude `|r|` (as a signed byte), clamped to [`NEAR_MAX`], looked up
/// in a 32-entry table (one `vpermb`, two `pshufb`, one `tbl`). `+d` and `-d` cost the same
/// (their mean code length), which loses little: filtered residuals are nearly symmetric.
#[derive(Debug, Clone)]
pub(crate) struct CostTable {
    /// Cost of a residual of magnitude `d` (index `min(d, NEAR_MAX)`).
    pub near: [u8; 32],
    /// The same costs as a 256-entry table by byte value, for the scalar kernel.
    pub full: [u8; 256],
}

impl CostTable {
    fn from_near(near: [u8; 32]) -> Self {
        let mut full = [0u8; 256];
        for (b, f) in full.iter_mut().enumerate() {
            let d = (b as u8 as i8).unsigned_abs().min(NEAR_MAX);
            *f = near[d as usize];
        }
        Self { near, full }
    }

    /// A prior for rows filtered before any histogram exists: roughly the code lengths of a
    /// Laplacian residual distribution.
    pub fn prior() -> Self {
        let mut near = [8u8; 32];
        near[..16].copy_from_slice(&[2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 7]);
        near[31] = 9;
        Self::from_near(near)
    }
}

/// One stripe's literal/length code and everything derived from it.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Code length of every literal/length symbol (1..=MAX_LIT_BITS).
    pub lens: [u8; NUM_LITLEN],
    /// Bit-reversed canonical code of every symbol (ready for an LSB-first bit writer).
    pub codes: [u16; NUM_LITLEN],
    /// Literal code lengths as bytes (SIMD lookups).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub lit_len: [u8; 256],
    /// Low byte of each literal's code.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub lit_lo: [u8; 256],
    /// High byte of each literal's code.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub lit_hi: [u8; 256],
    /// Literal code and length packed as `code | len << 16` (scalar emitter).
    pub lit_packed: [u32; 256],
    /// For a match length 3..=258 (index len - 3): length code, extra bits and the 1-bit
    /// distance code, as `bits | nbits << 24` (at most 14 + 5 + 1 = 20 bits).
    pub matches: [u32; 256],
    /// The filter-choice cost of each byte derived from this code.
    pub cost: CostTable,
    /// Of the sampled literals, how many per mille have codes of at most 8 bits: kernels with a
    /// faster path for blocks of such codes decide from it whether to try that path.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub short_per_mille: u32,
}

impl Table {
    /// Builds the table from symbol counts (any scale; every symbol gets at least a small count).
    pub fn from_counts(counts: &[u32; NUM_LITLEN]) -> Self {
        Self::build(counts, CodeShape::Free)
    }

    /// Builds the table from symbol counts with the given [`CodeShape`].
    pub fn from_counts_shaped(counts: &[u32; NUM_LITLEN], shape: CodeShape) -> Self {
        Self::build(counts, shape)
    }

    fn build(counts: &[u32; NUM_LITLEN], shape: CodeShape) -> Self {
        let mut freq = [0u32; NUM_LITLEN];
        for (f, &c) in freq.iter_mut().zip(counts.iter()) {
            *f = c.saturating_add(1);
        }
        let mut lens = [0u8; NUM_LITLEN];
        match shape {
            CodeShape::Free => limited_lengths(&freq, MAX_LIT_BITS, &mut lens),
            CodeShape::NearShort(half) => near_short_lengths(&freq, half, &mut lens),
        }
        let mut codes = [0u16; NUM_LITLEN];
        canonical_codes(&lens, &mut codes);

        let mut lit_len = [0u8; 256];
        let mut lit_lo = [0u8; 256];
        let mut lit_hi = [0u8; 256];
        let mut lit_packed = [0u32; 256];
        for b in 0..256 {
            lit_len[b] = lens[b];
            lit_lo[b] = codes[b] as u8;
            lit_hi[b] = (codes[b] >> 8) as u8;
            lit_packed[b] = codes[b] as u32 | (lens[b] as u32) << 16;
        }
        let mut matches = [0u32; 256];
        for (i, m) in matches.iter_mut().enumerate() {
            let len = i + 3;
            let s = length_symbol(len);
            let sym = 257 + s;
            let extra = LEN_EXTRA[s] as u32;
            let extra_val = (len - LEN_BASE[s] as usize) as u32;
            let mut bits = codes[sym] as u32;
            let mut n = lens[sym] as u32;
            bits |= extra_val << n;
            n += extra;
            // Distance code 0 (distance 1) is the single 1-bit code `0`: adds a zero bit.
            n += 1;
            *m = bits | n << 24;
        }

        // Costs: the frequency-weighted mean length of +d and -d for d < NEAR_MAX, of every
        // larger magnitude for NEAR_MAX.
        let mut wsum = [0u64; 32];
        let mut fsum = [0u64; 32];
        for b in 0..256 {
            let d = (b as u8 as i8).unsigned_abs().min(NEAR_MAX) as usize;
            wsum[d] += freq[b] as u64 * lens[b] as u64;
            fsum[d] += freq[b] as u64;
        }
        let mut near = [0u8; 32];
        for d in 0..32 {
            near[d] =
                ((wsum[d] + fsum[d] / 2) / fsum[d].max(1)).clamp(1, MAX_LIT_BITS as u64) as u8;
        }
        let cost = CostTable::from_near(near);
        let (mut short, mut all) = (0u64, 0u64);
        for b in 0..256 {
            let c = counts[b] as u64;
            all += c;
            if lens[b] <= 8 {
                short += c;
            }
        }
        let short_per_mille = (short * 1000 / all.max(1)) as u32;
        Self {
            lens,
            codes,
            lit_len,
            lit_lo,
            lit_hi,
            lit_packed,
            matches,
            cost,
            short_per_mille,
        }
    }

    /// Bits the coded symbols of `counts` take with this table (header excluded).
    pub fn coded_bits(&self, counts: &[u32; NUM_LITLEN]) -> u64 {
        let mut bits = 0u64;
        for (s, &c) in counts.iter().enumerate() {
            bits += c as u64 * self.lens[s] as u64;
        }
        for (s, &extra) in LEN_EXTRA.iter().enumerate() {
            // extra bits + the distance bit per match
            bits += counts[257 + s] as u64 * (extra as u64 + 1);
        }
        bits
    }
}

/// How a literal/length code is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeShape {
    /// Optimal lengths under [`MAX_LIT_BITS`] only.
    Free,
    /// Every residual `r` with `-h <= r < h` (`h` the value, a power of two from 2 to 64) gets
    /// a code of at most 8 bits, so a block of near residuals always takes the emitters'
    /// one-byte-per-code path; the rest of the code space goes to the far literals and the
    /// length symbols ([`near_short_lengths`]).
    NearShort(u8),
}

/// Lengths with every near residual (`-half <= r < half`) at most 8 bits, near optimal
/// otherwise: a code of at most 8 bits over the near literals and six groups (the far
/// literals in four runs of byte values, two per sign, and the end-of-block and length
/// symbols as two groups), then each group's own optimal code, limited so that group code
/// plus symbol code stay within [`MAX_LIT_BITS`], appended to the group's code. Both levels
/// are complete codes, so the whole is one.
fn near_short_lengths(freq: &[u32; NUM_LITLEN], half: u8, lens: &mut [u8; NUM_LITLEN]) {
    assert!(half.is_power_of_two() && (2..=64).contains(&half));
    let h = half as usize;
    // Symbol ranges of the groups: far positive residuals h..128 and far negative ones
    // 128..256 - h, each split in two (at most 63 symbols a group, so a group code of up to
    // 8 bits leaves the 6 bits 64 symbols need), then 256..271 and 271..286.
    let q = (128 - h) / 2;
    let groups: [(usize, usize); 6] = [
        (h, h + q),
        (h + q, 128),
        (128, 128 + q),
        (128 + q, 256 - h),
        (256, 271),
        (271, NUM_LITLEN),
    ];
    let near = 2 * h;
    let mut top = [0u32; 128 + 6];
    for (i, f) in top[..near].iter_mut().enumerate() {
        // Near symbols: 0..h, then 256 - h..256.
        let b = if i < h { i } else { 256 - 2 * h + i };
        *f = freq[b];
    }
    for (g, &(lo, hi)) in groups.iter().enumerate() {
        top[near + g] = freq[lo..hi].iter().fold(0u32, |a, &f| a.saturating_add(f));
    }
    let n = near + groups.len();
    let mut top_lens = [0u8; 128 + 6];
    limited_lengths(&top[..n], 8, &mut top_lens[..n]);
    for (i, &l) in top_lens[..near].iter().enumerate() {
        let b = if i < h { i } else { 256 - 2 * h + i };
        lens[b] = l;
    }
    let mut sub = [0u8; 64];
    for (g, &(lo, hi)) in groups.iter().enumerate() {
        let m = top_lens[near + g];
        let k = hi - lo;
        limited_lengths(&freq[lo..hi], MAX_LIT_BITS - m, &mut sub[..k]);
        for (l, &s) in lens[lo..hi].iter_mut().zip(&sub[..k]) {
            *l = m + s;
        }
    }
}

/// Largest alphabet [`limited_lengths`] takes (deflate's literal/length alphabet is 286).
pub(crate) const MAX_SYMBOLS: usize = 288;

/// Optimal prefix-code lengths for `freq` (all non-zero, at most [`MAX_SYMBOLS`]), limited to
/// `limit` bits.
///
/// Huffman's algorithm on the frequency-sorted symbols, in place (Moffat and Katajainen, "In-place
/// calculation of minimum-redundancy codes", 1995): one left-to-right pass merges nodes in one
/// array that holds leaf weights, then internal weights and parent links; one right-to-left pass
/// turns the links into depths; a last pass counts the leaves at each depth. If the longest code
/// exceeds `limit`, the length counts are clamped and the Kraft sum repaired by lengthening the
/// deepest shorter codes (zlib/miniz's heuristic: near-optimal, and exact when no code needs
/// limiting). Lengths are then handed out longest first to the least frequent symbols, so the
/// result is a complete code. All in fixed-size stack arrays: about 4 us for 286 symbols with
/// the sort (the two-queue method with parent and depth arrays and a comparison sort took 6.7),
/// once per stripe.
pub(crate) fn limited_lengths(freq: &[u32], limit: u8, lens: &mut [u8]) {
    let n = freq.len();
    assert!((2..=MAX_SYMBOLS).contains(&n) && lens.len() >= n);
    debug_assert!(freq.iter().all(|&f| f > 0));
    debug_assert!((1usize << limit) >= n);
    let mut order = [0u16; MAX_SYMBOLS];
    let shift = sort_by_freq(freq, &mut order[..n]);
    let mut a = [0u64; MAX_SYMBOLS];
    for (w, &s) in a.iter_mut().zip(order[..n].iter()) {
        *w = (freq[s as usize] >> shift) as u64;
    }
    // Leaves per depth (a depth is below n).
    let mut count = [0u32; MAX_SYMBOLS];
    leaf_depths(&mut a[..n], &mut count);
    assign_limited(&mut count, limit as usize, &order[..n], lens);
}

/// Turns leaf counts per depth (`count[d]`, any depth) into code lengths of at most `limit`
/// bits, written to `lens` for the symbols of `order` (least frequent first: they get the
/// longest codes). The counts deeper than `limit` are clamped to it and the Kraft sum repaired
/// by lengthening the deepest shorter codes (zlib/miniz's heuristic); exact when nothing is
/// deeper than `limit`.
fn assign_limited(count: &mut [u32], limit: usize, order: &[u16], lens: &mut [u8]) {
    let deeper: u32 = count[limit + 1..].iter().sum();
    count[limit] += deeper;
    let mut total: u64 = (1..=limit).map(|l| (count[l] as u64) << (limit - l)).sum();
    while total > 1u64 << limit {
        count[limit] -= 1;
        for i in (1..limit).rev() {
            if count[i] > 0 {
                count[i] -= 1;
                count[i + 1] += 2;
                break;
            }
        }
        total -= 1;
    }
    let mut k = 0;
    for l in (1..=limit).rev() {
        for _ in 0..count[l] {
            lens[order[k] as usize] = l as u8;
            k += 1;
        }
    }
    debug_assert_eq!(k, order.len());
}

/// The Huffman tree of the ascending weights `a` (n >= 2), as the number of leaves at each
/// depth, added into `count`; `a` is used as scratch.
///
/// Pass 1 builds the tree left to right: `a[next]` becomes the weight of internal node `next`
/// (made of the two lightest of the unused leaves `a[leaf..]` and the unused internal nodes
/// `a[root..next]`, which come out in non-decreasing weight; a leaf wins ties), and a used
/// internal node's slot becomes the index of its parent. Pass 2, right to left, replaces each
/// parent index with the node's depth (a parent's index is always higher). Pass 3 walks depths
/// from the root: of the `avail` nodes at a depth, those that are internal nodes go on, the rest
/// are leaves.
fn leaf_depths(a: &mut [u64], count: &mut [u32; MAX_SYMBOLS]) {
    let n = a.len();
    debug_assert!((2..=MAX_SYMBOLS).contains(&n));
    a[0] += a[1];
    let (mut root, mut leaf) = (0usize, 2usize);
    for next in 1..n - 1 {
        // First child: an internal node exists (node next - 1 is still unused).
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u64;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        // Second child.
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u64;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    a[n - 2] = 0;
    for next in (0..n - 2).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    let (mut avail, mut depth) = (1usize, 0usize);
    let mut internal = n - 1; // internal nodes a[..internal] not yet placed, deepest first
    while avail > 0 {
        let mut used = 0;
        while internal > 0 && a[internal - 1] == depth as u64 {
            used += 1;
            internal -= 1;
        }
        count[depth] += (avail - used) as u32;
        avail = 2 * used;
        depth += 1;
    }
}

/// The symbols `0..order.len()` ordered by (frequency, symbol), into `order`; returns the
/// right shift applied to the frequencies first.
///
/// A stable least-significant-digit radix sort of the symbol indices, one pass per byte of the
/// largest frequency (two for a stripe's sampled histogram; a pass whose digit is the same for
/// every key is skipped): a counting pass and a scatter pass over a few hundred symbols each,
/// about half of what a comparison sort of (frequency, symbol) keys costs here. Frequencies
/// above 2^23 are scaled down first (keeping the order of distinct scaled values), as the
/// code builder only needs their order.
fn sort_by_freq(freq: &[u32], order: &mut [u16]) -> u32 {
    let n = order.len();
    debug_assert!(n <= MAX_SYMBOLS && freq.len() >= n);
    let max = freq[..n].iter().copied().max().unwrap_or(0);
    let shift = (32 - max.leading_zeros()).saturating_sub(23);
    let mut key = [0u32; MAX_SYMBOLS];
    for (k, &f) in key[..n].iter_mut().zip(freq) {
        *k = f >> shift;
    }
    let mut a = [0u16; MAX_SYMBOLS];
    let mut b = [0u16; MAX_SYMBOLS];
    for (i, s) in a[..n].iter_mut().enumerate() {
        *s = i as u16;
    }
    let passes = (32 - (max >> shift).leading_zeros()).div_ceil(8);
    for p in 0..passes {
        let digit = |s: u16| ((key[s as usize] >> (8 * p)) & 0xFF) as usize;
        // Two counters per digit, so runs of one digit do not wait on one another.
        let mut counts = [[0u16; 256]; 2];
        for pair in a[..n].chunks(2) {
            counts[0][digit(pair[0])] += 1;
            if let Some(&s) = pair.get(1) {
                counts[1][digit(s)] += 1;
            }
        }
        let mut pos = [0u16; 256];
        let mut sum = 0;
        for (d, c) in pos.iter_mut().enumerate() {
            *c = sum;
            sum += counts[0][d] + counts[1][d];
        }
        let first = digit(a[0]);
        if usize::from(counts[0][first] + counts[1][first]) == n {
            // Every key has this digit: the order stays.
            continue;
        }
        for &s in &a[..n] {
            let d = digit(s);
            b[pos[d] as usize] = s;
            pos[d] += 1;
        }
        std::mem::swap(&mut a, &mut b);
    }
    order.copy_from_slice(&a[..n]);
    shift
}

/// Bit-reversed bytes.
const REV8: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).reverse_bits();
        i += 1;
    }
    t
};

/// Canonical deflate codes for `lens`, bit-reversed for an LSB-first writer.
pub(crate) fn canonical_codes(lens: &[u8], codes: &mut [u16]) {
    let mut count = [0u16; 16];
    for &l in lens {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for l in 1..16 {
        code = (code + count[l - 1]) << 1;
        next[l] = code;
    }
    for (c, &l) in codes.iter_mut().zip(lens.iter()) {
        if l == 0 {
            *c = 0;
            continue;
        }
        let v = next[l as usize];
        next[l as usize] += 1;
        let rev = (REV8[v as usize & 0xFF] as u16) << 8 | REV8[(v >> 8) as usize] as u16;
        *c = rev >> (16 - l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft(lens: &[u8], limit: u8) -> u64 {
        lens.iter().map(|&l| 1u64 << (limit - l)).sum()
    }

    #[test]
    fn lengths_are_complete_and_limited() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let n = rng.usize(2..=286);
            let freq: Vec<u32> = (0..n)
                .map(|_| match rng.u8(0..3) {
                    0 => 1,
                    1 => rng.u32(1..100),
                    _ => rng.u32(1..1_000_000),
                })
                .collect();
            let mut lens = vec![0u8; n];
            limited_lengths(&freq, MAX_LIT_BITS, &mut lens);
            assert!(lens.iter().all(|&l| (1..=MAX_LIT_BITS).contains(&l)));
            assert_eq!(kraft(&lens, MAX_LIT_BITS), 1 << MAX_LIT_BITS);
        }
    }

    /// The near-short code: complete, within [`MAX_LIT_BITS`], every near residual at most 8
    /// bits, for every allowed width and any histogram (near residuals rare or absent too).
    #[test]
    fn near_short_codes_are_complete_and_shaped() {
        let mut rng = fastrand::Rng::with_seed(17);
        for round in 0..600 {
            let mut freq = [0u32; NUM_LITLEN];
            for (s, f) in freq.iter_mut().enumerate() {
                let d = if s < 256 { s.min(256 - s) } else { 40 } as u32;
                *f = 1 + match round % 4 {
                    0 => rng.u32(0..4),
                    1 => 1_000_000 >> (d / 2).min(20),
                    2 => rng.u32(0..1_000_000),
                    // near residuals rare, far ones common (noise)
                    _ => 1000 + d * rng.u32(0..50),
                };
            }
            let half = [2u8, 4, 8, 16, 32, 64][round % 6];
            let mut lens = [0u8; NUM_LITLEN];
            near_short_lengths(&freq, half, &mut lens);
            assert!(
                lens.iter().all(|&l| (1..=MAX_LIT_BITS).contains(&l)),
                "round {round}"
            );
            assert_eq!(
                kraft(&lens, MAX_LIT_BITS),
                1 << MAX_LIT_BITS,
                "round {round}"
            );
            for (b, &l) in lens[..256].iter().enumerate() {
                let r = b as u8 as i8 as i16;
                if (-(half as i16)..half as i16).contains(&r) {
                    assert!(l <= 8, "round {round} half {half} symbol {b}");
                }
            }
        }
    }

    /// The previous tree builder (two queues with parent and depth arrays, comparison sort;
    /// the clamping and assignment, `assign_limited`, are shared): the in-place method must
    /// give exactly its lengths, ties included, so the coded bytes of every image stay what
    /// they were.
    fn two_queue_lengths(freq: &[u32], limit: u8) -> Vec<u8> {
        let n = freq.len();
        let mut order: Vec<u16> = (0..n as u16).collect();
        order.sort_by_key(|&s| (freq[s as usize], s));
        let mut weight = vec![0u64; 2 * n];
        let mut parent = vec![0usize; 2 * n];
        for (w, &s) in weight.iter_mut().zip(order.iter()) {
            *w = freq[s as usize] as u64;
        }
        let (mut leaf, mut internal) = (0usize, n);
        for next in n..2 * n - 1 {
            let mut two = [0usize; 2];
            for t in &mut two {
                let take_leaf = leaf < n && (internal >= next || weight[leaf] <= weight[internal]);
                *t = if take_leaf { leaf } else { internal };
                leaf += take_leaf as usize;
                internal += !take_leaf as usize;
            }
            weight[next] = weight[two[0]] + weight[two[1]];
            parent[two[0]] = next;
            parent[two[1]] = next;
        }
        let mut depth = vec![0usize; 2 * n];
        for i in (0..2 * n - 2).rev() {
            depth[i] = depth[parent[i]] + 1;
        }
        let limit = limit as usize;
        let mut count = vec![0u32; 2 * n + limit + 2];
        for &d in &depth[..n] {
            count[d] += 1;
        }
        let mut lens = vec![0u8; n];
        assign_limited(&mut count, limit, &order, &mut lens);
        lens
    }

    #[test]
    fn in_place_lengths_equal_the_two_queue_method() {
        let mut rng = fastrand::Rng::with_seed(13);
        for round in 0..2000 {
            let n = rng.usize(2..=NUM_LITLEN);
            // Many ties (small ranges, the +1 of unseen symbols), skewed and flat histograms.
            let freq: Vec<u32> = (0..n)
                .map(|i| match round % 4 {
                    0 => rng.u32(1..4),
                    1 => 1 + (20_000.0 * (-(i as f64) / 8.0).exp()) as u32,
                    2 => rng.u32(1..70_000),
                    _ => [1, 1, 2, 3, 5, 8, 13, 21, 34][rng.usize(0..9)],
                })
                .collect();
            for limit in [9u8, MAX_LIT_BITS, 15] {
                let mut lens = vec![0u8; n];
                limited_lengths(&freq, limit, &mut lens);
                assert_eq!(lens, two_queue_lengths(&freq, limit), "round {round} n {n}");
            }
        }
    }

    #[test]
    fn unlimited_case_matches_huffman_cost() {
        // Fibonacci-like weights force deep trees; with a loose limit the cost equals Huffman's.
        let freq = [1u32, 1, 2, 3, 5, 8, 13, 21];
        let mut lens = [0u8; 8];
        limited_lengths(&freq, 15, &mut lens);
        assert_eq!(lens, [7, 7, 6, 5, 4, 3, 2, 1]);
        // A two-symbol code.
        let mut lens = [0u8; 2];
        limited_lengths(&[5, 9], 15, &mut lens);
        assert_eq!(lens, [1, 1]);
    }

    /// Optimal (unlimited) Huffman cost by the textbook heap method, as an oracle.
    fn huffman_cost(freq: &[u32]) -> u64 {
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<u64>> =
            freq.iter().map(|&f| std::cmp::Reverse(f as u64)).collect();
        let mut cost = 0;
        while heap.len() > 1 {
            let a = heap.pop().unwrap().0;
            let b = heap.pop().unwrap().0;
            cost += a + b;
            heap.push(std::cmp::Reverse(a + b));
        }
        cost
    }

    #[test]
    fn lengths_are_optimal_when_the_limit_does_not_bind() {
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..300 {
            let n = rng.usize(2..=NUM_LITLEN);
            // Weights within 10x of each other keep every depth under 15 (asserted below).
            let freq: Vec<u32> = (0..n).map(|_| rng.u32(100..1000)).collect();
            let mut lens = vec![0u8; n];
            limited_lengths(&freq, 15, &mut lens);
            assert!(lens.iter().all(|&l| l < 15));
            let ours: u64 = freq
                .iter()
                .zip(&lens)
                .map(|(&f, &l)| f as u64 * l as u64)
                .sum();
            assert_eq!(ours, huffman_cost(&freq), "n {n}");
        }
    }

    #[test]
    fn frequency_order_matches_comparison_sort() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let n = rng.usize(1..=MAX_SYMBOLS);
            let top = [1u32, 255, 256, 70_000, (1 << 23) - 1, u32::MAX][rng.usize(0..6)];
            let freq: Vec<u32> = (0..n).map(|_| rng.u32(0..=top)).collect();
            let mut order = vec![0u16; n];
            sort_by_freq(&freq, &mut order);
            // Exact (frequency, symbol) order below 2^23; above, the frequencies are compared
            // scaled down (a permutation ordered by the scaled value).
            let shift = if top < 1 << 23 { 0 } else { 9 };
            let mut expect: Vec<u16> = (0..n as u16).collect();
            expect.sort_by_key(|&s| (freq[s as usize] >> shift, s));
            if shift == 0 {
                assert_eq!(order, expect);
            } else {
                let mut seen = order.clone();
                seen.sort_unstable();
                assert_eq!(seen, (0..n as u16).collect::<Vec<_>>());
                assert!(order
                    .windows(2)
                    .all(|w| freq[w[0] as usize] >> shift <= freq[w[1] as usize] >> shift));
            }
        }
    }

    #[test]
    fn canonical_codes_match_rfc_example() {
        // RFC 1951 3.2.2: lengths (3,3,3,3,3,2,4,4) -> codes 010,011,100,101,110,00,1110,1111.
        let lens = [3u8, 3, 3, 3, 3, 2, 4, 4];
        let mut codes = [0u16; 8];
        canonical_codes(&lens, &mut codes);
        let expect = [0b010u16, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111];
        for i in 0..8 {
            let rev = expect[i].reverse_bits() >> (16 - lens[i]);
            assert_eq!(codes[i], rev, "symbol {i}");
        }
    }

    #[test]
    fn length_symbols() {
        assert_eq!(length_symbol(3), 0);
        assert_eq!(length_symbol(10), 7);
        assert_eq!(length_symbol(11), 8);
        assert_eq!(length_symbol(12), 8);
        assert_eq!(length_symbol(257), 27);
        assert_eq!(length_symbol(258), 28);
        for len in 3..=258usize {
            let s = length_symbol(len);
            assert!(LEN_BASE[s] as usize <= len);
            assert!(len - (LEN_BASE[s] as usize) < (1 << LEN_EXTRA[s]) || (len == 258 && s == 28));
        }
    }
}
