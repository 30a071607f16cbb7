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

Field = Literal["water_level_m", "rain_mm", "battery_v", "rssi_dbm"]


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
