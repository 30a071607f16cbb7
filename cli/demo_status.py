"""The demo's one-line live status, instead of hundreds of log lines a minute.

    sim 29 Nov 14:20 | 1,234 readings | 11/11 online | 5 alerts | 42 LINE | moo-1 1.62 m watch · moo-5 2.31 m EVACUATE

:func:`format_status` is pure (a snapshot in, a line out); :func:`snapshot`
gathers the figures from a running :class:`~floodwatch.cli.system.System`;
:class:`StatusPrinter` redraws the line in place on a terminal, or prints a
plain line every so often when the output is a file or a pipe.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from floodwatch import metrics
from floodwatch.timefmt import to_bangkok

LEVEL_WORDS = {0: "", 1: "watch", 2: "WARNING", 3: "EVACUATE"}
PLAIN_EVERY_S = 10.0


@dataclass(frozen=True)
class ZoneStatus:
    zone_id: str
    alert_level: int  # 0 normal .. 3 evacuate, as the alert service announced it
    highest_level_m: float | None  # the highest water level among the zone's gauges right now


@dataclass(frozen=True)
class DemoStatus:
    sim_time_s: float
    readings_stored: int
    stations_online: int
    stations_total: int
    alerts_raised: int
    line_delivered: int
    zones: tuple[ZoneStatus, ...]


def format_status(status: DemoStatus, width: int | None = None) -> str:
    """One line; cut to ``width`` characters (a terminal's) with an ellipsis when longer."""
    when = to_bangkok(status.sim_time_s)
    parts = [
        f"sim {when.day} {when:%b %H:%M}",
        f"{status.readings_stored:,} readings",
        f"{status.stations_online}/{status.stations_total} online",
        f"{status.alerts_raised} alert{'s' if status.alerts_raised != 1 else ''}",
        f"{status.line_delivered} LINE",
    ]
    zones = []
    for z in status.zones:
        level = "–" if z.highest_level_m is None else f"{z.highest_level_m:.2f} m"
        word = LEVEL_WORDS.get(z.alert_level, str(z.alert_level))
        zones.append(f"{z.zone_id} {level}" + (f" {word}" if word else ""))
    line = " | ".join(parts + ([" · ".join(zones)] if zones else []))
    if width is not None and len(line) > width:
        line = line[: max(1, width - 1)] + "…"
    return line


def snapshot(system: Any, now_s: float) -> DemoStatus:
    """The figures of a running system (ingest, alerts, page) at simulated time ``now_s``."""
    settings = system.settings
    statuses = system.app.state.page.statuses()
    # Other agencies' gauges are not ours to be online or to flood a zone (their feed's health is on the page).
    own = {s.id for s in settings.own_stations}
    latest = system.store.latest([s.id for s in settings.level_stations if s.id in own])
    try:
        announced = system.alerts.zone_levels()
    except Exception:  # the status line must never stop the demo
        announced = {}
    zones = []
    for zone in settings.zones:
        levels = [r.water_level_m for sid, r in latest.items()
                  if r.water_level_m is not None and settings.station(sid).zone == zone.id]
        entry = announced.get(zone.id, {})
        level = int(entry.get("level", 0)) if isinstance(entry, dict) else int(entry or 0)
        zones.append(ZoneStatus(zone.id, level, max(levels) if levels else None))
    return DemoStatus(
        sim_time_s=now_s,
        readings_stored=int(metrics.total("floodwatch_readings_ingested_total")),
        # "online" from the node itself, "reporting" from the offline check once a silent one sends again.
        # Our own nodes only: external stations have no node to be online (their feed's health is shown).
        stations_online=sum(1 for sid, s in statuses.items()
                            if sid in own and s.status in ("online", "reporting")),
        stations_total=len(own),
        alerts_raised=int(metrics.total("floodwatch_alerts_raised_total")),
        line_delivered=int(metrics.total("floodwatch_line_recipients_delivered_total")),
        zones=tuple(zones),
    )


class StatusPrinter:
    """Redraw the status in place on a terminal; a plain line every ``PLAIN_EVERY_S`` elsewhere."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.in_place = self.out.isatty()
        self._last_plain = 0.0
        self._drawn = False

    def show(self, line_for_width: Any) -> None:
        """``line_for_width(width)`` makes the line; called every second or so."""
        if self.in_place:
            width = _terminal_width(self.out)
            self.out.write("\r\x1b[K" + line_for_width(width))
            self._drawn = True
            self.out.flush()
        elif time.monotonic() - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = time.monotonic()
            self.out.write(line_for_width(None) + "\n")
            self.out.flush()

    def clear(self) -> None:
        """End the line in place, so what is printed next starts on its own line."""
        if self.in_place and self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def _terminal_width(out: TextIO) -> int:
    import os

    try:
        columns = os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    return columns - 1 if columns >= 20 else 119  # a terminal that does not say its size: assume a wide one


class ClearingStream:
    """stderr for log lines on a terminal that also shows the status line: clear that line first."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write("\r\x1b[K" + text if text else text)

    def flush(self) -> None:
        self.stream.flush()
