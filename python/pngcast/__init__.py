"""pngcast: image tensors to PNG frames and ComfyUI-compatible WebSocket streams, fast.

    >>> import numpy as np, pngcast
    >>> png = pngcast.encode(np.zeros((64, 64, 3), np.float32))
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True

- :func:`encode` / :func:`encode_batch`: numpy arrays or torch CPU tensors (float32, float16,
  bfloat16, uint8; ``[B,H,W,C]``, ``[H,W,C]``, ``[B,H,W]`` masks, ``[H,W]``; contiguous or
  strided) to PNG bytes, read without copying, bit-exact with ComfyUI's
  ``np.clip(255. * x, 0, 255).astype(np.uint8)`` by default.
- :class:`Server`: pngcast's WebSocket server (ComfyUI's wire, a live viewer at ``/``) in
  background threads; ``server.send(event, images)``. ``Server(subscribe="redis://...")`` makes
  it an edge that also serves what workers publish to Redis.
- :class:`Publisher`: a worker with no port of its own: the same ``send`` publishes each frame
  once to Redis pub/sub, and every edge (``pngcast serve --source redis://...`` or
  ``Server(subscribe=...)``) delivers it to its clients.

The GIL is released while converting, encoding and sending. Bad arguments raise ``TypeError`` or
``ValueError`` naming the problem; pngcast's own failures raise :class:`Error`.
"""

from __future__ import annotations

import atexit

from ._pngcast import Error, Publisher, Server, __version__, _close_all, encode, encode_batch, simd_kernel

__all__ = ["Error", "Publisher", "Server", "encode", "encode_batch", "simd_kernel", "__version__"]

# Servers still open when the interpreter exits are closed cleanly (Close 1001 to every client
# after what was queued for it), not cut by the process ending; publishers publish what is queued.
atexit.register(_close_all)
