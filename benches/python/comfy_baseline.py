#!/usr/bin/env python3
"""ComfyUI's tensor-to-client path, end to end on loopback: the baseline for pngcast's latency bench.

What ComfyUI does with a preview image (server.py, SaveImageWebsocket / PreviewImage), reproduced here:

  1. the node, on the worker thread:
         i = 255. * image.cpu().numpy()
         img = Image.fromarray(np.clip(i, 0, 255).astype(np.uint8))
         server.send_sync(..., ["PNG", img, None], sid)   # loop.call_soon_threadsafe(queue.put_nowait, ..)
  2. the server's publish loop (asyncio, aiohttp):
         img.save(bytesIO, format="PNG", quality=95, compress_level=1)
         message = struct.pack(">I", 1) + struct.pack(">I", 2) + png     # type 1 (preview), format 2 (PNG)
         await ws.send_bytes(message)
  3. a `websocket-client` receiver (the library ComfyUI's own script_examples use), in a thread of this
     process, timestamps with time.perf_counter() when `recv()` returns the whole binary message.

Latency = receive time - the moment the float32 tensor was handed to step 1. Frames go one at a time
(the next frame starts once the previous one arrived), as pngcast's bench (benches/examples/latency.rs)
does. One JSON line per size on stdout:
    {"impl": "comfyui-python", "transport": "aiohttp", "width": .., "height": .., "frames": ..,
     "png_bytes": .., "p50_ms": .., "p99_ms": .., "mean_ms": .., "min_ms": ..}

Content: the Kodak photo benches/images/kodim23.png (768x512), mirror-tiled to each size and scaled to
float32 0..1, exactly as latency.rs builds it, so both encode the same pixels.

Install and run (from the repository root):
    python3 -m pip install numpy pillow aiohttp websocket-client
    python3 benches/python/comfy_baseline.py [--quick] [--frames N]
"""

import argparse
import asyncio
import io
import json
import os
import queue
import statistics
import struct
import sys
import threading
import time

import numpy as np
from aiohttp import web
from PIL import Image
import websocket  # websocket-client

SIZES = [(512, 512), (1024, 1024), (2048, 2048), (3840, 2160)]
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "images", "kodim23.png")


def reflect(n, size):
    """Mirror-tiling indices: 0,1,..,size-1,size-1,..,0,0,1,.. (same as latency.rs)."""
    p = np.arange(n) % (2 * size)
    return np.where(p < size, p, 2 * size - 1 - p)


def tensor(width, height):
    src = np.asarray(Image.open(SOURCE).convert("RGB"))
    h0, w0, _ = src.shape
    tiled = src[reflect(height, h0)][:, reflect(width, w0)]
    return (tiled.astype(np.float32) / np.float32(255.0))[None, ...]  # [1, H, W, 3] like ComfyUI


def percentile(sorted_values, q):
    """Nearest-rank percentile (same rule as latency.rs)."""
    i = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


class Server:
    """aiohttp on its own event-loop thread, with ComfyUI's queue + publish loop."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.sockets = []
        self.ready = threading.Event()
        self.port = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.messages = asyncio.Queue()
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.loop.create_task(self._publish_loop())
        self.ready.set()
        self.loop.run_forever()

    async def _ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_str(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "bench"}}))
        async for _ in ws:
            pass
        self.sockets.remove(ws)
        return ws

    async def _publish_loop(self):
        # ComfyUI's PromptServer.publish_loop -> send -> send_image -> send_bytes.
        while True:
            image = await self.messages.get()
            buf = io.BytesIO()
            image.save(buf, format="PNG", quality=95, compress_level=1)
            png = buf.getvalue()
            message = struct.pack(">I", 1) + struct.pack(">I", 2) + png
            for ws in list(self.sockets):
                await ws.send_bytes(message)

    def send_sync(self, image):
        self.loop.call_soon_threadsafe(self.messages.put_nowait, image)


def receiver(port, out):
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws")
    ws.recv()  # status
    out.put(("ready", None, None))
    while True:
        opcode, data = ws.recv_data()
        now = time.perf_counter()
        if opcode == websocket.ABNF.OPCODE_BINARY:
            out.put(("frame", now, len(data)))
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            return


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=0, help="frames per size (default: 60/40/16/10 by size)")
    ap.add_argument("--quick", action="store_true", help="a few frames per size")
    args = ap.parse_args()

    server = Server()
    received = queue.Queue()
    threading.Thread(target=receiver, args=(server.port, received), daemon=True).start()
    assert received.get(timeout=10)[0] == "ready"

    default_frames = {512: 60, 1024: 40, 2048: 16, 3840: 10}
    for width, height in SIZES:
        x = tensor(width, height)
        frames = args.frames or (3 if args.quick else default_frames[width])
        warmup = 2
        lat = []
        png_bytes = 0
        for k in range(warmup + frames):
            t0 = time.perf_counter()  # tensor handed over
            # --- the node's code, on the worker thread ---
            for image in x:
                i = 255.0 * image
                img = Image.fromarray(np.clip(i, 0, 255).astype(np.uint8))
                server.send_sync(img)
            # ---
            kind, t1, n = received.get(timeout=120)
            assert kind == "frame"
            if k >= warmup:
                lat.append((t1 - t0) * 1e3)
                png_bytes = n - 8
        lat.sort()
        print(json.dumps({
            "impl": "comfyui-python", "transport": "aiohttp", "width": width, "height": height,
            "frames": frames, "png_bytes": png_bytes,
            "p50_ms": round(statistics.median(lat), 3), "p99_ms": round(percentile(lat, 0.99), 3),
            "mean_ms": round(statistics.fmean(lat), 3), "min_ms": round(lat[0], 3),
        }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
