"""`pngcast recv` against the real ComfyUI: its metadata is recorded exactly as ComfyUI sent it."""

from __future__ import annotations

import json
import subprocess
import time

from comfy import load_image, new_client_id, pngcast_bin, with_ours, with_seed


def test_recv_records_comfyui_metadata_as_sent(comfy, tmp_path):
    cid = new_client_id()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [pngcast_bin(), "recv", f"ws://{comfy.addr}/ws", "--client-id", cid, "--metadata", "-o", str(out), "--count", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        end = time.monotonic() + 30
        while not (out / "events.jsonl").exists() and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.3)  # the feature flags reach ComfyUI
        graph = with_seed(with_ours(load_image("kodim23.png", 2), "ev"))
        comfy.wait_done(comfy.queue(graph, cid))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [json.loads(l) for l in (out / "events.jsonl").read_text().splitlines()]
    assert all(isinstance(l["t"], float) for l in lines)
    # Every JSON message ComfyUI sent, verbatim: the status first, then its progress/executing
    # messages; a line holds `raw` or `type`, never both.
    raws = [json.loads(l["raw"]) for l in lines if "raw" in l]
    assert raws[0]["type"] == "status" and any(r["type"] == "executing" for r in raws)
    assert not any("raw" in l and "type" in l for l in lines)
    images = [l["data"] for l in lines if l.get("type") == "pngcast.image"]
    assert len(images) == 4
    ours = [i for i in images if i["metadata"].get("event") == "ev"]
    seed = [i for i in images if "event" not in i["metadata"]]
    assert len(ours) == 2 and len(seed) == 2
    # ComfyUI's own frame (SaveImageWebsocket): its keys exactly, parent_node_id null kept, no
    # invented width/height/event.
    m = seed[0]["metadata"]
    assert set(m) == {"node_id", "prompt_id", "display_node_id", "parent_node_id", "real_node_id", "image_type"}
    assert m["parent_node_id"] is None and m["node_id"] == "8"
    assert ours[1]["metadata"]["index"] == 1 and ours[1]["metadata"]["width"] == 768
    for i in images:
        assert (out / i["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
