"""Benchmark: the forecasts `floodwatch verify` replays, many origins per call against one at a time.

One gauge, a 15-minute record binned onto the 10-minute store grid (a third
of the bins empty, as production sees such a gauge), a forecast every 10
minutes from a 30-day window, three levels, leads to 3 h. ``forecast_origins``
hands the origins to the vectorised core in blocks; the baseline is what the
live job does once per run, ``forecast_stations`` on one window, timed on a
few origins and scaled. Also the rules replayed over the same forecasts.

Run: ``python benchmarks/verify.py --json`` (``--origins 1024`` for a quick run).
Prints one JSON object: origins, batched_s, per_origin_s_scaled, speedup,
batched_cpu_s, replay_s, record_days.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from floodwatch.alerts.replay import replay_station, thresholds_for  # noqa: E402
from floodwatch.alerts.rules import RuleConfig  # noqa: E402
from floodwatch.models import bin_like_store, forecast_origins, forecast_stations  # noqa: E402

STEP_S = 600.0
WINDOW_S = 30 * 86400.0
LEVELS = np.array([3.0, 3.5, 4.0])


def synthetic_river(days: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A river logged every 15 min: slow stage, a few floods, noise, 1 % of readings lost."""
    rng = np.random.default_rng(seed)
    t = 1_780_000_200.0 + 900.0 * np.arange(int(days * 96))
    t_d = (t - t[0]) / 86400.0
    level = 2.0 + 0.5 * np.sin(2 * np.pi * t_d / 90.0)
    for start in rng.uniform(min(31.0, days - 1.0), days, 4):
        level += 1.8 * np.exp(-0.5 * ((t_d - start) / 1.5) ** 2)
    level += np.cumsum(rng.normal(0, 0.002, t.size)) + rng.normal(0, 0.005, t.size)
    keep = rng.random(t.size) > 0.01
    return t[keep], level[keep]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--origins", type=int, default=4096, help="forecasts replayed (default 4096: 28 days)")
    parser.add_argument("--loop-origins", type=int, default=24, help="origins timed one at a time (default 24)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    days = 31 + args.origins * STEP_S / 86400.0
    t, level = synthetic_river(days)
    grid_start = np.floor(t[0] / STEP_S) * STEP_S
    grid, binned = bin_like_store(t, level, grid_start, t[-1] + STEP_S, STEP_S)
    first = np.ceil((grid_start + WINDOW_S) / STEP_S) * STEP_S
    origins = first + STEP_S * np.arange(args.origins)

    started, cpu = time.perf_counter(), time.process_time()
    fc = forecast_origins(grid, binned, origins_s=origins, thresholds_m=LEVELS, horizon_s=3 * 3600.0,
                          step_s=STEP_S, window_s=WINDOW_S)
    batched_s, batched_cpu_s = time.perf_counter() - started, time.process_time() - cpu

    picks = np.linspace(0, args.origins - 1, args.loop_origins).astype(int)
    width = int(WINDOW_S / STEP_S)
    started = time.perf_counter()
    for i in picks:  # the live job: one window, one call, per run
        end = int(round((origins[i] - grid[0]) / STEP_S))
        forecast_stations(grid[end - width:end], binned[None, end - width:end], thresholds_m=LEVELS[None, :],
                          horizon_s=72 * 3600.0, step_s=STEP_S, origin_s=float(origins[i]))
    per_origin_s = (time.perf_counter() - started) / picks.size

    started = time.perf_counter()
    replay_station(thresholds_for(list(LEVELS)), RuleConfig(), t, level, fc)
    replay_s = time.perf_counter() - started
    result = {
        "origins": int(args.origins),
        "record_days": round(days, 1),
        "batched_s": round(batched_s, 2),
        "batched_cpu_s": round(batched_cpu_s, 2),
        "per_origin_s_scaled": round(per_origin_s * args.origins, 2),
        "speedup": round(per_origin_s * args.origins / batched_s, 2),
        "replay_s": round(replay_s, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
