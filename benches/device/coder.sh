#!/usr/bin/env bash
# The fast coder on a many-core machine, from prebuilt binaries (benches/device/prepare.sh puts
# them, this script and the corpus images into target/device/): the side-by-side table against
# fpnge and png (one thread), then thread scaling of f32 tensor -> PNG with its per-stage
# breakdown and the 1 MP stripe-plan sweep. About 2-3 minutes on 16 cores.
#
#   target/device/coder.sh            # from the repository root (or run it inside target/device)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$here/vs_fpnge" ]; then dir="$here"; else dir="$(pwd)/target/device"; fi
[ -x "$dir/vs_fpnge" ] || { echo "coder.sh: no prebuilt binaries in $dir (run benches/device/prepare.sh)" >&2; exit 1; }
export PNGCAST_CORPUS="$dir/corpus"
echo "## machine"
lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)|Thread|MHz|L2|L3" || grep -m1 "model name" /proc/cpuinfo
grep -m1 -o -E "avx512vbmi|avx512bw" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
uptime
echo
echo "## side by side, one thread (vs_fpnge --runs 21)"
timeout 120 "$dir/vs_fpnge" --runs 21 --warmup 3 2>/dev/null || echo "vs_fpnge: exit $?"
echo
echo "## thread scaling (coder_threads)"
cores=$(nproc)
threads=$(seq -s, 1 $(( cores < 16 ? cores : 16 )))
timeout 150 "$dir/coder_threads" --threads "$threads" --runs 15 2>/dev/null || echo "coder_threads: exit $?"
