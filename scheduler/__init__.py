"""Periodic work on apscheduler: forecasts for every station, offline checks.

The shell around :mod:`models`: it reads windows from the store, calls the
pure forecaster once for all stations, and hands the result on.
"""

from floodwatch.scheduler.forecast_job import ForecastJob, IssuedForecast, departs_from_forecast
from floodwatch.scheduler.offline_job import OfflineCheck, silent_stations
from floodwatch.scheduler.runner import PeriodicWork

__all__ = ["departs_from_forecast", "ForecastJob", "IssuedForecast", "OfflineCheck", "PeriodicWork", "silent_stations"]
