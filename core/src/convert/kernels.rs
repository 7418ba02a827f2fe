//! Kernel handles and run-time dispatch.
//!
//! A [`Kernel`] is a named table of conversion functions for one instruction set. It can only be
//! obtained for an instruction set the CPU has (each ISA module hands one out from its safe
//! `new()`), so its methods are safe. [`best`] picks the fastest available kernel once per
//! process and caches it; `--cfg pngcast_force_scalar` makes it pick [`Kernel::scalar`].
//! [`all`] lists every kernel this CPU can run, so tests and benches can exercise each one.
#![allow(unsafe_code)]

use std::fmt;
use std::sync::OnceLock;

use half::{bf16, f16};

use super::Quantize;

/// A quantising function: `min(src.len(), dst.len() / out_bytes)` elements of `src` into `dst`.
pub(crate) type QuantizeFn<S> = unsafe fn(&[S], &mut [u8]);
/// A widening function: `min(src.len(), dst.len())` elements of `src` into `dst`.
pub(crate) type WidenFn<S> = unsafe fn(&[S], &mut [f32]);

/// The quantisers for one source element type, indexed by `Quantize as usize`
/// (`Truncate` = 0, `Round` = 1).
pub(crate) struct Quantizers<S: 'static> {
    pub(crate) u8: [QuantizeFn<S>; 2],
    pub(crate) u16be: [QuantizeFn<S>; 2],
}

/// Everything one kernel implements. The functions may require CPU features (see the owning
/// ISA module); apart from that they are sound for any slices.
pub(crate) struct Table {
    pub(crate) f32: Quantizers<f32>,
    pub(crate) f16: Quantizers<f16>,
    pub(crate) bf16: Quantizers<bf16>,
    pub(crate) widen_f16: WidenFn<f16>,
    pub(crate) widen_bf16: WidenFn<bf16>,
}

/// Builds a [`Table`] from a module's generic `quantize::<S, OUT, ROUND>` and `widen::<S>`.
macro_rules! table {
    ($q:ident, $w:ident) => {
        $crate::convert::kernels::Table {
            f32: $crate::convert::kernels::table!(@q $q, f32),
            f16: $crate::convert::kernels::table!(@q $q, ::half::f16),
            bf16: $crate::convert::kernels::table!(@q $q, ::half::bf16),
            widen_f16: $w::<::half::f16> as _,
            widen_bf16: $w::<::half::bf16> as _,
        }
    };
    (@q $q:ident, $s:ty) => {
        $crate::convert::kernels::Quantizers {
            u8: [$q::<$s, 1, false> as _, $q::<$s, 1, true> as _],
            u16be: [$q::<$s, 2, false> as _, $q::<$s, 2, true> as _],
        }
    };
}
pub(crate) use table;

/// One conversion kernel (scalar, SSE4.1, AVX2, AVX-512 or NEON), usable on this CPU.
///
/// Obtain one from [`best`], [`all`], [`by_name`] or [`Kernel::scalar`]. Copying it is free.
/// Every method converts exactly as the scalar kernel does, bit for bit.
#[derive(Clone, Copy)]
pub struct Kernel {
    name: &'static str,
    table: &'static Table,
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Kernel").field(&self.name).finish()
    }
}

impl PartialEq for Kernel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Kernel {}

macro_rules! quantize_method {
    ($(#[$doc:meta])* $name:ident, $s:ty, $field:ident, $kind:ident, $bytes:expr) => {
        $(#[$doc])*
        ///
        /// Panics if `dst` does not hold exactly that many bytes (a programmer error).
        pub fn $name(&self, src: &[$s], dst: &mut [u8], q: Quantize) {
            assert_eq!(
                src.len().checked_mul($bytes),
                Some(dst.len()),
                concat!(stringify!($name), ": length mismatch")
            );
            let f = self.table.$field.$kind[q as usize];
            // SAFETY: a `Kernel` only exists for a table whose CPU features are present
            // (`from_table`'s contract); the functions are sound for any slices.
            unsafe { f(src, dst) }
        }
    };
}

macro_rules! widen_method {
    ($(#[$doc:meta])* $name:ident, $s:ty, $field:ident) => {
        $(#[$doc])*
        ///
        /// Panics if `dst.len() != src.len()` (a programmer error).
        pub fn $name(&self, src: &[$s], dst: &mut [f32]) {
            assert_eq!(src.len(), dst.len(), concat!(stringify!($name), ": length mismatch"));
            // SAFETY: as in the quantising methods: the table's features are present.
            unsafe { (self.table.$field)(src, dst) }
        }
    };
}

impl Kernel {
    /// Wraps a function table.
    ///
    /// # Safety
    /// The CPU must have every feature the table's functions are compiled for.
    pub(crate) const unsafe fn from_table(name: &'static str, table: &'static Table) -> Self {
        Kernel { name, table }
    }

    /// The scalar kernel, the oracle: always available.
    pub fn scalar() -> Self {
        // SAFETY: the scalar table needs no CPU feature.
        unsafe { Self::from_table("scalar", &super::scalar::TABLE) }
    }

    /// The kernel's name: `scalar`, `sse4.1`, `avx2`, `avx512` or `neon`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    quantize_method!(
        /// f32 to 8-bit samples: `dst[i] = q(clamp(255 * src[i], 0, 255))`, NaN -> 0.
        f32_to_u8, f32, f32, u8, 1
    );
    quantize_method!(
        /// f32 to 16-bit big-endian samples (`2 * src.len()` bytes), `65535 * x`.
        f32_to_u16be, f32, f32, u16be, 2
    );
    quantize_method!(
        /// f16 to 8-bit samples: widened exactly, then as [`Kernel::f32_to_u8`].
        f16_to_u8, f16, f16, u8, 1
    );
    quantize_method!(
        /// f16 to 16-bit big-endian samples: widened exactly, then as [`Kernel::f32_to_u16be`].
        f16_to_u16be, f16, f16, u16be, 2
    );
    quantize_method!(
        /// bf16 to 8-bit samples: widened exactly, then as [`Kernel::f32_to_u8`].
        bf16_to_u8, bf16, bf16, u8, 1
    );
    quantize_method!(
        /// bf16 to 16-bit big-endian samples: widened exactly, then as [`Kernel::f32_to_u16be`].
        bf16_to_u16be, bf16, bf16, u16be, 2
    );
    widen_method!(
        /// f16 to f32, exactly (bit-identical with `half::f16::to_f32`: NaNs quieted, payload kept).
        f16_to_f32, f16, widen_f16
    );
    widen_method!(
        /// bf16 to f32, exactly (bit-identical with `half::bf16::to_f32`: NaNs quieted).
        bf16_to_f32, bf16, widen_bf16
    );
}

/// Every kernel this CPU can run, fastest first, the scalar one last. Detected once (cached).
pub fn all() -> &'static [Kernel] {
    static ALL: OnceLock<Vec<Kernel>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use super::x86_64::{avx2::Avx2, avx512::Avx512, sse41::Sse41};
            v.extend(Avx512::new().map(Avx512::kernel));
            v.extend(Avx2::new().map(Avx2::kernel));
            v.extend(Sse41::new().map(Sse41::kernel));
        }
        #[cfg(target_arch = "aarch64")]
        {
            use super::aarch64::neon::Neon;
            v.extend(Neon::new().map(Neon::kernel));
        }
        v.push(Kernel::scalar());
        v
    })
}

/// The kernel the conversion functions use: the fastest this CPU has, chosen on first use and
/// cached (one atomic load afterwards). With `--cfg pngcast_force_scalar`, always the scalar one.
pub fn best() -> Kernel {
    static BEST: OnceLock<Kernel> = OnceLock::new();
    *BEST.get_or_init(|| {
        if cfg!(pngcast_force_scalar) {
            Kernel::scalar()
        } else {
            all()[0]
        }
    })
}

/// The available kernel named `name` (see [`Kernel::name`]), if this CPU can run it.
pub fn by_name(name: &str) -> Option<Kernel> {
    all().iter().copied().find(|k| k.name == name)
}
