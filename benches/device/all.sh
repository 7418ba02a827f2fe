#!/usr/bin/env bash
# Every many-core figure in one run (about 7 minutes on 16 cores), from target/device-all/
# (benches/device/prepare-all.sh): the fast coder beside fpnge and its thread scaling, tensor ->
# loopback client latency per transport, mio_throughput (alternating with before/ when present),
# and the transport peer table. Each part has its own time cap, so a slow part cannot starve the
# others; outputs also go to $OUT when set. PARTS picks the parts (default: all of
# coder,threads,latency,mio,transports); SERVERS the transport table's servers (default: its own
# set; `mio8` and `mio16` are the extra pngcast-mio loop settings).
#
#   target/device-all/all.sh
#   PARTS=coder,transports SERVERS=mio,mio8,fastwebsockets target/device-all/all.sh
set -uo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-/tmp}"
ulimit -n 65536 2>/dev/null || true
parts=",${PARTS:-coder,threads,latency,mio,transports},"
part() { [[ "$parts" == *",$1,"* ]]; }
servers=()
[ -n "${SERVERS:-}" ] && servers=(--servers "$SERVERS")
echo "## machine"
lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)|Thread|MHz|L2|L3" || grep -m1 "model name" /proc/cpuinfo
nproc; uptime; uname -r
echo
part coder && {
echo "## coder: side by side, one thread (vs_fpnge --runs 11)"
PNGCAST_CORPUS="$dir/coder/corpus" timeout 100 "$dir/coder/vs_fpnge" --runs 11 --warmup 2 2>/dev/null \
  | tee "$out/vs_fpnge.md" || echo "vs_fpnge: exit $?"
}
part threads && {
echo
echo "## coder: thread scaling (coder_threads)"
PNGCAST_CORPUS="$dir/coder/corpus" timeout 80 "$dir/coder/coder_threads" --threads 1,2,4,8,12,16 --runs 9 \
  2>/dev/null | tee "$out/coder_threads.md" || echo "coder_threads: exit $?"
}
part latency && {
echo
echo "## latency: f32 tensor -> loopback client (latency --quick latency)"
timeout 50 "$dir/latency" --quick latency 2>/dev/null | tee "$out/latency.jsonl" || echo "latency: exit $?"
}
part mio && {
echo
echo "## mio_throughput --quick, before/ and this build alternating"
for round in 1 2; do
  for b in before this; do
    bin="$dir/mio_throughput"; [ "$b" = before ] && bin="$dir/before/mio_throughput"
    [ -x "$bin" ] || continue
    echo "### round $round: $b"
    timeout 30 "$bin" --quick 2>/dev/null || echo "mio_throughput: exit $?"
  done
done | tee "$out/mio_throughput.txt"
}
part transports && {
echo
echo "## transports side by side"
timeout 200 "$dir/transports/peers" table "${servers[@]}" --rounds 3 --quick --budget-s "${BUDGET_S:-150}" \
  --png-dir "$dir/transports/png" --server-bin "$dir/transports/peer-server" \
  --aiohttp "$dir/transports/aiohttp_peer.py" --raw "$out/transports-raw.jsonl" 2>/dev/null \
  | tee "$out/transports.md" || echo "transports: exit $?"
}
