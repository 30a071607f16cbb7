"""``floodwatch verify``: how early residents would have been warned, and how often for nothing.

Two sources of truth:

- ``--csv``: a gauge's recorded history, replayed through the production path:
  the forecaster on its schedule (every ``forecast.interval_s``, each forecast
  from the window the job would have read) via :func:`models.forecast_origins`,
  and the alert rules (:mod:`alerts.replay`) with the site's settings, scored
  by :mod:`alerts.verification` for the forecast-driven rules and for the same
  rules with forecasts off (the observed-only baseline).
- ``--scenario``: a simulated flood with known ground truth, run through
  ingest, the store, the forecast job and the alert service with real LINE
  delivery to the stand-in, in simulated time (:mod:`cli._verify_scenario`).

The shell: read and check the input, show progress, print a table, write
JSON, the warnings CSV and the picture.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from floodwatch.alerts.replay import ReplayResult, issue_times, replay_station, store_grid, thresholds_for
from floodwatch.alerts.rules import RuleConfig
from floodwatch.alerts.verification import (
    BELOW_S,
    LATE_S,
    LevelScore,
    band_coverage,
    reached_within,
    verify_warnings,
)
from floodwatch.cli.backtest import _named_csv, read_input, read_series, read_series_in_file_order
from floodwatch.models import (
    OriginForecasts,
    bin_like_store,
    forecast_origins,
    rise_rate_cm_per_h,
    rolling_forecasts,
)

from floodwatch.errors import FloodwatchError
from floodwatch.settings import Settings, load_settings

log = logging.getLogger("floodwatch.verify")

LEVEL_NAMES = ("watch", "warning", "evacuate")
SWEEP_KEYS = ("exceed_probability", "lead_h", "confirm_readings", "rise_rate_cm_per_h")
GAP_MIN_S = 3600.0

EXAMPLE = (
    "examples:\n"
    "  floodwatch verify --csv ../shared/data/river_rhine_duesseldorf_2016_2018_15min.csv \\\n"
    "      --rain-csv ../shared/data/rain_duesseldorf_airport_2017_2018_hourly.csv \\\n"
    "      --levels 5.0,6.0,7.0 --json var/verify_rhine.json --alerts-csv var/rhine_warnings.csv \\\n"
    "      --plot var/verify_rhine.png\n"
    "  floodwatch verify --csv gauge.csv --station LP-W06 --sweep exceed_probability=0.5,0.7,0.9 \\\n"
    "      --sweep lead_h=3,6\n"
    "  floodwatch verify --scenario monsoon_flood --json var/verify_monsoon.json\n\n"
    "--levels maps 1-3 levels (metres, the record's datum) onto watch, warning, evacuate, lowest first;\n"
    "with fewer than three the missing higher levels are never reached. Definitions: docs/verification.md."
)


class VerifyInputError(FloodwatchError):
    """The record or the options given to verify cannot be used as they are."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="score the warnings the rules would have sent: lead time, POD, FAR, CSI per level",
        description="Replay a gauge's history (--csv) through the forecaster on its production schedule and "
        "the alert rules with the site's settings, or run a simulated flood (--scenario) through ingest, "
        "forecasts, the alert engine and LINE delivery in simulated time, and score every warning: events, "
        "hits, misses, false alarms, POD, FAR, CSI and lead time per level, for the forecast-driven rules "
        "(floodwatch) and the same rules on observed levels only (observed_only).\n\n" + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(run=run)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, metavar="LEVEL.csv",
                        help="level record: 'time' (ISO-8601 with offset, or epoch seconds) and 'water_level_m'")
    source.add_argument("--scenario", metavar="NAME",
                        help="a firmware_sim scenario (monsoon_flood, cloudburst, tidal_normal, dry_season, ...)")
    p.add_argument("--levels", metavar="M,M,M",
                   help="1-3 warning levels in metres, lowest first (watch, warning, evacuate); "
                   "default: the --station's levels")
    p.add_argument("--rain-csv", type=Path, metavar="RAIN.csv",
                   help="rain driving the gauge: 'time' (end of each interval) and 'rain_mm'")
    p.add_argument("--window-h", type=float, default=24.0, metavar="H",
                   help="a warning counts for an event up to this long before it, and is verified if its "
                   "level is reached this long after it (default 24)")
    p.add_argument("--station", metavar="ID",
                   help="replay the CSV as this registry station: its levels (unless --levels), dry level "
                   "and warning_profile")
    p.add_argument("--profile", metavar="NAME",
                   help="warning profile to replay with (built-in: balanced, early, cautious, tidal, "
                   "observed_only; or one under [alerts.profiles])")
    p.add_argument("--upstream", action="append", default=[], metavar="NAME=CSV", type=_named_csv,
                   help="an upstream gauge the forecast may read ('time' and 'water_level_m' or 'discharge_m3_s'; "
                   "only its changes are used); repeatable. With inputs the forecaster fits daily and moves the "
                   "fit every run, as the live job does for a station with links")
    p.add_argument("--predicted", action="append", default=[], metavar="NAME=CSV", type=_named_csv,
                   help="a predicted series (tide table, announced dam release) known ahead of each forecast; "
                   "repeatable")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the scores here")
    p.add_argument("--alerts-csv", type=Path, metavar="WARNINGS.csv",
                   help="write every warning issued: time,level_m,kind (ISO-8601 UTC; observed/forecast/rise)")
    p.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="draw the record, the levels and every warning (needs matplotlib: pip install "
                   "'floodwatch[plot]')")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V,V,...",
                   help=f"replay with every combination of these values ({', '.join(SWEEP_KEYS)}); repeat "
                   "for several keys; prints the trade-off table")
    p.add_argument("--hours", type=float, metavar="H",
                   help="--scenario: simulate only the first H hours (default: the whole scenario)")
    p.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")


# ------------------------------------------------------------------ input
@dataclass
class Record:
    """A gauge's readings after the checks, in time order, and what the checks said."""

    path: Path
    t_s: np.ndarray
    level_m: np.ndarray
    spacing_s: float
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def parse_levels(text: str) -> list[float]:
    """'5.0,6.0,7.0' -> [5.0, 6.0, 7.0]: 1-3 finite levels, strictly rising."""
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise VerifyInputError(f"--levels {text!r} should be metres separated by commas, e.g. 5.0,6.0,7.0") from exc
    if not 1 <= len(levels) <= 3 or not all(math.isfinite(x) for x in levels):
        raise VerifyInputError(f"--levels {text!r} should be 1 to 3 levels in metres (watch, warning, evacuate)")
    if any(b <= a for a, b in pairwise(levels)):
        raise VerifyInputError(f"--levels {text!r} must rise: watch < warning < evacuate")
    return levels


def plausibility_problem(level_m: np.ndarray, levels_m: list[float]) -> str | None:
    """Why the record and the levels cannot both be in metres, or None if they may be."""
    lo, median, hi = np.percentile(level_m, [0.5, 50.0, 99.5])
    spread = hi - lo
    if spread > 25.0:
        return (f"the level column moves {spread:,.0f} units over the record (from {lo:g} to {hi:g}); no river "
                "or tide moves that many metres, so it looks like centimetres or millimetres: convert "
                "water_level_m to metres (divide centimetres by 100)")
    top = max(abs(x) for x in levels_m)
    if lo > 20.0 * max(top, 0.5):
        return (f"the record sits at {median:g} (never below {lo:g}) while the levels are {levels_m} m; "
                f"it looks like centimetres (that would be {median / 100:.2f} m): convert water_level_m to metres")
    biggest = float(np.max(np.abs(level_m)))
    if min(levels_m) > 20.0 * max(biggest, 0.5):
        return (f"the levels {levels_m} lie far above every reading (largest {biggest:g} m); they look like "
                "centimetres: give --levels in metres, on the record's datum")
    return None


def load_record(path: Path, levels_m: list[float]) -> Record:
    """Read a level CSV and check it: order, duplicates, gaps, units. Fixable problems become notes."""
    t, v, lines = read_series_in_file_order(path, "water_level_m")
    notes: list[str] = []
    info: dict[str, Any] = {}
    finite = np.isfinite(v) & np.isfinite(t)
    if not finite.all():
        notes.append(f"{int((~finite).sum())} readings are not finite numbers (inf): left out")
        t, v, lines = t[finite], v[finite], lines[finite]
    back = np.flatnonzero(np.diff(t) < 0)
    info["unsorted_rows"] = int(back.size)
    if back.size:
        notes.append(f"rows are not in time order ({back.size} steps back in time, the first at line "
                     f"{int(lines[back[0] + 1])}): sorted by time")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    same = np.flatnonzero(np.diff(t) == 0) + 1
    info["duplicate_times"] = int(same.size)
    if same.size:
        conflicting = int(np.sum(v[same] != v[same - 1]))
        keep = np.ones(t.size, dtype=bool)
        keep[same] = False
        detail = f", {conflicting} of them with a different value" if conflicting else ""
        notes.append(f"{same.size} readings repeat an earlier time stamp{detail}: the first of each kept, "
                     "as the store keeps it")
        t, v = t[keep], v[keep]
    if t.size < 3:
        raise VerifyInputError(f"{path}: fewer than 3 distinct reading times; nothing to replay")
    spacing = float(np.median(np.diff(t)))
    gaps = np.diff(t)
    big = np.flatnonzero(gaps > max(3.0 * spacing, GAP_MIN_S))
    info["gaps"] = int(big.size)
    if big.size:
        longest = int(big[np.argmax(gaps[big])])
        notes.append(f"{big.size} gaps longer than {max(3.0 * spacing, GAP_MIN_S) / 3600:g} h, the longest "
                     f"{gaps[longest] / 86400:.1f} days from {_iso(t[longest])}: forecasts there see less, "
                     "and a crossing inside a gap is dated by the first reading after it")
        info["longest_gap_s"] = float(gaps[longest])
    problem = plausibility_problem(v, levels_m)
    if problem is not None:
        raise VerifyInputError(f"{path}: {problem}")
    return Record(path=path, t_s=t, level_m=v, spacing_s=spacing, notes=notes, info=info)


def level_coverage_notes(record: Record, levels_m: list[float], events: dict[float, int]) -> list[str]:
    """Say plainly for which levels there is nothing to detect, and why."""
    notes = []
    top, bottom = float(np.max(record.level_m)), float(np.min(record.level_m))
    for name, level in zip(LEVEL_NAMES, levels_m, strict=False):  # 1 to 3 levels
        if top < level:
            notes.append(f"{name} {level:g} m: the record never reaches it (highest {top:g} m): no events, "
                         "so POD and lead are undefined; warnings for it are still scored")
        elif bottom >= level:
            notes.append(f"{name} {level:g} m: the record never drops below it (lowest {bottom:g} m): no events")
        elif events.get(level, 0) == 0:
            notes.append(f"{name} {level:g} m: reached, but never after {BELOW_S / 3600:g} h below it within the "
                         "scored period: no events")
    return notes


# ------------------------------------------------------------------ core
@dataclass
class Prepared:
    """What every replay of one record shares: the store's grid, the job's forecasts, the scoring period."""

    grid_t_s: np.ndarray
    grid_level_m: np.ndarray
    forecasts: OriginForecasts
    start_s: float
    events_from_s: float
    forecast_s: float  # wall time the forecasts took


def prepare(record: Record, rain: tuple[np.ndarray, np.ndarray] | None, settings: Settings, levels_m: list[float],
            *, horizon_s: float, window_s: float, floor_m: float | None, progress: bool,
            upstream: list[tuple[str, Path]] | None = None,
            predicted: list[tuple[str, Path]] | None = None) -> Prepared:
    """Bin the record as the store would, and forecast at every run of the job's schedule.

    With upstream gauges or predicted series the forecasts are the network-aware
    forecaster's, fitted once a day and moved on every run as the live job does
    (``models.rolling_forecasts``); without, the single-station forecast the job
    makes for a gauge with no links (``models.forecast_origins``).
    """
    cfg = settings.forecast
    step_s, history_s = cfg.step_s, cfg.history_days * 86400.0
    grid_start, grid_end = store_grid(float(record.t_s[0]), float(record.t_s[-1]), step_s, history_s)
    grid_t, grid_level = bin_like_store(record.t_s, record.level_m, grid_start, grid_end, step_s)
    grid_rain = None
    if rain is not None:
        _, grid_rain = bin_like_store(rain[0], rain[1], grid_start, grid_end, step_s, how="sum")
    origins = issue_times(grid_start, float(record.t_s[-1]), cfg.interval_s, history_s)
    if origins.size == 0:
        span_d = (record.t_s[-1] - record.t_s[0]) / 86400.0
        raise VerifyInputError(
            f"{record.path}: the record spans {span_d:.1f} days; the first forecast needs "
            f"forecast.history_days = {cfg.history_days:g} days before it. Give a longer record, or a shorter "
            "history for this replay (FLOODWATCH_FORECAST__HISTORY_DAYS)")
    thresholds = np.array(list(levels_m) + [np.nan] * (3 - len(levels_m)))
    started = time.monotonic()
    if upstream or predicted:
        fc = _network_forecasts(grid_t, grid_level, grid_rain, origins, thresholds, upstream or [], predicted or [],
                                horizon_s=horizon_s, step_s=step_s, floor_m=floor_m, progress=progress,
                                window_s=history_s, network_window_s=cfg.network_history_days * 86400.0)
    else:
        fc = forecast_origins(
            grid_t, grid_level, grid_rain, origins_s=origins, thresholds_m=thresholds, horizon_s=horizon_s,
            step_s=step_s, window_s=history_s, floor_m=floor_m, job_horizon_s=cfg.horizon_h * 3600.0,
            progress=progress_bar("forecasts", "origins") if progress else None,
        )
    return Prepared(grid_t, grid_level, fc, float(origins[0]), float(origins[0]) + window_s,
                    time.monotonic() - started)


def _network_forecasts(grid_t: np.ndarray, grid_level: np.ndarray, grid_rain: np.ndarray | None,
                       origins: np.ndarray, thresholds: np.ndarray, upstream: list[tuple[str, Path]],
                       predicted: list[tuple[str, Path]], *, horizon_s: float, step_s: float,
                       floor_m: float | None, progress: bool, window_s: float,
                       network_window_s: float) -> OriginForecasts:
    """The forecasts with inputs, on the job's schedule, as :class:`OriginForecasts`.

    The job issued at ``origins`` reads bins up to the last complete one, whose start is
    ``origin_s - step_s``: that bin is the rolling forecaster's origin, and the job's lead
    ``k`` steps after ``origin_s`` is the rolling lead ``k + 1``.
    """
    start_s, step = float(grid_t[0]), step_s
    end_s = float(grid_t[-1]) + step
    up_rows = []
    for name, path in upstream:
        t, v = read_input(path)
        _, binned = bin_like_store(t, v, start_s, end_s, step)
        if not np.isfinite(binned).any():
            raise VerifyInputError(f"--upstream {name}={path}: no reading falls within the level record's span")
        up_rows.append(binned)
    pr_rows = []
    for name, path in predicted:
        t, v = read_input(path)
        _, binned = bin_like_store(t, v, start_s, max(end_s, float(np.nanmax(t)) + step), step)
        if not np.isfinite(binned[: grid_t.size]).any():
            raise VerifyInputError(f"--predicted {name}={path}: no value falls within the level record's span")
        pr_rows.append(binned)
    predicted_m = None
    if pr_rows:
        predicted_m = np.full((len(pr_rows), max(r.size for r in pr_rows)), np.nan)
        for k, row in enumerate(pr_rows):
            predicted_m[k, : row.size] = row
    ends_s = np.floor(origins / step) * step
    last_bin = np.round((ends_s - step - start_s) / step).astype(np.int64)
    n_leads = int(round(horizon_s / step))
    rolled = rolling_forecasts(
        grid_t, grid_level, grid_rain, origin_index=last_bin, horizon_s=(n_leads + 1) * step, step_s=step,
        window_s=window_s, network_window_s=network_window_s,
        thresholds_m=thresholds, upstream_m=np.stack(up_rows) if up_rows else None, predicted_m=predicted_m,
        input_names=[n for n, _ in upstream] + [n for n, _ in predicted],
        progress=progress_bar("forecasts", "origins") if progress else None,
    )
    median = rolled.median_m[:, 1:]
    lower, upper = rolled.lower_m[:, 1:], rolled.upper_m[:, 1:]
    if floor_m is not None:
        median, lower, upper = (np.maximum(a, floor_m) for a in (median, lower, upper))
    # The fast-rise rule's slope: the last hour of each window, as predict() gives it to the job.
    hour = max(int(round(3600.0 / step)), 2)
    cols = last_bin[:, None] + np.arange(-(hour - 1), 1)[None, :]
    recent = np.where(cols >= 0, grid_level[np.clip(cols, 0, None)], np.nan)
    rate = np.full(origins.size, np.nan)
    for lo in range(0, origins.size, 4096):
        rate[lo: lo + 4096] = rise_rate_cm_per_h(step * np.arange(hour, dtype=float), recent[lo: lo + 4096])
    return OriginForecasts(
        issued_s=origins, origin_s=ends_s, lead_s=step * np.arange(1, n_leads + 1, dtype=float),
        median_m=median.astype(np.float32), lower_m=lower.astype(np.float32), upper_m=upper.astype(np.float32),
        exceed_prob=rolled.exceed_prob[:, :, 1:].astype(np.float32), rise_rate_cm_per_h=rate.astype(np.float32),
        model_name=tuple(f"{m} [{u}]" if u else m for m, u in zip(rolled.model_name, rolled.inputs_used,
                                                                    strict=True)),
    )


def score_rules(record: Record, prepared: Prepared, levels_m: list[float], cfg: RuleConfig,
                station_cfg: RuleConfig, *, window_s: float,
                forecasts: bool = True, progress: bool = False) -> tuple[ReplayResult, list[LevelScore]]:
    """Replay the rules (with the forecasts, or on observed levels only) and score them per level."""
    th = thresholds_for(levels_m)
    run_cfg = station_cfg if forecasts else replace(station_cfg, use_forecast=False)
    result = replay_station(th, cfg, record.t_s, record.level_m, prepared.forecasts if forecasts else None,
                            station_cfg=run_cfg, start_s=prepared.start_s,
                            progress=progress_bar("rules", "steps") if progress else None)
    scores = verify_warnings(record.t_s, record.level_m, th_list(levels_m), result.warnings, window_s=window_s,
                             late_s=LATE_S, events_from_s=prepared.events_from_s, warnings_from_s=prepared.start_s)
    return result, scores


def th_list(levels_m: list[float]) -> list[float]:
    return list(levels_m) + [math.nan] * (3 - len(levels_m))


def rules_json(cfg: RuleConfig) -> dict[str, Any]:
    return {"use_forecast": cfg.use_forecast, "exceed_probability": cfg.exceed_probability,
            "lead_h": cfg.lead_s / 3600.0, "confirm_readings": cfg.confirm_readings,
            "hysteresis_m": cfg.hysteresis_m, "rise_rate_cm_per_h": _finite_or_none(cfg.rise_rate_cm_per_h),
            "clear_after_s": cfg.clear_after_s, "cooldown_s": cfg.cooldown_s}


# ------------------------------------------------------------------ shell
def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        if args.window_h <= 0:
            raise VerifyInputError(f"--window-h must be positive hours, got {args.window_h:g}")
        sweep = parse_sweep(args.sweep)
        if args.scenario is not None:
            if args.upstream or args.predicted:
                raise VerifyInputError("--upstream and --predicted go with --csv; a scenario's stations take "
                                       "their links from the site file")
            from floodwatch.cli._verify_scenario import run_scenario_command

            return run_scenario_command(args, settings, sweep)
        return run_csv(args, settings, sweep)
    except FloodwatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def parse_sweep(items: list[str]) -> dict[str, list[float]]:
    """['exceed_probability=0.5,0.7', 'lead_h=3,6'] -> {key: values}; keys and ranges checked."""
    out: dict[str, list[float]] = {}
    for item in items:
        key, _, values = item.partition("=")
        key = key.strip()
        if key not in SWEEP_KEYS or not values.strip():
            raise VerifyInputError(f"--sweep {item!r}: use KEY=V,V,... with KEY one of {', '.join(SWEEP_KEYS)}")
        try:
            parsed = [float(v) for v in values.split(",") if v.strip()]
            if any(math.isnan(v) for v in parsed):
                raise ValueError("nan")
        except ValueError as exc:
            raise VerifyInputError(f"--sweep {item!r}: values must be numbers separated by commas") from exc
        for v in parsed:
            ok = {"exceed_probability": 0 < v < 1, "lead_h": 0 < v <= 72,
                  "confirm_readings": 1 <= v <= 12 and v == round(v), "rise_rate_cm_per_h": v > 0}
            if not ok[key]:
                raise VerifyInputError(f"--sweep {item!r}: {v:g} is out of range for {key}")
        out[key] = parsed
    return out


def sweep_configs(base: RuleConfig, sweep: dict[str, list[float]]) -> list[RuleConfig]:
    """Every combination of the swept values applied to ``base`` (``base`` itself without a sweep)."""
    if not sweep:
        return [base]
    keys = list(sweep)
    out = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        out.append(replace(
            base,
            exceed_probability=values.get("exceed_probability", base.exceed_probability),
            lead_s=values.get("lead_h", base.lead_s / 3600.0) * 3600.0,
            confirm_readings=int(values.get("confirm_readings", base.confirm_readings)),
            rise_rate_cm_per_h=values.get("rise_rate_cm_per_h", base.rise_rate_cm_per_h),
        ))
    return out


def run_csv(args: argparse.Namespace, settings: Settings, sweep: dict[str, list[float]]) -> int:
    wall_started = time.monotonic()
    station = settings.station(args.station) if args.station else None
    if station is not None and station.kind != "water_level":
        raise VerifyInputError(f"--station {args.station} is a rain gauge; name a level station")
    if args.levels:
        levels_m = parse_levels(args.levels)
    elif station is not None and station.levels is not None:
        levels_m = list(station.levels.as_tuple())
    else:
        raise VerifyInputError("give the warning levels with --levels M[,M[,M]] (or a level --station)")
    site_cfg = RuleConfig.from_settings(settings)
    station_cfg = RuleConfig.from_settings(settings, station)
    profile_name = station.warning_profile if station is not None else None
    if args.profile:
        station_cfg = site_cfg.with_profile(settings.warning_profile(args.profile))
        profile_name = args.profile
    configs = sweep_configs(station_cfg, sweep)
    window_s = args.window_h * 3600.0
    record = load_record(args.csv, levels_m)
    rain = None
    if args.rain_csv is not None:
        rain_t, rain_mm = read_series(args.rain_csv, "rain_mm")
        if np.any(rain_mm < 0):
            raise VerifyInputError(f"{args.rain_csv}: rain_mm must not be negative (mm fallen per interval)")
        rain = (rain_t, rain_mm)
    fcfg = settings.forecast
    lead_max_s = max([station_cfg.lead_s] + [c.lead_s for c in configs])
    horizon_s = max(math.ceil(lead_max_s / fcfg.step_s), 1) * fcfg.step_s
    if horizon_s > fcfg.horizon_h * 3600.0:
        raise VerifyInputError(f"a lead of {lead_max_s / 3600:g} h is beyond forecast.horizon_h = {fcfg.horizon_h:g}")
    floor_m = None if station is None or station.dry_level_m is None else station.dry_level_m
    show = not args.no_progress
    print(f"verify: {record.path.name}: {record.t_s.size:,} readings every {record.spacing_s:g} s, "
          f"{_iso(record.t_s[0])} to {_iso(record.t_s[-1])}; levels {levels_m} m", file=sys.stderr)
    for note in record.notes:
        print(f"  note: {note}", file=sys.stderr)
    if record.spacing_s % fcfg.step_s and fcfg.step_s % record.spacing_s:
        print(f"  note: readings every {record.spacing_s:g} s on the forecaster's {fcfg.step_s:g} s grid leave "
              "some bins empty, as they would in production; a site with such gauges may set "
              "forecast.step_s and forecast.interval_s to the gauges' interval", file=sys.stderr)
    prepared = prepare(record, rain, settings, levels_m, horizon_s=horizon_s, window_s=window_s,
                       floor_m=floor_m, progress=show, upstream=args.upstream, predicted=args.predicted)
    fw, fw_scores = score_rules(record, prepared, levels_m, site_cfg, station_cfg, window_s=window_s, progress=show)
    obs, obs_scores = score_rules(record, prepared, levels_m, site_cfg, station_cfg, window_s=window_s,
                                  forecasts=False)
    cfg = station_cfg
    sweep_rows = []
    if sweep:
        # The forecasts do not depend on the rules: every swept setting replays the same ones.
        baseline: dict[tuple[int, float], list[LevelScore]] = {
            (station_cfg.confirm_readings, station_cfg.rise_rate_cm_per_h): obs_scores}
        bar = progress_bar("sweep", "settings") if show else None
        for n, swept in enumerate(configs, start=1):
            _, s_fw = score_rules(record, prepared, levels_m, site_cfg, swept, window_s=window_s)
            key = (swept.confirm_readings, swept.rise_rate_cm_per_h)  # all the baseline depends on
            if key not in baseline:
                baseline[key] = score_rules(record, prepared, levels_m, site_cfg, swept, window_s=window_s,
                                            forecasts=False)[1]
            sweep_rows.append(sweep_row(swept, s_fw, baseline[key]))
            if bar is not None:
                bar(n, len(configs))
    coverage = band_coverage(prepared.grid_t_s, prepared.grid_level_m, prepared.forecasts.origin_s,
                             prepared.forecasts.lead_s, prepared.forecasts.lower_m, prepared.forecasts.upper_m)
    events = {s.level_m: s.events for s in fw_scores}
    level_notes = level_coverage_notes(record, levels_m, events)
    result = {
        "csv": str(args.csv),
        "rain_csv": None if args.rain_csv is None else str(args.rain_csv),
        "upstream_csv": {name: str(path) for name, path in args.upstream},
        "predicted_csv": {name: str(path) for name, path in args.predicted},
        "station": args.station,
        "profile": profile_name,
        "levels_m": levels_m,
        "level_names": list(LEVEL_NAMES[: len(levels_m)]),
        "window_h": args.window_h,
        "late_h": LATE_S / 3600.0,
        "below_h": BELOW_S / 3600.0,
        "rules": rules_json(cfg),
        "forecast": {"interval_s": fcfg.interval_s, "step_s": fcfg.step_s, "history_days": fcfg.history_days,
                     "leads_h": horizon_s / 3600.0, "issued": len(prepared.forecasts),
                     "models": _counts(prepared.forecasts.model_name)},
        "record": {"readings": int(record.t_s.size), "first_s": float(record.t_s[0]),
                   "last_s": float(record.t_s[-1]), "spacing_s": record.spacing_s, **record.info,
                   "notes": record.notes + level_notes},
        "scored_from_s": prepared.start_s,
        "events_from_s": prepared.events_from_s,
        "levels": [
            {"level": k + 1, "name": LEVEL_NAMES[k], "level_m": levels_m[k],
             "floodwatch": fw_scores[k].as_json(), "observed_only": obs_scores[k].as_json()}
            for k in range(len(levels_m))
        ],
        "warnings_issued": {"floodwatch": len(fw.warnings), "observed_only": len(obs.warnings)},
        "band_coverage": coverage,
        "forecast_s": round(prepared.forecast_s, 1),
    }
    if sweep_rows:
        result["sweep"] = sweep_rows
    result["elapsed_s"] = round(time.monotonic() - wall_started, 1)
    print(table(result))
    for note in level_notes:
        print(f"note: {note}")
    for line in baseline_verdicts(result):
        print(line)
    if sweep_rows:
        print(sweep_table(sweep_rows, levels_m))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.alerts_csv is not None:
        write_alerts_csv(args.alerts_csv, fw.warnings, record, levels_m, window_s)
    if args.plot is not None:
        from floodwatch.cli._verify_plot import plot_record

        plot_record(args.plot, record, levels_m, fw, fw_scores, prepared.start_s, title=args.csv.name)
        print(f"picture: {args.plot}")
    log.info("event=verify_done csv=%s forecasts=%d elapsed_s=%s", args.csv, len(prepared.forecasts),
             result["elapsed_s"])
    return 0


def sweep_row(cfg: RuleConfig, fw: list[LevelScore], obs: list[LevelScore]) -> dict[str, Any]:
    return {"exceed_probability": cfg.exceed_probability, "lead_h": cfg.lead_s / 3600.0,
            "confirm_readings": cfg.confirm_readings, "rise_rate_cm_per_h": _finite_or_none(cfg.rise_rate_cm_per_h),
            "levels": [{"level_m": f.level_m, "floodwatch": _brief(f), "observed_only": _brief(o)}
                       for f, o in zip(fw, obs, strict=True)]}


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _brief(s: LevelScore) -> dict[str, Any]:
    j = s.as_json()
    return {k: j[k] for k in ("events", "hits", "warnings", "false_alarms", "pod", "far", "csi", "lead_h")}


def write_alerts_csv(path: Path, warnings: list, record: Record, levels_m: list[float], window_s: float) -> None:
    """One row per warning: time,level_m,kind (the contract), then level and verified (true/false/unknown)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["time", "level_m", "kind", "level", "verified"])
        for w in warnings:
            reached = reached_within(record.t_s, record.level_m, th_list(levels_m)[w.level - 1],
                                     np.array([w.ts_s]), window_s)[0]
            verified = "unknown" if not math.isfinite(reached) else ("true" if reached else "false")
            out.writerow([_iso(w.ts_s), f"{w.level_m:g}", w.kind, LEVEL_NAMES[w.level - 1], verified])


def _fmt(x: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if x is None else pattern.format(x)


def table(result: dict[str, Any]) -> str:
    fc = result["forecast"]
    lines = [
        f"{result['forecast']['issued']:,} forecasts (every {fc['interval_s']:g} s on a {fc['step_s']:g} s grid, "
        f"{fc['history_days']:g}-day window, leads to {fc['leads_h']:g} h) in {result['forecast_s']:.0f} s; "
        f"total {result['elapsed_s']:.0f} s",
        f"rules: exceed_probability {result['rules']['exceed_probability']:g}, lead {result['rules']['lead_h']:g} h, "
        f"confirm_readings {result['rules']['confirm_readings']}"
        + (f", profile {result['profile']}" if result.get("profile") else "")
        + f"; window {result['window_h']:g} h",
        f"{'level':<17}{'rules':<15}{'events':>7}{'hits':>6}{'misses':>7}{'warnings':>9}{'false':>7}"
        f"{'POD':>7}{'FAR':>7}{'CSI':>7}   lead h median / mean / p10",
    ]
    for row in result["levels"]:
        for i, who in enumerate(("floodwatch", "observed_only")):
            s = row[who]
            lead = s["lead_h"]
            label = f"{row['level_m']:g} m {row['name']}" if i == 0 else ""
            lines.append(
                f"{label:<17}{who:<15}{s['events']:>7}{s['hits']:>6}{s['misses']:>7}{s['warnings']:>9}"
                f"{s['false_alarms']:>7}{_fmt(s['pod']):>7}{_fmt(s['far']):>7}{_fmt(s['csi']):>7}   "
                f"{_fmt(lead['median'], '{:.1f}')} / {_fmt(lead['mean'], '{:.1f}')} / {_fmt(lead['p10'], '{:.1f}')}"
            )
    if result.get("band_coverage"):
        lines.append("5-95 % band holds the truth (90 % is honest): " + ", ".join(
            f"{b['lead_h_from']:g}-{b['lead_h_to']:g} h {_fmt(b['coverage'] and 100 * b['coverage'], '{:.1f}')} %"
            for b in result["band_coverage"]))
    return "\n".join(lines)


def baseline_verdicts(result: dict[str, Any]) -> list[str]:
    """Plain sentences wherever observed-only beats the forecast-driven rules."""
    out = []
    for row in result["levels"]:
        fw, obs = row["floodwatch"], row["observed_only"]
        if fw["csi"] is None or obs["csi"] is None:
            continue
        if obs["csi"] > fw["csi"]:
            out.append(f"at {row['level_m']:g} m the observed-only rules score better (CSI {obs['csi']:.2f} against "
                       f"{fw['csi']:.2f}): here the forecast adds {fw['false_alarms'] - obs['false_alarms']} false "
                       "alarms for its lead; consider warning_profile = \"observed_only\" or a stricter profile")
    return out


def sweep_table(rows: list[dict[str, Any]], levels_m: list[float]) -> str:
    lines = ["trade-off (floodwatch rules; observed-only CSI in brackets):",
             f"{'p':>5}{'lead h':>8}{'confirm':>8}{'rise':>6}  " + "".join(
                 f"{f'{lv:g} m POD / FAR / CSI / median lead h':<44}" for lv in levels_m)]
    for r in rows:
        cells = []
        for lv in r["levels"]:
            f, o = lv["floodwatch"], lv["observed_only"]
            cells.append(f"{_fmt(f['pod'])} / {_fmt(f['far'])} / {_fmt(f['csi'])} / "
                         f"{_fmt(f['lead_h']['median'], '{:.1f}')} ({_fmt(o['csi'])})")
        rise = "off" if r["rise_rate_cm_per_h"] is None else f"{r['rise_rate_cm_per_h']:g}"
        lines.append(f"{r['exceed_probability']:>5g}{r['lead_h']:>8g}{r['confirm_readings']:>8}{rise:>6}  "
                     + "".join(f"{c:<44}" for c in cells))
    return "\n".join(lines)


def _counts(names: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return dict(sorted(out.items()))


def _iso(ts_s: float) -> str:
    return datetime.fromtimestamp(float(ts_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def progress_bar(label: str, unit: str, width: int = 30):  # noqa: ANN201 - Callable[[int, int], None]
    """A one-line progress bar on stderr with elapsed time and an estimate of what is left."""
    started = time.monotonic()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and done < total:
            return
        last[0] = now
        elapsed = now - started
        frac = done / total if total else 1.0
        eta = elapsed / done * (total - done) if done else 0.0
        bar = "#" * int(round(width * frac)) + "." * (width - int(round(width * frac)))
        print(f"\r{label:<10}[{bar}] {100 * frac:5.1f} %  {done:,}/{total:,} {unit}  {elapsed:5.0f} s, "
              f"~{eta:4.0f} s left", end="", file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m floodwatch.cli.verify",
        description="Same as `floodwatch verify`.\n\n" + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    from floodwatch import logs

    logs.configure(logging.WARNING)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
