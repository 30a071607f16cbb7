"""Notice stations that have gone quiet, even when their last will never arrived.

A node's MQTT last will says ``offline`` when its connection drops, but a
node whose sensor hangs while its radio stays up, or a broker restart, can
leave a station silent without one. This job compares each station's newest
reading with its publish interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from floodwatch import metrics
from floodwatch.clock import Clock
from floodwatch.settings import Settings
from floodwatch.vocabulary import StationId
from floodwatch.store.base import Store

log = logging.getLogger(__name__)

SILENT_AFTER_INTERVALS = 3.0

metrics.describe("floodwatch_last_reading_age_seconds", "gauge", "seconds since the newest stored reading")


def silent_stations(
    last_ts_s: Mapping[StationId, float | None],
    publish_interval_s: Mapping[StationId, float],
    now_s: float,
    intervals: float = SILENT_AFTER_INTERVALS,
) -> set[StationId]:
    """Stations whose newest reading is older than ``intervals`` publish intervals (or that never reported)."""
    silent = set()
    for station_id, interval_s in publish_interval_s.items():
        ts = last_ts_s.get(station_id)
        if ts is None or now_s - ts > intervals * interval_s:
            silent.add(station_id)
    return silent


class OfflineCheck:
    """Reports each station going silent once, and coming back once."""

    def __init__(self, settings: Settings, store: Store, clock: Clock,
                 on_status: Callable[[StationId, str, float], None]) -> None:
        self._store = store
        self._clock = clock
        self._on_status = on_status
        # External stations have no node to go silent: their feed's health says how current they are.
        self._intervals = {s.id: s.publish_interval_s for s in settings.own_stations}
        self._silent: set[StationId] = set()

    def run_once(self) -> set[StationId]:
        now_s = self._clock.now_s()
        latest = self._store.latest(list(self._intervals))
        last_ts = {sid: (r.ts_s if r is not None else None) for sid, r in latest.items()}
        for sid, ts in last_ts.items():
            if ts is not None:
                metrics.set_gauge("floodwatch_last_reading_age_seconds", max(0.0, now_s - ts), station=sid)
        silent = silent_stations(last_ts, self._intervals, now_s)
        for sid in sorted(silent - self._silent):
            log.warning("station silent station=%s last_ts=%s", sid, last_ts.get(sid))
            self._on_status(sid, "silent", now_s)
        for sid in sorted(self._silent - silent):
            log.info("station reporting again station=%s", sid)
            self._on_status(sid, "reporting", now_s)
        self._silent = silent
        return silent
