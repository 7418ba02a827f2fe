//! Builds fpnge (a benchmark peer, C++) from its source tree outside this repository when one is
//! found and a C++ compiler works, and sets `cfg(pngcast_fpnge)`; otherwise prints why and the
//! `vs_fpnge` example runs without it.
//!
//! The source tree: `$PNGCAST_FPNGE_DIR`, else the first `shared/peers/fpnge` beside the
//! workspace or one of its ancestors. Flags: `-O3` and `$PNGCAST_FPNGE_MARCH` (default
//! `-march=native`, so fpnge gets the AVX2/AVX-512 the build host has; set it to e.g.
//! `-march=x86-64-v4 -mpclmul` when the binary runs on another machine).

use std::path::{Path, PathBuf};

fn fpnge_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PNGCAST_FPNGE_DIR") {
        return Some(PathBuf::from(d));
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    manifest
        .ancestors()
        .map(|a| a.join("shared/peers/fpnge"))
        .find(|p| p.join("fpnge.cc").is_file())
}

fn skip(why: &str) {
    println!("cargo::warning=fpnge not built ({why}); vs_fpnge runs without it");
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pngcast_fpnge)");
    println!("cargo::rerun-if-env-changed=PNGCAST_FPNGE_DIR");
    println!("cargo::rerun-if-env-changed=PNGCAST_FPNGE_MARCH");
    println!("cargo::rerun-if-changed=fpnge/shim.cc");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        return skip("not an x86-64 target");
    }
    let Some(dir) = fpnge_dir() else {
        return skip("no shared/peers/fpnge found; set PNGCAST_FPNGE_DIR");
    };
    println!("cargo::rerun-if-changed={}", dir.join("fpnge.cc").display());
    let march = std::env::var("PNGCAST_FPNGE_MARCH").unwrap_or_else(|_| "-march=native".into());
    let mut b = cc::Build::new();
    b.cpp(true)
        .opt_level(3)
        .warnings(false)
        .include(&dir)
        .file(dir.join("fpnge.cc"))
        .file(Path::new("fpnge/shim.cc"));
    for f in march.split_whitespace() {
        b.flag(f);
    }
    // Only the compiler's absence (or a failed build) is tolerated: both print why.
    match b.try_compile("pngcast_fpnge") {
        Ok(()) => println!("cargo::rustc-cfg=pngcast_fpnge"),
        Err(e) => skip(&format!("C++ build failed: {e}")),
    }
}
