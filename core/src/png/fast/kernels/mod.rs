//! Per-ISA kernels of the fast coder and their run-time dispatch.
//!
//! Each kernel computes the same four things: the estimated cost of a row under each filter,
//! the filtered row, the position of the next zero run, and the literal codes of a byte span.
//! The x86 SIMD cost and filter passes also prefetch the same offsets of the next row (rows lie
//! back to back in every caller), as each row's first read was otherwise a memory stall.
//! The scalar kernel is the oracle; SIMD kernels must produce identical bytes (tested). The best
//! available kernel is detected once and cached; `--cfg pngcast_force_scalar` pins the scalar one.
#![deny(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod scalar;

use std::sync::OnceLock;

/// Longest row whose Adler-32 sums the AVX-512 kernel keeps in vector registers while it filters
/// ([`Kernel::filter_row_adler`]): 1 MiB, so that no 32-bit lane of the weighted sums can
/// overflow (16,384 blocks of at most 4 * 255 * 63 each) and byte offsets fit 32 bits.
/// Longer rows (over 349,525 RGB pixels) filter, then checksum.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const FUSED_ADLER_MAX: usize = 1 << 20;

/// Shortest row the AVX-512 kernel checksums in its filter pass ([`Kernel::fuses_adler`]):
/// below it, the per-row work of the fused sums (three vector reductions, the modular steps)
/// outweighs one separate pass per chunk. Measured against that pass: +13% on the 4K graphic
/// (11.5 KB rows), +1.5-3% on photos; -2% on a 512-byte-row gray image.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const FUSED_ADLER_MIN: usize = 1024;

use super::bitwriter::{BitWriter, Bits};
use super::huffman::{CostTable, Table};

/// A run of at least this many zero residuals becomes one literal zero plus distance-1 matches.
/// Measured on the corpus: 4 (the shortest that can pay) gives the same sizes within 1% but
/// splits photo rows into many short literal spans; 12 is 1.5-2x faster on photos and still
/// smaller than the png crate's `Fast` everywhere; 16 starts to cost size on the painting.
pub(crate) const MIN_RUN: usize = 12;
/// The minimum run of [`RunMode::Long`]: fewer runs, so fewer rows split into short literal
/// spans (each run ends a 64-byte block early and restarts the next one unaligned).
pub(crate) const LONG_RUN: usize = 16;

/// How a segment's zero runs are found; every kernel codes each mode to the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunMode {
    /// Every run of at least [`MIN_RUN`] zeros, wherever it starts.
    Any,
    /// Every run of at least [`LONG_RUN`] zeros, wherever it starts.
    Long,
    /// Runs that cover a whole 64-byte window of the segment ([`scalar::block_tokens`]): a
    /// test per window instead of a run search per byte, at the price of shorter runs coded
    /// as literals.
    Blocks,
}

impl RunMode {
    /// The shortest run this mode codes as a match ([`RunMode::Blocks`]: one window).
    pub(crate) fn min_run(self) -> usize {
        match self {
            RunMode::Any => MIN_RUN,
            RunMode::Long => LONG_RUN,
            RunMode::Blocks => scalar::BLOCK,
        }
    }
}

/// One fast-coder kernel (scalar, AVX2, AVX-512 or NEON), usable on this CPU.
///
/// The idiom mirrors [`crate::convert::kernels`]: each ISA module has a token type (`Avx2`,
/// `Avx512`, `Neon`) with `is_available()`, a safe `new() -> Option<Self>` that detects the CPU
/// features, and `kernel(self)`; a SIMD variant here therefore holds a proof that its features
/// are present. [`Kernel::best`] picks the fastest once per process and caches it;
/// `--cfg pngcast_force_scalar` makes it pick [`Kernel::Scalar`]. The variant is matched once per
/// row or segment call, never per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable code.
    Scalar,
    /// AVX2 filters, costs and run search; scalar-table literal emission.
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
    /// AVX-512 (F, BW, VBMI): everything vectorised, including literal code lookup and packing.
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
    /// NEON filters and costs.
    #[cfg(target_arch = "aarch64")]
    Neon(neon::Neon),
}

impl Kernel {
    /// The kernel the coder uses when none is pinned: the fastest this CPU has, chosen on first
    /// use and cached. With `--cfg pngcast_force_scalar`, always the scalar one.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            if cfg!(pngcast_force_scalar) {
                Kernel::Scalar
            } else {
                Self::all()[0]
            }
        })
    }

    /// Every kernel this CPU can run, fastest first, the scalar one last. Detected once (cached).
    pub fn all() -> &'static [Kernel] {
        static ALL: OnceLock<Vec<Kernel>> = OnceLock::new();
        ALL.get_or_init(|| {
            #[allow(unused_mut)]
            let mut v = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                v.extend(avx512::Avx512::new().map(avx512::Avx512::kernel));
                v.extend(avx2::Avx2::new().map(avx2::Avx2::kernel));
            }
            #[cfg(target_arch = "aarch64")]
            {
                v.extend(neon::Neon::new().map(neon::Neon::kernel));
            }
            v.push(Kernel::Scalar);
            v
        })
    }

    /// A short name (`scalar`, `avx2`, `avx512`, `neon`).
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => "avx512",
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(_) => "neon",
        }
    }

    /// Estimated coded bits of `raw` under filters None, Sub, Up, Average, Paeth, counted over
    /// the bytes [`scalar::cost_counted`] selects (every other 64-byte block). `prev` is the
    /// unfiltered row above (zeros for the image's first row), same length.
    #[inline]
    ///
    /// Panics (a programmer error) unless `prev.len() == raw.len()` and `bpp` is in `1..=8`.
    pub fn filter_costs(&self, raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] {
        check_row(raw, prev, bpp);
        match self {
            Kernel::Scalar => scalar::filter_costs(raw, prev, bpp, cost),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(k) => k.filter_costs(raw, prev, bpp, cost),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.filter_costs(raw, prev, bpp, cost),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(k) => k.filter_costs(raw, prev, bpp, cost),
        }
    }

    /// Filters `raw` with filter type `f` (0..=4) into `dst[..raw.len()]`.
    #[inline]
    ///
    /// Panics (a programmer error) unless `prev.len() == raw.len()`, `dst.len() >= raw.len()` and
    /// `bpp` is in `1..=8`.
    pub fn filter_row(&self, f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
        check_row(raw, prev, bpp);
        check_dst(raw, dst);
        match self {
            Kernel::Scalar => scalar::filter_row(f, raw, prev, bpp, dst),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(k) => k.filter_row(f, raw, prev, bpp, dst),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.filter_row(f, raw, prev, bpp, dst),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon(k) => k.filter_row(f, raw, prev, bpp, dst),
        }
    }

    /// Whether [`Kernel::filter_row_adler`] checksums rows of `row_len` bytes in the filter's
    /// own pass (the AVX-512 kernel, rows of [`FUSED_ADLER_MIN`] to [`FUSED_ADLER_MAX`] bytes).
    /// Where it does not, checksumming whole chunks after filtering is cheaper than row by row.
    #[inline]
    pub fn fuses_adler(&self, row_len: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Kernel::Avx512(_) = self {
            return (FUSED_ADLER_MIN..=FUSED_ADLER_MAX).contains(&row_len);
        }
        let _ = row_len;
        false
    }

    /// [`Kernel::filter_row`], and `adler` (a running Adler-32) extended by the filter byte `f`
    /// and the filtered row, in one pass where the kernel can: the AVX-512 kernel sums the
    /// bytes it writes while they are in registers (rows of up to [`FUSED_ADLER_MAX`] bytes),
    /// the others filter, then checksum the row through `simd-adler32` (see
    /// [`Kernel::fuses_adler`] for when that pays).
    ///
    /// Panics as [`Kernel::filter_row`] does.
    #[inline]
    pub fn filter_row_adler(
        &self,
        f: u8,
        raw: &[u8],
        prev: &[u8],
        bpp: usize,
        dst: &mut [u8],
        adler: u32,
    ) -> u32 {
        check_row(raw, prev, bpp);
        check_dst(raw, dst);
        let adler = crate::png::adler::adler32_extend(adler, 1, u64::from(f), 0);
        #[cfg(target_arch = "x86_64")]
        if let Kernel::Avx512(k) = self {
            if raw.len() <= FUSED_ADLER_MAX {
                let (s1, t) = k.filter_row_sums(f, raw, prev, bpp, dst);
                return crate::png::adler::adler32_extend(adler, raw.len() as u64, s1, t);
            }
        }
        self.filter_row(f, raw, prev, bpp, dst);
        crate::png::adler::adler32_update(adler, &dst[..raw.len()])
    }

    /// The start of the first run of at least `min` zeros in `seg[from..]` (`min` is
    /// [`MIN_RUN`] or [`LONG_RUN`]; the SIMD kernels are specialised for those two).
    ///
    /// Panics (a programmer error) if `from > seg.len()` or `min` is neither.
    #[inline]
    pub fn find_run(&self, seg: &[u8], from: usize, min: usize) -> Option<usize> {
        check_pos(seg, from);
        assert!(
            min == MIN_RUN || min == LONG_RUN,
            "find_run: min must be MIN_RUN or LONG_RUN"
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(k) => k.find_run(seg, from, min),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.find_run(seg, from, min),
            _ => scalar::find_run(seg, from, min),
        }
    }

    /// The number of zeros starting at `seg[start]`.
    ///
    /// Panics (a programmer error) if `start > seg.len()`.
    #[inline]
    pub fn zero_run(&self, seg: &[u8], start: usize) -> usize {
        check_pos(seg, start);
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(k) => k.zero_run(seg, start),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.zero_run(seg, start),
            _ => scalar::zero_run(seg, start),
        }
    }

    /// Codes a whole segment: literals, and each run of >= [`MIN_RUN`] zeros ([`LONG_RUN`] in
    /// [`RunMode::Long`]) as a literal zero
    /// plus distance-1 matches ([`emit_run`]). The run found is always the first one in the
    /// segment, so every kernel produces the same tokens.
    /// In [`RunMode::Blocks`], the runs are those of [`scalar::block_tokens`].
    #[inline]
    pub fn emit_segment(&self, seg: &[u8], table: &Table, bw: &mut BitWriter<'_>, mode: RunMode) {
        match (self, mode) {
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx512(k), _) => k.emit_segment(seg, table, bw, mode),
            (_, RunMode::Blocks) => scalar::block_tokens(seg, |t| match t {
                scalar::Token::Literals(a, b) => self.emit_literals(&seg[a..b], table, bw),
                scalar::Token::Run(k) => emit_run(k, table, bw),
            }),
            (_, RunMode::Any | RunMode::Long) => {
                let min = mode.min_run();
                let mut i = 0;
                while let Some(s) = self.find_run(seg, i, min) {
                    self.emit_literals(&seg[i..s], table, bw);
                    let k = self.zero_run(seg, s);
                    emit_run(k, table, bw);
                    i = s + k;
                }
                self.emit_literals(&seg[i..], table, bw);
            }
        }
    }

    /// Emits `bytes` as literal codes.
    #[inline]
    pub fn emit_literals(&self, bytes: &[u8], table: &Table, bw: &mut BitWriter<'_>) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.emit_literals(bytes, table, bw),
            _ => scalar::emit_literals(bytes, table, bw),
        }
    }
}

/// Checks the row preconditions every filter kernel's loads rely on: `prev` (the row above) is
/// as long as `raw`, so each SIMD load at `i..i + lanes` of `raw` is also within `prev`; and
/// `bpp` is a PNG pixel size (`1..=8`), so the scalar row tails fit their fixed scratch buffers.
/// Panics with a clear message otherwise (a programmer error).
#[inline]
#[track_caller]
pub(crate) fn check_row(raw: &[u8], prev: &[u8], bpp: usize) {
    assert!(
        prev.len() == raw.len(),
        "fast kernel: prev row has {} bytes, raw row {}",
        prev.len(),
        raw.len()
    );
    assert!(
        (1..=8).contains(&bpp),
        "fast kernel: bytes per pixel {bpp} outside 1..=8"
    );
}

/// Checks that a filtered row fits its output: `dst.len() >= raw.len()`.
#[inline]
#[track_caller]
pub(crate) fn check_dst(raw: &[u8], dst: &[u8]) {
    assert!(
        dst.len() >= raw.len(),
        "fast kernel: output holds {} bytes, row needs {}",
        dst.len(),
        raw.len()
    );
}

/// Checks that a run-search position lies within (or just past) the segment: `pos <= seg.len()`.
#[inline]
#[track_caller]
pub(crate) fn check_pos(seg: &[u8], pos: usize) {
    assert!(
        pos <= seg.len(),
        "fast kernel: position {pos} past the segment's {} bytes",
        seg.len()
    );
}

/// Emits a run of `k >= MIN_RUN` zeros: a literal zero, then matches of distance 1 covering
/// `k - 1` bytes (258 at a time; the last two split so that none is shorter than 3).
#[inline]
pub(crate) fn emit_run(k: usize, table: &Table, bw: &mut impl Bits) {
    debug_assert!(k >= MIN_RUN);
    bw.write(table.codes[0] as u64, table.lens[0] as u32);
    let e = |len: usize| {
        let v = table.matches[len - 3];
        ((v & 0xFF_FFFF) as u64, v >> 24)
    };
    let mut m = k - 1;
    while m >= 258 + 3 {
        let (b, n) = e(258);
        bw.write(b, n);
        m -= 258;
    }
    if m > 258 {
        let (b, n) = e(m - 3);
        bw.write(b, n);
        m = 3;
    }
    let (b, n) = e(m);
    bw.write(b, n);
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use crate::png::fast::huffman::CostTable;

    /// A named call that must panic with a message containing its name.
    type Broken = (&'static str, Box<dyn FnOnce()>);

    /// The panic message of `f`, which must panic.
    fn panic_message(f: impl FnOnce()) -> String {
        let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    /// Every safe entry point a kernel has, each called with one precondition broken by a
    /// margin large enough that a missing check would read or write outside the slices. The
    /// call must panic with the check's message before any SIMD code runs.
    fn broken_calls(k: Kernel) -> Vec<Broken> {
        let cost = CostTable::prior();
        let raw = vec![7u8; 300];
        let short_prev = vec![1u8; 40];
        let v: Vec<Broken> = vec![
            ("prev row has 40 bytes, raw row 300", {
                let (raw, prev, cost) = (raw.clone(), short_prev.clone(), cost.clone());
                Box::new(move || {
                    let _ = k.filter_costs(&raw, &prev, 3, &cost);
                })
            }),
            ("prev row has 40 bytes, raw row 300", {
                let (raw, prev) = (raw.clone(), short_prev.clone());
                Box::new(move || k.filter_row(4, &raw, &prev, 3, &mut [0u8; 300]))
            }),
            ("output holds 10 bytes, row needs 300", {
                let raw = raw.clone();
                Box::new(move || k.filter_row(1, &raw, &raw, 3, &mut [0u8; 10]))
            }),
            ("bytes per pixel 0 outside 1..=8", {
                let (raw, cost) = (raw.clone(), cost.clone());
                Box::new(move || {
                    let _ = k.filter_costs(&raw, &raw, 0, &cost);
                })
            }),
            ("bytes per pixel 200 outside 1..=8", {
                let raw = raw.clone();
                Box::new(move || k.filter_row(2, &raw, &raw, 200, &mut [0u8; 300]))
            }),
            ("position 301 past the segment's 300 bytes", {
                let raw = raw.clone();
                Box::new(move || {
                    let _ = k.find_run(&raw, 301, MIN_RUN);
                })
            }),
            ("position 1000 past the segment's 300 bytes", {
                let raw = raw.clone();
                Box::new(move || {
                    let _ = k.zero_run(&raw, 1000);
                })
            }),
        ];
        v
    }

    #[test]
    fn every_kernel_rejects_broken_preconditions_with_a_clear_panic() {
        for &k in Kernel::all() {
            for (want, call) in broken_calls(k) {
                let got = panic_message(call);
                assert!(
                    got.contains(want),
                    "{}: got {got:?}, want {want:?}",
                    k.name()
                );
            }
        }
    }

    /// The per-ISA tokens' wrappers are safe on their own (not only through [`Kernel`]).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn isa_wrappers_check_their_preconditions() {
        let cost = CostTable::prior();
        let raw = [5u8; 256];
        let prev = [0u8; 8];
        if let Some(t) = avx2::Avx2::new() {
            let m = panic_message(|| {
                let _ = t.filter_costs(&raw, &prev, 4, &cost);
            });
            assert!(m.contains("prev row has 8 bytes, raw row 256"), "{m}");
            let m = panic_message(|| t.filter_row(0, &raw, &raw, 4, &mut [0u8; 255]));
            assert!(m.contains("output holds 255 bytes"), "{m}");
            let m = panic_message(|| {
                let _ = t.zero_run(&raw, 257);
            });
            assert!(m.contains("position 257"), "{m}");
        }
        if let Some(t) = avx512::Avx512::new() {
            let m = panic_message(|| t.filter_row(3, &raw, &prev, 4, &mut [0u8; 256]));
            assert!(m.contains("prev row has 8 bytes, raw row 256"), "{m}");
            let m = panic_message(|| {
                let _ = t.filter_costs(&raw, &raw, 9, &cost);
            });
            assert!(m.contains("bytes per pixel 9"), "{m}");
            let m = panic_message(|| {
                let _ = t.find_run(&raw, 300, MIN_RUN);
            });
            assert!(m.contains("position 300"), "{m}");
        }
    }

    /// The boundary cases of the checks are accepted and agree with the scalar kernel: an
    /// output longer than the row, a position at the very end of a segment.
    #[test]
    fn boundary_cases_are_accepted_and_match_scalar() {
        let raw: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let prev: Vec<u8> = raw.iter().map(|b| b.wrapping_add(3)).collect();
        for &k in Kernel::all() {
            for bpp in [1, 8] {
                let mut want = vec![0xAAu8; 210];
                Kernel::Scalar.filter_row(4, &raw, &prev, bpp, &mut want);
                let mut got = vec![0xAAu8; 210];
                k.filter_row(4, &raw, &prev, bpp, &mut got);
                assert_eq!(got, want, "{}", k.name());
            }
            let zeros = [0u8; 100];
            assert_eq!(k.find_run(&zeros, 100, MIN_RUN), None, "{}", k.name());
            assert_eq!(k.zero_run(&zeros, 100), 0, "{}", k.name());
            assert_eq!(k.zero_run(&zeros, 0), 100, "{}", k.name());
        }
    }

    #[test]
    fn kernels_are_listed_fastest_first_and_named_once() {
        let all = Kernel::all();
        assert_eq!(all.last(), Some(&Kernel::Scalar));
        let mut names: Vec<&str> = all.iter().map(Kernel::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        let want = if cfg!(pngcast_force_scalar) {
            Kernel::Scalar
        } else {
            all[0]
        };
        assert_eq!(Kernel::best(), want);
        assert_eq!(crate::png::fast_kernel_name(), want.name());
        assert_eq!(
            crate::convert::kernel_name(),
            crate::convert::kernels::best().name()
        );
    }
}
