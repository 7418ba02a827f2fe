//! The `pngcast` command line.
mod source;
fn main() {}
