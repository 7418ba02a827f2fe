#!/usr/bin/env python3
"""A real client built on Python `websockets` (sync API) that declares supports_preview_metadata.

It connects to ws://SERVER/ws?clientId=ID, reads the status message, sends
{"type": "feature_flags", "data": {"supports_preview_metadata": true}}, waits for the server's
feature_flags answer, prints READY, then collects binary frames until `executing` says node None
for the expected prompt. Every binary frame must be type 4: u32 BE 4, u32 BE len(J), J (UTF-8
JSON), PNG. J must hold event, index, count, width, height and image_type "image/png"; the PNG
is decoded with Pillow and compared pixel for pixel with the raw file of the expectation JSON.

Usage: metadata_client.py --server 127.0.0.1:PORT --client-id ID --expect expect.json
expect.json: {"prompt_id": "...", "event": "preview", "frames": [{"width": W, "height": H,
              "mode": "RGB", "raw": "/path", "index": I, "count": N}, ...]}
"""
import argparse
import io
import json
import struct
import sys

import numpy as np
from PIL import Image
from websockets.sync.client import connect


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--expect", required=True)
    args = ap.parse_args()
    with open(args.expect) as f:
        expect = json.load(f)

    # max_size=None: websockets caps messages at 1 MiB by default (protocol.md section 4).
    with connect("ws://{}/ws?clientId={}".format(args.server, args.client_id),
                 max_size=None, open_timeout=30) as ws:
        status = json.loads(ws.recv(timeout=30))
        if status.get("type") != "status" or status["data"].get("sid") != args.client_id:
            print("FAIL: first message is not the status with our sid: %r" % (status,))
            return 1
        ws.send(json.dumps({"type": "feature_flags",
                            "data": {"supports_preview_metadata": True}}))
        while True:
            msg = ws.recv(timeout=30)
            if isinstance(msg, str) and json.loads(msg).get("type") == "feature_flags":
                flags = json.loads(msg)["data"]
                if flags.get("supports_preview_metadata") is not True:
                    print("FAIL: server flags %r" % (flags,))
                    return 1
                break
        print("READY", flush=True)

        frames = []
        while True:
            msg = ws.recv(timeout=60)
            if isinstance(msg, str):
                message = json.loads(msg)
                if message["type"] == "executing" and message["data"]["prompt_id"] == expect["prompt_id"] \
                        and message["data"]["node"] is None:
                    break
                continue
            frames.append(msg)

    want_frames = expect["frames"]
    if len(frames) != len(want_frames):
        print("FAIL: got %d binary frames, expected %d" % (len(frames), len(want_frames)))
        return 1
    for i, (data, want) in enumerate(zip(frames, want_frames)):
        if len(data) < 8:
            print("FAIL: frame %d is %d bytes" % (i, len(data)))
            return 1
        kind, jlen = struct.unpack(">II", data[:8])
        if kind != 4:
            print("FAIL: frame %d has type %d, expected 4" % (i, kind))
            return 1
        meta = json.loads(data[8:8 + jlen].decode("utf-8"))
        png = data[8 + jlen:]
        for key, value in (("event", expect["event"]), ("index", want["index"]),
                           ("count", want["count"]), ("width", want["width"]),
                           ("height", want["height"]), ("image_type", "image/png")):
            if meta.get(key) != value:
                print("FAIL: frame %d metadata %s=%r, expected %r" % (i, key, meta.get(key), value))
                return 1
        image = Image.open(io.BytesIO(png))
        image.load()
        if image.size != (want["width"], want["height"]) or image.mode != want["mode"]:
            print("FAIL: image %d is %s %s" % (i, image.size, image.mode))
            return 1
        got = np.asarray(image, dtype=np.uint8).reshape(-1)
        with open(want["raw"], "rb") as f:
            expected = np.frombuffer(f.read(), dtype=np.uint8)
        if got.shape != expected.shape or not np.array_equal(got, expected):
            print("FAIL: image %d pixels differ" % i)
            return 1
    print("OK %d type-4 frames" % len(frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
