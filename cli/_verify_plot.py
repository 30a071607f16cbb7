"""``floodwatch verify --plot``: the record, the levels and every warning, for an officer at a glance.

Top: the whole record against its warning levels, each warning a tick at its
time and level (green verified, red a false alarm), each event a marker.
Below: the events up close, two days before to one after, with the first
warning that counted and its lead written beside it.

matplotlib is an optional extra (``pip install 'floodwatch[plot]'``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from floodwatch.errors import FloodwatchError

LEVEL_COLOURS = ("#d4a300", "#e06000", "#c00000")  # watch, warning, evacuate: the page's colours
KIND_MARKERS = {"observed": "o", "forecast": "v", "rise": "^"}
MAX_PANELS = 6


class PlotUnavailable(FloodwatchError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(
            "--plot needs matplotlib, an optional extra: pip install 'floodwatch[plot]' "
            "(or .venv/bin/pip install matplotlib); the scores were computed and written without the picture"
        ) from exc
    return plt


def _dates(ts_s: np.ndarray | float) -> list[datetime]:
    return [datetime.fromtimestamp(float(t), tz=UTC) for t in np.atleast_1d(ts_s)]


def plot_record(path: Path, record: Any, levels_m: list[float], replay: Any, scores: list[Any],
                start_s: float, *, title: str) -> None:
    """Draw the picture and write it to ``path`` (PNG)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    false_times = {t for s in scores for t in s.false_s}
    events = [(s.level, e, w) for s in scores for e, w in zip(s.events_s, s.warned_by_s, strict=True)]
    # The events that matter most to an officer: the highest levels first, then the earliest.
    shown = sorted(events, key=lambda x: (-x[0], x[1]))[:MAX_PANELS]
    shown.sort(key=lambda x: x[1])
    n_panels = len(shown)
    rows = 1 + math.ceil(n_panels / 3)
    fig = plt.figure(figsize=(15, 4.2 + 3.2 * (rows - 1)), dpi=100)
    grid = fig.add_gridspec(rows, 3, height_ratios=[1.3] + [1.0] * (rows - 1), hspace=0.75, wspace=0.18)
    top = fig.add_subplot(grid[0, :])
    t, z = record.t_s, record.level_m
    _series(top, t, z)
    for k, level in enumerate(levels_m):
        top.axhline(level, color=LEVEL_COLOURS[k], lw=1.0, ls="--")
        top.text(_dates(t[-1])[0], level, f" {level:g} m", color=LEVEL_COLOURS[k], va="center", fontsize=8)
    for w in replay.warnings:
        colour = "#c00000" if w.ts_s in false_times else "#1a7f37"
        top.plot(_dates(w.ts_s), [w.level_m], marker=KIND_MARKERS.get(w.kind, "o"), color=colour, ms=5, ls="none")
    for level, crossing, warned in events:
        top.plot(_dates(crossing), [levels_m[level - 1]], marker="*", ms=10, ls="none",
                 color="#1a7f37" if warned is not None else "#7a0000", mec="black", mew=0.5)
    if start_s > t[0]:
        top.axvspan(_dates(t[0])[0], _dates(start_s)[0], color="#eeeeee", zorder=0)
        top.text(_dates(t[0])[0], top.get_ylim()[0], " history before the first forecast", va="bottom",
                 fontsize=8, color="#666666")
    n_false = len(false_times)
    hits = sum(1 for _, _, w in events if w is not None)
    top.set_title(f"{title}: {len(events)} events, {hits} warned in time, {len(replay.warnings)} warnings, "
                  f"{n_false} came to nothing", fontsize=11, loc="left")
    top.set_ylabel("level, m")
    legend = [
        Line2D([], [], color="#1f4e79", lw=1, label="observed level"),
        Line2D([], [], marker="*", color="#1a7f37", mec="black", ls="none", ms=10, label="event, warned"),
        Line2D([], [], marker="*", color="#7a0000", mec="black", ls="none", ms=10, label="event, missed"),
        Line2D([], [], marker="v", color="#1a7f37", ls="none", label="forecast warning, verified"),
        Line2D([], [], marker="o", color="#1a7f37", ls="none", label="observed warning"),
        Line2D([], [], marker="^", color="#1a7f37", ls="none", label="fast-rise warning"),
        Line2D([], [], marker="v", color="#c00000", ls="none", label="warning that came to nothing"),
    ]
    top.legend(handles=legend, loc="upper left", bbox_to_anchor=(0.0, -0.2), fontsize=8, ncol=7, frameon=False)
    top.tick_params(labelsize=8)
    for i, (level, crossing, warned) in enumerate(shown):
        ax = fig.add_subplot(grid[1 + i // 3, i % 3])
        lo, hi = crossing - 2 * 86400.0, crossing + 86400.0
        inside = (t >= lo) & (t <= hi)
        _series(ax, t[inside], z[inside])
        for k, lv in enumerate(levels_m):
            ax.axhline(lv, color=LEVEL_COLOURS[k], lw=1.0, ls="--")
        for w in replay.warnings:
            if lo <= w.ts_s <= hi:
                colour = "#c00000" if w.ts_s in false_times else "#1a7f37"
                ax.plot(_dates(w.ts_s), [w.level_m], marker=KIND_MARKERS.get(w.kind, "o"), color=colour, ms=6,
                        ls="none")
        ax.axvline(_dates(crossing)[0], color="black", lw=0.8)
        name = ("watch", "warning", "evacuate")[level - 1]
        if warned is not None:
            lead_h = (crossing - warned) / 3600.0
            ax.axvspan(_dates(warned)[0], _dates(crossing)[0], color="#1a7f37", alpha=0.15)
            verdict = f"warned {lead_h:+.1f} h ahead"
        else:
            verdict = "MISSED"
        when = datetime.fromtimestamp(crossing, tz=UTC).strftime("%Y-%m-%d %H:%M")
        ax.set_title(f"{name} {levels_m[level - 1]:g} m, {when} UTC: {verdict}", fontsize=9, loc="left",
                     color="#7a0000" if warned is None else "black")
        ax.tick_params(labelsize=7)
    for ax in fig.axes:
        for label in ax.get_xticklabels():
            label.set_rotation(20)
            label.set_horizontalalignment("right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _series(ax: Any, t: np.ndarray, z: np.ndarray) -> None:
    # Break the line at gaps longer than an hour so a missing week is not drawn as a straight line.
    if t.size == 0:
        return
    breaks = np.flatnonzero(np.diff(t) > 3600.0) + 1
    for part_t, part_z in zip(np.split(t, breaks), np.split(z, breaks), strict=True):
        ax.plot(_dates(part_t), part_z, color="#1f4e79", lw=0.8)
