#!/usr/bin/env bash
# The transport peer table (benches/peers) on a many-core machine, from prebuilt binaries
# (benches/device/prepare-transports.sh puts them, the PNGs, the aiohttp peer and this script
# into target/device-transports/): fan-out at 1-100 clients for 512^2 and 1024^2, 10 readers +
# one stalled client, latency at 20 fps; then syscalls per frame (when strace is there) and
# pngcast-mio / fastwebsockets with SO_SNDBUF and TCP_NOTSENT_LOWAT set. The aiohttp peer is
# skipped cleanly when python3 cannot import aiohttp. About 5-6 minutes with the defaults (the table stops
# starting rounds past BUDGET_S=240 seconds and prints what it has).
#
#   target/device-transports/transports.sh    # from the repository root (or inside the folder)
#   ROUNDS=3 QUICK= target/device-transports/transports.sh   # full-length bursts (longer)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$here/peers" ]; then dir="$here"; else dir="$(pwd)/target/device-transports"; fi
[ -x "$dir/peers" ] || { echo "transports.sh: no prebuilt binaries in $dir (run benches/device/prepare-transports.sh)" >&2; exit 1; }
echo "## machine"
lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)|Thread|MHz|L2|L3" || grep -m1 "model name" /proc/cpuinfo
uptime; uname -r
python3 -c 'import aiohttp, sys; print("aiohttp", aiohttp.__version__, "python", sys.version.split()[0])' 2>/dev/null \
  || echo "aiohttp: not importable; its column is skipped"
ulimit -n 65536 2>/dev/null || true
peers() { "$dir/peers" "$@" --png-dir "$dir/png" --server-bin "$dir/peer-server" --aiohttp "$dir/aiohttp_peer.py"; }
quick="${QUICK---quick}"
echo
echo "## side by side (peers table --rounds ${ROUNDS:-3} $quick)"
timeout 330 "$dir/peers" table --rounds "${ROUNDS:-3}" $quick --budget-s "${BUDGET_S:-240}" --png-dir "$dir/png" \
  --server-bin "$dir/peer-server" --aiohttp "$dir/aiohttp_peer.py" \
  --raw "${OUT:-/tmp}/transports-raw.jsonl" 2>/dev/null || echo "table: exit $?"
if command -v strace >/dev/null; then
  echo
  echo "#### Syscalls per delivered frame (strace -c -f on the server process, 1024^2)"
  echo
  echo "| server | size | clients | mode | syscalls per frame | calls per frame |"
  echo "|---|---|---|---|---|---|"
  for s in mio blocking fastwebsockets; do
    timeout 20 "$dir/peers" strace --server "$s" --size 1024 --clients 1 --frames 40 --paced \
      --png-dir "$dir/png" --server-bin "$dir/peer-server" 2>/dev/null || true
    timeout 20 "$dir/peers" strace --server "$s" --size 1024 --clients 100 --frames 10 \
      --png-dir "$dir/png" --server-bin "$dir/peer-server" 2>/dev/null || true
  done
else
  echo "(no strace: syscall rows skipped)"
fi
for knob in "PEERS_SNDBUF=4194304" "PEERS_NOTSENT_LOWAT=131072"; do
  echo
  echo "#### Socket knobs: $knob"
  echo
  env $knob timeout 45 "$dir/peers" table --png-dir "$dir/png" --server-bin "$dir/peer-server" \
    --servers mio,fastwebsockets --sizes 1024 --clients 1,100 --sections fanout,latency \
    --rounds 1 --quick 2>/dev/null || echo "knobs: exit $?"
done
