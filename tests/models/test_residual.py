"""Residual-model features: read at the right times, never before a station's first reading."""

from __future__ import annotations

import numpy as np

from floodwatch.models._residual import _LAGS_H, _SHORT_LAG_H, _Series


def test_quarter_hour_change_is_read_from_the_fine_grid_at_every_row():
    dt_s = 600.0
    n = 10 * 144
    rng = np.random.default_rng(1)
    residual = np.cumsum(rng.normal(0.0, 0.01, (2, n)), axis=1)
    residual[1, :300] = np.nan  # a station that started later
    series = _Series(residual, None, np.zeros((2, n + 10)), dt_s, 720, 6)

    short = series.base()[1 + len(_LAGS_H)]

    lag = round(_SHORT_LAG_H * 3600.0 / dt_s)
    rows = series.row_index
    expected = residual[:, rows] - residual[:, rows - lag]
    assert np.allclose(short[0], expected[0])
    started = rows - lag >= 300
    assert np.allclose(short[1, started], expected[1, started])
    assert np.isnan(short[1, ~started]).all()  # no made-up change before the first reading


def test_damped_persistence_reads_the_distances_from_the_recent_means():
    # The damped candidate picks its two columns out of base() by position: they must be the
    # residual's distances from its 24-hour and 7-day means, whatever else base() grows.
    from floodwatch.models._residual import _DAMPED_COLUMNS, _MEAN_WINDOWS_H

    dt_s = 3600.0
    n = 20 * 24
    rng = np.random.default_rng(2)
    residual = np.cumsum(rng.normal(0.0, 0.01, (1, n)), axis=1)
    series = _Series(residual, None, np.zeros((1, n + 10)), dt_s, 720, 6)
    cols = series.base()
    rows = series.row_index
    for column, hours in zip(_DAMPED_COLUMNS, _MEAN_WINDOWS_H, strict=True):
        width = int(hours)
        usable = rows >= width - 1
        expected = [residual[0, r] - residual[0, r - width + 1 : r + 1].mean() for r in rows[usable]]
        assert np.allclose(cols[column][0, usable], expected)
