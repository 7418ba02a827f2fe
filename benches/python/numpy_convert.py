#!/usr/bin/env python3
"""ComfyUI's conversion, timed on the input of benches/benches/convert.rs: a 1024 x 1024 x 3
float32 image in [-0.05, 1.05] -> np.clip(255. * x, 0, 255).astype(np.uint8).

Prints the median, min and max of repeated runs in ms (and MP/s), one thread as numpy runs it.
Needs numpy (`python3 -m pip install numpy`). Run: python3 benches/python/numpy_convert.py
"""
import statistics
import sys
import time

import numpy as np

H, W, C = 1024, 1024, 3
REPEATS = 200


def main() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((H, W, C), dtype=np.float32) * 1.1 - 0.05).astype(np.float32)
    # Warm-up (allocator, page faults), then time each call.
    for _ in range(10):
        np.clip(255.0 * x, 0, 255).astype(np.uint8)
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        np.clip(255.0 * x, 0, 255).astype(np.uint8)
        times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    print(
        f"numpy {np.__version__} clip(255*x).astype(uint8) {H}x{W}x{C} f32: "
        f"median {med:.3f} ms (min {min(times):.3f}, max {max(times):.3f}; {REPEATS} runs), "
        f"{H * W / med / 1e3:.0f} MP/s"
    )


if __name__ == "__main__":
    sys.exit(main())
