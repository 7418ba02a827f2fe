"""pngcast as the PNG encoder of ComfyUI's own image sends (``PNGCAST_ACCELERATE=1``).

ComfyUI frames every image it sends on its socket (SaveImageWebsocket, PNG previews) in
``PromptServer.send_image`` / ``send_image_with_metadata``, which call
``image.save(buffer, format="PNG", compress_level=1)`` on a PIL image: Pillow's zlib, ~75 ms per
megapixel. The wrappers installed here hand those methods a stand-in whose ``save`` writes the
same pixels encoded by pngcast, and leave everything else to ComfyUI: framing, metadata, which
clients get what. Images ComfyUI would resize first (``max_size``), JPEG previews and PIL modes
pngcast does not read (16-bit, palette, ...) go through Pillow as before.
"""

from __future__ import annotations

import functools

import numpy as np
import pngcast

from .nodes import EncodedPNG

# PIL modes read as [H,W] or [H,W,C] uint8 without conversion.
_MODES = {"L", "LA", "RGB", "RGBA"}

installed = False


def _accelerated(image_data):
    """``image_data`` with its PIL image replaced by pngcast's encoding, when that is exact."""
    try:
        image_type, image, max_size = image_data
    except (TypeError, ValueError):
        return image_data
    if image_type != "PNG" or max_size is not None or getattr(image, "mode", None) not in _MODES:
        return image_data
    pixels = np.asarray(image)
    png = pngcast.encode(pixels, layout="hw" if pixels.ndim == 2 else "hwc")
    return [image_type, EncodedPNG(png, image.width, image.height), max_size]


def install() -> None:
    """Wraps ``PromptServer.send_image`` and ``send_image_with_metadata`` (once)."""
    global installed
    if installed:
        return
    from server import PromptServer

    original_send_image = PromptServer.send_image
    original_with_metadata = PromptServer.send_image_with_metadata

    @functools.wraps(original_send_image)
    async def send_image(self, image_data, sid=None):
        return await original_send_image(self, _accelerated(image_data), sid=sid)

    @functools.wraps(original_with_metadata)
    async def send_image_with_metadata(self, image_data, metadata=None, sid=None):
        return await original_with_metadata(self, _accelerated(image_data), metadata, sid=sid)

    PromptServer.send_image = send_image
    PromptServer.send_image_with_metadata = send_image_with_metadata
    installed = True
    print("pngcast: ComfyUI's PNG image sends are encoded by pngcast (PNGCAST_ACCELERATE)")
