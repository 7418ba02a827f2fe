#!/usr/bin/env bash
# The encoder comparison of docs/perf.md ("Encoders"), end to end, with one command:
#   scripts/encoders.sh                 # RUNS=9 timed rounds per image (WARMUP=1 untimed first)
#   RUNS=3 scripts/encoders.sh          # a quick check
#   scripts/encoders.sh --image photos  # extra arguments go to the Rust example (filters)
# It builds and runs benches/examples/encoders.rs (ours, png crate, mtpng, lodepng), then
# benches/python/pillow_baseline.py --images on the very same pixels (Pillow level 1, and fpng when
# the PyPI package is installed), then scripts/plot_encoders.py. Outputs, in docs/encoders/ (or
# $OUT): results.jsonl (every row), results.md (tables), encoders.svg (the chart); and the two
# summary tables of docs/perf.md (between its encoders:begin/end comments; UPDATE_DOC= to skip).
# Needs: cargo, python3 with numpy and Pillow (python3 -m pip install numpy pillow fpng).
# The corpus is found as benches/src/lib.rs says ($PNGCAST_CORPUS, else ../shared/corpus).
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${RUNS:-9}"
WARMUP="${WARMUP:-1}"
OUT="${OUT:-docs/encoders}"
UPDATE_DOC="${UPDATE_DOC-docs/perf.md}"
TARGET="${CARGO_TARGET_DIR:-target}"

python3 -c "import numpy, PIL" 2>/dev/null || {
    echo "encoders.sh: python3 needs numpy and Pillow: python3 -m pip install numpy pillow fpng" >&2
    exit 1
}
python3 -c "import fpng" 2>/dev/null ||
    echo "encoders.sh: note: PyPI package fpng not installed (python3 -m pip install fpng): no fpng rows" >&2

cargo build --release -p pngcast-benches --example encoders
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$OUT"

echo "encoders.sh: load before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" >&2
"$TARGET/release/examples/encoders" --runs "$RUNS" --warmup "$WARMUP" \
    --dump-images "$tmp/images" --out "$tmp/rust.jsonl" "$@" >/dev/null
python3 benches/python/pillow_baseline.py --images "$tmp/images" --runs "$RUNS" --warmup "$WARMUP" \
    >"$tmp/python.jsonl"
cat "$tmp/rust.jsonl" "$tmp/python.jsonl" >"$OUT/results.jsonl"
python3 scripts/plot_encoders.py "$OUT/results.jsonl" -o "$OUT/encoders.svg" --markdown "$OUT/results.md" \
    ${UPDATE_DOC:+--update-doc "$UPDATE_DOC"}
echo "encoders.sh: load after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" >&2
