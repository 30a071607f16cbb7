"""Forecasting: numbers only, every station in one vectorised call.

Pure numpy/scipy over arrays shaped ``(stations, time)`` on a regular grid,
NaN marking missing or QC-failed samples. No I/O, no clocks, no globals.

* :func:`fit` -> :class:`ForecastModel` (daily: the expensive part),
  :func:`update` (each cycle: the fitted model moved to the newest data) and
  :func:`predict` -> :class:`Forecast`, or all at once with
  :func:`forecast_stations`. Stations may read upstream gauges and predicted
  series (``upstream_m`` / ``predicted_m`` and per-station links).
* :func:`combine`: one model from the models of disjoint station sets (a
  refit of some stations spliced into the daily fit).
* :func:`model_to_arrays` / :func:`model_from_arrays`: a fitted model as named
  arrays, for the shell to keep in a file.
* :func:`rolling_forecasts`: one gauge's record forecast from many origins,
  fitted daily as production does (what ``floodwatch backtest`` replays);
  :func:`rolling_origin_backtest` scores it.
* :func:`fit_tide` / :func:`predict_tide`: the harmonic tide alone.
* :func:`rolling_origin_backtest`: the evaluation behind ``floodwatch backtest``.
* :func:`forecast_origins` -> :class:`OriginForecasts`: one gauge forecast at every
  run of the production schedule over years (``floodwatch verify``).

See docs/forecasting.md for the method.
"""

from floodwatch.models._forecast import (
    Forecast,
    ForecastModel,
    combine,
    exceedance_probability,
    first_crossing_time,
    fit,
    forecast_stations,
    history_needed_s,
    predict,
    rise_rate_cm_per_h,
    take_stations,
    unseen_trend_m_per_h,
    update,
)
from floodwatch.models._origins import OriginForecasts, bin_like_store, forecast_origins
from floodwatch.models._rolling import RollingForecasts, rolling_forecasts
from floodwatch.models._serial import model_from_arrays, model_to_arrays
from floodwatch.models._tide import TideFit, fit_tide, predict_tide
from floodwatch.models.backtest import rolling_origin_backtest

__all__ = [
    "Forecast",
    "ForecastModel",
    "OriginForecasts",
    "RollingForecasts",
    "TideFit",
    "bin_like_store",
    "combine",
    "exceedance_probability",
    "first_crossing_time",
    "fit",
    "fit_tide",
    "forecast_origins",
    "forecast_stations",
    "history_needed_s",
    "model_from_arrays",
    "model_to_arrays",
    "predict",
    "predict_tide",
    "rise_rate_cm_per_h",
    "rolling_forecasts",
    "rolling_origin_backtest",
    "take_stations",
    "unseen_trend_m_per_h",
    "update",
]
