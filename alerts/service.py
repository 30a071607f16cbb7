"""AlertService: the imperative shell around :mod:`alerts.rules`.

It feeds readings, forecasts and node statuses to the pure rules, writes the
new state and every decision (with its LINE outbox chunks) to SQLite in one
transaction, and lets delivery workers drain the outbox, so ingestion never
waits on LINE. A ticker thread re-decides every zone as (simulated) time
passes: de-escalation after the hysteresis time, reminders, quota checks and
the daily tide outlook.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from floodwatch import metrics
from floodwatch.clock import Clock
from floodwatch.errors import LineApiError
from floodwatch.settings import Settings
from floodwatch.timefmt import english_datetime, english_time, thai_datetime, thai_time, to_bangkok
from floodwatch.vocabulary import AlertLevel, QcFlag, Reading, StationId, ZoneId

from floodwatch.alerts import _codec, flex, messages as msg, quota as quota_mod
from floodwatch.alerts._db import AlertDb
from floodwatch.alerts.delivery import DeliveryWorkers
from floodwatch.alerts.line_client import LineClient
from floodwatch.alerts.loudspeaker import Loudspeakers
from floodwatch.alerts.quota import QuotaUse
from floodwatch.alerts.reports import report_json
from floodwatch.alerts.residents import ResidentDesk
from floodwatch.alerts.rules import (
    Action,
    HealthState,
    RuleConfig,
    StationState,
    Thresholds,
    ZoneState,
    apply_forecast,
    decide_qc,
    decide_status,
    decide_zone,
    observe_station,
    station_forecast,
    tide_extrema,
    trend_word,
)

log = logging.getLogger("floodwatch.alerts")

metrics.describe("floodwatch_alerts_raised_total", "counter", "resident alerts decided, by zone and level")
metrics.describe("floodwatch_line_quota_remaining", "gauge", "LINE messages left this month (from LINE's quota API)")
metrics.describe("floodwatch_alert_latency_seconds", "histogram",
                 "seconds from the reading (or forecast) behind a resident alert to the alert queued for LINE")

USABLE_QC = (QcFlag.PASS, QcFlag.NOT_EVALUATED)
BAD_QC = (QcFlag.SUSPECT, QcFlag.FAIL)

PRIORITY = {"officers": 2, "low_water": 1}
# above EVACUATE (3): officers hear that an alert will not reach everyone before it goes out
QUOTA_PRIORITY = 4
# LINE honours a retry key for 24 h (real time): give up on a chunk before a resend could duplicate it
RETRY_KEY_LIFETIME_S = 23 * 3600.0
# settled outbox chunks (with their user ids) are kept this long for inquiries; decisions forever
OUTBOX_KEEP_S = 30 * 86400.0
HOUSEKEEPING_INTERVAL_S = 60.0
# stations whose new forecast is applied per locked commit (whole zones at a time)
FORECAST_APPLY_BATCH = 64


class AlertService:
    """Decides alert levels per station and zone and delivers LINE messages exactly once.

    Parameters
    ----------
    settings : floodwatch.settings.Settings
    clock : floodwatch.clock.Clock
        "Now" for cooldowns, reminders and hysteresis (the demo runs accelerated time).
    line_client : LineClient, optional
        Defaults to one built from ``settings.line`` at :meth:`start`.
    """

    def __init__(self, settings: Settings, clock: Clock, line_client: LineClient | None = None,
                 tick_interval_s: float = 1.0) -> None:
        self.settings = settings
        self.clock = clock
        self.cfg = RuleConfig.from_settings(settings)
        self.db = AlertDb(settings.alerts.state_url)
        self._line = line_client
        self._own_line = line_client is None
        self._lock = threading.RLock()
        self.thresholds: dict[StationId, Thresholds] = {}
        # External stations (another agency's gauge, a peer's, a prediction) inform forecasts and the
        # page; residents are warned by this site's own gauges only.
        for st in settings.level_stations:
            if st.external:
                continue
            assert st.levels is not None
            self.thresholds[st.id] = Thresholds(st.id, st.zone, st.levels.watch_m, st.levels.warning_m,
                                                st.levels.evacuate_m, st.low_water_m)
        # zone -> its level stations, in registry order: deciding a zone must not scan every station
        self._zone_stations: dict[ZoneId, list[StationId]] = {}
        for sid, th in self.thresholds.items():
            self._zone_stations.setdefault(th.zone_id, []).append(sid)
        self._load_state()
        for officer in settings.alerts.officers:
            self.db.add_officer(officer, clock.now_s())
        self.latest_forecast: Any = None
        self._feed_bad: dict[str, bool] = {}
        self.workers: DeliveryWorkers | None = None
        self._tick_interval_s = tick_interval_s
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._last_quota_check = -math.inf
        self._last_housekeeping = -math.inf
        self.quota: dict[str, Any] | None = None
        self._closed = False
        self._listeners: list[Callable[[str, Any], None]] = []
        # the rich menu's answers and residents' flood reports (alerts/residents.py)
        self.residents = ResidentDesk(self)
        # village loudspeakers: commands decided with the alert, sent over MQTT (alerts/loudspeaker.py)
        self.loudspeakers = Loudspeakers(settings, on_change=lambda row: self._publish("loudspeaker", row))
        self._quota_checked_wall_s: float | None = None

    # ------------------------------------------------------------ lifecycle
    def _load_state(self) -> None:
        """Rule states as last persisted (fresh ones where nothing was persisted yet)."""
        self.stations: dict[StationId, StationState] = {sid: StationState(sid) for sid in self.thresholds}
        self.zones: dict[ZoneId, ZoneState] = {z.id: ZoneState(z.id) for z in self.settings.zones}
        # Officers hear about their own nodes; an external station's source is watched by its feed's health.
        self.health: dict[StationId, HealthState] = {s.id: HealthState(s.id) for s in self.settings.own_stations}
        self.maintenance: set[StationId] = set()
        for key, value in self.db.load_states().items():
            kind, _, ident = key.partition(":")
            try:
                if kind == "station" and ident in self.stations:
                    self.stations[StationId(ident)] = _codec.load_station(value)
                elif kind == "zone" and ident in self.zones:
                    self.zones[ZoneId(ident)] = _codec.load_zone(value)
                elif kind == "health" and ident in self.health:
                    self.health[StationId(ident)] = _codec.load_health(value)
                elif key == "maintenance":
                    self.maintenance = {StationId(s) for s in value.get("stations", []) if s in self.health}
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("event=state_unreadable key=%s error=%r fix=%s", key, exc,
                            "the state starts fresh for this key; an older floodwatch wrote it")

    def start(self) -> None:
        """Start the delivery workers and the ticker; safe to call once."""
        token = self.settings.line.channel_access_token
        if self._line is None and token is not None:
            self._line = LineClient(self.settings.line.api_base_url, token.get_secret_value(),
                                    self.settings.line.timeout_s, pool_size=self.settings.line.delivery_threads + 2,
                                    data_api_base_url=self.settings.line.data_base_url())
        if self._line is None:
            log.error("event=line_not_configured fix=%s", "set FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN; alerts are "
                      "decided and queued in the outbox but not sent until then")
        else:
            ls = self.settings.line
            self.workers = DeliveryWorkers(self.db, self._line, rate_per_s=ls.multicast_rate_per_s,
                                           threads=ls.delivery_threads, backoff_base_s=ls.retry_base_s,
                                           backoff_max_s=ls.retry_max_s,
                                           on_quota_exhausted=self._on_quota_exhausted)
            self.workers.start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick_loop, name="alerts-ticker", daemon=True)
        self._ticker.start()
        self.loudspeakers.start()

    def close(self) -> None:
        """Stop the threads and close the state file; undelivered chunks stay in the outbox."""
        if self._closed:
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(5.0)
            self._ticker = None
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        self.loudspeakers.stop()
        if self._line is not None and self._own_line:
            self._line.close()
            self._line = None
        with self._lock:
            self._closed = True
            self.db.close()
            self.residents.book.close()

    def __enter__(self) -> "AlertService":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_delivered(self, timeout_s: float = 10.0) -> bool:
        """Block until the outbox is empty (tests, the demo's summary, shutdown)."""
        if self.workers is None:
            return self.db.pending_counts()[0] == 0
        self.workers.wake()
        return self.workers.wait_idle(timeout_s)

    @property
    def line(self) -> LineClient | None:
        return self._line

    # --------------------------------------------------------------- inputs
    def on_readings(self, readings: Iterable[Reading]) -> None:
        """Observed levels after ingest stored them; QC-failed readings only alert officers."""
        with self._lock:
            actions: list[Action] = []
            dirty: set[str] = set()
            for r in sorted(readings, key=lambda r: r.ts_s):
                th = self.thresholds.get(r.station_id)
                if th is None or r.water_level_m is None or r.station_id in self.maintenance:
                    continue
                if r.qc_flag in BAD_QC and r.station_id in self.health:
                    self.health[r.station_id], acts = decide_qc(
                        self.health[r.station_id], th.zone_id, r.ts_s, r.qc_flag.name, r.qc_tests, self.cfg)
                    actions += acts
                    dirty.add(f"health:{r.station_id}")
                if r.qc_flag not in USABLE_QC or not math.isfinite(r.water_level_m):
                    continue
                self.stations[r.station_id], acts = observe_station(
                    self.stations[r.station_id], th, r.ts_s, r.water_level_m, self.cfg)
                actions += acts
                dirty.add(f"station:{r.station_id}")
                actions += self._decide_zone(th.zone_id, dirty)
            self._commit(actions, dirty)

    def on_forecast(self, issued: Any) -> None:
        """A new :class:`scheduler.IssuedForecast` (all stations at once)."""
        fc = issued.forecast
        t_s = fc.t_s
        # Reducing each station's rows is pure and the slow part (thousands of stations):
        # it runs without the lock, so readings keep being decided meanwhile.
        by_zone: dict[ZoneId, list[tuple[StationId, Any]]] = {}
        for row, station_id in enumerate(issued.station_ids):
            th = self.thresholds.get(station_id)
            if th is None:
                continue
            sf = station_forecast(th, issued.issued_s, t_s, fc.median_m[row], fc.exceed_prob[row],
                                  float(fc.rise_rate_cm_per_h[row]), self.cfg)
            by_zone.setdefault(th.zone_id, []).append((station_id, sf))
        with self._lock:
            self.latest_forecast = issued
        # Applied a few zones at a time, each batch in its own short locked commit, so a
        # reading that crosses a level waits for one batch, not for all of them. A zone's
        # stations always go together: its residents hear one decision, not one per station.
        batch: list[ZoneId] = []
        size = 0
        zone_ids = sorted(by_zone)
        for i, zone_id in enumerate(zone_ids):
            batch.append(zone_id)
            size += len(by_zone[zone_id])
            if size >= FORECAST_APPLY_BATCH or i == len(zone_ids) - 1:
                self._apply_forecasts(batch, by_zone)
                batch, size = [], 0

    def _apply_forecasts(self, zone_ids: list[ZoneId], by_zone: dict[ZoneId, list[tuple[StationId, Any]]]) -> None:
        with self._lock:
            dirty: set[str] = set()
            actions: list[Action] = []
            for zone_id in zone_ids:
                for station_id, sf in by_zone[zone_id]:
                    self.stations[station_id] = apply_forecast(self.stations[station_id], sf)
                    dirty.add(f"station:{station_id}")
                actions += self._decide_zone(zone_id, dirty)
            self._commit(actions, dirty)

    def on_status(self, station_id: str, status: str, ts_s: float) -> None:
        """A node's retained ``online`` / last-will ``offline``: officers hear about changes."""
        with self._lock:
            if station_id not in self.health:
                log.warning("event=status_unknown_station station=%s status=%s", station_id, status)
                return
            if station_id in self.maintenance:
                return  # officers took it down on purpose
            zone_id = self.settings.station(station_id).zone
            self.health[StationId(station_id)], actions = decide_status(
                self.health[StationId(station_id)], zone_id, status, ts_s, self.cfg)
            self._commit(actions, {f"health:{station_id}"})

    def on_feed_health(self, feed_id: str, health: dict[str, Any]) -> None:
        """A feed's health after a run (``feeds.describe_feed``): officers hear once when it goes bad
        (stale, or failing several runs in a row) and once when it is back. Residents never do."""
        from floodwatch.alerts.rules import FeedAlertState, decide_feed, feed_is_bad

        # "Down" means it worked and stopped: a feed that never worked (a fresh install offline, a wrong
        # password) shows as failing on the page and in `floodwatch feeds status`, not on officers' phones.
        bad = (feed_is_bad(health.get("state"), int(health.get("consecutive_failures") or 0))
               and health.get("last_success_s") is not None)
        now_s = self.clock.now_s()
        if self._feed_bad.get(feed_id) == bad:
            return  # nothing changed: no need to read the stored state after every run
        self._feed_bad[feed_id] = bad
        key = f"feed:{feed_id}"
        with self._lock:
            if self._closed:
                return
            stored = self.db.load_states().get(key) or {}
            prev = FeedAlertState(feed_id, bool(stored.get("bad", False)),
                                  float(stored["last_alert_s"]) if stored.get("last_alert_s") is not None else math.nan)
            new, kind = decide_feed(prev, bad, now_s, self.cfg)
            if new == prev:
                return
            state = {"bad": new.bad, "last_alert_s": None if math.isnan(new.last_alert_s) else new.last_alert_s}
            decisions = []
            if kind is not None:
                error = health.get("last_error") or {}
                detail = error.get("detail", "") if kind == "feed_down" and health.get("state") == "failing" else (
                    "the source's newest data are older than expected" if kind == "feed_down" else "")
                name_th, name_en = health.get("name_th") or feed_id, health.get("name_en") or feed_id
                officers = self.db.officers()
                english = self.db.english_readers() if officers else set()
                groups = [(ids, [msg.text_message(msg.feed_text(kind, name_th, name_en, detail, now_s, lang))])
                          for ids, lang in (([u for u in officers if u not in english], "th"),
                                            ([u for u in officers if u in english], "en")) if ids]
                row = dict(ts_s=now_s, kind=kind, audience="officers", zone_id=None, station_id=None,
                           level=int(AlertLevel.WATCH if kind == "feed_down" else AlertLevel.NORMAL),
                           text=msg.feed_text(kind, name_th, name_en, detail, now_s, "th"))
                decisions.append((row, groups, PRIORITY["officers"]))
                log.info("event=alert_decided kind=%s audience=officers feed=%s recipients=%d", kind, feed_id,
                         len(officers))
            self.db.record({key: state}, decisions, now_s)
        if decisions and self.workers is not None:
            self.workers.wake()

    def tick(self) -> None:
        """Re-decide every zone at the clock's "now" (hysteresis timers, reminders, expired forecasts)."""
        with self._lock:
            dirty: set[str] = set()
            actions: list[Action] = []
            for zone_id in self.zones:
                actions += self._decide_zone(zone_id, dirty)
            if actions or dirty:
                self._commit(actions, dirty)

    def daily_tide_outlook(self) -> int:
        """Push the tide outlook to residents who asked for it daily, once per Bangkok day at
        ``settings.alerts.tide_outlook_hour_local``; returns the number of decisions made."""
        now_s = self.clock.now_s()
        local = to_bangkok(now_s)
        if local.hour != self.settings.alerts.tide_outlook_hour_local or self.latest_forecast is None:
            return 0
        key = f"tide_daily:{local:%Y-%m-%d}"
        with self._lock:
            if key in self.db.load_states():
                return 0
            decisions = []
            for zone in self.settings.zones:
                readers = self.db.tide_daily_subscribers(zone.id)
                if not readers:
                    continue
                english = self.db.english_readers()
                groups = [(ids, [msg.text_message(self.tide_outlook_text([zone.id], lang))])
                          for ids, lang in (([u for u in readers if u not in english], "th"),
                                            ([u for u in readers if u in english], "en")) if ids]
                row = dict(ts_s=now_s, kind="tide", audience="tide", zone_id=zone.id, station_id=None,
                           level=int(AlertLevel.NORMAL), text=self.tide_outlook_text([zone.id], "th"))
                decisions.append((row, groups, 0))
            self.db.record({key: {"zones": len(decisions)}}, decisions, now_s)
        if decisions and self.workers is not None:
            self.workers.wake()
        return len(decisions)

    def _housekeeping_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < HOUSEKEEPING_INTERVAL_S:
            return
        self._last_housekeeping = now
        self.housekeeping()
        self.residents.book.housekeeping()  # reports past retention, stale drafts (docs/privacy.md)

    def housekeeping(self) -> dict[str, int]:
        """Expire chunks older than a retry key lives; forget settled chunks after 30 days."""
        expired = self.db.expire_stale(RETRY_KEY_LIFETIME_S)
        for chunk_id, retry_key in expired:
            metrics.inc("floodwatch_line_deliveries_total", outcome="expired")
            log.error("event=line_expired chunk=%s retry_key=%s fix=%s", chunk_id, retry_key,
                      "LINE could not be reached for 23 h; check the token, the quota and the network")
        pruned = self.db.prune(time.time() - OUTBOX_KEEP_S)
        return {"expired": len(expired), "pruned": pruned}

    def _tick_loop(self) -> None:
        while not self._stop.wait(self._tick_interval_s):
            try:
                self.tick()
                self.daily_tide_outlook()
                self._check_quota_if_due()
                self._housekeeping_if_due()
            except Exception:  # keep ticking; the next tick may succeed
                log.exception("event=tick_failed")

    # ------------------------------------------------------------ decisions
    def _decide_zone(self, zone_id: ZoneId, dirty: set[str]) -> list[Action]:
        members = [(self.stations[sid], self.thresholds[sid]) for sid in self._zone_stations.get(zone_id, ())
                   if sid not in self.maintenance]
        if not members:
            return []
        old = self.zones[zone_id]
        self.zones[zone_id], actions = decide_zone(old, members, self.clock.now_s(), self.cfg)
        if self.zones[zone_id] != old:
            dirty.add(f"zone:{zone_id}")
        return actions

    def _commit(self, actions: list[Action], dirty: set[str]) -> None:
        if self._closed:
            # a late callback during shutdown: the next start re-derives state from new readings
            log.warning("event=alerts_closed_input_dropped actions=%d", len(actions))
            return
        states: dict[str, Any] = {}
        for key in dirty:
            kind, _, ident = key.partition(":")
            source = {"station": self.stations, "zone": self.zones, "health": self.health}[kind]
            states[key] = _codec.dump(source[ident])
        decisions = [self._plan(a) for a in actions]
        if not states and not decisions:
            return
        # Officers hear of a quota shortfall in the same commit, queued ahead of the alert itself.
        shortfalls: list[dict[str, Any]] = []
        decisions += self._quota_preflight(actions, decisions, states, shortfalls)
        planned = self.loudspeakers.plan(actions, self.clock.now_s()) if actions else []
        # A resident escalation drops the zone's lower never-sent chunks in the same commit.
        supersede = {i: (a.zone_id, int(a.level) - 1) for i, a in enumerate(actions)
                     if a.audience == "residents" and a.kind in ("escalate", "forecast", "rise")}
        try:
            ids, dropped = self.db.record_superseding(
                states, decisions, self.clock.now_s(), supersede,
                also=self.loudspeakers.writer(planned, self.clock.now_s()) if planned else None)
        except sqlite3.Error as exc:
            # Nothing was written: forget what was decided in memory too, so the next input
            # decides again instead of believing residents were told.
            log.error("event=alert_state_write_failed error=%r actions=%d fix=%s", exc, len(actions),
                      f"check free space and permissions of {self.db.path}")
            self._load_state()
            if planned:
                self.loudspeakers.forget_plan()
            return
        self.loudspeakers.committed(planned)
        for shortfall in shortfalls:
            self._publish("quota", shortfall)
        # Wake the senders before logging: the decision is on disk, nothing else needs to wait.
        if decisions and self.workers is not None:
            self.workers.wake()
        if dropped:
            zones = ",".join(sorted({zone_id for zone_id, _ in supersede.values()}))
            log.info("event=alerts_superseded zones=%s chunks=%d", zones, dropped)
        for a, (row, groups, _) in zip(actions, decisions):
            recipients = sum(len(u) for u, _ in groups)
            if a.audience == "residents":
                metrics.inc("floodwatch_alerts_raised_total", zone=a.zone_id, level=a.level.name)
                metrics.observe("floodwatch_alert_latency_seconds", max(0.0, self.clock.now_s() - a.ts_s))
            log.info("event=alert_decided kind=%s audience=%s zone=%s station=%s level=%s recipients=%d "
                     "ts_s=%.0f level_m=%.3f", a.kind, a.audience, a.zone_id, a.station_id, a.level.name,
                     recipients, a.ts_s, a.water_level_m)

    def _plan(self, a: Action) -> tuple[dict[str, Any], list[tuple[list[str], list[dict[str, Any]]]], int]:
        """Word an action and pick its recipients: (decision row, [(user ids, messages)], priority)."""
        station = self.settings.station(a.station_id)
        zone = self.settings.zone(a.zone_id)
        if a.audience == "residents":
            recipients = self.db.subscribers(a.zone_id)
            if self.settings.alerts.officers_get_zone_alerts:
                # officers watch every zone; one copy each, even when they also live in this one
                residents = set(recipients)
                recipients = recipients + [o for o in self.db.officers() if o not in residents]
            priority = int(a.level) if a.kind not in ("all_clear", "deescalate") else 1

            def words(lang: str) -> list[dict[str, Any]]:
                text = msg.resident_alert_text(a, station, zone, self.cfg, lang)
                out = [msg.text_message(text)]
                if self.settings.line.flex_alerts:
                    out.insert(0, flex.alert_message(a, self._outlook(a), zone, text))
                return out
        elif a.audience == "low_water":
            recipients = sorted(set(self.db.officers()) | set(self.db.low_water_subscribers(a.zone_id)))
            priority = PRIORITY["low_water"]

            def words(lang: str) -> list[dict[str, Any]]:
                return [msg.text_message(msg.low_water_text(a, station, zone, lang))]
        else:
            recipients = self.db.officers()
            priority = PRIORITY["officers"]

            def words(lang: str) -> list[dict[str, Any]]:
                return [msg.text_message(msg.officer_text(a, station, lang))]
        english = self.db.english_readers() if recipients else set()
        thai_ids = [u for u in recipients if u not in english]
        english_ids = [u for u in recipients if u in english]
        groups = [(ids, words(lang)) for ids, lang in ((thai_ids, "th"), (english_ids, "en")) if ids]
        text_th = words("th")[-1]["text"]
        row = dict(ts_s=a.ts_s, kind=a.kind, audience=a.audience, zone_id=a.zone_id, station_id=a.station_id,
                   level=int(a.level), text=text_th)
        return row, groups, priority

    def _outlook(self, a: Action) -> flex.GaugeOutlook:
        """The alert's gauge as its Flex card shows it (level, trend, forecast, next high tide)."""
        st = self.stations[a.station_id]
        rate = st.rise_rate_cm_per_h(self.cfg.rise_window_s)
        level_m = a.water_level_m if not math.isnan(a.water_level_m) else st.last_level_m
        return flex.outlook_from_issued(self.settings.station(a.station_id), st.observed_level, level_m,
                                        a.observed_s, trend_word(rate, self.cfg), rate, a.ts_s,
                                        self.latest_forecast)

    # ---------------------------------------------------------------- quota
    def _check_quota_if_due(self) -> None:
        if self._line is None or self.workers is None:
            return
        now = time.monotonic()
        if now - self._last_quota_check < self.settings.line.quota_check_interval_s:
            return
        self._last_quota_check = now
        self.check_quota()

    def check_quota(self) -> dict[str, Any] | None:
        """GET the monthly quota and consumption; hold non-evacuation sends and warn officers when low."""
        if self._line is None:
            return None
        checked_wall_s = time.time()  # deliveries LINE has not counted yet are those from now on
        try:
            quota = self._line.quota()
        except LineApiError as exc:
            log.warning("event=quota_check_failed status=%s message=%r", exc.status, exc.message)
            return None
        self.quota = quota
        self._quota_checked_wall_s = checked_wall_s
        if quota.get("type") != "limited" or not quota.get("value"):
            if self.workers is not None:
                self.workers.min_priority = -1
            return quota
        limit, used = int(quota["value"]), int(quota.get("totalUsage") or 0)
        left = limit - used
        self._publish("quota", {"limit": limit, "used": used})
        metrics.set_gauge("floodwatch_line_quota_remaining", left)
        _, pending_recipients = self.db.pending_counts()
        if self.workers is not None:
            reserve = self.settings.line.quota_reserve_messages
            self.workers.min_priority = int(AlertLevel.EVACUATE) if left <= reserve else -1
        if left < self.settings.line.quota_warn_fraction * limit:
            self._warn_officers_quota(left, limit, pending_recipients)
        return quota

    def quota_use(self) -> QuotaUse:
        """This month's use against the plan: LINE's count at the last check plus what was delivered since."""
        since = self._quota_checked_wall_s
        delivered = self.db.delivered_since(since) if since is not None else 0
        return quota_mod.use_from(self.quota, delivered, self.db.pending_counts()[1], since)

    def quota_status(self) -> dict[str, Any]:
        """The page's quota panel: this month's use against the plan, and the shortfalls officers were told of."""
        ls = self.settings.line
        out = self.quota_use().as_json(ls.quota_warn_fraction, ls.quota_reserve_messages)
        month = to_bangkok(self.clock.now_s()).strftime("%Y-%m")
        out["month"] = month
        out["shortfalls"] = [dict(v, key=k) for k, v in self.db.load_states().items()
                             if k.startswith(f"quota_short:{month}:")]
        return out

    def _quota_preflight(self, actions: list[Action], decisions: list[Any], states: dict[str, Any],
                         told: list[dict[str, Any]]) -> list[Any]:
        """Officer warnings for resident alerts the month's quota cannot cover, before anything is sent.

        One warning per zone and level per month (the state key remembers it); it goes ahead of the
        alert (priority above evacuation) so officers hear of it first.
        """
        if not self.quota or self.quota.get("type") != "limited" or not actions:
            return []
        use = self.quota_use()
        month = to_bangkok(self.clock.now_s()).strftime("%Y-%m")
        known: dict[str, Any] | None = None
        queued = 0
        out = []
        for a, (_, groups, _) in zip(actions, decisions):
            needed = sum(len(u) for u, _ in groups)
            dropped = 0
            if a.audience == "residents" and a.kind in ("escalate", "forecast", "rise"):
                dropped = self.db.supersedable_recipients(a.zone_id, int(a.level) - 1)  # replaced by this one
            missing = quota_mod.shortfall(replace(use, pending=max(0, use.pending - dropped) + queued), needed)
            queued += needed
            if a.audience != "residents" or missing == 0:
                continue
            key = f"quota_short:{month}:{a.zone_id}:{int(a.level)}"
            known = self.db.load_states() if known is None else known
            if key in known or key in states:
                continue
            zone = self.settings.zone(a.zone_id)
            now_s = self.clock.now_s()
            text = quota_mod.shortfall_text(use, needed, missing, zone.name_th, zone.name_en, a.level, now_s)
            entry = {"zone": a.zone_id, "level": int(a.level), "needed": needed, "missing": missing,
                     "left": use.left, "limit": use.limit, "pending": use.pending + queued - needed, "ts_s": now_s}
            states[key] = entry
            told.append(entry)
            officers = self.db.officers()
            row = dict(ts_s=now_s, kind="quota", audience="officers", zone_id=a.zone_id, station_id=None,
                       level=int(a.level), text=text)
            out.append((row, [(officers, [msg.text_message(text)])] if officers else [], QUOTA_PRIORITY))
            log.warning("event=quota_shortfall zone=%s level=%s needed=%d missing=%d left=%s fix=%s", a.zone_id,
                        a.level.name, needed, missing, use.left, "raise the LINE plan in LINE Official Account "
                        "Manager; officers were told before sending")
        return out

    def _on_quota_exhausted(self) -> None:
        self._last_quota_check = -math.inf  # check again at the next tick
        self._warn_officers_quota(0, None, self.db.pending_counts()[1])

    def _warn_officers_quota(self, left: int, limit: int | None, pending: int) -> None:
        month = to_bangkok(self.clock.now_s()).strftime("%Y-%m")
        key = f"quota_warned:{month}:{'empty' if left <= 0 else 'low'}"
        with self._lock:
            if key in self.db.load_states():
                return
            officers = self.db.officers()
            of = f" จาก {limit:,}" if limit else ""
            text = msg.bilingual(
                [f"⚠️ [เจ้าหน้าที่] โควตาข้อความ LINE เดือนนี้เหลือ {left:,}{of} ข้อความ (รอส่ง {pending:,})",
                 "ข้อความอพยพจะถูกส่งก่อน เพิ่มโควตาใน LINE Official Account Manager"],
                [f"⚠️ [Officers] LINE monthly message quota: {left:,} left{'' if not limit else f' of {limit:,}'}"
                 f" ({pending:,} waiting).", "Evacuation messages go first; raise the plan in LINE Official "
                 "Account Manager."])
            row = dict(ts_s=self.clock.now_s(), kind="quota", audience="officers", zone_id=None, station_id=None,
                       level=int(AlertLevel.WARNING), text=text)
            groups = [(officers, [msg.text_message(text)])] if officers else []
            # evacuation priority so it gets through while everything else is held
            self.db.record({key: {"left": left}}, [(row, groups, int(AlertLevel.EVACUATE))], self.clock.now_s())
        if self.workers is not None:
            self.workers.wake()

    # ------------------------------------------------------ officer actions
    def send_manual_message(self, zones: list[str], text_th: str, text_en: str, *, by: str) -> dict[str, Any]:
        """An officer's own message to every subscriber of each zone, through the same outbox.

        Returns ``{"alert_ids": [...], "recipients": {zone_id: n}}``; one log entry per zone.
        """
        for zone_id in zones:
            self.settings.zone(zone_id)
        now_s = self.clock.now_s()
        decisions, recipients = [], {}
        english = self.db.english_readers()
        for zone_id in zones:
            users = self.db.subscribers(zone_id)
            recipients[zone_id] = len(users)
            groups = [(ids, [msg.text_message(msg.bilingual([text_th.strip()], [text_en.strip()], lang))])
                      for ids, lang in (([u for u in users if u not in english], "th"),
                                        ([u for u in users if u in english], "en")) if ids]
            row = dict(ts_s=now_s, kind="manual", audience="residents", zone_id=zone_id, station_id=None,
                       level=int(AlertLevel.NORMAL), text=msg.bilingual([text_th.strip()], [text_en.strip()]))
            decisions.append((row, groups, int(AlertLevel.WARNING)))
        with self._lock:
            ids = self.db.record({}, decisions, now_s)
        log.info("event=manual_message_queued by=%s zones=%s recipients=%d", by, ",".join(zones),
                 sum(recipients.values()))
        if self.workers is not None:
            self.workers.wake()
        return {"alert_ids": ids, "recipients": recipients}

    def send_test_alert(self, text: str, *, by: str) -> dict[str, Any]:
        """A test message to the officers only (never residents)."""
        officers = self.db.officers()
        row = dict(ts_s=self.clock.now_s(), kind="test", audience="officers", zone_id=None, station_id=None,
                   level=int(AlertLevel.NORMAL), text=text)
        groups = [(officers, [msg.text_message(text)])] if officers else []
        with self._lock:
            ids = self.db.record({}, [(row, groups, PRIORITY["officers"])], self.clock.now_s())
        log.info("event=test_alert_queued by=%s officers=%d", by, len(officers))
        if self.workers is not None:
            self.workers.wake()
        return {"alert_ids": ids, "recipients": len(officers)}

    def set_maintenance(self, station_id: str, on: bool, *, by: str) -> None:
        """A station under maintenance alerts nobody: its readings and status are ignored by the rules."""
        self.settings.station(station_id)
        with self._lock:
            if on:
                self.maintenance.add(StationId(station_id))
            else:
                self.maintenance.discard(StationId(station_id))
            self.db.record({"maintenance": {"stations": sorted(self.maintenance)}}, [], self.clock.now_s())
        log.info("event=maintenance station=%s on=%s by=%s", station_id, on, by)

    def acknowledge(self, alert_id: str, *, by: str) -> None:
        """An officer saw this alert; shown as ``acknowledged_by`` in :meth:`log`."""
        with self._lock:
            self.db.record({f"ack:{alert_id}": {"by": by, "ts_s": self.clock.now_s()}}, [], self.clock.now_s())

    # ---------------------------------------------------------- subscribers
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable step on the state file (the webhook: an event's effects and its seen-mark).

        Takes the engine's lock, then the state file's write transaction: the
        order every decision takes, so a handler may read :meth:`zone_levels`
        or :meth:`station_levels` inside without deadlocking against ingest.
        Commits with an fsync at the end of the block; rolls back on an error.
        """
        with self._lock, self.db.transaction():
            yield

    def subscribe(self, user_id: str, zone_id: str) -> None:
        self.settings.zone(zone_id)  # ConfigError names the fix for an unknown zone
        self.db.subscribe(user_id, zone_id, self.clock.now_s())

    def subscribe_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        pairs = list(pairs)
        for zone_id in {z for _, z in pairs}:
            self.settings.zone(zone_id)
        self.db.subscribe_many(pairs, self.clock.now_s())

    def unsubscribe(self, user_id: str, zone_id: str | None = None) -> None:
        """Leave one zone, or every zone when ``zone_id`` is None."""
        self.db.unsubscribe(user_id, zone_id)

    def subscribers(self, zone_id: str) -> list[str]:
        return self.db.subscribers(zone_id)

    def add_officer(self, user_id: str) -> None:
        self.db.add_officer(user_id, self.clock.now_s())

    def officers(self) -> list[str]:
        return self.db.officers()

    # ----------------------------------------------------------------- views
    def zone_levels(self) -> dict[str, dict[str, Any]]:
        """``{zone_id: {level, level_name_th, level_name_en, since_s, name_th, name_en, subscribers}}``."""
        with self._lock:
            out = {}
            for zone_id, z in self.zones.items():
                cfg = self.settings.zone(zone_id)
                out[zone_id] = dict(zone_id=zone_id, name_th=cfg.name_th, name_en=cfg.name_en, level=int(z.level),
                                    level_name_th=z.level.name_th, level_name_en=z.level.name_en,
                                    since_s=None if math.isnan(z.level_since_s) else z.level_since_s,
                                    subscribers=len(self.db.subscribers(zone_id)))
            return out

    def station_levels(self) -> dict[str, dict[str, Any]]:
        """Per level station: the level it justifies now and why, the last level, trend and forecast."""
        now_s = self.clock.now_s()
        with self._lock:
            out = {}
            for sid, st in self.stations.items():
                level, reason = st.effective(now_s, self.cfg)
                fc = st.forecast
                rate = st.rise_rate_cm_per_h(self.cfg.rise_window_s)
                out[sid] = dict(
                    station_id=sid, zone_id=self.thresholds[sid].zone_id, level=int(level),
                    level_name_th=level.name_th, level_name_en=level.name_en, reason=reason,
                    observed_level=int(st.observed_level),
                    forecast_level=None if fc is None else int(fc.level),
                    forecast_probability=None if fc is None else fc.probability,
                    forecast_reach_s=None if fc is None or math.isnan(fc.reach_s) else fc.reach_s,
                    water_level_m=None if math.isnan(st.last_level_m) else st.last_level_m,
                    ts_s=None if math.isnan(st.last_ts_s) else st.last_ts_s,
                    trend_cm_per_h=None if math.isnan(rate) else rate,
                    rise_active=st.rise_active, low_water=st.low_active,
                    online=self.health[sid].online if sid in self.health else True,
                    maintenance=sid in self.maintenance,
                )
            return out

    def log(self, limit: int = 100) -> list[dict[str, Any]]:
        """Latest decisions, newest first, as plain dicts.

        Keys: ``id, time_s, time_th, zone, zone_name_th, station, level, level_name_th,
        level_name_en, kind, audience, text, recipients, delivered, failed, state``
        where ``state`` is pending | sending | delivered | partial | failed | no_recipients.
        """
        out = []
        states = self.db.load_states()
        for d in self.db.log(limit):
            level = AlertLevel(d["level"])
            zone_name = self.settings.zone(d["zone_id"]).name_th if d["zone_id"] else None
            out.append(dict(id=d["id"], time_s=d["ts_s"], time_th=thai_datetime(d["ts_s"]), zone=d["zone_id"],
                            zone_name_th=zone_name, station=d["station_id"], level=level.name,
                            level_name_th=level.name_th, level_name_en=level.name_en, kind=d["kind"],
                            audience=d["audience"], text=d["text"], recipients=d["recipients"],
                            delivered=d["delivered"], failed=d["failed"], state=d["state"],
                            acknowledged_by=(states.get(f"ack:{d['id']}") or {}).get("by")))
        return out

    def tide_outlook_text(self, zone_ids: list[str], lang: str = "th", hours: float = 24.0) -> str:
        """Next high and low waters for each zone's gauge, from the latest forecast's median."""
        issued = self.latest_forecast
        now_s = self.clock.now_s()
        if issued is None:
            return msg.bilingual(["ยังไม่มีข้อมูลคาดการณ์น้ำขึ้นน้ำลง ลองใหม่ภายหลัง"],
                                 ["No tide forecast yet; please try again later."], lang)
        if not zone_ids:
            zone_ids = [z.id for z in self.settings.zones]
        th = [f"🌊 น้ำขึ้นน้ำลง {hours:.0f} ชม. ข้างหน้า"]
        en = [f"🌊 High and low water, next {hours:.0f} h"]
        for zone_id in zone_ids:
            sids = [sid for sid in issued.station_ids if sid in self.thresholds
                    and self.thresholds[sid].zone_id == zone_id]
            if not sids:
                continue
            sid = sids[0]
            row = issued.station_ids.index(sid)
            turns = tide_extrema(issued.forecast.t_s, issued.forecast.median_m[row], now_s, now_s + hours * 3600)
            st = self.settings.station(sid)
            th.append(f"{self.settings.zone(zone_id).name_th} ({st.name_th}):")
            en.append(f"{self.settings.zone(zone_id).name_en} ({st.name_en}):")
            if not turns:
                th.append("  ไม่พบน้ำขึ้นหรือลงสูงสุดในช่วงนี้")
                en.append("  no high or low water in this period")
            for kind, t, z in turns[:6]:
                th.append(f"  {'น้ำขึ้นสูงสุด' if kind == 'high' else 'น้ำลงต่ำสุด'} {thai_time(t)} {z:.2f} ม.รทก.")
                en.append(f"  {'High' if kind == 'high' else 'Low'} water {english_time(t)} {z:.2f} m")
        th.append(f"คาดการณ์เมื่อ {thai_datetime(issued.issued_s)}")
        en.append(f"Forecast issued {english_datetime(issued.issued_s)}")
        return msg.bilingual(th, en, lang)

    # ---------------------------------------------------- residents' reports
    def add_listener(self, listener: Callable[[str, Any], None]) -> None:
        """``listener(event_type, data)`` on "report", "quota" and "loudspeaker" changes (the page's hub)."""
        self._listeners.append(listener)

    def _publish(self, event_type: str, data: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(event_type, data)
            except Exception:  # the page must never break the alert engine
                log.exception("event=listener_failed type=%s", event_type)

    def report_changed(self, report: dict[str, Any]) -> None:
        self._publish("report", {"id": report["id"], "status": report["status"], "ts_s": report["ts_s"]})

    def reports(self, hours: float = 72.0, *, officer: bool = False) -> list[dict[str, Any]]:
        """Residents' reports of the last ``hours`` (clock time), newest first; without ``officer`` only
        verified ones, as :func:`alerts.reports.report_json` shows them (never the resident's id)."""
        statuses = ("new", "verified", "hidden") if officer else ("verified",)
        rows = self.residents.book.find(self.clock.now_s() - hours * 3600.0, statuses=statuses)
        return [report_json(r, self.settings.reports.near_gauge_m, officer=officer) for r in rows]

    def moderate_report(self, report_id: str, status: str, *, by: str) -> dict[str, Any] | None:
        """An officer verifies (``verified``), hides (``hidden``) or reopens (``new``) a report."""
        row = self.residents.book.moderate(report_id, status, by, self.clock.now_s())
        if row is not None:
            log.info("event=report_moderated id=%s status=%s by=%s", report_id, status, by)
            self.report_changed(row)
            return report_json(row, self.settings.reports.near_gauge_m, officer=True)
        return None

    def report_photo(self, report_id: str) -> Path | None:
        row = self.residents.book.get(report_id)
        if row is None or not row["photo"]:
            return None
        path = self.residents.book.photo_path(row["photo"])
        return path if path.exists() else None

    def webhook_router(self):  # noqa: ANN201 - fastapi.APIRouter
        """FastAPI router with POST /line/webhook (signed LINE events: follow, zone picks, status)."""
        from floodwatch.alerts.webhook import build_router

        return build_router(self)
