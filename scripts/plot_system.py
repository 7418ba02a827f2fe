#!/usr/bin/env python3
"""Chart for docs/perf.md "System": tensor-to-client latency vs image size, pngcast vs ComfyUI's path.

Reads the JSON lines printed by `benches/examples/latency.rs` (kind == "latency") and by
`benches/python/comfy_baseline.py`, and writes an SVG by hand (no plotting dependency): x = megapixels,
y = milliseconds, both log scale; solid lines are medians, the shaded band reaches up to p99.

Usage:
    python3 scripts/plot_system.py [PNGCAST.jsonl PYTHON.jsonl] [-o docs/system_latency.svg]

Defaults: docs/system/latency.jsonl and docs/system/python_baseline.jsonl.
"""

import argparse
import json
import math

COLOURS = {"pngcast-mio": "#1f77b4", "pngcast-blocking": "#2ca02c", "aiohttp": "#d62728"}
LABELS = {
    "pngcast-mio": "pngcast (mio transport)",
    "pngcast-blocking": "pngcast (blocking transport)",
    "aiohttp": "ComfyUI path (numpy + Pillow level 1 + aiohttp)",
}


def load(paths):
    series = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if r.get("kind", "latency") != "latency":
                    continue
                mp = r["width"] * r["height"] / 1e6
                series.setdefault(r["transport"], []).append((mp, r["p50_ms"], r["p99_ms"], r["width"], r["height"]))
    for v in series.values():
        v.sort()
    return series


def svg(series):
    W, H = 760, 460
    left, right, top, bottom = 70, 20, 40, 110
    pw, ph = W - left - right, H - top - bottom
    xs = [p[0] for s in series.values() for p in s]
    ys = [y for s in series.values() for p in s for y in p[1:3]]
    x0, x1 = math.log10(min(xs) / 1.3), math.log10(max(xs) * 1.3)
    y0 = math.floor(math.log10(min(ys)))
    y1 = math.ceil(math.log10(max(ys)))

    def X(mp):
        return left + (math.log10(mp) - x0) / (x1 - x0) * pw

    def Y(ms):
        return top + (y1 - math.log10(ms)) / (y1 - y0) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">'
        "f32 RGB tensor to last byte at a loopback client (median; band up to p99)</text>",
    ]
    # Grid: decades on y (with 2 and 5), the measured sizes on x.
    for e in range(y0, y1 + 1):
        for m in (1, 2, 5):
            v = m * 10**e
            if y0 <= math.log10(v) <= y1:
                y = Y(v)
                out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
                label = f"{v:g}" if v >= 1 else f"{v:.1g}"
                out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    sizes = sorted({(p[0], p[3], p[4]) for s in series.values() for p in s})
    for mp, w, h in sizes:
        x = X(mp)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{w}x{h}</text>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 30}" text-anchor="middle" fill="#666">{mp:.2f} MP</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="18" y="{top + ph / 2}" transform="rotate(-90 18 {top + ph / 2})" '
               'text-anchor="middle">milliseconds (log)</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top + ph + 48}" text-anchor="middle">image size (log)</text>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        c = COLOURS.get(name, "#555")
        band = [(X(p[0]), Y(p[2])) for p in pts] + [(X(p[0]), Y(p[1])) for p in reversed(pts)]
        out.append('<polygon points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in band)
                   + f'" fill="{c}" fill-opacity="0.15" stroke="none"/>')
        out.append('<polyline points="' + " ".join(f"{X(p[0]):.1f},{Y(p[1]):.1f}" for p in pts)
                   + f'" fill="none" stroke="{c}" stroke-width="2"/>')
        for p in pts:
            out.append(f'<circle cx="{X(p[0]):.1f}" cy="{Y(p[1]):.1f}" r="3" fill="{c}"/>')
        ly = top + ph + 66 + 14 * i
        out.append(f'<line x1="{left}" x2="{left + 24}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{left + 30}" y="{ly}">{LABELS.get(name, name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "inputs",
        nargs="*",
        default=["docs/system/latency.jsonl", "docs/system/python_baseline.jsonl"],
        help="JSON-lines files from latency.rs and comfy_baseline.py",
    )
    ap.add_argument("-o", "--output", default="docs/system_latency.svg")
    args = ap.parse_args()
    series = load(args.inputs)
    with open(args.output, "w") as f:
        f.write(svg(series))
    print(f"wrote {args.output}: {', '.join(f'{k} ({len(v)} sizes)' for k, v in sorted(series.items()))}")


if __name__ == "__main__":
    main()
