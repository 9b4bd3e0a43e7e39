"""Small pictures drawn on the server as SVG (pure: no web framework, no state): a sparkline, a
histogram of an array, and a pipeline's DAG. Text in them is escaped; sizes are in CSS pixels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np

RAW = "raw"
ARROW = (
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
    'orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
)


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 28, label: str = "") -> str:
    """A line of ``values`` scaled to the box (a flat line when they are all equal; empty when none)."""
    title = f"<title>{escape(label)}</title>" if label else ""
    if len(values) < 2:
        return f'<svg class="spark" width="{width}" height="{height}" role="img">{title}</svg>'
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'{title}<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


def finished_lines(history: Mapping[str, Any]) -> dict[str, str]:
    """One sparkline per queue of its items finished per minute over the stored history's window."""
    steps = len(history["queues"][0]["finished"]) if history["queues"] else 0
    minutes = steps * int(history["step_seconds"]) // 60
    return {
        q["name"]: sparkline(
            [float(n) for n in q["finished"]],
            label=f"{q['name']}: {sum(q['finished'])} finished in the last {minutes} min, per minute",
        )
        for q in history["queues"]
    }


def histogram(array: np.ndarray, *, bins: int = 30, width: int = 320, height: int = 90) -> str:
    """Bars of the finite values of ``array`` in ``bins`` equal bins, with the range written below."""
    data = np.asarray(array).ravel()
    if data.dtype.kind not in "biuf" or data.size == 0:
        return ""
    data = data[np.isfinite(data)] if data.dtype.kind == "f" else data
    if data.size == 0:
        return ""
    counts, edges = np.histogram(data, bins=bins)
    top = int(counts.max()) or 1
    bar = width / bins
    room = height - 16
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 14 - c / top * room:.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{c / top * room:.1f}"><title>{edges[i]:.4g} to {edges[i + 1]:.4g}: {c}</title></rect>'
        for i, c in enumerate(counts)
    )
    return (
        f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="histogram of {data.size} values">{bars}'
        f'<text x="0" y="{height - 2}">{edges[0]:.4g}</text>'
        f'<text x="{width}" y="{height - 2}" text-anchor="end">{edges[-1]:.4g}</text></svg>'
    )


def depths(stages: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each stage's column: 1 + the deepest of its inputs (the raw data is column 0)."""
    out: dict[str, int] = {RAW: 0}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in out:
            return out[name]
        if name in seen or name not in stages:  # a cycle or an unknown input: the spec check reports it
            return 0
        out[name] = 1 + max((depth(i, seen | {name}) for i in stages[name] or [RAW]), default=0)
        return out[name]

    for name in stages:
        depth(name, frozenset())
    return out


def dag(
    stages: Mapping[str, Sequence[str]],
    *,
    states: Mapping[str, str] | None = None,
    notes: Mapping[str, str] | None = None,
) -> str:
    """The pipeline drawn left to right: the raw data, then each stage in the column after its inputs, with
    an arrow from every input. ``states`` colours nodes (CSS class ``state-X``); ``notes`` adds a line."""
    col = depths(stages)
    columns: dict[int, list[str]] = {}
    for name in [RAW, *stages]:
        columns.setdefault(col.get(name, 0), []).append(name)
    node_w, node_h, gap_x, gap_y, pad = 150, 44, 60, 18, 10
    pos: dict[str, tuple[float, float]] = {}
    for c, names in columns.items():
        for r, name in enumerate(names):
            pos[name] = (pad + c * (node_w + gap_x), pad + r * (node_h + gap_y))
    width = pad * 2 + (max(columns) + 1) * (node_w + gap_x) - gap_x
    height = pad * 2 + max(len(n) for n in columns.values()) * (node_h + gap_y) - gap_y
    edges = []
    for name, inputs in stages.items():
        x2, y2 = pos[name]
        for source in inputs or [RAW]:
            if source not in pos:
                continue
            x1, y1 = pos[source]
            a, b = (x1 + node_w, y1 + node_h / 2), (x2, y2 + node_h / 2)
            mid = (a[0] + b[0]) / 2
            edges.append(
                f'<path class="edge" d="M{a[0]:.0f},{a[1]:.0f} C{mid:.0f},{a[1]:.0f} {mid:.0f},{b[1]:.0f} '
                f'{b[0] - 6:.0f},{b[1]:.0f}" marker-end="url(#arrow)"/>'
            )
    nodes = []
    for name, (x, y) in pos.items():
        state = (states or {}).get(name, "")
        note = (notes or {}).get(name, "")
        nodes.append(
            f'<g class="node state-{escape(state)}">'
            f'<rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 18}" class="name">{escape(name)}</text>'
            f'<text x="{x + 10}" y="{y + 35}" class="note">{escape(note)}</text></g>'
        )
    return (
        f'<svg class="dag" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="pipeline stages and their inputs">{ARROW}'
        f"{''.join(edges)}{''.join(nodes)}</svg>"
    )
