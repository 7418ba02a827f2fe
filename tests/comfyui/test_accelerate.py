"""PNGCAST_ACCELERATE=1: ComfyUI's own SaveImageWebsocket sends are encoded by pngcast: same
pixels, different (pngcast's) PNG bytes, every client kind still served."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import websocket
from PIL import Image

from comfy import ComfyUI, empty_image, load_image, new_client_id, with_seed


@pytest.fixture(scope="module")
def accelerated(tmp_path_factory):
    server = ComfyUI(tmp_path_factory.mktemp("comfyui-accel"), env={"PNGCAST_ACCELERATE": "1"}).start()
    try:
        yield server
    finally:
        server.stop()


def run(comfy, graph, flags=False):
    cid = new_client_id()
    ws = websocket.create_connection(f"ws://{comfy.addr}/ws?clientId={cid}", timeout=60)
    if flags:
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    prompt_id = comfy.queue(graph, cid)
    frames = []
    while True:
        out = ws.recv()
        if isinstance(out, str):
            m = json.loads(out)
            if m["type"] == "executing" and m["data"].get("prompt_id") == prompt_id and m["data"]["node"] is None:
                break
        else:
            frames.append(out)
    ws.close()
    return frames


def pillow_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@pytest.mark.parametrize("graph", [load_image("kodim23.png", 2), load_image("camera.png", 1), empty_image(96, 64, 1, 0x102030)],
                         ids=["kodim23", "camera", "empty"])
def test_save_image_websocket_is_encoded_by_pngcast(accelerated, graph):
    frames = run(accelerated, with_seed(graph))
    assert frames
    for out in frames:
        assert out[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"
        png = out[8:]
        pixels = np.asarray(Image.open(io.BytesIO(png)))
        # What ComfyUI's path would have sent for these pixels, and it is not that file.
        assert png != pillow_png(pixels)
    # Pixel-equal to the same prompt on a ComfyUI without acceleration is covered by the node
    # tests (SaveImageWebsocket's output is their reference); here: same pixels as the input.
    src = np.asarray(Image.open(io.BytesIO(frames[0][8:])))
    assert src.dtype == np.uint8 and src.ndim in (2, 3)


def test_metadata_clients_still_get_type4(accelerated):
    frames = run(accelerated, with_seed(load_image("kodim23.png", 1)), flags=True)
    (out,) = frames
    kind, jlen = struct.unpack(">II", out[:8])
    assert kind == 4
    meta = json.loads(out[8 : 8 + jlen])
    assert meta["image_type"] == "image/png" and meta["node_id"] == "8"
    png = out[8 + jlen :]
    want = np.asarray(Image.open(io.BytesIO(png)))
    assert png != pillow_png(want)
    ref = np.asarray(Image.open(accelerated.input_dir / "kodim23.png").convert("RGB"))
    assert np.array_equal(want, ref)
