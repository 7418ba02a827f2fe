"""pngcast.Publisher and Server(subscribe=...) through a real redis-server: the frames a worker
publishes reach the WebSocket clients of every edge byte for byte, and Redis being down or
restarting gives clear errors or a recovery, never a hang or a crash."""

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
from conftest import comfy_u8, decode
from redis_server import RedisServer, free_port, redis_server_or_skip
from test_server import connect, recv_images, wait_for

RNG = np.random.default_rng(1717)


@pytest.fixture
def redis():
    server = RedisServer(redis_server_or_skip()).start()
    try:
        yield server
    finally:
        server.close()


def edge(url: str, **kw) -> pngcast.Server:
    """An edge: a local server fed by Redis; returns once it is subscribed."""
    server = pngcast.Server("127.0.0.1:0", subscribe=url, **kw)
    assert wait_for(lambda: server.edge_stats()["subscribes"] >= 1)
    return server


@pytest.mark.parametrize("transport", ["mio", "blocking"])
def test_frames_reach_every_edge_byte_for_byte(redis, transport):
    url = redis.ns_url("studio")
    with edge(url, transport=transport) as e1, edge(url) as e2, pngcast.Publisher(url) as pub:
        assert pub.namespace == "studio" and pub.channel == "pngcast:studio:frames"
        legacy, _ = connect(e1)
        meta, _ = connect(e2, flags=True)
        assert wait_for(lambda: e1.stats()["clients"] == 1 and e2.stats()["clients"] == 1)
        x = RNG.random((3, 40, 56, 3), dtype=np.float32)
        report = pub.send("preview", x, prompt_id="p1", node_id="9", display_node_id="9")
        assert report["frames"] == 3
        assert pub.flush(10)
        want = pngcast.encode_batch(x)  # the same options: the bytes a local server would send
        frames, texts = recv_images(legacy, 3)
        assert [t["type"] for t in texts] == ["preview"] * 3
        assert [t["data"]["index"] for t in texts] == [0, 1, 2]
        for i, out in enumerate(frames):
            assert out[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"
            assert out[8:] == want[i]
            assert np.array_equal(decode(out[8:]), comfy_u8(x[i]))
        frames, _ = recv_images(meta, 3)
        for i, out in enumerate(frames):
            kind, jlen = struct.unpack(">II", out[:8])
            assert kind == 4
            j = json.loads(out[8 : 8 + jlen])
            assert (j["event"], j["index"], j["count"]) == ("preview", i, 3)
            assert j["prompt_id"] == "p1" and j["node_id"] == "9" and j["display_node_id"] == "9"
            assert (j["width"], j["height"]) == (56, 40)
            assert out[8 + jlen :] == want[i]
        s = pub.stats()
        assert s["published"] == 3 and s["connected"] and s["dropped"] == s["failed"] == 0
        assert s["receivers"] == 6  # two edges got each of the three frames
        assert e1.edge_stats()["delivered"] == 3 and e1.edge_stats()["garbage"] == 0
        legacy.close()
        meta.close()


def test_namespaces_are_separate_and_client_id_reaches_its_edge(redis):
    with edge(redis.ns_url("a")) as ea, edge(redis.ns_url("a")) as eb, edge(redis.ns_url("other")) as eo, \
            pngcast.Publisher(redis.ns_url("a")) as pub:
        alice, _ = connect(ea, client_id="alice")
        bob, _ = connect(eb, client_id="bob")
        other, _ = connect(eo)
        assert wait_for(lambda: all(s.stats()["clients"] == 1 for s in (ea, eb, eo)))
        x = RNG.random((24, 24, 4), dtype=np.float32)
        pub.send("for-bob", x, client_id="bob")
        pub.send_json("progress", {"value": 3, "max": 4}, client_id="alice")
        frames, texts = recv_images(bob, 1)
        assert texts[0]["type"] == "for-bob"
        assert np.array_equal(decode(frames[0][8:]), comfy_u8(x))
        assert json.loads(alice.recv()) == {"type": "progress", "data": {"value": 3, "max": 4}}
        for ws in (alice, other):
            ws.settimeout(0.3)
            with pytest.raises(websocket.WebSocketTimeoutException):
                ws.recv()
        for ws in (alice, bob, other):
            ws.close()


def test_redis_down_at_start_is_a_clear_error_not_a_hang():
    url = f"redis://127.0.0.1:{free_port()}/"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(pngcast.Error, match=r"cannot reach Redis at 127\.0\.0\.1:\d+"):
        pngcast.Publisher(url)
    with pytest.raises(pngcast.Error, match="cannot reach Redis"):
        pngcast.Server("127.0.0.1:0", subscribe=url)
    assert time.monotonic() - t0 < 10
    # retry=True: starts, queues, never blocks; close() ends the retrying thread promptly.
    pub = pngcast.Publisher(url, retry=True, timeout=0.5)
    pub.send("preview", np.zeros((2, 4, 4, 3), np.float32))
    assert not pub.flush(0.3)
    assert not pub.stats()["connected"]
    t0 = time.monotonic()
    pub.close()
    assert time.monotonic() - t0 < 5
    assert "cannot reach" not in repr(pub)


def test_retry_starts_without_redis_and_delivers_once_it_is_up(redis):
    url = redis.url
    redis.stop()
    with pngcast.Publisher(url, retry=True) as pub, \
            pngcast.Server("127.0.0.1:0", subscribe=url, redis_retry=True) as e:
        assert not pub.stats()["connected"] and not e.edge_stats()["connected"]
        ws, _ = connect(e)
        redis.start()
        assert wait_for(lambda: e.edge_stats()["connected"], 20)
        x = RNG.random((2, 16, 16, 3), dtype=np.float32)
        # Frames queued while Redis was away may be lost (pub/sub keeps nothing): send until one arrives.
        ws.settimeout(0.5)
        got = None
        end = time.monotonic() + 20
        while got is None and time.monotonic() < end:
            pub.send("late", x[:1])
            try:
                while got is None:
                    out = ws.recv()
                    if isinstance(out, bytes):
                        got = out
            except websocket.WebSocketTimeoutException:
                pass
        assert got is not None and np.array_equal(decode(got[8:]), comfy_u8(x[0]))
        ws.close()


def test_redis_restart_mid_stream_resumes(redis):
    url = redis.url
    with edge(url) as e, pngcast.Publisher(url) as pub:
        ws, _ = connect(e)
        assert wait_for(lambda: e.stats()["clients"] == 1)
        x = RNG.random((8, 8, 3), dtype=np.float32)
        pub.send("before", x)
        recv_images(ws, 1)
        redis.restart()
        ws.settimeout(0.5)
        got = None
        end = time.monotonic() + 30
        while got is None and time.monotonic() < end:
            pub.send("after", x)  # never blocks, whatever Redis does
            try:
                while got is None:
                    out = ws.recv()
                    if isinstance(out, bytes):
                        got = out
            except websocket.WebSocketTimeoutException:
                pass
        assert got is not None, (pub.stats(), e.edge_stats())
        assert e.edge_stats()["subscribes"] >= 2
        assert pub.stats()["connects"] >= 2
        ws.close()


@pytest.fixture
def redis_with_password():
    server = RedisServer(redis_server_or_skip(), "--requirepass", "s3cret-pw").start()
    try:
        yield server
    finally:
        server.close()


def test_password_from_file_and_wrong_password(redis_with_password, tmp_path):
    r = redis_with_password
    with pytest.raises(pngcast.Error) as info:
        pngcast.Publisher(f"redis://:wrong-pw@127.0.0.1:{r.port}/")
    assert "wrong-pw" not in str(info.value) and "cannot reach Redis" in str(info.value)
    with pytest.raises(pngcast.Error):
        pngcast.Publisher(r.url)  # no password at all
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pw\n")
    with edge(r.url, redis_password_file=str(pw)) as e, \
            pngcast.Publisher(r.url, password_file=pw) as pub:
        assert "s3cret" not in repr(pub)
        ws, _ = connect(e)
        assert wait_for(lambda: e.stats()["clients"] == 1)
        pub.send("pw", np.zeros((4, 4, 3), np.float32))
        frames, _ = recv_images(ws, 1)
        assert np.array_equal(decode(frames[0][8:]), np.zeros((4, 4, 3), np.uint8))
        ws.close()
    with pytest.raises(OSError, match="password file"):
        pngcast.Publisher(r.url, password_file=tmp_path / "missing")


def test_bad_input_raises_typed_errors_and_never_panics(redis):
    with pytest.raises(ValueError, match="url"):
        pngcast.Publisher("http://127.0.0.1:1/")
    with pytest.raises(ValueError, match="namespace"):
        pngcast.Publisher(redis.url + "?namespace=a:b")
    with pytest.raises(ValueError, match="policy"):
        pngcast.Publisher(redis.url, policy="oldest")
    with pytest.raises(ValueError, match="timeout"):
        pngcast.Publisher(redis.url, timeout=0)
    with pytest.raises(ValueError, match="queue_len"):
        pngcast.Publisher(redis.url, queue_len=0)
    with pytest.raises(ValueError, match="compression"):
        pngcast.Publisher(redis.url, compression="zip")
    with pytest.raises(ValueError, match="subscribe"):
        pngcast.Server("127.0.0.1:0", subscribe="nope://x")
    with pytest.raises(ValueError, match="redis_password_file"):
        pngcast.Server("127.0.0.1:0", redis_password_file="pw")
    with pngcast.Publisher(redis.url, max_frame_bytes=1000, compression="stored") as pub:
        assert pngcast.Server("127.0.0.1:0").edge_stats() is None
        with pytest.raises(ValueError, match="channel"):
            pub.send("preview", np.zeros((1, 4, 4, 7), np.float32))
        with pytest.raises(ValueError, match="event"):
            pub.send("", np.zeros((4, 4, 3), np.float32))
        with pytest.raises(TypeError):
            pub.send("preview", "not an image")
        with pytest.raises(ValueError, match="NaN"):
            pub.send("preview", np.full((4, 4, 3), np.nan, np.float32), nan="error")
        with pytest.raises(TypeError):
            pub.send_json("x", object())
        # Too large for max_frame_bytes: refused, counted; smaller frames still go.
        with pytest.raises(pngcast.Error, match="max_frame_bytes"):
            pub.send("big", np.zeros((64, 64, 3), np.float32))
        pub.send("small", np.zeros((4, 4, 3), np.float32))
        assert pub.flush(10)
        s = pub.stats()
        assert s["too_large"] == 1 and s["published"] == 1
    assert pub.closed
    with pytest.raises(ValueError, match="closed"):
        pub.send("preview", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="closed"):
        pub.stats()
    pub.close()  # idempotent


def test_interpreter_exit_publishes_what_is_queued(redis, tmp_path):
    """A worker script that sends and exits without close(): its frames still reach the edge."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import numpy as np, pngcast
            p = pngcast.Publisher({redis.url!r})
            p.send("preview", np.full((3, 32, 32, 3), 0.5, np.float32))
            # exit without close()
            """
        )
    )
    with edge(redis.url) as e:
        ws, _ = connect(e)
        assert wait_for(lambda: e.stats()["clients"] == 1)
        assert subprocess.run([sys.executable, str(script)], timeout=60).returncode == 0
        frames, _ = recv_images(ws, 3)
        for out in frames:
            assert np.array_equal(decode(out[8:]), np.full((32, 32, 3), 127, np.uint8))
        ws.close()
