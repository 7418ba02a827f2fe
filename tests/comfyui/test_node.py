"""Our node inside the real ComfyUI server, read by the clients people run.

Every test queues model-free prompts through POST /prompt and reads the frames as that client
does: ComfyUI's example script (websocket-client, `out[8:]`), a `websockets` client that takes
only type-1 PNG frames (krita-ai-diffusion's rule), a client that declared
`supports_preview_metadata`, and ComfyUI's own web frontend in headless Chromium.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import time

import numpy as np
import pytest
import websocket  # websocket-client
import websockets
from PIL import Image

from comfy import (
    empty_image,
    load_image,
    new_client_id,
    with_ours,
    with_seed,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pixels(png: bytes) -> np.ndarray:
    assert png[:8] == PNG_MAGIC, png[:16]
    return np.asarray(Image.open(io.BytesIO(png)))


# ------------------------------------------------------------------------------ the clients


class ExampleScriptClient:
    """ComfyUI's script_examples/websockets_api_example_ws_images.py, in our own words: text
    messages track the executing node; each binary message is an image, `out[8:]`."""

    def __init__(self, addr: str, client_id: str, flags: bool = False):
        self.ws = websocket.create_connection(f"ws://{addr}/ws?clientId={client_id}", timeout=60)
        self.flags = flags
        if flags:
            self.ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))

    def run(self, comfy, prompt, client_id):
        prompt_id = comfy.queue(prompt, client_id)
        by_node: dict[str, list[bytes]] = {}
        texts: list[dict] = []
        current = ""
        while True:
            out = self.ws.recv()
            if isinstance(out, str):
                msg = json.loads(out)
                texts.append(msg)
                if msg["type"] == "executing" and msg["data"].get("prompt_id") == prompt_id:
                    if msg["data"]["node"] is None:
                        break
                    current = msg["data"]["node"]
                if msg["type"] == "execution_error" and msg["data"].get("prompt_id") == prompt_id:
                    break
            else:
                by_node.setdefault(current, []).append(out)
        return prompt_id, by_node, texts

    def close(self):
        self.ws.close()


async def krita_like(addr: str, client_id: str, comfy, prompt, pngcast_addr: str | None = None, expect: int = 0):
    """Takes only binary type 1 / format 2 (PNG) messages, as krita-ai-diffusion does; ends on
    ComfyUI's `executing: null` for the prompt, or after `expect` images on a pngcast server."""
    images: list[bytes] = []
    url = f"ws://{pngcast_addr or addr}/ws?clientId={client_id}"
    async with websockets.connect(url, max_size=2**30) as ws:
        prompt_id = await asyncio.get_running_loop().run_in_executor(None, comfy.queue, prompt, client_id)
        while True:
            msg = await asyncio.wait_for(ws.recv(), 120)
            if isinstance(msg, bytes):
                kind, fmt = struct.unpack(">II", msg[:8])
                if kind == 1 and fmt == 2:
                    images.append(msg[8:])
                    if pngcast_addr and len(images) == expect:
                        break
            elif not pngcast_addr:
                m = json.loads(msg)
                if m["type"] == "executing" and m["data"].get("prompt_id") == prompt_id and m["data"]["node"] is None:
                    break
    return images


def seed_images(comfy, graph):
    """SaveImageWebsocket's images for the same input (the reference)."""
    cid = new_client_id()
    c = ExampleScriptClient(comfy.addr, cid)
    try:
        _, by_node, _ = c.run(comfy, with_seed(graph), cid)
    finally:
        c.close()
    return [pixels(b[8:]) for b in by_node["8"]]


# -------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize(
    "graph, n",
    [
        (load_image("kodim23.png", 3), 3),
        (load_image("camera.png", 2), 2),
        (empty_image(200, 120, 4, 0x3366CC), 4),
    ],
    ids=["kodim23x3", "camera_gray_x2", "empty_image_x4"],
)
def test_comfyui_delivery_example_script_client(comfy, graph, n):
    want = seed_images(comfy, graph)
    assert len(want) == n
    cid = new_client_id()
    client = ExampleScriptClient(comfy.addr, cid)
    try:
        prompt_id, by_node, texts = client.run(comfy, with_ours(graph, "my-event"), cid)
    finally:
        client.close()
    got = by_node["9"]
    assert len(got) == n
    for i, out in enumerate(got):
        assert out[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"
        assert np.array_equal(pixels(out[8:]), want[i]), f"image {i} differs from SaveImageWebsocket's"
    events = [t for t in texts if t["type"] == "my-event"]
    assert [e["data"]["index"] for e in events] == list(range(n))
    assert all(e["data"]["count"] == n and e["data"]["prompt_id"] == prompt_id for e in events)
    h = comfy.history(prompt_id)
    ui = h["outputs"]["9"]["images"]
    assert [e["source"] for e in ui] == ["websocket"] * n


def test_comfyui_delivery_metadata_client(comfy):
    graph = load_image("astronaut.png", 2)
    want = seed_images(comfy, graph)
    cid = new_client_id()
    client = ExampleScriptClient(comfy.addr, cid, flags=True)
    try:
        prompt_id, by_node, texts = client.run(comfy, with_ours(graph, "meta-event"), cid)
    finally:
        client.close()
    frames = by_node["9"]
    assert len(frames) == 2
    assert not [t for t in texts if t["type"] == "meta-event"], "metadata clients get no legacy JSON"
    for i, out in enumerate(frames):
        kind, jlen = struct.unpack(">II", out[:8])
        assert kind == 4
        meta = json.loads(out[8 : 8 + jlen])
        assert meta["event"] == "meta-event" and meta["index"] == i and meta["count"] == 2
        assert meta["image_type"] == "image/png"
        assert meta["node_id"] == "9" and meta["display_node_id"] == "9" and meta["real_node_id"] == "9"
        assert "parent_node_id" in meta and meta["parent_node_id"] is None
        assert meta["prompt_id"] == prompt_id
        assert (meta["width"], meta["height"]) == (want[i].shape[1], want[i].shape[0])
        assert np.array_equal(pixels(out[8 + jlen :]), want[i])


def test_comfyui_delivery_krita_like_client(comfy):
    graph = load_image("fantasy_digital_painting.png", 2)
    want = seed_images(comfy, graph)
    cid = new_client_id()
    got = asyncio.run(krita_like(comfy.addr, cid, comfy, with_ours(graph, "krita")))
    assert len(got) == 2
    for i, png in enumerate(got):
        assert np.array_equal(pixels(png), want[i])


def test_embed_workflow_and_mask(comfy):
    graph = load_image("kodim23.png", 1)
    graph["9"] = {
        "class_type": "SendImageOnWebSocketPngcast",
        "inputs": {"event": "masked", "images": ["2", 0], "mask": ["3", 0], "embed_workflow": True},
    }
    graph["3"] = {"class_type": "SolidMask", "inputs": {"value": 0.25, "width": 768, "height": 512}}
    cid = new_client_id()
    client = ExampleScriptClient(comfy.addr, cid)
    try:
        _, by_node, _ = client.run(comfy, graph, cid)
    finally:
        client.close()
    (out,) = by_node["9"]
    img = Image.open(io.BytesIO(out[8:]))
    assert img.mode == "RGBA"
    alpha = np.asarray(img)[..., 3]
    assert (alpha == int(255 * 0.75)).all()
    prompt = json.loads(img.text["prompt"])
    assert prompt["9"]["class_type"] == "SendImageOnWebSocketPngcast"


def pngcast_addr(comfy) -> str:
    return f"127.0.0.1:{comfy.pngcast_port}"


def start_pngcast_delivery(comfy):
    """The pngcast server starts on the node's first run."""
    cid = new_client_id()
    pid = comfy.queue(with_ours(empty_image(8, 8, 1, 0), "warmup", delivery="pngcast"), cid)
    h = comfy.wait_done(pid)
    assert h["status"]["status_str"] == "success", h


def test_pngcast_delivery_three_clients(comfy):
    start_pngcast_delivery(comfy)
    graph = load_image("kodim23.png", 3)
    want = seed_images(comfy, graph)
    addr = pngcast_addr(comfy)
    legacy = websocket.create_connection(f"ws://{addr}/ws", timeout=60)
    assert json.loads(legacy.recv())["type"] == "status"
    meta = websocket.create_connection(f"ws://{addr}/ws", timeout=60)
    json.loads(meta.recv())
    meta.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    assert json.loads(meta.recv())["type"] == "feature_flags"
    time.sleep(0.2)  # the flags are applied by the server's loop

    async def krita():
        return await krita_like(comfy.addr, new_client_id(), comfy, with_ours(graph, "pc", delivery="pngcast"),
                                pngcast_addr=addr, expect=3)

    got_krita = asyncio.run(krita())
    got_legacy = []
    while len(got_legacy) < 3:
        out = legacy.recv()
        if isinstance(out, bytes):
            got_legacy.append(out[8:])
    got_meta = []
    while len(got_meta) < 3:
        out = meta.recv()
        if isinstance(out, bytes):
            kind, jlen = struct.unpack(">II", out[:8])
            assert kind == 4
            j = json.loads(out[8 : 8 + jlen])
            assert j["event"] == "pc" and j["node_id"] == "9" and j["display_node_id"] == "9"
            got_meta.append(out[8 + jlen :])
    for got in (got_krita, got_legacy, got_meta):
        for i, png in enumerate(got):
            assert np.array_equal(pixels(png), want[i])
    legacy.close()
    meta.close()


def test_pngcast_delivery_stalled_client_does_not_delay_others(comfy):
    start_pngcast_delivery(comfy)
    addr = pngcast_addr(comfy)
    host, port = addr.split(":")
    stalled = socket.create_connection((host, int(port)))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(
        b"GET /ws HTTP/1.1\r\nHost: " + addr.encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )  # and never reads
    good = websocket.create_connection(f"ws://{addr}/ws", timeout=60)
    json.loads(good.recv())
    graph = empty_image(1024, 1024, 8, 0x808080)
    for round_ in range(3):
        cid = new_client_id()
        pid = comfy.queue(with_ours(graph, f"round{round_}", delivery="pngcast", compression="stored"), cid)
        h = comfy.wait_done(pid)
        assert h["status"]["status_str"] == "success"
        n = 0
        while n < 8:
            out = good.recv()
            if isinstance(out, bytes):
                n += 1
    stalled.close()
    good.close()


@pytest.mark.parametrize(
    "kind, batch, words",
    [
        ("empty", 0, "empty batch"),
        ("five_channels", 2, "5 channels"),
        ("nan", 3, "NaN"),
    ],
)
def test_bad_input_is_an_execution_error(comfy, kind, batch, words):
    graph = {
        "2": {"class_type": "PngcastTestTensor", "inputs": {"kind": kind, "batch": batch, "size": 16}},
        "9": {"class_type": "SendImageOnWebSocketPngcast", "inputs": {"event": "bad", "images": ["2", 0]}},
    }
    cid = new_client_id()
    client = ExampleScriptClient(comfy.addr, cid)
    try:
        prompt_id, by_node, texts = client.run(comfy, graph, cid)
    finally:
        client.close()
    errors = [t for t in texts if t["type"] == "execution_error"]
    assert errors, texts
    assert words in errors[0]["data"]["exception_message"]
    assert errors[0]["data"]["node_id"] == "9"
    assert "9" not in by_node
    # ComfyUI keeps serving.
    assert comfy.alive()
    h = comfy.wait_done(comfy.queue(with_ours(empty_image(8, 8, 1, 0), "after"), cid))
    assert h["status"]["status_str"] == "success"


def test_reserved_event_name_is_an_execution_error(comfy):
    cid = new_client_id()
    client = ExampleScriptClient(comfy.addr, cid)
    try:
        _, by_node, texts = client.run(comfy, with_ours(empty_image(8, 8, 1, 0), "executing"), cid)
    finally:
        client.close()
    errors = [t for t in texts if t["type"] == "execution_error"]
    assert errors and "ComfyUI's own message types" in errors[0]["data"]["exception_message"]


def test_embedded_prompt_is_strict_json(comfy):
    graph = with_ours(load_image("camera.png", 1), "strict", embed_workflow=True)
    cid = new_client_id()
    client = ExampleScriptClient(comfy.addr, cid)
    try:
        _, by_node, _ = client.run(comfy, graph, cid)
    finally:
        client.close()
    (out,) = by_node["9"]
    text = Image.open(io.BytesIO(out[8:])).text["prompt"]
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in the prompt"))

