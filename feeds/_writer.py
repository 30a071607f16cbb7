"""Values a feed fetched -> the same validation, QC and store path ingest uses.

A feed's values become MQTT-contract payloads for the station's own topic and
go through :func:`floodwatch.ingest.payload.parse_message` (physics limits,
kind checks, timestamps, the registry), then :class:`~floodwatch.ingest.QcChecker`
(the QARTOD tests), then the store: ``insert_new`` for observations (the
store's keys drop what is already there), ``replace_readings`` for predicted
series (a new load supersedes the previous one over the times it covers).
Refused values go to the store's quarantine, like refused MQTT payloads.
Nothing here moves a cursor: the caller does that after :meth:`FeedWriter.write`
returns, i.e. after the store has committed and synced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from floodwatch.errors import FeedError, PayloadError, StoreError, StoreUnavailable
from floodwatch.ingest.checker import QcChecker
from floodwatch.ingest.payload import QUARANTINE_PAYLOAD_BYTES, TipCounters, parse_message
from floodwatch.store.base import Rejection
from floodwatch.vocabulary import Reading

if TYPE_CHECKING:
    from floodwatch.settings import Settings

log = logging.getLogger(__name__)

# Readings per synthetic payload: well under ingest's size and count limits.
_CHUNK = 400
SEED_HISTORY_S = 7 * 86_400.0


@dataclass(frozen=True)
class FeedValue:
    """One value a feed reported for a registry station, in the station's units, before validation."""

    station_id: str
    ts_s: float
    field: str  # water_level_m | discharge_m3_s | rain_mm
    value: float


@dataclass
class WriteOutcome:
    stored: list[Reading] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[PayloadError] = field(default_factory=list)
    qc_failed: list[Reading] = field(default_factory=list)


class FeedWriter:
    """Validate, QC and store one feed's values; thread-safe per feed (one run at a time)."""

    def __init__(self, settings: Settings, store: object, feed_id: str,
                 on_stored: Callable[[list[Reading]], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.feed_id = feed_id
        self.on_stored = on_stored
        self._checker = QcChecker(settings)
        self._stations = {s.id: s for s in settings.stations}
        self.tips = TipCounters()

    def seed(self, station_ids: Sequence[str], now_s: float) -> None:
        """Remember each observed station's recent stored readings, so QC judges new ones against them."""
        for sid in station_ids:
            station = self._stations.get(sid)
            if station is None or station.series == "predicted":
                continue
            try:
                readings = self.store.read_readings(sid, now_s - SEED_HISTORY_S, now_s + 3600.0)  # type: ignore[attr-defined]
            except StoreError as exc:
                log.warning("event=feed_qc_seed_skipped feed=%s station=%s error=%s", self.feed_id, sid, exc)
                continue
            self._checker.seed(readings[-64:])

    # ---------------------------------------------------------------- inputs
    def write_values(self, values: Sequence[FeedValue], now_s: float) -> WriteOutcome:
        """Values of registry stations -> payloads -> :meth:`write_payloads`."""
        by_station: dict[str, list[FeedValue]] = {}
        for v in values:
            by_station.setdefault(v.station_id, []).append(v)
        payloads: list[tuple[str, bytes]] = []
        for sid, vs in by_station.items():
            vs.sort(key=lambda v: v.ts_s)
            for start in range(0, len(vs), _CHUNK):
                items = [{"ts": round(v.ts_s, 3), v.field: float(v.value)} for v in vs[start:start + _CHUNK]]
                payloads.append((sid, json.dumps({"readings": items}, allow_nan=True).encode()))
        return self.write_payloads(payloads, now_s)

    def write_payloads(self, payloads: Sequence[tuple[str, bytes]], now_s: float,
                       tips: TipCounters | None = None) -> WriteOutcome:
        """MQTT-contract payloads for registry stations: parsed exactly as ingest parses a node's message."""
        prefix, site = self.settings.mqtt.topic_prefix, self.settings.site.id
        readings: list[Reading] = []
        errors: list[tuple[PayloadError, str, bytes]] = []
        for sid, payload in payloads:
            topic = f"{prefix}/{site}/{sid}/telemetry"
            parsed = parse_message(topic, payload, self.settings, now_s, tips, from_feed=True)
            readings.extend(parsed.readings)
            errors.extend((err, sid, payload) for err in parsed.errors)
        return self._store(readings, errors, now_s)

    # ----------------------------------------------------------------- store
    def _store(self, readings: list[Reading], errors: list[tuple[PayloadError, str, bytes]],
               now_s: float) -> WriteOutcome:
        outcome = WriteOutcome(rejected=[e for e, _, _ in errors])
        predicted = {sid for sid, s in self._stations.items() if s.series == "predicted"}
        observed = [r for r in readings if r.station_id not in predicted]
        if observed:
            observed = self._checker.check(observed, now_s)
        by_prediction: dict[str, list[Reading]] = {}
        for r in readings:
            if r.station_id in predicted:
                by_prediction.setdefault(r.station_id, []).append(r)
        rejections = [
            Rejection(received_s=now_s, topic=f"feed/{self.feed_id}/{sid}", reason=err.reason, detail=err.detail,
                      payload=payload[:QUARANTINE_PAYLOAD_BYTES], station_id=sid if sid in self._stations else None)
            for err, sid, payload in errors
        ]
        try:
            stored = self.store.insert_new(observed) if observed else []  # type: ignore[attr-defined]
            for sid, rows in by_prediction.items():
                rows.sort(key=lambda r: r.ts_s)
                # Judged alone: the previous prediction over these times is being replaced, not extended.
                rows = QcChecker(self.settings).check(rows, now_s)
                stored += self.store.replace_readings(sid, rows[0].ts_s, rows[-1].ts_s, rows)  # type: ignore[attr-defined]
            if rejections:
                self.store.write_rejections(rejections)  # type: ignore[attr-defined]
            if hasattr(self.store, "sync"):
                self.store.sync()  # the cursor may move only once the store cannot lose this
        except StoreUnavailable as exc:
            raise FeedError("store_unavailable", f"the store cannot take the feed's readings now ({exc}); "
                            "nothing was lost: the next run fetches them again", self.feed_id) from exc
        except StoreError as exc:
            raise FeedError("store_refused", f"the store refused the feed's readings ({exc})", self.feed_id) from exc
        outcome.stored = stored
        outcome.duplicates = len(observed) - sum(1 for r in stored if r.station_id not in predicted)
        outcome.qc_failed = [r for r in stored if int(r.qc_flag) == 4]
        if stored and self.on_stored is not None:
            try:
                self.on_stored(stored)
            except Exception:  # alerts or the page failing must not lose the feed's run
                log.exception("event=feed_callback_failed feed=%s", self.feed_id)
        return outcome
