#!/usr/bin/env bash
# The transport peer table: pngcast-mio and pngcast-blocking beside fastwebsockets,
# tokio-tungstenite and a ComfyUI-style aiohttp server, one load client for all, rounds
# interleaved; Markdown on stdout, JSON lines in $RAW. Then (STRACE=1) syscalls per delivered
# frame of every server at 1024^2 with `strace -c -f`, and (KNOBS=1) pngcast-mio and
# fastwebsockets at 1024^2 with SO_SNDBUF / TCP_NOTSENT_LOWAT set on the server's sockets.
#
#   benches/peers/run.sh                       # ROUNDS=3; about 15 minutes on 2 cores
#   ROUNDS=1 benches/peers/run.sh --quick      # a quick look; extra arguments go to `peers table`
#   STRACE=1 KNOBS=1 benches/peers/run.sh --sections latency
#
# Needs the corpus (PNGCAST_CORPUS or ../shared/corpus) once, to write the two PNGs, and
# `python3 -m pip install aiohttp` for the aiohttp peer (skipped with a note without it).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${BIN:-target/release}"
png="${PNG_DIR:-target/peers-png}"
raw="${RAW:-target/peers-raw.jsonl}"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p pngcast-peers >&2
[ -f "$png/photo_1024.png" ] || "$bin/peers" prepare --out "$png" >&2
peers() { "$bin/peers" "$@" --png-dir "$png" --server-bin "$bin/peer-server" \
            --aiohttp benches/python/aiohttp_peer.py; }
if [ -z "${SKIP_TABLE:-}" ]; then
  peers table --rounds "${ROUNDS:-3}" --raw "$raw" "$@"
fi
if [ -n "${STRACE:-}" ] && command -v strace >/dev/null; then
  echo
  echo "#### Syscalls per delivered frame (strace -c -f on the server process, 1024^2)"
  echo
  echo "| server | size | clients | mode | syscalls per frame | calls per frame |"
  echo "|---|---|---|---|---|---|"
  for s in mio blocking fastwebsockets tungstenite aiohttp; do
    peers strace --server "$s" --size 1024 --clients 1 --frames 100 --paced 2>/dev/null || true
    peers strace --server "$s" --size 1024 --clients 1 --frames 300 2>/dev/null || true
    peers strace --server "$s" --size 1024 --clients 100 --frames 20 2>/dev/null || true
  done
fi
if [ -n "${KNOBS:-}" ]; then
  for knob in "" "PEERS_SNDBUF=262144" "PEERS_SNDBUF=4194304" "PEERS_NOTSENT_LOWAT=131072" \
              "PEERS_NOTSENT_LOWAT=16384"; do
    echo
    echo "#### Socket knobs: ${knob:-defaults}"
    echo
    env $knob "$bin/peers" table --png-dir "$png" --server-bin "$bin/peer-server" \
      --servers mio,fastwebsockets --sizes 1024 --clients 1,100 --sections fanout,latency \
      --rounds "${KNOB_ROUNDS:-2}" --raw "$raw.knobs" 2>/dev/null
  done
fi
