"""A real redis-server for tests: started on a free loopback port in a temporary folder, without
persistence, stopped (killed) at the end. Missing redis-server skips the test, except under CI
(``CI`` set), where it fails. Also used by the ComfyUI tests (tests/comfyui)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_or_skip() -> str:
    """The redis-server executable, or a pytest skip (a failure under CI)."""
    import pytest  # noqa: PLC0415

    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (CI installs the redis-server package)")
        pytest.skip("redis-server is not installed")
    return exe


class RedisServer:
    def __init__(self, exe: str, *extra: str):
        self.exe = exe
        self.extra = list(extra)
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pngcast-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"

    def ns_url(self, namespace: str) -> str:
        return f"redis://127.0.0.1:{self.port}/?namespace={namespace}"

    def start(self, timeout: float = 20.0) -> "RedisServer":
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        """True when something on the port answers PING (or asks for a password)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                reply = s.recv(64)
                return reply.startswith(b"+PONG") or b"NOAUTH" in reply
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
