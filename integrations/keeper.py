"""Keep what the forecaster and the alert service decided in the store, off their path.

Issued forecasts go to the store's ``write_forecast`` (both stores: exports and
Grafana read them); alert decisions go to InfluxDB's ``alert`` measurement when
InfluxDB is the store (Grafana annotates warnings with them; SQLite sites export
the alert service's own log instead). One thread does the writing, so a forecast
of thousands of stations never holds up an alert; if forecasts come faster than
the store takes them, only the newest is written (it covers the same times).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from floodwatch.errors import StoreError

log = logging.getLogger(__name__)

# Alert decisions kept for a retry while the store is away (InfluxDB down), newest dropped last.
MAX_PENDING_DECISIONS = 10_000


class StoreKeeper:
    """Writes issued forecasts and alert decisions to ``store`` from its own thread."""

    def __init__(self, store: Any, *, forecasts: bool = True) -> None:
        self.store = store
        self._keep_forecasts = forecasts and hasattr(store, "write_forecast")
        self._keep_decisions = hasattr(store, "write_alert_decisions")
        self._forecast: Any = None
        self._decisions: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="store-keeper", daemon=True)
        self.forecasts_written = 0
        self.decisions_written = 0

    def start(self) -> StoreKeeper:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is waiting, then stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def on_forecast(self, issued: Any) -> None:
        if self._keep_forecasts:
            with self._lock:
                self._forecast = issued
            self._wake.set()

    def on_decisions(self, decisions: list[dict[str, Any]], zones_changed: list[str]) -> None:
        if self._keep_decisions and decisions:
            with self._lock:
                self._decisions = (self._decisions + list(decisions))[-MAX_PENDING_DECISIONS:]
            self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait(5.0)
            self._wake.clear()
            self._write_pending()
            if self._stop.is_set():
                return

    def _write_pending(self) -> None:
        with self._lock:
            issued, self._forecast = self._forecast, None
            decisions, self._decisions = self._decisions, []
        if decisions:
            try:
                self.store.write_alert_decisions(decisions)
                self.decisions_written += len(decisions)
            except StoreError as exc:
                log.warning("event=alert_decisions_not_kept count=%d error=%s; retrying", len(decisions), exc)
                with self._lock:
                    self._decisions = (decisions + self._decisions)[-MAX_PENDING_DECISIONS:]
        if issued is not None:
            fc = issued.forecast
            try:
                self.forecasts_written += self.store.write_forecast(issued.issued_s, list(issued.station_ids),
                                                                    fc.t_s, fc.median_m, fc.lower_m, fc.upper_m)
            except StoreError as exc:  # the next forecast covers the same times
                log.warning("event=forecast_not_kept issued_s=%.0f error=%s", issued.issued_s, exc)
