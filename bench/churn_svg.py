#!/usr/bin/env python3
"""Draws the churn scenario's RSS curves as a self-contained SVG.

usage: churn_svg.py CHURN.tsv OUT.svg [--title TEXT] [--quiet SECS]

The TSV is what bench/run.sh writes: a header `round connections SERVER...`,
one row per round (round 0 = before the first connection) with each
server's RSS in KiB, and a last row `quiet` with the RSS after the quiet
spell. One line per server (RSS in MiB against connections opened), a
hollow circle for the value after the quiet spell, and for every rookery
series a dotted line at its RSS after round 10 + 2 MiB (the acceptance
bound: the last round must stay below it). Standard library only.
"""

import argparse
import math
import sys
from xml.sax.saxutils import escape

COLOURS = {
    "rookery": "#c0392b",
    "rookery-old": "#e67e22",
    "uws": "#2471a3",
    "tokio-tungstenite": "#7d3c98",
    "fastwebsockets": "#1e8449",
}
SPARE = ["#17a589", "#b7950b", "#5d6d7e", "#a93226", "#2e86c1"]

W, H = 800, 460
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 50, 60


def nice_step(span, ticks):
    """A 1/2/5 x 10^k step giving about `ticks` intervals over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_count(v):
    if v >= 1_000_000 and v % 1_000_000 == 0:
        return f"{v // 1_000_000:.0f}M"
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def read(path):
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    header, body = rows[0], rows[1:]
    if header[:2] != ["round", "connections"]:
        raise SystemExit(f"{path}: not a churn TSV (header {header[:2]})")
    names = header[2:]
    series = {n: [] for n in names}
    quiet = {}
    for row in body:
        row = row + [""] * (len(header) - len(row))
        conns = int(row[1])
        for n, v in zip(names, row[2:]):
            if not v:
                continue
            if row[0] == "quiet":
                quiet[n] = (conns, int(v) / 1024)
            else:
                series[n].append((int(row[0]), conns, int(v) / 1024))
    return names, series, quiet


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tsv")
    ap.add_argument("svg")
    ap.add_argument("--title", default="Server RSS while opening and closing connections")
    ap.add_argument("--quiet", type=float, default=20)
    args = ap.parse_args()
    names, series, quiet = read(args.tsv)
    names = [n for n in names if series[n]]
    if not names:
        raise SystemExit(f"{args.tsv}: no data")

    bound = {}
    for n in names:
        r10 = [mib for r, _, mib in series[n] if r == 10]
        if n.startswith("rookery") and r10:
            bound[n] = r10[0] + 2
    xmax = max(c for n in names for _, c, _ in series[n]) or 1
    ymax_data = max(
        [mib for n in names for _, _, mib in series[n]]
        + [v for _, v in quiet.values()]
        + list(bound.values())
    )
    ystep = nice_step(ymax_data, 6)
    ymax = ystep * math.ceil(ymax_data * 1.05 / ystep)
    xstep = nice_step(xmax, 5)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(c):
        return LEFT + pw * c / xmax

    def py(mib):
        return TOP + ph * (1 - mib / ymax)

    out = []
    add = out.append
    add(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">')
    add(f'<rect width="{W}" height="{H}" fill="#ffffff"/>')
    add(f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">'
        f'{escape(args.title)}</text>')
    # grid and axes
    y = 0.0
    while y <= ymax + 1e-9:
        yy = py(y)
        add(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + pw}" y2="{yy:.1f}" stroke="#e5e5e5"/>')
        add(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += ystep
    x = 0.0
    while x <= xmax + 1e-9:
        xx = px(x)
        add(f'<line x1="{xx:.1f}" y1="{TOP}" x2="{xx:.1f}" y2="{TOP + ph}" stroke="#f0f0f0"/>')
        add(f'<text x="{xx:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{fmt_count(x)}</text>')
        x += xstep
    add(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    add(f'<text x="{LEFT + pw / 2}" y="{H - 16}" text-anchor="middle">connections opened and closed</text>')
    add(f'<text x="18" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {TOP + ph / 2})">server RSS (MiB)</text>')

    spare = iter(SPARE)
    legend = []
    for n in names:
        colour = COLOURS.get(n) or next(spare, "#000000")
        pts = " ".join(f"{px(c):.1f},{py(mib):.1f}" for _, c, mib in series[n])
        add(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        if n in bound:
            yy = py(bound[n])
            add(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + pw}" y2="{yy:.1f}" stroke="{colour}" '
                'stroke-width="1" stroke-dasharray="2,3"/>')
        last_r, last_c, last_mib = series[n][-1]
        text = f"{n}: {series[n][0][2]:.1f} MiB at start, {last_mib:.1f} after {fmt_count(last_c)}"
        if n in quiet:
            qc, qmib = quiet[n]
            add(f'<circle cx="{px(qc):.1f}" cy="{py(qmib):.1f}" r="5" fill="#ffffff" '
                f'stroke="{colour}" stroke-width="2"/>')
            text += f", {qmib:.1f} after {args.quiet:g} s quiet"
        legend.append((colour, text))
    ly = TOP + 18
    for colour, text in legend:
        add(f'<line x1="{LEFT + 12}" y1="{ly - 4}" x2="{LEFT + 36}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        add(f'<text x="{LEFT + 42}" y="{ly}">{escape(text)}</text>')
        ly += 17
    notes = []
    if quiet:
        notes.append(f"○ after {args.quiet:g} s of quiet")
    if bound:
        notes.append("dotted: RSS after round 10 + 2 MiB (acceptance bound)")
    if notes:
        add(f'<text x="{LEFT + 12}" y="{ly}" fill="#555">{escape("; ".join(notes))}</text>')
    add("</svg>")
    with open(args.svg, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    sys.exit(main())
