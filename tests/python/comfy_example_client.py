#!/usr/bin/env python3
"""A real ComfyUI-style client, as ComfyUI's script_examples/websockets_api_example_ws_images.py is.

It uses `websocket-client` exactly the way that script does: connect to ws://HOST/ws?clientId=ID,
watch the `executing` messages of one prompt, keep `out[8:]` of every binary frame received while
the SaveImageWebsocket node runs, stop when `executing` says node None. Then it decodes the kept
bytes with Pillow and compares them pixel for pixel with the raw RGB(A) files named in the
expectation JSON.

Usage: comfy_example_client.py --server 127.0.0.1:PORT --client-id ID --expect expect.json
expect.json: {"prompt_id": "...", "node": "...", "frames": [{"width": W, "height": H,
              "mode": "RGB"|"RGBA"|"L"|"LA", "raw": "/path/to/pixels.raw"}, ...]}
It prints READY once the server's status message arrived (the test then starts sending),
and exits 0 only if every frame matched.
"""
import argparse
import io
import json
import sys

import numpy as np
import websocket  # websocket-client, as the ComfyUI example uses
from PIL import Image


def get_images(ws, prompt_id, node_name):
    # The loop of websockets_api_example_ws_images.py, unchanged in substance.
    output_images = {}
    current_node = ""
    while True:
        out = ws.recv()
        if isinstance(out, str):
            message = json.loads(out)
            if message["type"] == "executing":
                data = message["data"]
                if data["prompt_id"] == prompt_id:
                    if data["node"] is None:
                        break  # Execution is done
                    else:
                        current_node = data["node"]
        else:
            if current_node == node_name:
                images_output = output_images.get(current_node, [])
                images_output.append(out[8:])
                output_images[current_node] = images_output
    return output_images


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--expect", required=True)
    args = ap.parse_args()
    with open(args.expect) as f:
        expect = json.load(f)

    ws = websocket.WebSocket()
    ws.settimeout(60)
    ws.connect("ws://{}/ws?clientId={}".format(args.server, args.client_id))
    status = json.loads(ws.recv())
    if status.get("type") != "status" or status["data"].get("sid") != args.client_id:
        print("FAIL: first message is not the status with our sid: %r" % (status,))
        return 1
    print("READY", flush=True)

    images = get_images(ws, expect["prompt_id"], expect["node"]).get(expect["node"], [])
    ws.close()

    frames = expect["frames"]
    if len(images) != len(frames):
        print("FAIL: got %d images, expected %d" % (len(images), len(frames)))
        return 1
    for i, (data, want) in enumerate(zip(images, frames)):
        image = Image.open(io.BytesIO(data))
        image.load()
        if image.size != (want["width"], want["height"]) or image.mode != want["mode"]:
            print("FAIL: image %d is %s %s, expected %dx%d %s"
                  % (i, image.size, image.mode, want["width"], want["height"], want["mode"]))
            return 1
        got = np.asarray(image, dtype=np.uint8).reshape(-1)
        with open(want["raw"], "rb") as f:
            expected = np.frombuffer(f.read(), dtype=np.uint8)
        if got.shape != expected.shape or not np.array_equal(got, expected):
            bad = int(np.count_nonzero(got != expected)) if got.shape == expected.shape else -1
            print("FAIL: image %d pixels differ (%d bytes differ)" % (i, bad))
            return 1
    print("OK %d images" % len(images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
