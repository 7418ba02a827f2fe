#!/usr/bin/env bash
# Ours (fast coder, Balanced, 1 and 2 threads) beside the png crate's `Fast`, in the same process,
# in K separate processes per corpus image: the encode table of docs/perf.md ("Encoder speed").
#   scripts/encode_paired.sh            # K=6 processes, best of N=20 runs each
#   K=3 N=10 scripts/encode_paired.sh   # quicker
# Prints one line per process: image, ours t1 MP/s, ours t2 MP/s, png Fast MP/s, ours t2 with the
# calling thread in the pool (`t2pool`, as `pngcast serve` runs); then the medians.
# Separate processes because some VMs run a process at one of two speed levels; pairing within a
# process keeps the ratio honest. Corpus: $PNGCAST_CORPUS, else ../shared/corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
K="${K:-6}"
N="${N:-20}"
TARGET="${CARGO_TARGET_DIR:-target}"
export PNGCAST_CORPUS="${PNGCAST_CORPUS:-../shared/corpus}"
cargo build --release -p pngcast-benches --example encode_best_of >&2
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for img in photo/kodim23.png photo/hubble_deep_field.png photo/retina.png \
    art/fantasy_digital_painting.png graphic/exoplanet_phase_curve.png \
    screen/lorem_ipsum_screenshot.png gray/camera.png; do
    for _ in $(seq "$K"); do
        "$TARGET/release/examples/encode_best_of" "$img" "$N" fast 2>/dev/null | awk -v img="$(basename "$img" .png)" '
            /pngcast fast\/adaptive t1 /{o=$(NF-4)} /pngcast fast\/adaptive t2 /{t=$(NF-4)}
            /pngcast fast\/adaptive t2pool /{q=$(NF-4)}
            /^png fast /{p=$(NF-4)} END{printf "%s %s %s %s %s\n", img, o, t, p, q}'
    done
done | tee "$out"
python3 - "$out" <<'PY'
import collections, statistics as st, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    img, o, t, p, q = line.split()
    d[img].append((float(o), float(t), float(p), float(q)))
print("image ours_t1_median ours_t1_best ours_t2_median png_fast_median ratio_median ratio_best "
      "t2/t1_median t2pool_median t2pool/t1_median")
for img, v in d.items():
    r = [o / p for o, _, p, _ in v]
    print(img, round(st.median(x[0] for x in v), 1), max(x[0] for x in v), round(st.median(x[1] for x in v), 1),
          round(st.median(x[2] for x in v), 1), round(st.median(r), 2), round(max(r), 2),
          round(st.median(t / o for o, t, _, _ in v), 2), round(st.median(x[3] for x in v), 1),
          round(st.median(q / o for o, _, _, q in v), 2))
PY
