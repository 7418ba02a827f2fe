//! Per-ISA kernels of the fast coder and their run-time dispatch.
//!
//! Each kernel computes the same four things: the estimated cost of a row under each filter,
//! the filtered row, the position of the next zero run, and the literal codes of a byte span.
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

use super::bitwriter::{BitWriter, Bits};
use super::huffman::{CostTable, Table};

/// A run of at least this many zero residuals becomes one literal zero plus distance-1 matches.
/// Measured on the corpus: 4 (the shortest that can pay) gives the same sizes within 1% but
/// splits photo rows into many short literal spans; 12 is 1.5-2x faster on photos and still
/// smaller than the png crate's `Fast` everywhere; 16 starts to cost size on the painting.
pub(crate) const MIN_RUN: usize = 12;

/// A kernel, proven available on this CPU by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable code.
    Scalar,
    /// AVX2 filters, costs and run search; scalar-table literal emission.
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Kernel),
    /// AVX-512 (F, BW, VBMI): everything vectorised, including literal code lookup and packing.
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Kernel),
    /// NEON filters and costs.
    #[cfg(target_arch = "aarch64")]
    Neon(neon::Kernel),
}

impl Kernel {
    /// The best kernel for this CPU, detected on first use and cached.
    pub fn get() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(Self::detect)
    }

    fn detect() -> Kernel {
        if cfg!(pngcast_force_scalar) {
            return Kernel::Scalar;
        }
        Self::available()
            .into_iter()
            .last()
            .unwrap_or(Kernel::Scalar)
    }

    /// Every kernel this CPU can run, scalar first, best last (tests compare them all).
    pub fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut v = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(k) = avx2::Kernel::new() {
                v.push(Kernel::Avx2(k));
            }
            if let Some(k) = avx512::Kernel::new() {
                v.push(Kernel::Avx512(k));
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if let Some(k) = neon::Kernel::new() {
                v.push(Kernel::Neon(k));
            }
        }
        v
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
    pub fn filter_costs(&self, raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] {
        assert_eq!(raw.len(), prev.len());
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
    pub fn filter_row(&self, f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) {
        assert_eq!(raw.len(), prev.len());
        assert!(dst.len() >= raw.len());
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

    /// The start of the first run of at least [`MIN_RUN`] zeros in `seg[from..]`.
    #[inline]
    pub fn find_run(&self, seg: &[u8], from: usize) -> Option<usize> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(k) => k.find_run(seg, from),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.find_run(seg, from),
            _ => scalar::find_run(seg, from),
        }
    }

    /// The number of zeros starting at `seg[start]`.
    #[inline]
    pub fn zero_run(&self, seg: &[u8], start: usize) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(k) => k.zero_run(seg, start),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.zero_run(seg, start),
            _ => scalar::zero_run(seg, start),
        }
    }

    /// Codes a whole segment: literals, and each run of >= [`MIN_RUN`] zeros as a literal zero
    /// plus distance-1 matches ([`emit_run`]). The run found is always the first one in the
    /// segment, so every kernel produces the same tokens.
    #[inline]
    pub fn emit_segment(&self, seg: &[u8], table: &Table, bw: &mut BitWriter<'_>) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(k) => k.emit_segment(seg, table, bw),
            _ => {
                let mut i = 0;
                while let Some(s) = self.find_run(seg, i) {
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
