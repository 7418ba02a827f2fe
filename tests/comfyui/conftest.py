import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comfy import ComfyUI  # noqa: E402


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    server = ComfyUI(tmp_path_factory.mktemp("comfyui")).start()
    try:
        yield server
    finally:
        server.stop()
