//! Frame sources for `pngcast serve`: the built-in demo scene, or images loaded from disk.
#![forbid(unsafe_code)]

pub mod demo;
