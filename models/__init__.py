"""Forecasting: numbers only, every station in one vectorised call.

Pure numpy/scipy over arrays shaped ``(stations, time)`` on a regular grid,
NaN marking missing or QC-failed samples. No I/O, no clocks, no globals.

* :func:`fit` -> :class:`ForecastModel` and :func:`predict` -> :class:`Forecast`,
  or both at once with :func:`forecast_stations`.
* :func:`fit_tide` / :func:`predict_tide`: the harmonic tide alone.
* :func:`rolling_origin_backtest`: the evaluation behind ``floodwatch backtest``.
* :func:`forecast_origins` -> :class:`OriginForecasts`: one gauge forecast at every
  run of the production schedule over years (``floodwatch verify``).

See docs/forecasting.md for the method.
"""

from floodwatch.models._forecast import (
    Forecast,
    ForecastModel,
    exceedance_probability,
    first_crossing_time,
    fit,
    forecast_stations,
    predict,
    rise_rate_cm_per_h,
    unseen_trend_m_per_h,
)
from floodwatch.models._origins import OriginForecasts, bin_like_store, forecast_origins
from floodwatch.models._tide import TideFit, fit_tide, predict_tide
from floodwatch.models.backtest import rolling_origin_backtest

__all__ = [
    "Forecast",
    "ForecastModel",
    "OriginForecasts",
    "TideFit",
    "bin_like_store",
    "exceedance_probability",
    "first_crossing_time",
    "fit",
    "fit_tide",
    "forecast_origins",
    "forecast_stations",
    "predict",
    "predict_tide",
    "rise_rate_cm_per_h",
    "rolling_origin_backtest",
    "unseen_trend_m_per_h",
]
