"""A real ComfyUI server for tests: unpacked from ../shared/comfyui into a temporary folder,
started on a free port with --cpu, our node pack linked into custom_nodes, stopped at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PNGCAST_SHARED", REPO.parent / "shared"))
ARCHIVE = SHARED / "comfyui" / "ComfyUI-a125cd84.tar.gz"
CORPUS = SHARED / "corpus"


def pngcast_bin() -> str:
    """The pngcast command line (PNGCAST_BIN, or target/debug or target/release), else a skip;
    under CI a missing binary fails."""
    import pytest  # noqa: PLC0415

    for p in (os.environ.get("PNGCAST_BIN"), REPO / "target" / "debug" / "pngcast", REPO / "target" / "release" / "pngcast"):
        if p and Path(p).is_file():
            return str(p)
    if os.environ.get("CI") == "true":
        pytest.fail("the pngcast binary is not built (cargo build -p pngcast)")
    pytest.skip("the pngcast binary is not built")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyUI:
    """One ComfyUI process. `python` is the interpreter of ComfyUI's venv (this test's own)."""

    def __init__(self, workdir: Path, python: str = sys.executable, env: dict | None = None):
        self.extra_env = env or {}
        self.workdir = workdir
        self.python = python
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "comfyui.log"

    def start(self, timeout: float = 120.0) -> "ComfyUI":
        if not ARCHIVE.exists():
            raise RuntimeError(f"ComfyUI archive not found at {ARCHIVE} (set PNGCAST_SHARED)")
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(self.workdir, filter="data") if sys.version_info >= (3, 12) else tar.extractall(self.workdir)
        root = self.workdir / "ComfyUI"
        self.root = root
        (root / "custom_nodes" / "pngcast").symlink_to(REPO / "comfyui", target_is_directory=True)
        (root / "custom_nodes" / "pngcast_test_fixtures").symlink_to(
            Path(__file__).resolve().parent / "fixture_nodes", target_is_directory=True
        )
        self.input_dir = self.workdir / "input"
        for d in ("input", "output", "temp", "user"):
            (self.workdir / d).mkdir()
        for name in ("photo/kodim23.png", "photo/astronaut.png", "gray/camera.png", "art/fantasy_digital_painting.png"):
            src = CORPUS / name
            if src.exists():
                shutil.copy(src, self.input_dir / src.name)
        env = dict(os.environ)
        env["PNGCAST_PORT"] = str(free_port())
        env.update(self.extra_env)
        self.pngcast_port = int(env["PNGCAST_PORT"])
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--input-directory", str(self.workdir / "input"),
             "--output-directory", str(self.workdir / "output"),
             "--temp-directory", str(self.workdir / "temp"),
             "--user-directory", str(self.workdir / "user"),
             "--disable-auto-launch", "--dont-print-server"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.addr}/object_info/SendImageOnWebSocketPngcast", timeout=2) as r:
                    info = json.loads(r.read())
                    if "SendImageOnWebSocketPngcast" not in info:
                        raise RuntimeError(f"our node did not load:\n{self.tail()}")
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.25)
        raise RuntimeError(f"ComfyUI did not start within {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def queue(self, prompt: dict, client_id: str | None) -> str:
        body = {"prompt": prompt}
        if client_id is not None:
            body["client_id"] = client_id
        req = urllib.request.Request(
            f"http://{self.addr}/prompt", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())["prompt_id"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"/prompt refused: {e.code} {e.read()[:2000]!r}") from None

    def history(self, prompt_id: str) -> dict:
        with urllib.request.urlopen(f"http://{self.addr}/history/{prompt_id}", timeout=30) as r:
            return json.loads(r.read()).get(prompt_id, {})

    def wait_done(self, prompt_id: str, timeout: float = 120.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            h = self.history(prompt_id)
            if h.get("status", {}).get("completed") is not None and h["status"].get("status_str") in ("success", "error"):
                return h
            time.sleep(0.05)
        raise TimeoutError(f"prompt {prompt_id} did not finish:\n{self.tail()}")


def new_client_id() -> str:
    return uuid.uuid4().hex


# ------------------------------------------------------------------------------- workflows


def load_image(name: str, repeat: int = 1) -> dict:
    """LoadImage(name) -> RepeatImageBatch(repeat): node "2" outputs the batch."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": repeat}},
    }


def empty_image(width: int, height: int, batch: int, color: int) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "RepeatImageBatch", "inputs": {"image": ["1", 0], "amount": batch}},
    }


def with_ours(graph: dict, event: str, delivery: str = "comfyui", port: int = 0, **extra) -> dict:
    g = dict(graph)
    inputs = {"event": event, "images": ["2", 0], "delivery": delivery, "port": port}
    inputs.update(extra)
    g["9"] = {"class_type": "SendImageOnWebSocketPngcast", "inputs": inputs}
    return g


def with_seed(graph: dict) -> dict:
    g = dict(graph)
    g["8"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["2", 0]}}
    return g
