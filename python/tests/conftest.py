"""Shared helpers of the pngcast Python tests."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image


def comfy_u8(x: np.ndarray) -> np.ndarray:
    """ComfyUI's quantisation, computed by numpy itself: np.clip(255. * x, 0, 255).astype(uint8).

    NaN becomes 0 (numpy's cast of NaN is undefined; ComfyUI's images hold none, pngcast pins 0).
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(all="ignore"):
        y = np.clip(np.float32(255.0) * x, 0, 255)
    return np.where(np.isnan(y), 0, y).astype(np.uint8)


def decode(png: bytes) -> np.ndarray:
    """Decodes with Pillow (an independent decoder) into [H, W] or [H, W, C] uint8/uint16."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    img.load()
    return np.asarray(img)


def torch_or_skip():
    """torch, or a skip; with PNGCAST_REQUIRE_TORCH=1 (CI) a missing torch fails instead."""
    try:
        import torch  # noqa: PLC0415

        return torch
    except ImportError:
        if os.environ.get("PNGCAST_REQUIRE_TORCH") == "1":
            pytest.fail("torch is required here (PNGCAST_REQUIRE_TORCH=1) but cannot be imported")
        pytest.skip("torch is not installed")


def ticks_during(work) -> int:
    """How often another Python thread ran a loop step while `work()` ran on this thread.

    With the GIL held by `work` for its whole duration, the counter thread cannot run at all
    (bar a step at the start); with the GIL released it counts freely.
    """
    import threading
    import time

    ticks = 0
    stop = threading.Event()

    def count():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0)

    t = threading.Thread(target=count)
    t.start()
    try:
        time.sleep(0.05)
        before = ticks
        work()
        return ticks - before
    finally:
        stop.set()
        t.join()
