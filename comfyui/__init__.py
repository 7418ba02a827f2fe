"""pngcast's ComfyUI node pack: "Send Image on WebSocket (pngcast)".

Copy or symlink this folder into ``ComfyUI/custom_nodes/`` and install the ``pngcast`` Python
package into ComfyUI's Python (see README.md).
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
