//! Shared helpers for the pngcast benchmarks (corpus loading, peers).
