//! aarch64 kernels: NEON.
#![allow(unsafe_code)]

pub(crate) mod neon;
