"""pngcast's ComfyUI node pack: "Send Image on WebSocket (pngcast)".

Copy or symlink this folder into ``ComfyUI/custom_nodes/`` and install the ``pngcast`` Python
package into ComfyUI's Python (see README.md).
"""

import os

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

# PNGCAST_ACCELERATE=1: ComfyUI's own PNG image sends (SaveImageWebsocket, PNG previews) are
# encoded by pngcast instead of Pillow, so existing workflows gain without edits.
if os.environ.get("PNGCAST_ACCELERATE", "").strip().lower() in ("1", "true", "yes", "on"):
    from .accelerate import install as _install_acceleration

    _install_acceleration()
