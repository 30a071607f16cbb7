"""Alert rules as pure functions: (state, input) -> (new state, actions).

Nothing here reads a clock, a database or the network; the service feeds in
observations, forecasts and "now", stores the returned state and executes the
returned :class:`Action` values. Every rule can be tested with plain values.

Two layers:

- per station (:func:`observe_station`, :func:`apply_forecast`): what level the
  water at one gauge justifies. Observed escalation needs ``confirm_readings``
  consecutive readings (a single spike raises nothing); de-escalation needs the
  level to drop below the threshold minus ``hysteresis_m``. A fast rise
  (``rise_rate_cm_per_h``) lifts the station one level early (flash floods).
  A forecast lifts it to the level it will reach with at least
  ``exceed_probability`` within ``lead_s``. Low water (drought / intake) is a
  separate, station-level audience.
- per zone (:func:`decide_zone`): what residents are told. A zone takes the
  highest level of its stations, escalates at once, lowers only after the
  lower level has held for ``clear_after_s``, reminds every ``reminder_s`` while the level
  is WARNING or worse, and sends an all-clear when it returns to NORMAL. A
  lowering is announced no sooner than ``cooldown_s`` after the level it
  leaves was announced, so flapping cannot cause a message storm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np

from floodwatch.vocabulary import AlertLevel, StationId, ZoneId

ActionKind = Literal[
    "escalate",        # observed level crossed a warning level
    "forecast",        # forecast says a level will be reached within the lead time
    "rise",            # water rising fast enough to reach a level soon
    "reminder",        # a dangerous level persists
    "deescalate",      # the level has come down one or more steps, still not normal
    "all_clear",       # back to normal
    "low_water",       # river below the intake / irrigation level
    "low_water_clear",
    "sensor_offline",  # officers only
    "sensor_online",
    "qc",              # officers only: readings failing quality control
]
Audience = Literal["residents", "low_water", "officers"]

LEVELS_UP = (AlertLevel.WATCH, AlertLevel.WARNING, AlertLevel.EVACUATE)


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Tunables of the rules; built from ``settings.alerts`` and ``settings.forecast``."""

    hysteresis_m: float = 0.05
    clear_after_s: float = 3 * 3600.0
    cooldown_s: float = 3600.0
    reminder_s: float = 6 * 3600.0
    rise_rate_cm_per_h: float = 20.0
    rise_window_s: float = 3600.0
    confirm_readings: int = 2
    exceed_probability: float = 0.8
    lead_s: float = 3 * 3600.0
    steady_cm_per_h: float = 2.0
    officer_cooldown_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings) -> "RuleConfig":  # noqa: ANN001 - floodwatch.settings.Settings
        a, f = settings.alerts, settings.forecast
        return cls(
            hysteresis_m=a.hysteresis_m,
            clear_after_s=a.clear_after_s,
            cooldown_s=a.cooldown_s,
            reminder_s=a.reminder_s,
            rise_rate_cm_per_h=a.rise_rate_cm_per_h,
            rise_window_s=a.rise_window_s,
            confirm_readings=a.confirm_readings,
            exceed_probability=f.exceed_probability,
            lead_s=f.lead_h * 3600.0,
            officer_cooldown_s=a.officer_cooldown_s,
        )


@dataclass(frozen=True, slots=True)
class Thresholds:
    """One level station's warning levels in metres above mean sea level."""

    station_id: StationId
    zone_id: ZoneId
    watch_m: float
    warning_m: float
    evacuate_m: float
    low_water_m: float | None = None

    def threshold_m(self, level: AlertLevel) -> float:
        return {AlertLevel.WATCH: self.watch_m, AlertLevel.WARNING: self.warning_m,
                AlertLevel.EVACUATE: self.evacuate_m}[level]

    def level_for(self, water_level_m: float, margin_m: float = 0.0) -> AlertLevel:
        """Highest level whose threshold (lowered by ``margin_m``) the water reaches."""
        level = AlertLevel.NORMAL
        for candidate in LEVELS_UP:
            if water_level_m >= self.threshold_m(candidate) - margin_m:
                level = candidate
        return level


@dataclass(frozen=True, slots=True)
class StationForecast:
    """What the latest forecast says about one station, reduced to alert terms."""

    issued_s: float
    level: AlertLevel            # highest level reached with enough probability within the lead time
    probability: float           # chance of reaching ``level`` within the lead time (0..1)
    reach_s: float               # when ``level`` is first expected (UTC epoch s); NaN if level is NORMAL
    peak_m: float                # highest median level within the lead time
    rise_rate_cm_per_h: float


@dataclass(frozen=True, slots=True)
class StationState:
    """Everything the rules remember about one level station between readings."""

    station_id: StationId
    observed_level: AlertLevel = AlertLevel.NORMAL
    # consecutive readings pointing above / below the confirmed level, and the
    # level they agree on (min over an upward streak, max over a downward one)
    up_count: int = 0
    up_level: AlertLevel = AlertLevel.NORMAL
    down_count: int = 0
    down_level: AlertLevel = AlertLevel.NORMAL
    last_ts_s: float = math.nan
    last_level_m: float = math.nan
    # recent (ts_s, level_m), oldest first, for the rise rate and the trend
    history: tuple[tuple[float, float], ...] = ()
    rise_count: int = 0
    rise_active: bool = False
    forecast: StationForecast | None = None
    low_count: int = 0
    low_clear_count: int = 0
    low_active: bool = False

    def rise_rate_cm_per_h(self, window_s: float) -> float:
        return rise_rate_cm_per_h(self.history, window_s)

    def effective(self, now_s: float, cfg: RuleConfig) -> tuple[AlertLevel, str]:
        """The level this station justifies now and why ('escalate', 'forecast' or 'rise')."""
        level, reason = self.observed_level, "escalate"
        if self.rise_active:
            rise_level = AlertLevel(min(int(self.observed_level) + 1, int(AlertLevel.WARNING)))
            if rise_level > level:
                level, reason = rise_level, "rise"
        fc = self.forecast
        if fc is not None and now_s <= fc.issued_s + cfg.lead_s and fc.level > level:
            level, reason = fc.level, "forecast"
        return level, reason


@dataclass(frozen=True, slots=True)
class Action:
    """Something to tell people; the shell words it, picks recipients and delivers it."""

    kind: ActionKind
    audience: Audience
    zone_id: ZoneId
    station_id: StationId
    level: AlertLevel
    ts_s: float
    water_level_m: float = math.nan
    trend_cm_per_h: float = math.nan
    previous_level: AlertLevel = AlertLevel.NORMAL
    forecast: StationForecast | None = None
    detail: str = ""
    observed_s: float = math.nan  # when ``water_level_m`` was measured (UTC epoch s)


def rise_rate_cm_per_h(history: Sequence[tuple[float, float]], window_s: float) -> float:
    """Rate of change over the readings within ``window_s`` of the newest one, cm/h.

    The newest reading is compared with the oldest one in the window, so one
    odd reading in between does not change the rate. NaN with fewer than two
    readings or less than a sixth of the window covered (too short to judge).
    """
    if len(history) < 2:
        return math.nan
    t_new, z_new = history[-1]
    inside = [(t, z) for t, z in history if t >= t_new - window_s]
    t_old, z_old = inside[0]
    dt_s = t_new - t_old
    if dt_s < window_s / 6:
        return math.nan
    return (z_new - z_old) * 100.0 / (dt_s / 3600.0)


def observe_station(
    state: StationState, thresholds: Thresholds, ts_s: float, water_level_m: float, cfg: RuleConfig
) -> tuple[StationState, list[Action]]:
    """Fold one QC-passed observed level into the station's state.

    Returns the new state and station-level actions (low water only; resident
    alerts are decided per zone by :func:`decide_zone`). Readings older than
    the last one are ignored (late duplicates must not move the state back).
    """
    if not math.isnan(state.last_ts_s) and ts_s <= state.last_ts_s:
        return state, []
    actions: list[Action] = []
    n = max(1, cfg.confirm_readings)

    # Upward: confirmed after n consecutive readings above the current level.
    raw_up = thresholds.level_for(water_level_m)
    observed = state.observed_level
    up_count, up_level = 0, AlertLevel.NORMAL
    if raw_up > observed:
        up_count = state.up_count + 1
        up_level = raw_up if state.up_count == 0 else min(state.up_level, raw_up)
        if up_count >= n:
            observed, up_count, up_level = up_level, 0, AlertLevel.NORMAL
    # Downward: below the threshold minus the hysteresis margin, n times running.
    raw_down = thresholds.level_for(water_level_m, margin_m=cfg.hysteresis_m)
    down_count, down_level = 0, AlertLevel.NORMAL
    if raw_down < observed and observed == state.observed_level:
        down_count = state.down_count + 1
        down_level = raw_down if state.down_count == 0 else max(state.down_level, raw_down)
        if down_count >= n:
            observed, down_count, down_level = down_level, 0, AlertLevel.NORMAL

    history = _trim_history(state.history + ((ts_s, water_level_m),), ts_s, cfg.rise_window_s)
    rate = rise_rate_cm_per_h(history, cfg.rise_window_s)
    fast = not math.isnan(rate) and rate >= cfg.rise_rate_cm_per_h
    rise_count = state.rise_count + 1 if fast else 0
    rise_active = state.rise_active
    if rise_count >= n:
        rise_active = True
    elif not fast and (math.isnan(rate) or rate < cfg.rise_rate_cm_per_h / 2):
        rise_active = False

    low_count, low_clear_count, low_active = 0, 0, state.low_active
    if thresholds.low_water_m is not None:
        if not low_active and water_level_m <= thresholds.low_water_m:
            low_count = state.low_count + 1
            if low_count >= n:
                low_active, low_count = True, 0
                actions.append(Action("low_water", "low_water", thresholds.zone_id, state.station_id,
                                      AlertLevel.WATCH, ts_s, water_level_m, rate))
        elif low_active and water_level_m > thresholds.low_water_m + cfg.hysteresis_m:
            low_clear_count = state.low_clear_count + 1
            if low_clear_count >= n:
                low_active, low_clear_count = False, 0
                actions.append(Action("low_water_clear", "low_water", thresholds.zone_id,
                                      state.station_id, AlertLevel.NORMAL, ts_s, water_level_m, rate))

    new_state = replace(
        state, observed_level=observed, up_count=up_count, up_level=up_level,
        down_count=down_count, down_level=down_level, last_ts_s=ts_s, last_level_m=water_level_m,
        history=history, rise_count=rise_count, rise_active=rise_active,
        low_count=low_count, low_clear_count=low_clear_count, low_active=low_active,
    )
    return new_state, actions


def _trim_history(history: tuple[tuple[float, float], ...], now_s: float, window_s: float):
    # keep one reading older than the window so the rate always spans it
    inside = [i for i, (t, _) in enumerate(history) if t >= now_s - window_s]
    first = max(0, inside[0] - 1) if inside else len(history) - 1
    return history[first:][-64:]


def station_forecast(
    thresholds: Thresholds,
    issued_s: float,
    t_s: np.ndarray,
    median_m: np.ndarray,
    exceed_prob: np.ndarray,
    rise_rate_cm_per_h: float,
    cfg: RuleConfig,
) -> StationForecast:
    """Reduce one station's forecast rows to the level it justifies.

    Parameters
    ----------
    t_s : (H,) float, UTC epoch seconds of the forecast steps.
    median_m : (H,) float, median level, m MSL.
    exceed_prob : (K=3, H) float, chance of reaching watch / warning / evacuate.
    """
    within = (t_s > issued_s - 1e-6) & (t_s <= issued_s + cfg.lead_s)
    ahead = median_m[within]
    peak_m = float(np.nanmax(ahead)) if np.isfinite(ahead).any() else math.nan
    level, probability, reach_s = AlertLevel.NORMAL, 0.0, math.nan
    for k, candidate in enumerate(LEVELS_UP):
        probs = np.where(within, np.nan_to_num(exceed_prob[k], nan=0.0), 0.0)
        hits = np.flatnonzero(probs >= cfg.exceed_probability)
        if hits.size:
            level, probability, reach_s = candidate, float(probs.max()), float(t_s[hits[0]])
    return StationForecast(issued_s, level, probability, reach_s, peak_m, float(rise_rate_cm_per_h))


def apply_forecast(state: StationState, forecast: StationForecast) -> StationState:
    """Replace the station's forecast; older forecasts never overwrite newer ones."""
    if state.forecast is not None and forecast.issued_s < state.forecast.issued_s:
        return state
    return replace(state, forecast=forecast)


@dataclass(frozen=True, slots=True)
class ZoneState:
    """What a zone's residents have been told."""

    zone_id: ZoneId
    level: AlertLevel = AlertLevel.NORMAL
    level_since_s: float = math.nan
    lower_since_s: float = math.nan        # when the stations first justified less than ``level``
    last_message_s: float = math.nan
    # (level, when last announced) for the cooldown
    announced: tuple[tuple[int, float], ...] = field(default=())

    def announced_at(self, level: AlertLevel) -> float:
        for lv, ts in self.announced:
            if lv == int(level):
                return ts
        return math.nan

    def with_announced(self, level: AlertLevel, ts_s: float) -> tuple[tuple[int, float], ...]:
        return tuple(sorted({**dict(self.announced), int(level): ts_s}.items()))


def decide_zone(
    zone: ZoneState,
    stations: Sequence[tuple[StationState, Thresholds]],
    now_s: float,
    cfg: RuleConfig,
) -> tuple[ZoneState, list[Action]]:
    """Decide what a zone's residents must be told now.

    ``stations`` are the zone's level stations with their current states.
    Returns the new zone state and zero or one resident action.
    """
    target, lead, reason = AlertLevel.NORMAL, None, "escalate"
    for st, th in stations:
        level, why = st.effective(now_s, cfg)
        if lead is None or level > target:
            target, lead, reason = level, (st, th), why
    if lead is None:
        return zone, []
    st, th = lead

    def action(kind: str, level: AlertLevel) -> Action:
        return Action(kind, "residents", zone.zone_id, st.station_id, level, now_s,  # type: ignore[arg-type]
                      st.last_level_m, st.rise_rate_cm_per_h(cfg.rise_window_s), zone.level, st.forecast,
                      observed_s=st.last_ts_s)

    if target > zone.level:
        # Always told at once: every lowering was announced, so residents must hear it rose again.
        return replace(zone, level=target, level_since_s=now_s, lower_since_s=math.nan, last_message_s=now_s,
                       announced=zone.with_announced(target, now_s)), [action(reason, target)]
    if target == zone.level:
        zone = replace(zone, lower_since_s=math.nan)
        if zone.level >= AlertLevel.WARNING and not math.isnan(zone.last_message_s) \
                and now_s - zone.last_message_s >= cfg.reminder_s:
            return replace(zone, last_message_s=now_s), [action("reminder", target)]
        return zone, []
    # target < zone.level: lower only after the lower level held for clear_after_s, and not
    # within cooldown_s of announcing the current level (so flapping costs at most two
    # messages per cooldown, and residents never hold a stale "all clear")
    if math.isnan(zone.lower_since_s):
        zone = replace(zone, lower_since_s=now_s)
    if now_s - zone.lower_since_s < cfg.clear_after_s:
        return zone, []
    announced = zone.announced_at(zone.level)
    if not math.isnan(announced) and now_s - announced < cfg.cooldown_s:
        return zone, []
    kind = "all_clear" if target == AlertLevel.NORMAL else "deescalate"
    return replace(zone, level=target, level_since_s=now_s, lower_since_s=math.nan,
                   last_message_s=now_s), [action(kind, target)]


@dataclass(frozen=True, slots=True)
class HealthState:
    """Officer-facing state of one station: online and QC alerts, with a cooldown."""

    station_id: StationId
    online: bool = True
    last_offline_alert_s: float = math.nan
    last_qc_alert_s: float = math.nan


def decide_status(
    health: HealthState, zone_id: ZoneId, status: str, ts_s: float, cfg: RuleConfig
) -> tuple[HealthState, list[Action]]:
    """A node's ``online``/``offline`` status -> an officer alert on each change."""
    online = status.strip().lower() == "online"
    if online == health.online:
        return health, []
    if not online:
        last = health.last_offline_alert_s
        new = replace(health, online=False)
        if not math.isnan(last) and ts_s - last < cfg.officer_cooldown_s:
            return new, []
        return replace(new, last_offline_alert_s=ts_s), [
            Action("sensor_offline", "officers", zone_id, health.station_id, AlertLevel.WATCH, ts_s)
        ]
    return replace(health, online=True), [
        Action("sensor_online", "officers", zone_id, health.station_id, AlertLevel.NORMAL, ts_s)
    ]


def decide_qc(
    health: HealthState, zone_id: ZoneId, ts_s: float, qc_name: str, detail: str, cfg: RuleConfig
) -> tuple[HealthState, list[Action]]:
    """A reading failed QC -> an officer alert, at most once per ``officer_cooldown_s`` per station."""
    last = health.last_qc_alert_s
    if not math.isnan(last) and ts_s - last < cfg.officer_cooldown_s:
        return health, []
    return replace(health, last_qc_alert_s=ts_s), [
        Action("qc", "officers", zone_id, health.station_id, AlertLevel.WATCH, ts_s, detail=f"{qc_name} {detail}".strip())
    ]


def trend_word(rate_cm_per_h: float, cfg: RuleConfig) -> Literal["rising", "falling", "steady", "unknown"]:
    if math.isnan(rate_cm_per_h):
        return "unknown"
    if rate_cm_per_h > cfg.steady_cm_per_h:
        return "rising"
    if rate_cm_per_h < -cfg.steady_cm_per_h:
        return "falling"
    return "steady"


def tide_extrema(
    t_s: np.ndarray, level_m: np.ndarray, after_s: float, until_s: float
) -> list[tuple[Literal["high", "low"], float, float]]:
    """High and low waters of a forecast median between ``after_s`` and ``until_s``.

    Parameters
    ----------
    t_s : (H,) float, UTC epoch seconds, increasing.
    level_m : (H,) float, median level, m MSL (NaN allowed: skipped).

    Returns
    -------
    list of ("high" | "low", time UTC epoch s, level m), in time order. A turn
    is a sample higher (lower) than both neighbours; plateaus count once.
    """
    t_s = np.asarray(t_s, dtype=float)
    z = np.asarray(level_m, dtype=float)
    keep = np.isfinite(z)
    t_s, z = t_s[keep], z[keep]
    out: list[tuple[Literal["high", "low"], float, float]] = []
    if z.size < 3:
        return out
    dz = np.sign(np.diff(z))
    # carry the last non-zero slope over plateaus so a flat top is one turn
    for i in range(1, dz.size):
        if dz[i] == 0:
            dz[i] = dz[i - 1]
    for i in range(1, dz.size):
        if dz[i - 1] > 0 and dz[i] < 0:
            kind: Literal["high", "low"] = "high"
        elif dz[i - 1] < 0 and dz[i] > 0:
            kind = "low"
        else:
            continue
        if after_s <= t_s[i] <= until_s:
            out.append((kind, float(t_s[i]), float(z[i])))
    return out


# --- external feeds (issue 13): officers hear when a source of upstream data goes bad and comes back.
# A feed is "bad" when stale, or failing FEED_FAILURES_BEFORE_ALERT runs in a row (one hiccup is not news).
FEED_FAILURES_BEFORE_ALERT = 3


@dataclass(frozen=True, slots=True)
class FeedAlertState:
    feed_id: str
    bad: bool = False
    last_alert_s: float = math.nan


def feed_is_bad(state: str | None, consecutive_failures: int) -> bool:
    """Whether a feed's health (``feeds.describe_feed``) is worth an officer's attention."""
    return state == "stale" or (state == "failing" and consecutive_failures >= FEED_FAILURES_BEFORE_ALERT)


def decide_feed(prev: FeedAlertState, bad: bool, ts_s: float, cfg: RuleConfig
                ) -> tuple[FeedAlertState, Literal["feed_down", "feed_up"] | None]:
    """A feed turning bad -> one officer message (at most once per ``officer_cooldown_s``); recovering -> one."""
    if bad == prev.bad:
        return prev, None
    if bad:
        if not math.isnan(prev.last_alert_s) and ts_s - prev.last_alert_s < cfg.officer_cooldown_s:
            return replace(prev, bad=True), None
        return replace(prev, bad=True, last_alert_s=ts_s), "feed_down"
    return replace(prev, bad=False), "feed_up"
