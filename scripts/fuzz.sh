#!/usr/bin/env bash
# Runs each network/tensor fuzz target of fuzz-net/ for a bounded time (default 120 s each).
#   scripts/fuzz.sh [seconds] [target...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the sanitizer flag needs
# RUSTC_BOOTSTRAP=1, which this script sets. The seed corpus in fuzz-net/seeds/<target> is
# read-only; new inputs go to a scratch corpus under target/, crashes to fuzz-net/artifacts/.
# Prints libFuzzer's final stats line per target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(http_head wire_parse tensor_encode server_frames)
fi
export RUSTC_BOOTSTRAP=1
scratch="${CARGO_TARGET_DIR:-target}/fuzz-net-corpus"
cargo fuzz build --fuzz-dir fuzz-net -O
status=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    echo "== $t for ${secs}s"
    if cargo fuzz run --fuzz-dir fuzz-net -O "$t" "$scratch/$t" "fuzz-net/seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        echo "   ok"
    else
        echo "   FAILED (see $log and fuzz-net/artifacts/$t)"
        status=1
    fi
    grep -E "^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$log" | sed 's/^/   /' || true
    grep -E "cov: .*corp:" "$log" | tail -1 | sed 's/^/   /' || true
done
exit $status
