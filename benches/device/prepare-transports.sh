#!/usr/bin/env bash
# Builds what benches/device/transports.sh runs on a machine without a toolchain or the corpus,
# into target/device-transports/ (one folder to carry, ~5 MB): the `peers` runner and the
# `peer-server` binary (release, symbols stripped), the two PNGs every server sends, the
# ComfyUI-style aiohttp peer and the script itself.
#
#   benches/device/prepare-transports.sh      # then carry target/device-transports
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p pngcast-peers
out=target/device-transports
rm -rf "$out"
mkdir -p "$out/png"
target/release/peers prepare --out "$out/png"
for b in peers peer-server; do
  strip -o "$out/$b" "target/release/$b"
done
cp benches/python/aiohttp_peer.py "$out/aiohttp_peer.py"
cp benches/device/transports.sh "$out/transports.sh"
du -sh "$out"
