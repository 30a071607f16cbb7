"""Benchmark: fit + predict + exceedance for 10,000 stations in one vectorised call.

30 days of 10-minute history with 5 % of samples missing, 72 h ahead at
10-minute steps, three warning levels per station. The same maths run one
station at a time on a subset gives the loop time (scaled to all stations);
UTide's solve + reconstruct per station on a smaller subset is the reference
for what a conventional per-station tide tool costs (if ``utide`` is
installed; it is not a floodwatch dependency).

Fit once, predict often, as the forecast job runs: ``fit_s`` is the daily fit
of every station (``models.fit``), ``predict_s`` one 10-minute cycle later,
with the newest readings added (``models.update`` on the last days, then
``models.predict``). ``peak_rss_mb`` is this process's peak resident memory
up to then (the series themselves are single precision: 170 MB each).

Run: ``python benchmarks/forecast.py --json`` (``--stations 500`` for a quick run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from floodwatch.models import forecast_stations  # noqa: E402
from floodwatch.models._residual import MAX_ROWS  # noqa: E402

DT_S = 600.0
HISTORY_DAYS = 30
HORIZON_S = 72 * 3600.0
MISSING_FRACTION = 0.05


def synthetic_network(
    n_stations: int, seed: int = 0, extra_steps: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tides of varied size, a slow stage, rain-driven rises and noise; 5 % missing at random.

    Single precision, made in chunks of stations (the temporaries of one chunk, not of all).
    ``extra_steps`` more steps follow the 30 days (the readings of the next cycles)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n_times = int(HISTORY_DAYS * 86400 / DT_S) + extra_steps
    t_s = 1_780_000_000.0 + DT_S * np.arange(n_times)
    t_h = t_s / 3600.0
    level = np.empty((n_stations, n_times), dtype=np.float32)
    rain = np.empty((n_stations, n_times), dtype=np.float32)
    alpha = np.exp(-DT_S / (12 * 3600.0))
    for start in range(0, n_stations, 500):  # memory blocking of the generator
        n = min(500, n_stations - start)
        amp_m = rng.uniform(0.0, 0.8, (n, 1))
        part = (
            1.0
            + amp_m * np.cos(2 * np.pi * t_h / 12.4206 - rng.uniform(0, 6.3, (n, 1)))
            + 0.4 * amp_m * np.cos(2 * np.pi * t_h / 12.0 - rng.uniform(0, 6.3, (n, 1)))
            + 0.3 * amp_m * np.cos(2 * np.pi * t_h / 23.9345 - rng.uniform(0, 6.3, (n, 1)))
        )
        wet = np.where(rng.random((n, n_times)) < 0.01, rng.exponential(4.0, (n, n_times)), 0.0)
        part += 0.02 * lfilter([1.0], [1.0, -alpha], wet, axis=1) * (1 - alpha) * 20
        part += np.cumsum(rng.normal(0, 0.003, (n, n_times)), axis=1)
        part += rng.normal(0, 0.01, (n, n_times))
        part[rng.random((n, n_times)) < MISSING_FRACTION] = np.nan
        level[start : start + n] = part
        rain[start : start + n] = wet
    thresholds = 1.0 + np.array([0.5, 0.8, 1.1])[None, :] * np.ones((n_stations, 1))
    return t_s, level, rain, thresholds


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fit_then_predict(t_s, level, rain, thresholds, n_cycle: int, max_rows=MAX_ROWS) -> dict[str, float]:
    """The daily fit on the first 30 days, then one cycle ``n_cycle`` steps later: update + predict."""
    from floodwatch.models import fit, history_needed_s, predict, update

    n_fit = t_s.size - n_cycle
    out = {}
    started, started_cpu = time.perf_counter(), time.process_time()
    model = fit(t_s[:n_fit], level[:, :n_fit], rain[:, :n_fit], horizon_s=HORIZON_S, max_rows=max_rows)
    out["fit_s"] = time.perf_counter() - started
    out["fit_cpu_s"] = time.process_time() - started_cpu
    # One cycle later: the forecast job reads the last days only (what update looks back over).
    back = int(round(history_needed_s(DT_S, HORIZON_S) / DT_S))
    recent = slice(max(t_s.size - back, 0), t_s.size)
    started, started_cpu = time.perf_counter(), time.process_time()
    moved = update(model, t_s[recent], level[:, recent], rain[:, recent])
    fc = predict(moved, thresholds_m=thresholds, horizon_s=HORIZON_S, step_s=DT_S)
    out["predict_s"] = time.perf_counter() - started
    out["predict_cpu_s"] = time.process_time() - started_cpu
    out["models_used_after_update"] = {name: fc.model_name.count(name) for name in sorted(set(fc.model_name))}
    return out


def run_vectorised(t_s, level, rain, thresholds, max_rows=MAX_ROWS):
    return forecast_stations(
        t_s, level, rain, thresholds_m=thresholds, horizon_s=HORIZON_S, step_s=DT_S, max_rows=max_rows
    )


def run_loop(t_s, level, rain, thresholds, max_rows=MAX_ROWS):
    out = []
    for s in range(level.shape[0]):
        out.append(
            forecast_stations(
                t_s, level[s : s + 1], rain[s : s + 1], thresholds_m=thresholds[s : s + 1],
                horizon_s=HORIZON_S, step_s=DT_S, max_rows=max_rows,
            )
        )
    return out


def stage_costs(t_s, level, rain, thresholds, n_stations: int = 512) -> dict[str, float]:
    """Wall milliseconds per station of each stage, on one block of stations.

    The calls ``models.fit`` makes for a block, timed one by one, so the JSON
    says where the time goes (the vectorised run spreads blocks over cores,
    each with one BLAS thread, as here).
    """
    from threadpoolctl import threadpool_limits

    from floodwatch.models._forecast import _fit_block, predict
    from floodwatch.models._residual import fit_residual
    from floodwatch.models._tide import fit_tide, predict_tide

    n = min(n_stations, level.shape[0])
    y, r, thr = level[:n], rain[:n], thresholds[:n]
    dt_s = float(t_s[1] - t_s[0])
    origin_s = float(t_s[-1])
    costs: dict[str, float] = {}

    def timed(name, call):
        started = time.perf_counter()
        out = call()
        costs[name] = round((time.perf_counter() - started) * 1000.0 / n, 4)
        return out

    with threadpool_limits(limits=1, user_api="blas"):
        _fit_block(t_s, y, r, origin_s, dt_s, HORIZON_S, MAX_ROWS)  # warm-up: first-touch page faults
        tide = timed("tide_fit", lambda: fit_tide(t_s, y, ref_s=origin_s))
        n_ahead = int(np.ceil(HORIZON_S / dt_s)) + 1
        t_ext = np.concatenate([t_s, t_s[-1] + dt_s * np.arange(1, n_ahead + 1)])
        tide_ext = timed("tide_continuation", lambda: predict_tide(tide, t_ext))
        residual = y - tide_ext[:, : t_s.size]
        timed("residual_model", lambda: fit_residual(
            residual, r, dt_s=dt_s, max_lead_s=HORIZON_S, tide_m=tide_ext, tidal=np.ones(n, dtype=bool),
        ))
        model = timed("fit_total", lambda: _fit_block(t_s, y, r, origin_s, dt_s, HORIZON_S, MAX_ROWS))
        timed("predict", lambda: predict(model, thresholds_m=thr, horizon_s=HORIZON_S, step_s=DT_S))
    return costs


def run_utide(t_s, level, n_lat: float = 14.0):
    import utide

    days = t_s / 86400.0 + 719529.0  # matplotlib-style datenum (days since 0000-12-31)
    future = days[-1] + np.arange(1, int(HORIZON_S / DT_S) + 1) * DT_S / 86400.0
    for s in range(level.shape[0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coef = utide.solve(days, level[s], lat=n_lat, method="ols", conf_int="none", verbose=False)
            utide.reconstruct(future, coef, verbose=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: a readable summary)")
    parser.add_argument("--stations", type=int, default=10_000, help="stations in the vectorised run (default 10000)")
    parser.add_argument("--loop-stations", type=int, default=40, help="stations timed in the per-station loop")
    parser.add_argument("--utide-stations", type=int, default=5, help="stations timed with UTide (0 to skip)")
    parser.add_argument("--repeat", type=int, default=1, help="vectorised repetitions; the best is reported")
    parser.add_argument(
        "--max-rows", type=int, default=MAX_ROWS,
        help=f"rows per residual fit (default {MAX_ROWS}, the forecaster's default; fewer is faster and noisier)",
    )
    args = parser.parse_args(argv)

    cycle = 1  # the next 10-minute cycle
    t_all, level_all, rain_all, thresholds = synthetic_network(args.stations, extra_steps=cycle)
    # The 30 days the one-call forecast and the daily fit see (views, not copies).
    t_s, level, rain = t_all[:-cycle], level_all[:, :-cycle], rain_all[:, :-cycle]
    # Wall time is the figure; CPU time is reported too because on a shared machine other
    # processes can stretch the wall time of one run and not the other.
    best, best_cpu = np.inf, np.inf
    for _ in range(max(args.repeat, 1)):
        started, started_cpu = time.perf_counter(), time.process_time()
        fc = run_vectorised(t_s, level, rain, thresholds, args.max_rows)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    models_used = {name: fc.model_name.count(name) for name in sorted(set(fc.model_name))}
    del fc
    split = fit_then_predict(t_all, level_all, rain_all, thresholds, cycle, args.max_rows)
    peak_mb = peak_rss_mb()
    n_loop = min(args.loop_stations, args.stations)
    started, started_cpu = time.perf_counter(), time.process_time()
    run_loop(t_s, level[:n_loop], rain[:n_loop], thresholds[:n_loop], args.max_rows)
    loop_s = time.perf_counter() - started
    loop_cpu_s = time.process_time() - started_cpu
    loop_scaled = loop_s * args.stations / n_loop

    result = {
        "stations": args.stations,
        "history_days": HISTORY_DAYS,
        "step_s": DT_S,
        "horizon_h": HORIZON_S / 3600.0,
        "missing_fraction": MISSING_FRACTION,
        "max_rows": args.max_rows,
        "vectorised_s": round(best, 3),
        "loop_stations": n_loop,
        "loop_s": round(loop_s, 3),
        "loop_s_scaled": round(loop_scaled, 2),
        "speedup": round(loop_scaled / best, 1),
        "vectorised_cpu_s": round(best_cpu, 3),
        "loop_cpu_s_scaled": round(loop_cpu_s * args.stations / n_loop, 2),
        "speedup_cpu": round(loop_cpu_s * args.stations / n_loop / best_cpu, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "models_used": models_used,
        "cpu_count": os.cpu_count(),
        "fit_s": round(split["fit_s"], 3),
        "fit_cpu_s": round(split["fit_cpu_s"], 3),
        "predict_s": round(split["predict_s"], 3),
        "predict_cpu_s": round(split["predict_cpu_s"], 3),
        "peak_rss_mb": round(peak_mb, 1),
    }
    # Where the time goes: ms per station of each stage on one block (blocks are what run in parallel).
    result["stage_ms_per_station"] = stage_costs(t_s, level, rain, thresholds)
    if args.utide_stations > 0:
        try:
            import utide  # noqa: F401
        except ImportError:
            result["utide"] = "not installed (pip install utide to time it; it is not a floodwatch dependency)"
        else:
            n_ut = min(args.utide_stations, args.stations)
            started = time.perf_counter()
            run_utide(t_s, level[:n_ut])
            ut_s = time.perf_counter() - started
            result["utide_stations"] = n_ut
            result["utide_s_per_station"] = round(ut_s / n_ut, 4)
            result["utide_s_scaled"] = round(ut_s / n_ut * args.stations, 1)
            result["utide_note"] = "tide only (solve + reconstruct, OLS, no confidence intervals), per station"
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
