"""The node: ComfyUI's SendImageOnWebSocket(event, images), encoded by pngcast.

Three deliveries:

- ``comfyui`` (default): ComfyUI's own ``/ws`` socket, to the client that queued the prompt (or
  every client when the prompt has no client_id), exactly as ComfyUI's own image sends travel.
  A client that declared ``supports_preview_metadata`` gets a type-4 frame through ComfyUI's own
  framing path (its JSON carries ComfyUI's node keys plus ``event``, ``index``, ``count``,
  ``width``, ``height``); every other client gets a JSON ``{"type": event, "data": {...}}``
  message and then a type-1 PNG frame. The PNG is encoded once by pngcast and handed over
  as bytes; ComfyUI does not re-encode it.
- ``pngcast``: pngcast's own WebSocket server (same wire, live viewer at ``/``), started once per
  ComfyUI process on the node's ``port`` (or ``PNGCAST_PORT``, default 8189); a slow client there
  never delays the others or ComfyUI.
- ``redis``: published once to Redis pub/sub (the node's ``redis_url``, or ``PNGCAST_REDIS_URL``;
  the password may come from ``PNGCAST_REDIS_PASSWORD_FILE``) for pngcast edge servers
  (``pngcast serve --source redis://...``) to deliver to their clients: N ComfyUI workers
  publish, M edges serve. One publisher per URL and ComfyUI process; sending never waits for
  Redis (a bounded queue drops the oldest waiting image if Redis is slow or away).
"""

from __future__ import annotations

import os
import threading
import time

import pngcast

# ComfyUI modules, present when this file is loaded by ComfyUI.
import comfy.model_management  # noqa: F401  (keeps the import order ComfyUI expects)
from comfy_api import feature_flags
from server import PromptServer

try:
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context
except ImportError:  # older ComfyUI: no per-node context, fall back to the hidden inputs
    get_progress_state = None
    get_executing_context = None

TYPE_PREVIEW_IMAGE = 1
TYPE_PREVIEW_IMAGE_WITH_METADATA = 4
FORMAT_PNG = b"\x00\x00\x00\x02"

DEFAULT_PORT = 8189

# Message types ComfyUI and its clients already use: an image event under one of these names
# would be read as that message (a client waiting for `executing` with `node: null` would stop).
RESERVED_EVENTS = frozenset({
    "status", "executing", "executed", "execution_start", "execution_error", "execution_cached",
    "execution_success", "execution_interrupted", "progress", "progress_state", "progress_text",
    "feature_flags", "b_preview", "b_preview_with_metadata", "logs", "graphChanged", "promptQueued",
})

_server_lock = threading.Lock()
_servers: dict[int, "pngcast.Server"] = {}
_publishers: dict[str, "pngcast.Publisher"] = {}


def pngcast_server(port: int, compression: str = "fast", bit_depth: int = 8) -> "pngcast.Server":
    """pngcast's server on ``port``, started on first use and kept for the process (the first
    node to start it sets its compression and bit depth)."""
    with _server_lock:
        server = _servers.get(port)
        if server is None or server.closed:
            server = pngcast.Server(f"127.0.0.1:{port}", compression=compression, bit_depth=bit_depth)
            _servers[port] = server
            print(f"pngcast: serving on {server.url} ({server.ws_url})")
        return server


def redis_publisher(url: str, compression: str = "fast", bit_depth: int = 8) -> "pngcast.Publisher":
    """The publisher to ``url`` (or ``PNGCAST_REDIS_URL``), connected on first use and kept for
    the process. Redis unreachable raises ``pngcast.Error`` (an execution error for the prompt;
    the next run tries again)."""
    url = url.strip() or os.environ.get("PNGCAST_REDIS_URL", "").strip()
    if not url:
        raise ValueError("redis delivery needs the node's redis_url or the PNGCAST_REDIS_URL environment "
                         "variable (redis://HOST:PORT/?namespace=NAME)")
    with _server_lock:
        publisher = _publishers.get(url)
        if publisher is None or publisher.closed:
            password_file = os.environ.get("PNGCAST_REDIS_PASSWORD_FILE") or None
            publisher = pngcast.Publisher(url, password_file=password_file, compression=compression,
                                          bit_depth=bit_depth)
            _publishers[url] = publisher
            print(f"pngcast: publishing to {publisher!r}")
        return publisher


class EncodedPNG:
    """Stands in for a PIL image in ComfyUI's preview path: ``save`` writes our PNG bytes as they
    are (ComfyUI calls ``image.save(buffer, format="PNG", ...)`` to frame type-1/4 messages)."""

    def __init__(self, png: bytes, width: int, height: int):
        self.png = png
        self.width = width
        self.height = height
        self.size = (width, height)

    def save(self, fp, format=None, **_params):  # noqa: A002 - PIL's signature
        if format not in (None, "PNG", "png"):
            raise ValueError(f"pngcast frames are PNG, not {format}")
        fp.write(self.png)


def _node_keys(unique_id):
    """ComfyUI's preview metadata keys for the running node."""
    prompt_id = None
    node_id = unique_id
    if get_executing_context is not None:
        ctx = get_executing_context()
        if ctx is not None:
            prompt_id = ctx.prompt_id
            node_id = ctx.node_id
    if prompt_id is None:
        prompt_id = PromptServer.instance.last_prompt_id
    node_id = str(node_id) if node_id is not None else ""
    display, parent, real = node_id, None, node_id
    if get_progress_state is not None:
        dyn = getattr(get_progress_state(), "dynprompt", None)
        if dyn is not None:
            display = dyn.get_display_node_id(node_id)
            parent = dyn.get_parent_node_id(node_id)
            real = dyn.get_real_node_id(node_id)
    return {
        "node_id": node_id,
        "display_node_id": str(display),
        "prompt_id": prompt_id,
        "parent_node_id": parent,
        "real_node_id": str(real),
    }


def _check(images, mask):
    """Checks what pngcast does not (the batch, the mask) and makes the tensor CPU-readable.
    NaN is refused by pngcast itself (``nan="error"``: one parallel scan in Rust)."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be an IMAGE tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be [batch, height, width, channels], got shape {list(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch: nothing to send")
    if not 1 <= images.shape[-1] <= 4:
        raise ValueError(
            f"images has {images.shape[-1]} channels (shape {list(images.shape)}): "
            "pngcast sends 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)"
        )
    images = images.detach()
    if images.device.type != "cpu":
        images = images.cpu()
    if mask is not None:
        if mask.dim() == 2:
            mask = mask.unsqueeze(0)
        if mask.dim() != 3 or mask.shape[1:] != images.shape[1:3]:
            raise ValueError(
                f"mask shape {list(mask.shape)} does not match the images' {list(images.shape[1:3])}"
            )
        if mask.shape[0] not in (1, images.shape[0]):
            raise ValueError(f"mask batch {mask.shape[0]} does not match the images' batch {images.shape[0]}")
        if images.shape[-1] != 3:
            raise ValueError("a mask becomes alpha of RGB images; these images have "
                             f"{images.shape[-1]} channels")
        # ComfyUI's masks are 1 where transparent (LoadImage makes mask = 1 - alpha).
        alpha = (1.0 - mask.detach().cpu().to(images.dtype)).expand(images.shape[0], -1, -1)
        images = torch.cat([images, alpha.unsqueeze(-1)], dim=-1)
    return images


def _text_chunks(embed, prompt, extra_pnginfo):
    if not embed:
        return None
    import json

    text = {}
    if prompt is not None:
        text["prompt"] = json.dumps(prompt)
    if extra_pnginfo:
        for key, value in extra_pnginfo.items():
            text[key] = json.dumps(value)
    return text


def send_on_comfyui(server, pngs, event, keys, width, height):
    """Each PNG to the prompt's client (or every client), in the form it reads."""
    client_id = server.client_id
    sids = [client_id] if client_id is not None else list(server.sockets_metadata.keys())
    count = len(pngs)
    for index, png in enumerate(pngs):
        info = {"event": event, "index": index, "count": count, "width": width, "height": height}
        for sid in sids:
            if feature_flags.supports_feature(server.sockets_metadata, sid, "supports_preview_metadata"):
                metadata = dict(keys)
                metadata.update(info)
                # ComfyUI's own framing: it adds image_type and calls EncodedPNG.save.
                server.send_sync(
                    TYPE_PREVIEW_IMAGE_WITH_METADATA,
                    (["PNG", EncodedPNG(png, width, height), None], metadata),
                    sid,
                )
            else:
                data = dict(info)
                data.update({"image_type": "image/png", "bytes": len(png)})
                data.update({k: v for k, v in keys.items() if k in ("prompt_id", "node_id")})
                server.send_sync(event, data, sid)
                server.send_sync(TYPE_PREVIEW_IMAGE, FORMAT_PNG + png, sid)


class SendImageOnWebSocketPngcast:
    """Sends each image of a batch to WebSocket clients as PNG, named by an event, encoded by
    pngcast (tens of times faster than Pillow)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "event": ("STRING", {"default": "preview"}),
                "images": ("IMAGE",),
            },
            "optional": {
                "mask": ("MASK",),
                "delivery": (["comfyui", "pngcast", "redis"], {"default": "comfyui"}),
                "port": ("INT", {"default": 0, "min": 0, "max": 65535,
                                 "tooltip": "pngcast delivery: port of pngcast's server (0: PNGCAST_PORT or 8189)"}),
                "redis_url": ("STRING", {"default": "",
                                         "tooltip": "redis delivery: redis://HOST:PORT/?namespace=NAME "
                                                    "(empty: PNGCAST_REDIS_URL)"}),
                "compression": (["fast", "fastest", "compact", "stored"], {"default": "fast"}),
                "bit_depth": (["8", "16"], {"default": "8"}),
                "embed_workflow": ("BOOLEAN", {"default": False,
                                               "tooltip": "store the prompt and workflow as PNG text chunks, as SaveImage does"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ()
    FUNCTION = "send_images"
    OUTPUT_NODE = True
    CATEGORY = "api/image"
    DESCRIPTION = "Sends images to WebSocket clients as PNG frames named by an event (pngcast)."

    def send_images(self, event, images, mask=None, delivery="comfyui", port=0, redis_url="", compression="fast",
                    bit_depth="8", embed_workflow=False, prompt=None, extra_pnginfo=None, unique_id=None):
        if not isinstance(event, str) or not event:
            raise ValueError("event must be a non-empty string")
        if event in RESERVED_EVENTS:
            raise ValueError(f"event {event!r} is one of ComfyUI's own message types: pick another name")
        images = _check(images, mask)
        count, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
        text = _text_chunks(embed_workflow, prompt, extra_pnginfo)
        keys = _node_keys(unique_id)
        if delivery == "pngcast":
            port = port or int(os.environ.get("PNGCAST_PORT", DEFAULT_PORT))
            pngcast_server(port, compression, int(bit_depth)).send(
                event, images, prompt_id=keys["prompt_id"], node_id=keys["node_id"],
                display_node_id=keys["display_node_id"], text=text, layout="bhwc", nan="error",
            )
        elif delivery == "redis":
            redis_publisher(redis_url or "", compression, int(bit_depth)).send(
                event, images, prompt_id=keys["prompt_id"], node_id=keys["node_id"],
                display_node_id=keys["display_node_id"], text=text, layout="bhwc", nan="error",
            )
        elif delivery == "comfyui":
            pngs = pngcast.encode_batch(images, compression=compression, bit_depth=int(bit_depth),
                                        text=text, layout="bhwc", nan="error")
            send_on_comfyui(PromptServer.instance, pngs, event, keys, width, height)
        else:
            raise ValueError(f"delivery must be comfyui, pngcast or redis, got {delivery!r}")
        entries = [
            {"source": "websocket", "event": event, "index": i, "count": count,
             "width": width, "height": height, "delivery": delivery}
            for i in range(count)
        ]
        return {"ui": {"images": entries}}

    @classmethod
    def IS_CHANGED(cls, **_kwargs):
        # Like SaveImageWebsocket: send every time the prompt runs. (A time, not NaN: ComfyUI
        # stores the value in the prompt, which embed_workflow writes out as JSON.)
        return time.time()


NODE_CLASS_MAPPINGS = {"SendImageOnWebSocketPngcast": SendImageOnWebSocketPngcast}
NODE_DISPLAY_NAME_MAPPINGS = {"SendImageOnWebSocketPngcast": "Send Image on WebSocket (pngcast)"}
