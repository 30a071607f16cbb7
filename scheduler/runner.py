"""apscheduler wiring: which periodic jobs run, how often in real seconds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from floodwatch.clock import Clock

log = logging.getLogger(__name__)


class PeriodicWork:
    """Runs jobs every N *simulated* seconds, so an accelerated demo forecasts faster too."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._scheduler = BackgroundScheduler(timezone="UTC")

    def every(self, name: str, interval_s: float, job: Callable[[], object], *, run_now: bool = True) -> None:
        real_interval_s = max(interval_s / self._clock.factor, 0.2)

        def guarded() -> None:
            # One failing run must not stop the schedule; the next run tries again.
            try:
                job()
            except Exception:
                log.exception("periodic job failed job=%s", name)

        kwargs = {}
        if run_now:
            kwargs["next_run_time"] = datetime.now(timezone.utc)
        self._scheduler.add_job(
            guarded,
            "interval",
            seconds=real_interval_s,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **kwargs,
        )
        log.info("scheduled job=%s every_real_s=%.2f every_sim_s=%.0f", name, real_interval_s, interval_s)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self, wait: bool = True) -> None:
        """Stop scheduling; ``wait=False`` does not wait for a running job (a feed stuck on a slow source)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
