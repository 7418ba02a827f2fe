#!/usr/bin/env python3
"""Chart and tables for docs/perf.md "Encoders": every PNG encoder on every image, from JSON lines.

Reads the lines ("kind": "encode") printed by `benches/examples/encoders.rs` and by
`benches/python/pillow_baseline.py --images DIR`, and writes
  - an SVG by hand (no plotting dependency): grouped bars, one group per image, one bar per encoder and
    thread count; top panel median MP/s (log scale) with a tick at the best run, bottom panel output
    bytes over raw bytes;
  - with --markdown FILE, the Markdown tables: median MP/s per encoder x image, bytes/raw per encoder x
    image, and every row in full (median and best, ratio to the png crate's Fast in the same run);
  - with --update-doc docs/perf.md, the first two tables again, between that file's
    `<!-- encoders:begin -->` and `<!-- encoders:end -->` comments.

Usage:
    python3 scripts/plot_encoders.py docs/encoders/results.jsonl -o docs/encoders/encoders.svg \\
        --markdown docs/encoders/results.md --update-doc docs/perf.md
"""

import argparse
import json
import math
import time
from html import escape

# Bar order and colours: ours first (blues), then the png crate (greens), mtpng, lodepng, Pillow, fpng.
ORDER = [
    ("pngcast fast-balanced", "#08519c"),
    ("pngcast fast-fastest", "#3182bd"),
    ("pngcast stored", "#969696"),
    ("pngcast compact1", "#6baed6"),
    ("png nocompression", "#d9d9d9"),
    ("png fastest", "#74c476"),
    ("png fast", "#31a354"),
    ("png balanced", "#006d2c"),
    ("mtpng fast", "#fd8d3c"),
    ("lodepng", "#9467bd"),
    ("pillow level1", "#d62728"),
    ("fpng", "#8c564b"),
]
COLOURS = dict(ORDER)
RANK = {name: i for i, (name, _) in enumerate(ORDER)}


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if r.get("kind") == "encode":
                    rows.append(r)
    if not rows:
        raise SystemExit("plot_encoders: no 'kind': 'encode' lines in " + ", ".join(paths))
    return rows


def series_key(r):
    return (RANK.get(r["encoder"], len(RANK)), r["encoder"], r["threads"])


def label(encoder, threads):
    return f"{encoder}, {threads} threads" if threads > 1 else encoder


def organise(rows):
    images = []
    for r in rows:
        if r["image"] not in images:
            images.append(r["image"])
    series = sorted({series_key(r) for r in rows})
    cell = {(r["image"], r["encoder"], r["threads"]): r for r in rows}
    return images, series, cell


def svg(rows, title):
    images, series, cell = organise(rows)
    bar, gap = 7, 16
    group_w = len(series) * bar + gap
    left, right, top = 70, 20, 64
    ph1, ph2, mid = 330, 150, 70
    pw = len(images) * group_w
    legend_cols = 3
    legend_rows = math.ceil(len(series) / legend_cols)
    W = left + pw + right
    H = top + ph1 + mid + ph2 + 30 + 16 * legend_rows + 6
    speeds = [r["median_mp_s"] for r in rows] + [r["best_mp_s"] for r in rows]
    y0 = math.floor(math.log10(max(min(speeds), 0.1)))
    y1 = math.ceil(math.log10(max(speeds)))
    ratio_max = max(1.0, max(r["bytes_per_raw"] for r in rows)) * 1.05
    top2 = top + ph1 + mid

    def Y1(v):
        v = max(v, 10**y0)
        return top + (y1 - math.log10(v)) / (y1 - y0) * ph1

    def Y2(v):
        return top2 + (1 - v / ratio_max) * ph2

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15">PNG encoders on the same images: '
        "megapixels per second (median of the runs, log scale; tick = best run)</text>",
        f'<text x="{W / 2}" y="38" text-anchor="middle" fill="#555">{escape(title)}</text>',
    ]
    # Panel 1 grid: decades with 2 and 5.
    for e in range(y0, y1 + 1):
        for m in (1, 2, 5):
            v = m * 10**e
            if y0 <= math.log10(v) <= y1:
                y = Y1(v)
                shade = "#ccc" if m == 1 else "#eee"
                out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{shade}"/>')
                out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    out.append(f'<text x="16" y="{top + ph1 / 2}" transform="rotate(-90 16 {top + ph1 / 2})" '
               'text-anchor="middle">MP/s (log)</text>')
    # Panel 2 grid.
    step = 0.2 if ratio_max <= 1.3 else 0.5
    v = 0.0
    while v <= ratio_max + 1e-9:
        y = Y2(v)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.1f}</text>')
        v += step
    out.append(f'<text x="16" y="{top2 + ph2 / 2}" transform="rotate(-90 16 {top2 + ph2 / 2})" '
               'text-anchor="middle">bytes / raw</text>')
    out.append(f'<text x="{left + pw / 2}" y="{top2 - 10}" text-anchor="middle" font-size="13">'
               "output size over raw size (lower is smaller)</text>")
    for gi, image in enumerate(images):
        gx = left + gi * group_w + gap / 2
        any_row = next(r for r in rows if r["image"] == image)
        dims = f'{any_row["width"]}x{any_row["height"]}x{any_row["channels"]}'
        out.append(f'<text x="{gx + (group_w - gap) / 2:.1f}" y="{top + ph1 + 16}" text-anchor="middle">'
                   f"{escape(image)}</text>")
        out.append(f'<text x="{gx + (group_w - gap) / 2:.1f}" y="{top + ph1 + 30}" text-anchor="middle" '
                   f'fill="#666">{dims}</text>')
        if gi:
            x = left + gi * group_w
            out.append(f'<line x1="{x}" x2="{x}" y1="{top}" y2="{top + ph1}" stroke="#f0f0f0"/>')
            out.append(f'<line x1="{x}" x2="{x}" y1="{top2}" y2="{top2 + ph2}" stroke="#f0f0f0"/>')
        for si, (_, encoder, threads) in enumerate(series):
            r = cell.get((image, encoder, threads))
            if r is None:
                continue
            x = gx + si * bar
            c = COLOURS.get(encoder, "#777")
            op = "1" if threads == 1 else "0.5"
            tip = (f'{label(encoder, threads)} on {image}: median {r["median_mp_s"]} MP/s, best '
                   f'{r["best_mp_s"]} MP/s, {r["bytes_per_raw"]} of raw')
            y = Y1(r["median_mp_s"])
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 1}" height="{top + ph1 - y:.1f}" '
                       f'fill="{c}" fill-opacity="{op}" stroke="{c}" stroke-width="0.6">'
                       f"<title>{escape(tip)}</title></rect>")
            yb = Y1(r["best_mp_s"])
            out.append(f'<line x1="{x:.1f}" x2="{x + bar - 1:.1f}" y1="{yb:.1f}" y2="{yb:.1f}" stroke="#000"/>')
            y = Y2(r["bytes_per_raw"])
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 1}" height="{top2 + ph2 - y:.1f}" '
                       f'fill="{c}" fill-opacity="{op}" stroke="{c}" stroke-width="0.6">'
                       f"<title>{escape(tip)}</title></rect>")
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph1}" fill="none" stroke="#333"/>')
    out.append(f'<rect x="{left}" y="{top2}" width="{pw}" height="{ph2}" fill="none" stroke="#333"/>')
    col_w = pw / legend_cols
    for i, (_, encoder, threads) in enumerate(series):
        lx = left + (i // legend_rows) * col_w
        ly = top2 + ph2 + 30 + 16 * (i % legend_rows)
        c = COLOURS.get(encoder, "#777")
        op = "1" if threads == 1 else "0.5"
        out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="14" height="10" fill="{c}" fill-opacity="{op}" '
                   f'stroke="{c}"/>')
        out.append(f'<text x="{lx + 20:.1f}" y="{ly}">{escape(label(encoder, threads))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def fmt_speed(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def pivots(rows, title):
    """The two encoder x image tables (median MP/s, bytes/raw), as Markdown lines."""
    images, series, cell = organise(rows)
    lines = [f"<!-- generated by scripts/plot_encoders.py; {title} -->", ""]
    for heading, field, fmt in [
        ("Median MP/s (higher is faster)", "median_mp_s", fmt_speed),
        ("Output bytes / raw bytes (lower is smaller)", "bytes_per_raw", lambda v: f"{v:.3f}"),
    ]:
        lines += [f"### {heading}", ""]
        lines.append("| encoder | threads | " + " | ".join(images) + " |")
        lines.append("|---|---|" + "---|" * len(images))
        for _, encoder, threads in series:
            vals = []
            for image in images:
                r = cell.get((image, encoder, threads))
                vals.append(fmt(r[field]) if r else "n/a")
            lines.append(f"| {encoder} | {threads} | " + " | ".join(vals) + " |")
        lines.append("")
    return lines


def markdown(rows, title):
    images, series, cell = organise(rows)
    lines = pivots(rows, title)
    lines += ["### Every row", "",
              "| image | W x H x C | encoder | threads | median MP/s | best MP/s | median ms | bytes / raw "
              "| median speed vs png fast |",
              "|---|---|---|---|---|---|---|---|---|"]
    for image in images:
        ref = cell.get((image, "png fast", 1))
        for _, encoder, threads in series:
            r = cell.get((image, encoder, threads))
            if r is None:
                continue
            vs = f'{r["median_mp_s"] / ref["median_mp_s"]:.2f}x' if ref else ""
            lines.append(
                f'| {image} | {r["width"]}x{r["height"]}x{r["channels"]} | {encoder} | {threads} '
                f'| {fmt_speed(r["median_mp_s"])} | {fmt_speed(r["best_mp_s"])} | {r["median_ms"]:.3f} '
                f'| {r["bytes_per_raw"]:.4f} | {vs} |')
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- encoders:begin -->", "<!-- encoders:end -->"


def update_doc(path, rows, title):
    """Replaces the text between BEGIN and END in `path` with the two tables (headings one level
    down, so they sit under the page's own heading)."""
    with open(path) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"plot_encoders: {path} has no {BEGIN} ... {END} block")
    body = "\n".join(l.replace("### ", "#### ", 1) if l.startswith("### ") else l for l in pivots(rows, title))
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{BEGIN}\n{body}\n{END}{tail}")


def describe(rows):
    machine = rows[0].get("machine", "?")
    cores = rows[0].get("cores", "?")
    runs = sorted({r["runs"] for r in rows})
    loads = [x for r in rows for x in (r.get("load_before"), r.get("load_after")) if x is not None]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(min(r.get("unix_time", 0) for r in rows)))
    load = f"load average {min(loads):.1f}-{max(loads):.1f}" if loads else "load unknown"
    return f"{machine}, {cores} cores, {load}, {'/'.join(map(str, runs))} runs, {when}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="JSON-lines files from encoders.rs and pillow_baseline.py --images")
    ap.add_argument("-o", "--output", default="docs/encoders/encoders.svg")
    ap.add_argument("--markdown", help="also write the Markdown tables here")
    ap.add_argument("--update-doc", help="replace the tables between the encoders:begin/end comments of this file")
    args = ap.parse_args()
    rows = load(args.inputs)
    title = describe(rows)
    with open(args.output, "w") as f:
        f.write(svg(rows, title))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(rows, title))
    if args.update_doc:
        update_doc(args.update_doc, rows, title)
    images, series, _ = organise(rows)
    print(f"wrote {args.output}: {len(images)} images x {len(series)} encoders ({title})")


if __name__ == "__main__":
    main()
