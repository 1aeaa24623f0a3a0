#!/usr/bin/env python3
"""Draws rookery against one peer, scenario by scenario, as a self-contained SVG.

usage: ratios_svg.py TABLE.md PEER OUT.svg [--title TEXT]

TABLE.md is the table bench/run.sh writes (`| scenario | metric | ... |
rookery ÷ PEER |`). For each scenario the chart shows the ratios that decide
it, on a log scale around 1: the throughput row (messages/s, deliveries/s,
connections/s) as rookery ÷ PEER, so that a bar right of 1 means rookery is
ahead; and the cost rows (server CPU per message, latency p99, RSS per
connection) turned the same way, as PEER ÷ rookery, so that right of 1 is
rookery ahead there too. Each bar is labelled with the ratio as the table
prints it (rookery ÷ PEER). Standard library only.
"""

import argparse
import math
import sys
from xml.sax.saxutils import escape

# (start of the metric label in the table, short name, higher is better for
# rookery's figure); "messages/s" also takes echo-rate's "messages/s (offered N/s)"
ROWS = [
    ("messages/s", "messages/s", True),
    ("deliveries/s", "deliveries/s", True),
    ("connections set up per second", "connections/s", True),
    ("server CPU per message (µs)", "CPU per message", False),
    ("server CPU per delivery (µs)", "CPU per delivery", False),
    ("latency p99 (µs)", "latency p99", False),
    ("delivery latency p99 (µs)", "latency p99", False),
    ("server RSS per connection (bytes)", "RSS per connection", False),
]

AHEAD, BEHIND = "#c0392b", "#2471a3"
W = 860
LEFT, RIGHT, TOP, ROW_H, GROUP_GAP = 260, 40, 60, 22, 14


def read_table(path, peer):
    """{scenario: [(metric, ratio)]} from the markdown table, in order."""
    want = f"rookery ÷ {peer}"
    scenarios = {}
    col = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 3:
                continue
            if cells[0] == "scenario":
                col = cells.index(want) if want in cells else None
                continue
            if col is None or cells[0].startswith("---"):
                continue
            try:
                ratio = float(cells[col])
            except ValueError:
                continue
            scenarios.setdefault(cells[0], []).append((cells[1], ratio))
    return scenarios


def pick(rows):
    """The rows the chart shows, as (name, table ratio, advantage)."""
    out = []
    for metric, ratio in rows:
        for label, name, higher in ROWS:
            if metric.startswith(label):
                if ratio > 0:
                    out.append((name, ratio, ratio if higher else 1 / ratio))
                break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("peer")
    ap.add_argument("out")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()

    groups = [(s, pick(rows)) for s, rows in read_table(args.table, args.peer).items()]
    groups = [(s, rows) for s, rows in groups if rows]
    if not groups:
        print(f"ratios_svg.py: no 'rookery ÷ {args.peer}' ratios in {args.table}", file=sys.stderr)
        return 1

    span = max(abs(math.log10(a)) for _, rows in groups for _, _, a in rows)
    span = max(span, math.log10(2)) * 1.1
    plot_w = W - LEFT - RIGHT
    mid = LEFT + plot_w / 2

    def x(adv):
        return mid + math.log10(adv) / span * (plot_w / 2)

    n_rows = sum(len(rows) for _, rows in groups)
    h = TOP + n_rows * ROW_H + len(groups) * GROUP_GAP + 50
    title = args.title or f"rookery against {args.peer}: right of 1 is rookery ahead"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" '
        f'viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{h}" fill="white"/>',
        f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<text x="{W / 2}" y="42" text-anchor="middle" fill="#555">'
        f"{escape(f'throughput as rookery ÷ {args.peer}, costs as {args.peer} ÷ rookery; labels: rookery ÷ {args.peer} (log scale)')}</text>",
    ]
    # Grid: 1/4, 1/2, 1, 2, 4, ... within the span.
    k = 0
    while 2.0**k <= 10**span:
        for adv in {2.0**k, 2.0**-k}:
            gx = x(adv)
            strong = adv == 1
            out.append(
                f'<line x1="{gx:.1f}" y1="{TOP - 6}" x2="{gx:.1f}" y2="{h - 40}" '
                f'stroke="{"#333" if strong else "#ddd"}" stroke-width="{1.5 if strong else 1}"/>'
            )
            label = f"{adv:g}" if adv >= 1 else f"1/{1 / adv:g}"
            out.append(f'<text x="{gx:.1f}" y="{h - 24}" text-anchor="middle" fill="#555">{label}</text>')
        k += 1

    y = TOP
    for scenario, rows in groups:
        out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(scenario)}</text>')
        for name, ratio, adv in rows:
            x0, x1 = sorted((mid, x(adv)))
            colour = AHEAD if adv >= 1 else BEHIND
            out.append(f'<text x="{LEFT - 8}" y="{y + 14}" text-anchor="end">{escape(name)}</text>')
            out.append(
                f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1):.1f}" height="{ROW_H - 6}" fill="{colour}"/>'
            )
            tx = x(adv) + (6 if adv >= 1 else -6)
            anchor = "start" if adv >= 1 else "end"
            out.append(f'<text x="{tx:.1f}" y="{y + 14}" text-anchor="{anchor}">{ratio:g}</text>')
            y += ROW_H
        y += GROUP_GAP
    out.append("</svg>")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
