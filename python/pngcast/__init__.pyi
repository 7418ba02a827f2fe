from ._pngcast import Error as Error
from ._pngcast import Publisher as Publisher
from ._pngcast import Server as Server
from ._pngcast import __version__ as __version__
from ._pngcast import encode as encode
from ._pngcast import encode_batch as encode_batch
from ._pngcast import simd_kernel as simd_kernel

__all__ = ["Error", "Publisher", "Server", "encode", "encode_batch", "simd_kernel", "__version__"]
