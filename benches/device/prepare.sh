#!/usr/bin/env bash
# Builds what benches/device/coder.sh runs on a machine without a toolchain or the corpus, into
# target/device/ (one folder to carry, ~20 MB): the vs_fpnge and coder_threads examples
# (release, symbols stripped; fpnge compiled in for the AVX-512 x86-64 level, so the binary runs
# on any AVX-512 CPU, not only this one) and the corpus images they read.
#
#   benches/device/prepare.sh            # then carry target/device
#   PNGCAST_FPNGE_MARCH=-march=native benches/device/prepare.sh   # fpnge tuned for this host
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus="${PNGCAST_CORPUS:-../shared/corpus}"
[ -d "$corpus" ] || { echo "prepare.sh: no corpus at $corpus (set PNGCAST_CORPUS)" >&2; exit 1; }
export PNGCAST_FPNGE_MARCH="${PNGCAST_FPNGE_MARCH:--march=x86-64-v4 -mpclmul}"
cargo build --release -p pngcast-benches --example vs_fpnge --example coder_threads
out=target/device
rm -rf "$out"
mkdir -p "$out/corpus/photo" "$out/corpus/art" "$out/corpus/graphic" "$out/corpus/screen"
for ex in vs_fpnge coder_threads; do
  strip -o "$out/$ex" "target/release/examples/$ex"
done
# vs_fpnge's six images and the photos the coder_threads mosaics are cut from.
for f in photo/kodim23.png photo/kodim02.png photo/kodim07.png photo/kodim17.png \
         photo/astronaut.png photo/hubble_deep_field.png photo/retina.png \
         art/fantasy_digital_painting.png graphic/exoplanet_phase_curve.png \
         screen/lorem_ipsum_screenshot.png; do
  cp "$corpus/$f" "$out/corpus/$f"
done
cp "$corpus/README.md" "$out/corpus/README.md"
cp benches/device/coder.sh "$out/coder.sh"
du -sh "$out"
