"""End to end inside the real ComfyUI: prompt queued -> last image received by a loopback client,
our node (both deliveries) against ComfyUI's SaveImageWebsocket, same run, same machine.

The workflow is LoadImage(kodim23) -> ImageScale(W x H, bilinear) -> RepeatImageBatch(B) ->
the sending node; the upstream nodes are cached after the first run, so each timed prompt is the
sending node plus ComfyUI's fixed cost per prompt. The client is lean (websocket-client, it only
counts binary frames), so its own receive cost is small.

    /opt/pngcast-ci/comfyui-venv/bin/python benches/python/comfyui_e2e.py [--rounds 5]

Prints a markdown table (median and min over the rounds, ratio to SaveImageWebsocket).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import base64
import os
import socket
import struct

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "comfyui"))
from comfy import ComfyUI, new_client_id  # noqa: E402


def graph(size: int, batch: int, sender: str, comfy: ComfyUI) -> dict:
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "kodim23.png"}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                     "width": size, "height": size, "crop": "disabled"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": batch}},
    }
    if sender == "SaveImageWebsocket":
        g["9"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["3", 0]}}
    else:
        delivery = sender.split(":")[1]
        g["9"] = {"class_type": "SendImageOnWebSocketPngcast",
                  "inputs": {"event": "bench", "images": ["3", 0], "delivery": delivery}}
    return g


class LeanClient:
    """A WebSocket client that only counts complete binary messages."""

    def __init__(self, addr: str, path: str):
        host, port = addr.split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        status, rest = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in status.split(b"\r\n")[0]:
            raise ConnectionError(status.decode(errors="replace"))
        self.pending = bytearray(rest)
        self.buf = bytearray(1 << 22)
        self.view = memoryview(self.buf)

    def _read(self, n: int) -> bytes:
        while len(self.pending) < n:
            got = self.sock.recv_into(self.view, len(self.buf))
            if got == 0:
                raise ConnectionError("closed")
            self.pending += self.view[:got]
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def _skip(self, n: int) -> None:
        take = min(n, len(self.pending))
        del self.pending[:take]
        n -= take
        while n > 0:
            got = self.sock.recv_into(self.view, min(n, len(self.buf)))
            if got == 0:
                raise ConnectionError("closed")
            n -= got

    def binary_messages(self, count: int) -> None:
        """Returns once `count` binary messages have been read whole (text and control skipped)."""
        done = 0
        while done < count:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            self._skip(n)
            if b0 & 0x0F == 2 and b0 & 0x80:
                done += 1


def run_once(comfy: ComfyUI, client: LeanClient, prompt: dict, client_id: str, expect: int) -> float:
    t0 = time.perf_counter()
    comfy.queue(prompt, client_id)
    client.binary_messages(expect)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="512,1024,2048")
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        comfy = ComfyUI(Path(tmp)).start()
        try:
            cid = new_client_id()
            comfy_ws = LeanClient(comfy.addr, f"/ws?clientId={cid}")
            # Start pngcast's server (first run of the node with that delivery).
            comfy.wait_done(comfy.queue(graph(64, 1, "ours:pngcast", comfy), cid))
            pc_ws = LeanClient(f"127.0.0.1:{comfy.pngcast_port}", "/ws")
            senders = ["SaveImageWebsocket", "ours:comfyui", "ours:pngcast"]
            rows = []
            for size in map(int, args.sizes.split(",")):
                for batch in map(int, args.batches.split(",")):
                    times = {s: [] for s in senders}
                    for s in senders:  # warm: caches the upstream nodes for this shape
                        ws = pc_ws if s == "ours:pngcast" else comfy_ws
                        run_once(comfy, ws, graph(size, batch, s, comfy), cid, batch)
                    for _ in range(args.rounds):
                        for s in senders:  # interleaved rounds
                            ws = pc_ws if s == "ours:pngcast" else comfy_ws
                            times[s].append(run_once(comfy, ws, graph(size, batch, s, comfy), cid, batch))
                    base = statistics.median(times["SaveImageWebsocket"])
                    for s in senders:
                        med = statistics.median(times[s])
                        rows.append((size, batch, s, med * 1e3, min(times[s]) * 1e3, base / med))
                        print(json.dumps({"size": size, "batch": batch, "sender": s, "median_ms": round(med * 1e3, 2),
                                          "min_ms": round(min(times[s]) * 1e3, 2)}), file=sys.stderr)
            print("| image | batch | sender | median ms | min ms | speed-up vs SaveImageWebsocket |")
            print("|---|---|---|---|---|---|")
            names = {"SaveImageWebsocket": "SaveImageWebsocket (Pillow)", "ours:comfyui": "pngcast node, comfyui delivery",
                     "ours:pngcast": "pngcast node, pngcast delivery"}
            for size, batch, s, med, mn, ratio in rows:
                print(f"| {size}x{size} | {batch} | {names[s]} | {med:.1f} | {mn:.1f} | {ratio:.1f}x |")
        finally:
            comfy.stop()


if __name__ == "__main__":
    main()
