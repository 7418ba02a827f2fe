"""ComfyUI-style aiohttp server for the transport peer benchmark (benches/peers).

Serves WebSocket upgrades on /ws as ComfyUI's PromptServer does (a `status` text message on
connect, the socket kept in a dict) and sends frames as ComfyUI does: the caller's thread queues
each message to the event loop (`send_sync`: `loop.call_soon_threadsafe(queue.put_nowait, ...)`)
and `publish_loop` sends it to every socket in turn, awaiting each `ws.send_bytes` (ComfyUI's
`send_bytes` for `sid=None`). The message is pre-encoded (8-byte prefix + the PNG), the same bytes
every server in the benchmark sends.

Controlled on stdin by the runner (`peers table`), answering on stdout; the line protocol is
described in benches/peers/src/lib.rs. `PEERS_SNDBUF` / `PEERS_NOTSENT_LOWAT` set socket knobs on
the listening socket.

    python3 benches/python/aiohttp_peer.py --png target/peers-png/photo_1024.png
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
import uuid

from aiohttp import web

PREFIX = b"\x00\x00\x00\x01\x00\x00\x00\x02"


def listening_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if os.environ.get("PEERS_SNDBUF"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(os.environ["PEERS_SNDBUF"]))
    if os.environ.get("PEERS_NOTSENT_LOWAT"):
        s.setsockopt(socket.IPPROTO_TCP, 25, int(os.environ["PEERS_NOTSENT_LOWAT"]))  # TCP_NOTSENT_LOWAT
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    s.setblocking(False)
    return s


class PromptServerLike:
    def __init__(self, loop):
        self.loop = loop
        self.sockets = {}
        self.messages = asyncio.Queue()

    async def websocket_handler(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        try:
            await ws.send_str(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}}))
            async for _ in ws:
                pass
        finally:
            self.sockets.pop(sid, None)
        return ws

    async def send_bytes(self, message):
        for ws in list(self.sockets.values()):
            try:
                await ws.send_bytes(message)
            except Exception:  # ComfyUI's send_socket_catch_exception
                pass

    async def publish_loop(self):
        while True:
            msg = await self.messages.get()
            await self.send_bytes(msg)

    def send_sync(self, message):
        self.loop.call_soon_threadsafe(self.messages.put_nowait, message)


def control(server, message):
    out = sys.stdout
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "wait":
            n = int(words[1])
            while len(server.sockets) < n:
                time.sleep(0.001)
            out.write("ok\n")
        elif words[0] == "burst":
            t0 = time.monotonic_ns()
            for _ in range(int(words[1])):
                server.send_sync(message)
            out.write(f"sent {t0}\n")
        elif words[0] == "one":
            t0 = time.monotonic_ns()
            server.send_sync(message)
            out.write(f"{t0}\n")
        elif words[0] == "quit":
            break
        out.flush()
    out.flush()
    os._exit(0)


async def main(args):
    message = PREFIX + open(args.png, "rb").read()
    loop = asyncio.get_running_loop()
    server = PromptServerLike(loop)
    app = web.Application()
    app.router.add_get("/ws", server.websocket_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = listening_socket(args.port)
    await web.SockSite(runner, sock).start()
    loop.create_task(server.publish_loop())
    print(f"ready {sock.getsockname()[1]}", flush=True)
    threading.Thread(target=control, args=(server, message), daemon=True).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--png", required=True)
    p.add_argument("--port", type=int, default=0)
    asyncio.run(main(p.parse_args()))
