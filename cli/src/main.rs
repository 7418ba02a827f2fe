//! The `pngcast` command line.
fn main() {}
