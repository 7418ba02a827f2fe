"""delivery="redis": the node inside the real ComfyUI server publishes to a real redis-server,
and edges (`pngcast serve --source redis://...` and pngcast.Server(subscribe=...)) deliver the
frames to their clients, pixel for pixel what SaveImageWebsocket sends for the same input."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import websocket  # websocket-client

import pngcast
from comfy import REPO, ComfyUI, empty_image, load_image, new_client_id, pngcast_bin, with_ours
from test_node import ExampleScriptClient, pixels, seed_images

sys.path.insert(0, str(REPO / "python" / "tests"))
from redis_server import RedisServer, free_port, redis_server_or_skip  # noqa: E402


@pytest.fixture(scope="module")
def redis():
    server = RedisServer(redis_server_or_skip()).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def worker(redis, tmp_path_factory):
    """A ComfyUI whose nodes publish to namespace `env` unless given a redis_url."""
    server = ComfyUI(tmp_path_factory.mktemp("comfyui-redis"),
                     env={"PNGCAST_REDIS_URL": redis.ns_url("env")}).start()
    try:
        yield server
    finally:
        server.stop()


class CliEdge:
    """`pngcast serve --source redis://...` on a free port."""

    def __init__(self, url: str):
        self.proc = subprocess.Popen(
            [pngcast_bin(), "serve", "--source", url, "--addr", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        m = re.search(r" on http://([0-9.]+:\d+)/", line)
        if m is None:
            self.proc.kill()
            raise RuntimeError(f"no start-up line from pngcast serve: {line!r} {self.proc.stderr.read()}")
        self.addr = m.group(1)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def viewer(addr: str, flags: bool = False):
    ws = websocket.create_connection(f"ws://{addr}/ws", timeout=60)
    assert json.loads(ws.recv())["type"] == "status"
    if flags:
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        assert json.loads(ws.recv())["type"] == "feature_flags"
    return ws


def images(ws, n):
    """(json announcements, binary messages) until n binary messages arrived."""
    texts, frames = [], []
    while len(frames) < n:
        out = ws.recv()
        if isinstance(out, bytes):
            frames.append(out)
        else:
            texts.append(json.loads(out))
    return texts, frames


def run_ok(comfy, graph):
    prompt_id = comfy.queue(graph, new_client_id())
    h = comfy.wait_done(prompt_id)
    assert h["status"]["status_str"] == "success", (h, comfy.tail())
    return prompt_id


def test_worker_to_cli_and_python_edges_pixel_exact(worker, redis):
    graph = load_image("kodim23.png", 3)
    want = seed_images(worker, graph)
    cli = CliEdge(redis.ns_url("env"))
    py_edge = pngcast.Server("127.0.0.1:0", subscribe=redis.ns_url("env"))
    try:
        legacy = viewer(cli.addr)
        meta = viewer(f"127.0.0.1:{py_edge.address[1]}", flags=True)
        time.sleep(0.3)  # the metadata flag is applied by the edge's loop
        prompt_id = run_ok(worker, with_ours(graph, "relayed", delivery="redis"))
        texts, frames = images(legacy, 3)
        assert [t["type"] for t in texts] == ["relayed"] * 3
        assert [t["data"]["index"] for t in texts] == [0, 1, 2]
        for i, out in enumerate(frames):
            assert out[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"
            assert np.array_equal(pixels(out[8:]), want[i]), f"image {i} differs from SaveImageWebsocket's"
        _, frames = images(meta, 3)
        for i, out in enumerate(frames):
            kind, jlen = struct.unpack(">II", out[:8])
            assert kind == 4
            j = json.loads(out[8 : 8 + jlen])
            assert (j["event"], j["index"], j["count"]) == ("relayed", i, 3)
            assert j["prompt_id"] == prompt_id and j["node_id"] == "9" and j["display_node_id"] == "9"
            assert np.array_equal(pixels(out[8 + jlen :]), want[i])
        h = worker.history(prompt_id)
        assert [e["delivery"] for e in h["outputs"]["9"]["images"]] == ["redis"] * 3
        legacy.close()
        meta.close()
    finally:
        cli.close()
        py_edge.close()


def test_node_url_overrides_the_environment(worker, redis):
    with pngcast.Server("127.0.0.1:0", subscribe=redis.ns_url("input")) as mine, \
            pngcast.Server("127.0.0.1:0", subscribe=redis.ns_url("env")) as env_edge:
        a = viewer(f"127.0.0.1:{mine.address[1]}")
        b = viewer(f"127.0.0.1:{env_edge.address[1]}")
        run_ok(worker, with_ours(empty_image(64, 48, 2, 0x336699), "by-input", delivery="redis",
                                 redis_url=redis.ns_url("input")))
        _, frames = images(a, 2)
        for out in frames:
            assert np.array_equal(pixels(out[8:]), np.broadcast_to(np.array([0x33, 0x66, 0x99], np.uint8), (48, 64, 3)))
        b.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            while True:
                b.recv()
        a.close()
        b.close()


def test_redis_unreachable_is_an_execution_error_not_a_hang(worker):
    url = f"redis://127.0.0.1:{free_port()}/"  # nothing listens there
    cid = new_client_id()
    client = ExampleScriptClient(worker.addr, cid)
    t0 = time.monotonic()
    try:
        _, by_node, texts = client.run(worker, with_ours(empty_image(8, 8, 1, 0), "nowhere", delivery="redis",
                                                         redis_url=url), cid)
    finally:
        client.close()
    assert time.monotonic() - t0 < 30
    errors = [t for t in texts if t["type"] == "execution_error"]
    assert errors and "cannot reach Redis at 127.0.0.1" in errors[0]["data"]["exception_message"], texts
    assert errors[0]["data"]["node_id"] == "9"
    assert worker.alive()
    run_ok(worker, with_ours(empty_image(8, 8, 1, 0), "after", delivery="redis"))
