#!/usr/bin/env bash
# Builds everything benches/device/all.sh runs into target/device-all/ (one folder to carry,
# ~30 MB): the coder tables (prepare.sh), the transport peer table (prepare-transports.sh), and
# the latency and mio_throughput examples. A `before/` folder of the same examples built from
# another commit, if put beside them, is run alternately with these (ratios in one run).
#
#   benches/device/prepare-all.sh           # then carry target/device-all
set -euo pipefail
cd "$(dirname "$0")/../.."
benches/device/prepare.sh
benches/device/prepare-transports.sh
cargo build --release -p pngcast-benches --example latency --example mio_throughput
out=target/device-all
rm -rf "$out"
mkdir -p "$out"
cp -r target/device "$out/coder"
cp -r target/device-transports "$out/transports"
for ex in latency mio_throughput; do
  strip -o "$out/$ex" "target/release/examples/$ex"
done
cp benches/device/all.sh "$out/all.sh"
du -sh "$out"
