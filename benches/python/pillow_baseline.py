#!/usr/bin/env python3
"""ComfyUI's tensor-to-PNG path, measured with numpy and Pillow: the baseline pngcast is compared to.

ComfyUI's SaveImage/PreviewImage nodes turn a float32 IMAGE tensor (values 0..1) into a PNG with

    i = 255. * image.cpu().numpy()
    img = Image.fromarray(np.clip(i, 0, 255).astype(np.uint8))
    img.save(file, pnginfo=metadata, compress_level=1)     # previews use level 1

This script does exactly that for every PNG of the corpus (each image decoded and scaled to float32 in
0..1 first, untimed) and times the two steps separately over repeated runs, reporting medians:

    convert: np.clip(255. * x, 0, 255).astype(np.uint8)
    encode:  Image.fromarray(u8).save(io.BytesIO(), format="PNG", compress_level=1)

One JSON line per image on stdout (or, with --markdown, one Markdown table row per image):
    {"image": "photo/kodim02.png", "width": 768, "height": 512, "channels": 3,
     "convert_ms": .., "convert_mp_s": .., "encode_ms": .., "encode_mp_s": .., "bytes": ..,
     "bytes_per_raw": ..}
(MP/s = megapixels per second; bytes_per_raw = PNG bytes / (height * width * channels)).

With --pngcast PATH, the same float32 tensor is also saved as .npy and encoded by that pngcast binary
with `encode --repeat RUNS`, and its JSON figures are added under "pngcast", so both are measured in
the same run on the same machine.

With --images DIR (the PNGs that `encoders --dump-images DIR` writes, see scripts/encoders.sh), it
instead runs the encoder comparison of docs/perf.md on exactly those images: it times only the encode
of the u8 array into a BytesIO (Pillow: `img.save(buf, format="PNG", compress_level=1)` on an Image
made once, untimed; fpng, when the PyPI `fpng` package is installed: `fpng.from_ndarray(u8)`, RGB and
RGBA only), `--warmup` untimed then `--runs` timed rounds (each round runs every encoder once), checks
once that each output decodes to the input pixels, and prints one JSON line per encoder x image in the
schema of benches/examples/encoders.rs ("kind": "encode", best and median ms and MP/s, bytes/raw).

Usage (from the repository root):
    python3 -m pip install numpy pillow          # and fpng, for the fpng peer
    python3 benches/python/pillow_baseline.py                      # corpus: ../shared/corpus
    python3 benches/python/pillow_baseline.py --runs 15 --corpus DIR
    cargo build --release -p pngcast
    python3 benches/python/pillow_baseline.py --pngcast target/release/pngcast
    python3 benches/python/pillow_baseline.py --images DIR --runs 9 > python.jsonl
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def default_corpus():
    """../shared/corpus beside the repository (for a git worktree: beside its main checkout)."""
    candidates = [REPO.parent / "shared" / "corpus"]
    try:
        common = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        candidates.append(Path(common).parent.parent / "shared" / "corpus")
    except (OSError, subprocess.CalledProcessError):
        pass
    return next((c for c in candidates if c.is_dir()), candidates[0])


def load_tensor(path):
    """Decodes a PNG into a float32 [H,W,C] (or [H,W] for gray) array in 0..1, like ComfyUI's loader
    but keeping the image's own channel count."""
    with Image.open(path) as img:
        if img.mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
        arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected 8-bit samples, got {arr.dtype}")
    return arr.astype(np.float32) / np.float32(255.0)


def comfy_convert(x):
    return np.clip(255.0 * x, 0, 255).astype(np.uint8)


def pillow_encode(u8):
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG", compress_level=1)
    return buf.getbuffer().nbytes


def median_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_pngcast(binary, x, runs, threads):
    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "x.npy")
        np.save(npy, x)
        cmd = [binary, "encode", npy, "-o", os.path.join(tmp, "x.png"), "--repeat", str(runs)]
        if threads:
            cmd += ["--threads", str(threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        return json.loads(out.stdout)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


def load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def peer_encoders(u8):
    """(encoder, family, setting, encode) for every Python peer that can encode `u8`; encode() returns
    the PNG bytes."""
    peers = []
    img = Image.fromarray(u8)

    def pillow():
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    import PIL
    peers.append(("pillow level1", "pillow", f"Pillow {PIL.__version__} save(compress_level=1)", pillow))
    try:
        import fpng
    except ImportError:
        fpng = None
    if fpng is not None and u8.ndim == 3 and u8.shape[2] in (3, 4):
        peers.append(("fpng", "fpng", f"fpng (PyPI fpng {fpng.__version__}) from_ndarray, default flags",
                      lambda: fpng.from_ndarray(u8)))
    return peers


def decodes_to(png, u8):
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        arr = np.asarray(im)
    return arr.shape == u8.shape and arr.dtype == u8.dtype and np.array_equal(arr, u8)


def compare_encoders(args):
    """The --images mode: one JSON line per encoder x image, in encoders.rs's schema."""
    files = sorted(args.images.glob("*.png"))
    if not files:
        sys.exit(f"pillow_baseline: no PNG in {args.images}")
    try:
        import fpng  # noqa: F401
    except ImportError:
        print("pillow_baseline: PyPI package fpng not installed (pip install fpng): fpng rows skipped",
              file=sys.stderr)
    machine, cores, started = cpu_model(), os.cpu_count(), int(time.time())
    for path in files:
        with Image.open(path) as im:
            u8 = np.array(im)
        h, w = u8.shape[:2]
        c = 1 if u8.ndim == 2 else u8.shape[2]
        mp, raw = h * w / 1e6, h * w * c
        peers = []
        for name, family, setting, enc in peer_encoders(u8):
            png = enc()
            if not decodes_to(png, u8):
                print(f"pillow_baseline: {name} on {path.name}: output does not decode to the input; not timed",
                      file=sys.stderr)
                continue
            peers.append([name, family, setting, enc, len(png), []])
        load_before = load_average()
        for r in range(args.warmup + args.runs):
            for p in peers:
                t0 = time.perf_counter()
                p[3]()
                dt = time.perf_counter() - t0
                if r >= args.warmup:
                    p[5].append(dt)
        load_after = load_average()
        for name, family, setting, _, size, times in peers:
            times.sort()
            best, med = times[0], statistics.median(times)
            print(json.dumps({
                "kind": "encode", "source": "pillow_baseline.py", "encoder": name, "family": family,
                "setting": setting, "threads": 1, "image": path.stem, "width": w, "height": h,
                "channels": c, "runs": args.runs,
                "best_ms": round(best * 1e3, 3), "median_ms": round(med * 1e3, 3),
                "best_mp_s": round(mp / best, 1), "median_mp_s": round(mp / med, 1),
                "bytes": size, "bytes_per_raw": round(size / raw, 4), "verified": True,
                "machine": machine, "cores": cores, "load_before": load_before, "load_after": load_after,
                "unix_time": started,
            }), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=None, help="folder of PNGs, searched recursively (default: ../shared/corpus)")
    ap.add_argument("--runs", type=int, default=9, help="timed runs per step (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    ap.add_argument("--pngcast", help="also time this pngcast binary on the same tensors")
    ap.add_argument("--threads", type=int, help="--threads passed to pngcast")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON lines")
    ap.add_argument("--images", type=Path, help="encoder comparison on the PNGs of this folder (see above)")
    args = ap.parse_args()
    if args.runs < 1:
        sys.exit("pillow_baseline: --runs must be at least 1")
    if args.images is not None:
        compare_encoders(args)
        return

    if args.corpus is None:
        args.corpus = default_corpus()
    images = sorted(args.corpus.rglob("*.png"))
    if not images:
        sys.exit(f"pillow_baseline: no PNG under {args.corpus}")
    if args.markdown:
        cols = "| image | W x H x C | convert ms | convert MP/s | encode ms | encode MP/s | bytes | bytes/raw |"
        sep = "|---|---|---|---|---|---|---|---|"
        if args.pngcast:
            cols += " pngcast convert ms | pngcast encode ms | pngcast bytes |"
            sep += "---|---|---|"
        print(cols)
        print(sep)
    for path in images:
        x = load_tensor(path)
        h, w = x.shape[:2]
        c = 1 if x.ndim == 2 else x.shape[2]
        mp = h * w / 1e6
        u8 = comfy_convert(x)
        convert_ms = median_ms(lambda: comfy_convert(x), args.runs, args.warmup)
        encode_ms = median_ms(lambda: pillow_encode(u8), args.runs, args.warmup)
        size = pillow_encode(u8)
        line = {
            "image": str(path.relative_to(args.corpus)),
            "width": w,
            "height": h,
            "channels": c,
            "convert_ms": round(convert_ms, 3),
            "convert_mp_s": round(mp / (convert_ms / 1e3), 1),
            "encode_ms": round(encode_ms, 3),
            "encode_mp_s": round(mp / (encode_ms / 1e3), 1),
            "bytes": size,
            "bytes_per_raw": round(size / (h * w * c), 4),
        }
        if args.pngcast:
            line["pngcast"] = run_pngcast(args.pngcast, x, args.runs, args.threads)
        if not args.markdown:
            print(json.dumps(line), flush=True)
            continue
        row = (
            f"| {line['image']} | {w}x{h}x{c} | {line['convert_ms']:.2f} | {line['convert_mp_s']:.0f} "
            f"| {line['encode_ms']:.1f} | {line['encode_mp_s']:.1f} | {size} | {line['bytes_per_raw']:.3f} |"
        )
        if args.pngcast:
            p = line["pngcast"]
            row += f" {p['convert_ms']:.2f} | {p['encode_ms']:.1f} | {p['bytes']} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
