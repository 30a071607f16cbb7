"""Per-station QC history: the small stateful wrapper around the pure tests in :mod:`ingest.qc`.

Ingest keeps the last ``HISTORY`` readings of each station in memory (seeded
from the store at start), so each new batch is judged against its recent
past without a store read on the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from floodwatch.ingest import qc

from floodwatch.vocabulary import QcFlag, Reading, StationId

if TYPE_CHECKING:
    from floodwatch.settings import Settings

HISTORY = 64
CHUNK = 256
_EMPTY = np.empty(0)


class QcChecker:
    """Flags readings with QARTOD flags, remembering each station's recent values."""

    def __init__(self, settings: Settings, history: int = HISTORY) -> None:
        self._limits = {s.id: qc.limits_for(s) for s in settings.stations}
        self._interval_s = {s.id: s.publish_interval_s for s in settings.stations}
        self._history = history
        # station -> (t_s (K,), values (K,)) in time order
        self._tails: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        # station -> times in the tail whose reading failed the spike test when judged
        self._spiked: dict[str, np.ndarray] = {}

    def seed(self, readings: Sequence[Reading]) -> None:
        """Remember stored readings (any order) as history; does not flag them."""
        by_station: dict[StationId, list[Reading]] = {}
        for r in readings:
            by_station.setdefault(r.station_id, []).append(r)
        for sid, rs in by_station.items():
            limits = self._limits.get(sid)
            if limits is None:
                continue
            t = np.array([r.ts_s for r in rs], dtype=float)
            v = np.array([_value(r, limits.field) for r in rs], dtype=float)
            self._remember(sid, t, v)

    def check(self, readings: Sequence[Reading], now_s: float) -> list[Reading]:
        """Return the readings with ``qc_flag`` and ``qc_tests`` set, in the same order.

        All stations of one kind (level, rain) in the batch are judged in one
        vectorised call over a (stations, history + new) array. Large batches
        (a fleet flushing buffers) go in chunks: the flat-line test costs
        O(new x history) per station.
        """
        if len(readings) > CHUNK:
            out_all: list[Reading] = []
            for start in range(0, len(readings), CHUNK):
                out_all.extend(self.check(readings[start:start + CHUNK], now_s))
            return out_all
        out: list[Reading | None] = [None] * len(readings)
        by_station: dict[StationId, list[int]] = {}
        for i, r in enumerate(readings):
            by_station.setdefault(r.station_id, []).append(i)
        groups: dict[str, list[StationId]] = {}
        for sid in by_station:
            limits = self._limits.get(sid)
            if limits is None:  # parse_payload refuses unknown stations; keep the reading unjudged
                for i in by_station[sid]:
                    out[i] = readings[i]
                continue
            groups.setdefault(limits.field, []).append(sid)
        for field, sids in groups.items():
            self._check_group(field, sids, by_station, readings, now_s, out)
        return out  # type: ignore[return-value]

    def _check_group(self, field: str, sids: list[StationId], by_station: dict[StationId, list[int]],
                     readings: Sequence[Reading], now_s: float, out: list) -> None:
        rows_t, rows_v, new_pos = [], [], []
        for sid in sids:
            idxs = by_station[sid]
            new_t = np.fromiter((readings[i].ts_s for i in idxs), dtype=float, count=len(idxs))
            new_v = np.fromiter((_value(readings[i], field) for i in idxs), dtype=float, count=len(idxs))
            hist_t, hist_v = self._tails.get(sid, (_EMPTY, _EMPTY))
            t = np.concatenate([hist_t, new_t])
            v = np.concatenate([hist_v, new_v])
            if t.size < 2 or bool((t[1:] >= t[:-1]).all()):  # the usual case: readings arrive in order
                pos = np.arange(hist_t.size, t.size)
            else:
                order = np.argsort(t, kind="stable")
                t, v = t[order], v[order]
                where = np.empty_like(order)
                where[order] = np.arange(order.size)
                pos = where[hist_t.size:]  # position of each new reading in the sorted series
            rows_t.append(t)
            rows_v.append(v)
            new_pos.append(pos)
            self._remember(sid, t, v, presorted=True)
        width = max(t.size for t in rows_t)
        # Right-align every station's series; NaN on the left is "no earlier reading".
        t_mat = np.full((len(sids), width), np.nan)
        v_mat = np.full((len(sids), width), np.nan)
        spiked = np.zeros((len(sids), width), dtype=bool)
        for row, (t, v) in enumerate(zip(rows_t, rows_v, strict=True)):
            t_mat[row, width - t.size:] = t
            v_mat[row, width - v.size:] = v
            before = self._spiked.get(sids[row])
            if before is not None and before.size:
                spiked[row, width - t.size:] = np.isin(t, before)
        limits = qc.stack_limits([self._limits[sid] for sid in sids])
        interval = np.array([self._interval_s[sid] for sid in sids])
        first_new = min(int(pos.min()) + width - t.size for pos, t in zip(new_pos, rows_t, strict=True))
        flags, tests = qc.run_tests(v_mat, t_mat, now_s, limits, interval, last=width - first_new,
                                    failed_before=spiked)
        for row, sid in enumerate(sids):
            shift = width - rows_t[row].size
            cols = new_pos[row] + shift
            new_flags = flags[row, cols].tolist()
            for k, i in enumerate(by_station[sid]):
                flag = new_flags[k]
                text = qc.describe(tests, (row, int(cols[k]))) if flag != qc.PASS else ""
                out[i] = _with_flag(readings[i], _FLAGS[flag], text)
            if "spike" in tests:
                # Remembered for the next batches, whose spike test no longer judges these readings.
                new_spikes = t_mat[row, cols][tests["spike"][row, cols] == qc.FAIL]
                kept = self._spiked.get(sid, np.empty(0))
                first_kept = self._tails[sid][0][0] if self._tails[sid][0].size else np.inf
                self._spiked[sid] = np.concatenate([kept[kept >= first_kept], new_spikes])

    def _remember(self, sid: str, t: np.ndarray, v: np.ndarray, presorted: bool = False) -> None:
        if not presorted:
            old_t, old_v = self._tails.get(sid, (np.empty(0), np.empty(0)))
            t = np.concatenate([old_t, t])
            v = np.concatenate([old_v, v])
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
        self._tails[sid] = (t[-self._history:].copy(), v[-self._history:].copy())


_FLAGS = {int(f): f for f in QcFlag}


def _with_flag(r: Reading, flag: QcFlag, tests: str) -> Reading:
    # Positional construction: dataclasses.replace costs ~5x more on the hot path.
    return Reading(r.station_id, r.ts_s, r.seq, r.boot, r.water_level_m, r.rain_mm, r.battery_v, r.rssi_dbm,
                   flag, tests, r.received_s, r.discharge_m3_s)


def _value(r: Reading, field: str) -> float:
    x = getattr(r, field)
    return np.nan if x is None else float(x)
