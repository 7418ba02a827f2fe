//! x86_64 kernels, one module per instruction set: SSE4.1, AVX2 (+F16C), AVX-512 (F+BW).
//! Each offers `is_available()`, a safe `new() -> Option<Self>` and the `#[target_feature]`
//! functions behind its [`Kernel`](super::kernels::Kernel) table.
#![allow(unsafe_code)]

pub(crate) mod avx2;
pub(crate) mod avx512;
pub(crate) mod sse41;
