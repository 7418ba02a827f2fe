"""pngcast.Server with real WebSocket clients (websocket-client, as ComfyUI's example script)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import websocket  # websocket-client

import pngcast
from conftest import comfy_u8, decode, ticks_during

RNG = np.random.default_rng(99)


def connect(server, client_id=None, flags=False, **kw):
    url = server.ws_url + (f"?clientId={client_id}" if client_id else "")
    ws = websocket.create_connection(url, timeout=10, **kw)
    status = json.loads(ws.recv())
    assert status["type"] == "status"
    if flags:
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        reply = json.loads(ws.recv())
        assert reply["type"] == "feature_flags"
    return ws, status["data"]["sid"]


def recv_images(ws, n):
    """ComfyUI's example-script logic: skip text, keep out[8:] of binary messages."""
    images, texts = [], []
    while len(images) < n:
        out = ws.recv()
        if isinstance(out, str):
            texts.append(json.loads(out))
        else:
            images.append(out)
    return images, texts


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.mark.parametrize("transport", ["mio", "blocking"])
def test_send_to_legacy_and_metadata_clients(transport):
    with pngcast.Server("127.0.0.1:0", transport=transport) as server:
        assert server.url.startswith("http://127.0.0.1:")
        legacy, _ = connect(server)
        meta, _ = connect(server, flags=True)
        assert wait_for(lambda: server.stats()["clients"] == 2)
        x = RNG.random((3, 32, 48, 3), dtype=np.float32)
        report = server.send("preview", x, prompt_id="p1", node_id="9")
        assert report["frames"] == 3
        frames, texts = recv_images(legacy, 3)
        for i, out in enumerate(frames):
            assert out[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"
            assert np.array_equal(decode(out[8:]), comfy_u8(x[i]))
        assert [t["data"]["index"] for t in texts] == [0, 1, 2]
        assert all(t["type"] == "preview" for t in texts)
        frames, _ = recv_images(meta, 3)
        for i, out in enumerate(frames):
            kind, jlen = struct.unpack(">II", out[:8])
            assert kind == 4
            j = json.loads(out[8 : 8 + jlen])
            assert j["event"] == "preview" and j["index"] == i and j["count"] == 3
            assert j["prompt_id"] == "p1" and j["node_id"] == "9"
            assert (j["width"], j["height"]) == (48, 32)
            assert np.array_equal(decode(out[8 + jlen :]), comfy_u8(x[i]))
        legacy.close()
        meta.close()


def test_targeted_send_and_json():
    with pngcast.Server("127.0.0.1:0") as server:
        a, _ = connect(server, client_id="alice")
        b, _ = connect(server, client_id="bob")
        assert wait_for(lambda: server.stats()["clients"] == 2)
        x = RNG.random((16, 16, 3), dtype=np.float32)
        server.send("only-bob", x, client_id="bob")
        server.send_json("progress", {"value": 1, "max": 2}, client_id="alice")
        frames, texts = recv_images(b, 1)
        assert texts[0]["type"] == "only-bob"
        msg = json.loads(a.recv())
        assert msg == {"type": "progress", "data": {"value": 1, "max": 2}}
        a.settimeout(0.3)
        with pytest.raises(websocket.WebSocketTimeoutException):
            a.recv()
        with pytest.raises(TypeError):
            server.send_json("x", object())


def test_close_sends_1001_and_refuses_sends():
    server = pngcast.Server("127.0.0.1:0")
    ws, _ = connect(server)
    assert wait_for(lambda: server.stats()["clients"] == 1)
    x = RNG.random((2, 8, 8, 3), dtype=np.float32)
    server.send("preview", x)
    server.close()
    # Everything queued before close() arrives, then Close 1001.
    frames, _ = recv_images(ws, 2)
    assert len(frames) == 2
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            ws.recv()
    assert server.closed
    with pytest.raises(ValueError, match="closed"):
        server.send("preview", x)
    with pytest.raises(ValueError, match="closed"):
        server.stats()
    server.close()  # idempotent


def test_close_code_1001_seen_by_client():
    server = pngcast.Server("127.0.0.1:0")
    ws, _ = connect(server)
    assert wait_for(lambda: server.stats()["clients"] == 1)
    server.close()
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert struct.unpack(">H", data[:2])[0] == 1001


def test_interpreter_exit_closes_with_1001(tmp_path):
    """A script that starts a Server and exits without closing it: its client still gets every
    queued frame and Close 1001 (atexit), not a reset."""
    script = tmp_path / "serve.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time, numpy as np, pngcast
            s = pngcast.Server("127.0.0.1:0")
            print(s.address[1], flush=True)
            while s.stats()["clients"] < 1:
                time.sleep(0.01)
            s.send("preview", np.zeros((3, 64, 64, 3), np.float32))
            # exit without close()
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10)
        json.loads(ws.recv())
        frames = 0
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_BINARY:
                frames += 1
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                assert struct.unpack(">H", data[:2])[0] == 1001
                break
        assert frames == 3
    finally:
        assert proc.wait(timeout=20) == 0


def test_stalled_client_does_not_delay_others():
    with pngcast.Server("127.0.0.1:0", queue_bytes=1 << 20) as server:
        stalled = websocket.create_connection(server.ws_url, timeout=10)  # never reads
        good, _ = connect(server)
        assert wait_for(lambda: server.stats()["clients"] == 2)
        x = RNG.random((256, 256, 3), dtype=np.float32)
        for _ in range(40):
            server.send("preview", x)
            recv_images(good, 1)
        assert server.stats()["frames_dropped"] > 0
        stalled.close()


def test_server_bad_arguments():
    with pytest.raises(ValueError, match="transport"):
        pngcast.Server("127.0.0.1:0", transport="tokio")
    with pytest.raises(ValueError, match="policy"):
        pngcast.Server("127.0.0.1:0", policy="oldest")
    with pytest.raises(ValueError, match="addr"):
        pngcast.Server("no port here")
    with pytest.raises(ValueError, match="loopback"):
        pngcast.Server("0.0.0.0:0")
    with pytest.raises(ValueError, match="token"):
        pngcast.Server("127.0.0.1:0", token="has space")
    with pytest.raises(ValueError, match="compression"):
        pngcast.Server("127.0.0.1:0", compression="zip")
    with pngcast.Server("127.0.0.1:0") as s:
        with pytest.raises(OSError, match="in use"):
            pngcast.Server(f"127.0.0.1:{s.address[1]}")
        with pytest.raises(ValueError, match="channel"):
            s.send("preview", np.zeros((1, 4, 4, 7), np.float32))
        with pytest.raises(ValueError, match="event"):
            s.send("", np.zeros((4, 4, 3), np.float32))
        with pytest.raises(TypeError):
            s.send("preview", "not an image")
        # The server still works after bad input.
        ws, _ = connect(s)
        assert wait_for(lambda: s.stats()["clients"] == 1)
        s.send("preview", np.zeros((4, 4, 3), np.float32))
        frames, _ = recv_images(ws, 1)
        assert len(frames) == 1


def test_token_required():
    with pngcast.Server("127.0.0.1:0", token="s3cret") as s:
        assert "s3cret" not in repr(s)
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            websocket.create_connection(s.ws_url, timeout=5)
        assert info.value.status_code == 401
        ws = websocket.create_connection(s.ws_url + "?token=s3cret", timeout=5)
        assert json.loads(ws.recv())["type"] == "status"
        ws.close()


def test_gil_released_while_sending():
    with pngcast.Server("127.0.0.1:0", threads=1, compression="compact=6") as server:
        x = RNG.random((1, 1536, 1536, 3), dtype=np.float32)

        def work():
            for _ in range(2):
                server.send("preview", x)

        during = ticks_during(work)
        assert during > 100, during


def raw_status(server, host: str) -> int:
    import socket

    s = socket.create_connection(("127.0.0.1", server.address[1]), timeout=10)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(1024)
        if not chunk:
            break
        head += chunk
    s.close()
    return int(head.split()[1])


def test_dns_rebinding_host_refused_by_default():
    with pngcast.Server("127.0.0.1:0") as s:
        assert raw_status(s, "rebind.example:8189") == 421
        assert raw_status(s, f"localhost:{s.address[1]}") == 200
        assert raw_status(s, "127.0.0.1") == 200
    with pngcast.Server("127.0.0.1:0", allowed_hosts=["studio.lan"]) as s:
        assert raw_status(s, "studio.lan:8189") == 200
        assert raw_status(s, "rebind.example") == 421
