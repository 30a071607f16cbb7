"""The feeds' shell: one object that opens the state, builds each configured feed and runs it.

:class:`FeedService` is what ``floodwatch serve`` starts (each feed scheduled
by apscheduler through ``scheduler.PeriodicWork``) and what ``floodwatch
feeds fetch --once`` runs by hand. Each run: the feed fetches and hands its
values to the :class:`~floodwatch.feeds._writer.FeedWriter` (validation, QC,
store, sync), then moves its cursor, then the feed's health is updated,
saved and passed to ``on_health``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from floodwatch import metrics
from floodwatch.errors import FeedError
from floodwatch.feeds._health import Problem, RunReport, classify, new_health, update_health
from floodwatch.feeds._state import FeedState, feed_state_path
from floodwatch.feeds._writer import FeedWriter
from floodwatch.vocabulary import Reading

if TYPE_CHECKING:
    from floodwatch.clock import Clock
    from floodwatch.settings import FeedConfig, Settings

log = logging.getLogger(__name__)

OnHealth = Callable[[str, dict[str, Any]], None]

metrics.describe("floodwatch_feed_runs_total", "counter", "feed runs, by feed and outcome (ok, failed)")
metrics.describe("floodwatch_feed_readings_stored_total", "counter", "readings a feed stored")
metrics.describe("floodwatch_feed_last_success_age_seconds", "gauge", "seconds since a feed's last successful run")


def _feed_class(kind: str) -> type:
    if kind == "thaiwater":
        from floodwatch.feeds.thaiwater import ThaiWaterFeed

        return ThaiWaterFeed
    if kind == "drop_folder":
        from floodwatch.feeds.dropfolder import DropFolderFeed

        return DropFolderFeed
    if kind == "csv_url":
        from floodwatch.feeds.csvurl import CsvUrlFeed

        return CsvUrlFeed
    from floodwatch.feeds.peer import PeerFeed

    return PeerFeed


def configuration_problems(settings: Settings) -> list[str]:
    """What ``floodwatch check`` reports about feeds beyond what loading the settings refuses.

    (A station naming an unknown feed, or a feed missing its url or folder, is
    refused when the settings load.)
    """
    problems = []
    feeds = {f.id: f for f in settings.feeds}
    for s in settings.external_stations:
        if s.feed is None:
            problems.append(
                f"external station {s.id!r} names no feed: nothing will bring its data except a manual "
                "`floodwatch import-csv`; add feed = \"<id>\" naming one of [[feeds]]"
                + (f" ({', '.join(feeds)})" if feeds else " (there are none yet)"))
    for f in settings.feeds:
        mine = [s for s in settings.stations if s.feed == f.id]
        if not mine and f.kind != "drop_folder":
            problems.append(f"feed {f.id!r} has no stations: add feed = \"{f.id}\" to the stations it brings, "
                            "or remove it")
        if f.kind == "floodwatch_mqtt" and f.username and not f.password_env:
            problems.append(f"feed {f.id!r} logs in as {f.username!r} without password_env: name the environment "
                            "variable that holds the password the peer's `floodwatch mqtt-config` made")
        for s in mine:
            if s.series == "predicted" and f.kind in ("thaiwater", "floodwatch_mqtt"):
                problems.append(f"station {s.id!r} is a predicted series but feed {f.id!r} ({f.kind}) brings "
                                "observations; load predictions from a drop_folder or csv_url feed")
            if f.kind == "floodwatch_mqtt" and s.kind == "discharge":
                problems.append(f"station {s.id!r}: a floodwatch peer shares gauges, not discharge")
    return problems


class FeedService:
    """Every configured feed of one site.

    Parameters
    ----------
    settings, store, clock : the process's settings, an open store and its clock.
    on_stored : called with the readings a feed newly stored (after the store synced).
    on_health : called with (feed id, classified health) after every run.
    """

    def __init__(self, settings: Settings, store: object, clock: Clock,
                 on_stored: Callable[[list[Reading]], None] | None = None,
                 on_health: OnHealth | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.on_stored = on_stored
        self.on_health = on_health
        self.state: FeedState | None = None
        self.feeds: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._started = False

    def start(self) -> FeedService:
        """Open the state file, build the enabled feeds, seed QC, connect peers (returns at once)."""
        if self._started:
            return self
        self._started = True
        self.state = FeedState(feed_state_path(self.settings), self.settings.feed_state.busy_timeout_s)
        now_s = self.clock.now_s()
        for cfg in self.settings.feeds:
            if not cfg.enabled:
                log.info("event=feed_disabled feed=%s", cfg.id)
                continue
            if self.settings.worker.is_partial and not any(s.feed == cfg.id for s in self.settings.stations):
                # A worker runs the feeds of its own zones' stations; the worker owning them runs this one.
                log.info("event=feed_elsewhere feed=%s reason=no stations in this worker's zones", cfg.id)
                continue
            writer = FeedWriter(self.settings, self.store, cfg.id, on_stored=self.on_stored)
            writer.seed([s.id for s in self.settings.stations if s.feed == cfg.id], now_s)
            feed = _feed_class(cfg.kind)(cfg, self.settings, writer, self.state, self.clock)
            if hasattr(feed, "start"):
                feed.start()
            self.feeds[cfg.id] = feed
            self._locks[cfg.id] = threading.Lock()
        metrics.add_collector(self._collect)
        for problem in configuration_problems(self.settings):
            log.warning("event=feed_config_problem detail=%r", problem)
        return self

    def stop(self) -> None:
        for feed in self.feeds.values():
            if hasattr(feed, "stop"):
                try:
                    feed.stop()
                except Exception:
                    log.exception("event=feed_stop_failed feed=%s", feed.cfg.id)
        state, self.state = self.state, None
        if state is not None:
            for lock in self._locks.values():  # let a run that is writing its health finish first
                if lock.acquire(timeout=2.0):
                    lock.release()
            state.close()
        self._started = False

    def schedule(self, every: Callable[..., None]) -> None:
        """Register each feed's run with ``every(name, interval_s, job)`` (``scheduler.PeriodicWork.every``)."""
        for feed_id, feed in self.feeds.items():
            every(f"feed-{feed_id}", feed.cfg.interval_s, lambda fid=feed_id: self.run_once(fid))

    # ------------------------------------------------------------------ runs
    def run_once(self, feed_id: str) -> RunReport:
        """Run one feed now; never raises for the feed's own failures (they go into its health)."""
        feed = self.feeds.get(feed_id)
        if feed is None:
            known = ", ".join(self.feeds) or "none enabled"
            raise FeedError("unknown_feed", f"feed {feed_id!r} is not running here (known: {known})", feed_id)
        if self.state is None:
            raise FeedError("stopped", "the feeds are stopped", feed_id)
        with self._locks[feed_id]:
            try:
                report = feed.run_once()
            except FeedError as err:
                report = RunReport(ok=False, error=Problem(self.clock.now_s(), err.reason, err.detail,
                                                           err.station_id))
            except Exception as exc:  # a bug must not stop the schedule; say what it was
                log.exception("event=feed_run_crashed feed=%s", feed_id)
                report = RunReport(ok=False, error=Problem(self.clock.now_s(), "internal_error",
                                                           f"{type(exc).__name__}: {exc}"))
            now_s = self.clock.now_s()
            cfg = feed.cfg
            state = self.state
            if state is None:  # stopped while the run was waiting on its source
                return report
            try:
                old = state.health(feed_id) or new_health(feed_id, cfg.kind, cfg.name_th, cfg.name_en)
                health = update_health(old, report, now_s)
                state.set_health(feed_id, health)
            except FeedError as err:
                log.error("event=feed_health_not_saved feed=%s error=%s", feed_id, err)
                health = update_health(new_health(feed_id, cfg.kind, cfg.name_th, cfg.name_en), report, now_s)
        self._log(feed_id, report)
        metrics.inc("floodwatch_feed_runs_total", feed=feed_id, outcome="ok" if report.ok else "failed")
        if report.stored:
            metrics.inc("floodwatch_feed_readings_stored_total", report.stored, feed=feed_id)
        if self.on_health is not None:
            try:
                self.on_health(feed_id, self.describe(feed_id, health))
            except Exception:
                log.exception("event=feed_health_callback_failed feed=%s", feed_id)
        return report

    def _log(self, feed_id: str, report: RunReport) -> None:
        if report.ok and not report.fetched and not report.problems:
            log.debug("event=feed_run feed=%s nothing new", feed_id)
        elif report.ok:
            log.info("event=feed_run feed=%s fetched=%d stored=%d duplicates=%d rejected=%d problems=%d", feed_id,
                     report.fetched, report.stored, report.duplicates, report.rejected, len(report.problems))
        else:
            err = report.error
            log.warning("event=feed_failed feed=%s reason=%s detail=%r stored=%d", feed_id,
                        err.reason if err else "?", err.detail if err else "", report.stored)
        for p in report.problems:
            log.warning("event=feed_problem feed=%s reason=%s station=%s detail=%r", feed_id, p.reason,
                        p.station_id or "-", p.detail)

    # ---------------------------------------------------------------- health
    def describe(self, feed_id: str, health: dict[str, Any] | None = None) -> dict[str, Any]:
        """A feed's health as the page and the CLI show it (see :func:`describe_feed`)."""
        cfg = self.settings.feed(feed_id)
        if health is None and self.state is not None:
            health = self.state.health(feed_id)
        return describe_feed(self.settings, cfg, health, self.clock.now_s())

    def health(self) -> list[dict[str, Any]]:
        """Every configured feed's health (disabled ones too), in configuration order."""
        out = []
        for cfg in self.settings.feeds:
            stored = self.state.health(cfg.id) if self.state is not None else None
            out.append(describe_feed(self.settings, cfg, stored, self.clock.now_s(), running=cfg.id in self.feeds))
        return out

    def _collect(self) -> None:
        now_s = self.clock.now_s()
        if self.state is None:
            return
        for feed_id in self.feeds:
            h = self.state.health(feed_id) or {}
            if h.get("last_success_s") is not None:
                metrics.set_gauge("floodwatch_feed_last_success_age_seconds", now_s - h["last_success_s"],
                                  feed=feed_id)


def describe_feed(settings: Settings, cfg: FeedConfig, health: dict[str, Any] | None, now_s: float,
                  running: bool = True) -> dict[str, Any]:
    """Configuration, stored health and its classification in one JSON-able dict."""
    stations = [s for s in settings.stations if s.feed == cfg.id]
    predicted = {s.id for s in stations if s.series == "predicted"}
    verdict = classify(health, now_s, stale_after_s=cfg.stale_after_s, enabled=cfg.enabled and running,
                       predicted=predicted)
    h = health or {}
    per_station = {}
    for s in stations:
        v = verdict["stations"].get(s.id, {})
        per_station[s.id] = {"last_data_s": v.get("last_data_s"), "lag_s": v.get("lag_s"),
                             "stale": bool(v.get("stale")), "missing": bool(v.get("missing")),
                             "series": s.series}
    return {
        "id": cfg.id,
        "kind": cfg.kind,
        "name_th": cfg.name_th or cfg.id,
        "name_en": cfg.name_en or cfg.id,
        "enabled": cfg.enabled,
        "interval_s": cfg.interval_s,
        "state": verdict["state"],
        "lag_s": verdict["lag_s"],
        "last_attempt_s": h.get("last_attempt_s"),
        "last_success_s": h.get("last_success_s"),
        "consecutive_failures": int(h.get("consecutive_failures") or 0),
        "failures_total": int(h.get("failures_total") or 0),
        "last_error": h.get("last_error"),
        "stored_total": int(h.get("stored_total") or 0),
        "last_stored": int(h.get("last_stored") or 0),
        "problems": list(h.get("problems") or [])[:10],
        "stations": per_station,
    }


def read_health(settings: Settings, now_s: float) -> list[dict[str, Any]]:
    """Every feed's health from the state file, for a process that does not run the feeds (the CLI)."""
    path = feed_state_path(settings)
    state = FeedState(path, settings.feed_state.busy_timeout_s) if path.exists() else None
    try:
        return [describe_feed(settings, cfg, state.health(cfg.id) if state else None, now_s)
                for cfg in settings.feeds]
    finally:
        if state is not None:
            state.close()
