"""The floodwatch error tree.

    FloodwatchError
    ├── ConfigError          settings or the station registry are wrong
    ├── PayloadError         an MQTT payload broke the contract (carries reason)
    ├── StoreError           the time-series store failed
    │   └── StoreUnavailable the store cannot be reached right now; retry later
    ├── SchemaError          a SQLite file is newer than this floodwatch, or upgrading it failed
    ├── ForecastError        inputs to the forecaster break its rules
    ├── FeedError            an external feed could not be fetched, parsed or stored (carries reason)
    └── AlertError           deciding or delivering an alert failed
        └── LineApiError     the LINE Messaging API answered with an error

Errors from libraries are re-raised at the boundary as the nearest of these
with ``from exc`` so callers never import paho, sqlite3 or linebot to catch.
"""

from __future__ import annotations


class FloodwatchError(Exception):
    """Root of every error floodwatch raises on purpose."""


class ConfigError(FloodwatchError):
    """Settings or the station registry are missing, malformed or inconsistent."""


class PayloadError(FloodwatchError):
    """An MQTT payload broke the contract; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str, station_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.station_id = station_id


class StoreError(FloodwatchError):
    """The time-series store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (locked, down); the caller should spool and retry."""


class SchemaError(FloodwatchError):
    """A SQLite file's schema is newer than this floodwatch knows, or upgrading it failed."""
class FeedError(FloodwatchError):
    """An external feed could not be fetched, parsed or stored; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str, feed_id: str | None = None, station_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.feed_id = feed_id
        self.station_id = station_id


class ForecastError(FloodwatchError):
    """Inputs to the forecaster break its rules (shapes, units, grid)."""


class AlertError(FloodwatchError):
    """Deciding or delivering an alert failed."""


class LineApiError(AlertError):
    """The LINE Messaging API answered with an error status."""

    def __init__(self, status: int, message: str, retry_key: str | None = None) -> None:
        super().__init__(f"LINE API answered {status}: {message}")
        self.status = status
        self.message = message
        self.retry_key = retry_key
