"""Type stubs of pngcast's native module."""

import os
from typing import Any, Iterable, Literal, Mapping, Optional, Sequence, Tuple, Union

Compression = str  # "fast", "fastest", "stored", "compact", "compact=N" (N in 1..9)
Layout = Literal["auto", "bhwc", "hwc", "bhw", "hw", "bchw", "chw"]
Text = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]

__version__: str

class Error(Exception):
    """pngcast's own failures (an internal error instead of a crash; a server-side refusal)."""

def encode(
    image: Any,
    *,
    compression: Compression = "fast",
    quantize: Literal["truncate", "round"] = "truncate",
    bit_depth: Literal[8, 16] = 8,
    text: Text = None,
    threads: Optional[int] = None,
    layout: Optional[Layout] = None,
    nan: Literal["zero", "error"] = "zero",
) -> bytes:
    """Encodes one image to PNG.

    ``image``: a numpy array or a CPU torch tensor (float32, float16, bfloat16 or uint8), read
    without copying; ``[H,W,C]`` (C in 1..4), ``[H,W]``, or a batch of one. Floats are quantised
    as ComfyUI does, ``np.clip(255. * x, 0, 255).astype(np.uint8)`` (NaN -> 0 unless
    ``nan="error"``); ``quantize="round"`` rounds instead; ``bit_depth=16`` writes 16-bit samples.
    ``text``: text chunks (tEXt; iTXt for values outside Latin-1). ``threads``: encoder threads (``None``: one per core).
    ``layout``: how to read the axes (``auto``: 4-D is ``[B,H,W,C]``; 3-D is ``[H,W,C]`` when the
    last axis is 1..4, else ``[B,H,W]`` masks; ``bchw``/``chw`` read channels-first data in place).
    The GIL is released while converting and encoding.

    Raises TypeError (not an array or tensor; bad ``text``), ValueError (dtype, shape, channels,
    empty, device, option values, NaN with ``nan="error"``), Error (internal failure).
    """

def encode_batch(
    images: Any,
    *,
    compression: Compression = "fast",
    quantize: Literal["truncate", "round"] = "truncate",
    bit_depth: Literal[8, 16] = 8,
    text: Text = None,
    threads: Optional[int] = None,
    layout: Optional[Layout] = None,
    nan: Literal["zero", "error"] = "zero",
) -> list[bytes]:
    """Encodes every image of a batch ``[B,H,W,C]`` (or ``[B,H,W]`` masks, or a list/tuple of
    images) to PNG, in order. Same options as :func:`encode`."""

def simd_kernel() -> str:
    """The conversion kernel this CPU uses (``"avx512"``, ``"avx2"``, ``"sse4.1"``, ``"neon"``, ``"scalar"``)."""

def _close_all() -> None: ...

class Server:
    """pngcast's WebSocket server (ComfyUI's wire, a live viewer at ``/``) in background threads."""

    def __init__(
        self,
        addr: str = "127.0.0.1:8189",
        *,
        transport: Literal["mio", "blocking"] = "mio",
        token: Optional[str] = None,
        policy: Literal["latest-wins", "reliable"] = "latest-wins",
        allowed_origins: Sequence[str] = (),
        allowed_hosts: Sequence[str] = (),
        compression: Compression = "fast",
        quantize: Literal["truncate", "round"] = "truncate",
        bit_depth: Literal[8, 16] = 8,
        threads: Optional[int] = None,
        max_clients: Optional[int] = None,
        queue_bytes: Optional[int] = None,
        announce: bool = True,
        insecure: bool = False,
        layout: Optional[Layout] = None,
        subscribe: Optional[str] = None,
        redis_password_file: Union[str, "os.PathLike[str]", None] = None,
        redis_retry: bool = False,
    ) -> None:
        """``subscribe="redis://[user:pass@]HOST:PORT/?namespace=NS"`` also serves what
        publishers send on namespace ``NS`` (an edge); Redis unreachable raises :class:`Error`
        unless ``redis_retry=True``."""
    def send(
        self,
        event: str,
        images: Any,
        *,
        client_id: Optional[str] = None,
        prompt_id: Optional[str] = None,
        node_id: Optional[str] = None,
        display_node_id: Optional[str] = None,
        parent_node_id: Optional[str] = None,
        real_node_id: Optional[str] = None,
        text: Text = None,
        layout: Optional[Layout] = None,
        nan: Literal["zero", "error"] = "zero",
    ) -> dict[str, int]:
        """Converts, encodes and queues each image for every client (or ``client_id``); returns
        ``{"frames": n, "png_bytes": n}``. Raises ValueError once the server is closed."""
    def send_json(self, event: str, data: Any, *, client_id: Optional[str] = None) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def edge_stats(self) -> Optional[dict[str, int]]:
        """With ``subscribe=``: the Redis subscriber's counters (``received``, ``delivered``,
        ``resynced``, ``garbage``, ``subscribes``, ``disconnects``, ``connected``...)."""
    @property
    def url(self) -> str:
        """The viewer, ``http://HOST:PORT/``."""
    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/ws``."""
    @property
    def address(self) -> Tuple[str, int]: ...
    @property
    def transport(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self, timeout: Optional[float] = None) -> None:
        """Close 1001 to every client after what was queued for it; idempotent."""
    def __enter__(self) -> "Server": ...
    def __exit__(self, *args: object) -> bool: ...

class Publisher:
    """Publishes frames to Redis pub/sub for pngcast edges; no WebSocket port of its own."""

    def __init__(
        self,
        url: str,
        *,
        password_file: Union[str, "os.PathLike[str]", None] = None,
        retry: bool = False,
        timeout: float = 2.0,
        queue_len: int = 64,
        max_frame_bytes: int = 64 << 20,
        latest_ttl: float = 60.0,
        policy: Literal["latest-wins", "reliable"] = "latest-wins",
        compression: Compression = "fast",
        quantize: Literal["truncate", "round"] = "truncate",
        bit_depth: Literal[8, 16] = 8,
        threads: Optional[int] = None,
        announce: bool = True,
        layout: Optional[Layout] = None,
    ) -> None:
        """Connects to ``url`` (``redis://[user:pass@]HOST:PORT[/DB]/?namespace=NS``); Redis
        unreachable raises :class:`Error` within ``timeout`` unless ``retry=True``."""
    def send(
        self,
        event: str,
        images: Any,
        *,
        client_id: Optional[str] = None,
        prompt_id: Optional[str] = None,
        node_id: Optional[str] = None,
        display_node_id: Optional[str] = None,
        parent_node_id: Optional[str] = None,
        real_node_id: Optional[str] = None,
        text: Text = None,
        layout: Optional[Layout] = None,
        nan: Literal["zero", "error"] = "zero",
    ) -> dict[str, int]:
        """As ``Server.send``; queues for publishing and returns at once."""
    def send_json(self, event: str, data: Any, *, client_id: Optional[str] = None) -> None: ...
    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until the queue is empty (at most ``timeout`` seconds)."""
    def stats(self) -> dict[str, int]:
        """``queued``, ``published``, ``dropped``, ``failed``, ``too_large``, ``connects``,
        ``receivers``, ``connected``."""
    @property
    def namespace(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self, timeout: Optional[float] = None) -> None:
        """Publishes what is queued (at most ``timeout`` seconds, default 2), then stops."""
    def __enter__(self) -> "Publisher": ...
    def __exit__(self, *args: object) -> bool: ...
