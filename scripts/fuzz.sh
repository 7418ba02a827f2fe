#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ for a bounded time (default 120 s each).
#   scripts/fuzz.sh [seconds] [target...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the sanitizer flag needs
# RUSTC_BOOTSTRAP=1, which this script sets. The seed corpus in fuzz/seeds/<target> (where one
# exists) is read-only; new inputs go to a scratch corpus under target/, crashes to fuzz/artifacts/.
# Prints libFuzzer's final stats line per target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(fast_roundtrip http_head wire_parse tensor_encode server_frames session)
fi
export RUSTC_BOOTSTRAP=1
scratch="${CARGO_TARGET_DIR:-target}/fuzz-corpus"
cargo fuzz build --fuzz-dir fuzz -O
status=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    echo "== $t for ${secs}s"
    corpora=("$scratch/$t")
    if [ -d "fuzz/seeds/$t" ]; then corpora+=("fuzz/seeds/$t"); fi
    if cargo fuzz run --fuzz-dir fuzz -O "$t" "${corpora[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        echo "   ok"
    else
        echo "   FAILED (see $log and fuzz/artifacts/$t)"
        status=1
    fi
    grep -E "^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$log" | sed 's/^/   /' || true
    grep -E "cov: .*corp:" "$log" | tail -1 | sed 's/^/   /' || true
done
exit $status
