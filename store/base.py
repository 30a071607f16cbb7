"""The store interface every stage codes against.

Writers (ingest) hand over batches of :class:`~floodwatch.vocabulary.Reading`;
readers (the forecaster, alerts, the page) take windows for many stations
at once as arrays on a regular grid, or the raw readings of one station.
Implementations: :mod:`store.sqlite` (embedded default) and
:mod:`store.influx` (InfluxDB 2.x). :func:`store.open_store` picks one from
``settings.store.url``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from floodwatch.vocabulary import Reading, StationId

Field = Literal["water_level_m", "rain_mm", "battery_v", "rssi_dbm", "discharge_m3_s"]


@dataclass(frozen=True)
class WriteResult:
    stored: int
    duplicates: int


@dataclass(frozen=True)
class Window:
    """Values of one field for many stations on a regular time grid.

    ``t_s`` (T,) are the grid times (UTC epoch s, the start of each bin);
    ``values`` (S, T) the bin means (levels, battery, signal) or sums (rain),
    NaN where a station has no usable reading in that bin; rows follow
    ``station_ids``.
    """

    station_ids: tuple[StationId, ...]
    t_s: np.ndarray
    values: np.ndarray


def empty_window(
    station_ids: Sequence[StationId], field: str, fields: Sequence[str], start_s: float, end_s: float, step_s: float
) -> Window:
    """Check a window request and return its grid, every value NaN, for a store to fill.

    Raises :class:`~floodwatch.errors.StoreError` naming the rule for an unknown
    field or an empty or reversed window.
    """
    from floodwatch.errors import StoreError

    if field not in fields:
        raise StoreError(f"field {field!r} is not stored; use one of {', '.join(fields)}")
    if not (step_s > 0 and end_s > start_s):
        raise StoreError(
            f"window needs end_s > start_s and step_s > 0; got start_s={start_s} end_s={end_s} step_s={step_s}"
        )
    n_bins = int(np.ceil((end_s - start_s) / step_s))
    t_s = start_s + step_s * np.arange(n_bins, dtype=float)
    return Window(tuple(station_ids), t_s, np.full((len(station_ids), n_bins), np.nan))


class Store(Protocol):
    def write_batch(self, readings: Sequence[Reading]) -> WriteResult:
        """Store readings durably; drop duplicates by (station, ts) or (station, boot, seq)."""
        ...

    def read_window(
        self,
        station_ids: Sequence[StationId],
        field: Field,
        start_s: float,
        end_s: float,
        step_s: float,
        *,
        include_failed: bool = False,
    ) -> Window:
        """Bin readings in [start_s, end_s) onto a grid of ``step_s``; QC-failed excluded by default."""
        ...

    def read_readings(self, station_id: StationId, start_s: float, end_s: float) -> list[Reading]:
        """Every stored reading of one station in [start_s, end_s), oldest first, with QC flags."""
        ...

    def latest(self, station_ids: Sequence[StationId] | None = None) -> dict[StationId, Reading]:
        """The newest reading per station (any QC flag)."""
        ...

    def close(self) -> None: ...


# --- Added by the ingest/store stage (helper E): quarantine, retention, stats. ---


@dataclass(frozen=True)
class Rejection:
    """A payload ingest refused, kept so an officer can see what a node sent and why.

    ``reason`` is a short code (``unknown_station``, ``bad_json``, ``out_of_physics``...),
    ``detail`` the sentence that names the fix; ``payload`` the bytes as received
    (truncated to a few kilobytes for oversized ones).
    """

    received_s: float
    topic: str
    reason: str
    detail: str
    payload: bytes
    station_id: str | None = None


@dataclass(frozen=True)
class StoreStats:
    readings: int
    stations: int
    oldest_s: float | None
    newest_s: float | None
    quarantined: int


class QuarantineStore(Protocol):
    """What ingest needs beyond :class:`Store`; both implementations provide it."""

    def insert_new(self, readings: Sequence[Reading]) -> list[Reading]:
        """Commit readings and return those actually stored (duplicates left out), in order.

        Committed means visible to readers and safe from a process crash; call
        :meth:`sync` before telling anyone upstream (the broker) it is safe.
        """
        ...

    def sync(self) -> None:
        """Make every earlier ``insert_new`` survive power loss (one fsync for all)."""
        ...

    def write_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Keep refused payloads in the quarantine, durably."""
        ...

    def quarantine(self, limit: int = 100, station_id: str | None = None) -> list[Rejection]:
        """The newest quarantined payloads first."""
        ...

    def quarantine_counts(self) -> dict[tuple[str, str], int]:
        """Quarantined payloads per (reason, station); station '' when unknown."""
        ...

    def apply_retention(self, now_s: float) -> int:
        """Delete readings older than the retention window; return how many went."""
        ...

    def replace_readings(self, station_id: StationId, start_s: float, end_s: float,
                         readings: Sequence[Reading]) -> list[Reading]:
        """Replace one station's readings in [start_s, end_s] (a new prediction over the times it covers)."""
        ...

    def stats(self) -> StoreStats: ...
