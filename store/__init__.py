"""The time-series store: one small interface, SQLite by default, InfluxDB when configured.

:func:`open_store` picks the implementation from ``settings.store.url``:

- ``sqlite:///var/floodwatch.db`` (relative to the working directory; the
  folder is created) or ``sqlite:////abs/path.db``: :class:`store.sqlite.SqliteStore`;
- ``influxdb+http://host:8086``, ``influxdb+https://...``, ``http://...`` or
  ``https://...``: :class:`store.influx.InfluxStore` with the token, org and
  bucket from ``settings.store``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from floodwatch.logs import redact_url
from floodwatch.errors import ConfigError
from floodwatch.store.base import Field, Rejection, Store, StoreStats, Window, WriteResult

if TYPE_CHECKING:
    from floodwatch.settings import Settings

__all__ = ["Field", "Rejection", "Store", "StoreStats", "Window", "WriteResult", "open_store"]


def open_store(settings: "Settings") -> Store:
    """Open the store ``settings.store.url`` names; the caller closes it."""
    cfg = settings.store
    url = cfg.url
    if url.startswith("sqlite:"):
        from floodwatch.store.sqlite import SqliteStore, path_from_url

        return SqliteStore(
            path_from_url(url), retention_days=cfg.retention_days, busy_timeout_s=cfg.busy_timeout_s
        )
    if url.startswith(("influxdb+http://", "influxdb+https://", "http://", "https://")):
        from floodwatch.store.influx import InfluxStore

        return InfluxStore.from_settings(settings)
    raise ConfigError(
        f"store url {redact_url(url)!r} is not understood; use sqlite:///var/floodwatch.db or "
        "influxdb+http://host:8086 (set FLOODWATCH_STORE__URL)"
    )
