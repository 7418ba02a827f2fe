"""ComfyUI's own web frontend (the version ComfyUI pins) in headless Chromium receives our
node's frames: every image reaches its preview handler, attributed to our node, with no console
error or unhandled message."""

from __future__ import annotations

import time

from cdp import Browser, require_chromium
from comfy import load_image, with_ours


def page_noise(error: str) -> bool:
    """Errors of the page's own start-up, whatever the frames: its user-settings files that a
    fresh user directory lacks (404), and the hosts this machine cannot reach."""
    return ("/api/userdata/" in error and "404" in error) or "ERR_NAME_NOT_RESOLVED" in error \
        or "ERR_INTERNET_DISCONNECTED" in error


def test_web_frontend_reads_our_frames(comfy):
    browser = Browser(require_chromium())
    try:
        browser.call("Page.navigate", url=f"http://{comfy.addr}/")
        browser.wait_for("!!(window.comfyAPI && window.comfyAPI.api && window.comfyAPI.api.api && "
                         "window.comfyAPI.api.api.socket && window.comfyAPI.api.api.socket.readyState === 1 && "
                         "sessionStorage.getItem('clientId'))", timeout=120)
        client_id = browser.evaluate("sessionStorage.getItem('clientId')")
        browser.evaluate(
            """(() => {
                window.__pngcast = [];
                window.__blobs = [];
                const api = window.comfyAPI.api.api;
                api.addEventListener('b_preview_with_metadata', (e) => window.__blobs.push(e.detail.blob));
                api.addEventListener('b_preview_with_metadata', (e) => window.__pngcast.push(
                    {node: e.detail.nodeId, display: e.detail.displayNodeId, type: e.detail.blob.type,
                     size: e.detail.blob.size}));
                return true;
            })()"""
        )
        time.sleep(1.0)  # the page's own start-up settles
        before = list(browser.errors())
        prompt_id = comfy.queue(with_ours(load_image("kodim23.png", 3), "browser"), client_id)
        got = browser.wait_for("window.__pngcast.length >= 3 ? window.__pngcast : null", timeout=120)
        h = comfy.wait_done(prompt_id)
        assert h["status"]["status_str"] == "success"
        time.sleep(1.0)  # any error a frame causes is logged by now
        assert [g["display"] for g in got] == ["9", "9", "9"]
        assert all(g["type"] == "image/png" and g["size"] > 1000 for g in got)
        # The browser's own decoder reads every image.
        sizes = browser.evaluate(
            "Promise.all(window.__blobs.map(b => createImageBitmap(b).then(i => [i.width, i.height])))"
        )
        assert sizes == [[768, 512]] * 3
        new_errors = [e for e in browser.errors() if e not in before and not page_noise(e)]
        assert not new_errors, new_errors
    finally:
        browser.close()
