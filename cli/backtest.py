"""``floodwatch backtest``: score the forecaster against baselines on a recorded gauge.

The shell: read the CSV files, put them on a regular grid, show progress,
write JSON and a short table. The evaluation itself is pure, in
:mod:`models.backtest`.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from floodwatch import logs
from floodwatch.errors import FloodwatchError
from floodwatch.models.backtest import UPSTREAM_BASELINE, rolling_origin_backtest

log = logging.getLogger("floodwatch.backtest")

EXAMPLE = (
    "example:\n"
    "  floodwatch backtest --csv ../shared/data/tide_new_london_ct_2013_6min.csv \\\n"
    "      --horizons 1,3,6 --threshold 0.3 --json var/backtest_tide.json\n"
    "  floodwatch backtest --csv ../shared/data/river_rhine_duesseldorf_2016_2018_15min.csv \\\n"
    "      --rain-csv ../shared/data/rain_duesseldorf_airport_2017_2018_hourly.csv --json var/rhine.json\n"
    "  floodwatch backtest --csv ../shared/data/river_rhine_duesseldorf_2016_2018_15min.csv \\\n"
    "      --upstream BONN=../shared/data/rhine_network/river_rhine_bonn_2016_2018_15min.csv \\\n"
    "      --upstream KOBLENZ=../shared/data/rhine_network/river_rhine_koblenz_2016_2018_15min.csv \\\n"
    "      --horizons 1,6,12,24,48 --json var/rhine_upstream.json"
)


class CsvFormatError(FloodwatchError):
    """A backtest CSV file does not follow the expected form."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "backtest",
        help="score the forecaster against persistence and tide baselines on a recorded gauge",
        description="Rolling-origin evaluation with no look-ahead: at every origin the forecaster and "
        "three baselines (persistence, tide_only, tide_plus_residual) see only the data up to that "
        "origin and forecast each horizon; RMSE and MAE per horizon go to --json and a table to stdout.\n\n"
        + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(run=run)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--csv", required=True, type=Path, metavar="FILE",
        help="level record: header with 'time' (ISO-8601 with offset, or epoch seconds) and 'water_level_m'",
    )
    p.add_argument(
        "--rain-csv", type=Path, metavar="FILE",
        help="rain record driving the gauge: 'time' (end of each interval) and 'rain_mm'; default: no rain input",
    )
    p.add_argument(
        "--horizons", default="1,3,6", metavar="H,H,...",
        help="lead times to score, hours, comma-separated (default 1,3,6)",
    )
    p.add_argument(
        "--threshold", type=float, metavar="LEVEL_M",
        help="also score warnings of crossing this level (hit rate, false-alarm ratio, median lead time)",
    )
    p.add_argument("--json", required=True, type=Path, metavar="OUT", help="write the scores here as JSON")
    p.add_argument(
        "--origin-every-h", type=float, default=1.0, metavar="H",
        help="spacing of forecast origins, hours (default 1: every hour; larger is faster, n_origins says what ran)",
    )
    p.add_argument(
        "--window-days", type=float, default=30.0, metavar="D",
        help="fit window before each origin, days (default 30); also the warm-up before the first origin",
    )
    p.add_argument(
        "--upstream", action="append", default=[], metavar="NAME=CSV", type=_named_csv,
        help="an upstream gauge (or the river mouth) the forecast may read: 'time' and 'water_level_m' (or "
        "'discharge_m3_s'); only its changes are used, so any datum will do; repeatable. Also scores "
        "upstream_regression, a plain regression on these gauges' recent changes",
    )
    p.add_argument(
        "--predicted", action="append", default=[], metavar="NAME=CSV", type=_named_csv,
        help="a predicted series (tide table, announced dam release): 'time' and 'water_level_m' (or "
        "'discharge_m3_s'), values known ahead of each origin; repeatable",
    )
    p.add_argument(
        "--refit-every-h", type=float, default=24.0, metavar="H",
        help="fit the forecaster every H hours on the clock and let each fit serve the origins until the next, "
        "as production does (default 24: what was fitted yesterday forecasts today); 0 refits at every origin",
    )


def _named_csv(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"{text!r} should be NAME=CSV, e.g. BONN=data/bonn.csv")
    return name.strip(), Path(path.strip())


INPUT_COLUMNS = ("water_level_m", "discharge_m3_s")
"""Columns an upstream or predicted CSV may hold (the first present is read)."""


def read_input(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time_s, value) of an upstream or predicted CSV: its level, or its discharge."""
    if not path.is_file():
        raise CsvFormatError(f"{path} does not exist; pass the path of a CSV file")
    with path.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    column = next((c for c in INPUT_COLUMNS if c in header), None)
    if column is None:
        raise CsvFormatError(
            f"{path}: the header must have 'time' and one of {', '.join(INPUT_COLUMNS)}, found {header}"
        )
    return read_series(path, column)


def on_grid(grid_s: np.ndarray, time_s: np.ndarray, values: np.ndarray, *, beyond: bool = False) -> np.ndarray:
    """Readings averaged into the cells of an existing regular grid (nearest grid time); NaN where none.

    With ``beyond`` the grid is continued past its end as far as the readings go (a predicted
    series runs ahead of the record)."""
    dt_s = float(grid_s[1] - grid_s[0])
    cell = np.round((time_s - grid_s[0]) / dt_s).astype(np.int64)
    n = grid_s.size
    if beyond and cell.size and cell.max() >= n:
        n = int(cell.max()) + 1
    inside = (cell >= 0) & (cell < n)
    total = np.bincount(cell[inside], weights=values[inside], minlength=n)
    count = np.bincount(cell[inside], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _parse_time(text: str, path: Path, line: int) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CsvFormatError(
            f"{path}:{line}: time {text!r} is neither epoch seconds nor ISO-8601 "
            "(expected e.g. 2013-01-01T00:06:00Z or 2013-01-01T07:06:00+07:00)"
        ) from exc
    if stamp.tzinfo is None:
        raise CsvFormatError(
            f"{path}:{line}: time {text!r} has no UTC offset; add one (e.g. 'Z' or '+07:00') so it is unambiguous"
        )
    return stamp.astimezone(UTC).timestamp()


def read_series_in_file_order(path: Path, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read (time_s, value, line) from a CSV with ``time`` and ``column``, in file order; blanks are skipped."""
    if not path.is_file():
        raise CsvFormatError(f"{path} does not exist; pass the path of a CSV file")
    times, values, lines = [], [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if "time" not in header or column not in header:
            raise CsvFormatError(
                f"{path}: the header must have columns 'time' and '{column}', found {header}"
            )
        for line, row in enumerate(reader, start=2):
            raw = (row.get(column) or "").strip()
            if not raw or raw.lower() in ("nan", "na", "null"):
                continue
            try:
                value = float(raw)
            except ValueError as exc:
                raise CsvFormatError(f"{path}:{line}: {column} {raw!r} is not a number") from exc
            times.append(_parse_time(row["time"] or "", path, line))
            values.append(value)
            lines.append(line)
    if len(times) < 3:
        raise CsvFormatError(f"{path}: needs at least 3 readings with a {column}, found {len(times)}")
    return np.asarray(times), np.asarray(values), np.asarray(lines)


def read_series(path: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Read (time_s, value) pairs from a CSV with ``time`` and ``column``, sorted by time; blanks are skipped."""
    t, v, _ = read_series_in_file_order(path, column)
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def to_grid(time_s: np.ndarray, level_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Irregular readings onto a regular grid at their typical spacing.

    Each reading goes to the nearest grid time; several in one cell are
    averaged; cells with none are NaN (gaps).
    """
    steps = np.diff(np.unique(time_s))
    dt_s = float(np.round(np.median(steps)))
    if dt_s <= 0:
        raise CsvFormatError("readings must span more than one time stamp")
    start = np.round(time_s[0] / dt_s) * dt_s
    cell = np.round((time_s - start) / dt_s).astype(np.int64)
    n = int(cell[-1]) + 1
    total = np.bincount(cell, weights=level_m, minlength=n)
    count = np.bincount(cell, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return start + dt_s * np.arange(n), grid


def rain_on_grid(grid_s: np.ndarray, rain_time_s: np.ndarray, rain_mm: np.ndarray) -> np.ndarray:
    """Credit each rain report to the grid step in which its interval ends.

    Rain becomes known when it is reported (a DWD hourly total stamped 11:00
    is known at 11:00), so crediting it there never lets the backtest see
    rain early. Grid times that no rain interval covers get NaN (no input).
    """
    dt_grid = float(grid_s[1] - grid_s[0])
    dt_rain = float(np.median(np.diff(np.unique(rain_time_s))))
    out = np.full(grid_s.size, np.nan)
    # Covered: the grid time lies inside some reported interval (t_r - dt_rain, t_r].
    after = np.searchsorted(rain_time_s, grid_s, side="left")
    has_next = after < rain_time_s.size
    covered = np.zeros(grid_s.size, dtype=bool)
    covered[has_next] = rain_time_s[after[has_next]] - grid_s[has_next] < dt_rain
    out[covered] = 0.0
    cell = np.ceil((rain_time_s - grid_s[0]) / dt_grid - 1e-9).astype(np.int64)
    inside = (cell >= 0) & (cell < grid_s.size)
    sums = np.bincount(cell[inside], weights=rain_mm[inside], minlength=grid_s.size)
    hit = np.bincount(cell[inside], minlength=grid_s.size) > 0
    out[hit] = np.nan_to_num(out[hit]) + sums[hit]
    return out


def _parse_horizons(text: str) -> list[float]:
    try:
        hours = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise CsvFormatError(f"--horizons {text!r} should be hours separated by commas, e.g. 1,3,6") from exc
    if not hours or any(h <= 0 for h in hours):
        raise CsvFormatError(f"--horizons {text!r} should be positive hours, e.g. 1,3,6")
    return hours


def _progress_printer(label: str = "backtest", unit: str = "origins") -> Callable[[int, int], None]:
    started = time.monotonic()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0 and done < total:
            return
        last[0] = now
        elapsed = now - started
        eta = elapsed / done * (total - done) if done else 0.0
        print(f"\r{label}: {done}/{total} {unit}  {elapsed:5.0f} s elapsed, ~{eta:4.0f} s left", end="",
              file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr)

    return show


def _table(result: dict) -> str:
    horizons = result["horizons_h"]
    models = list(result["rmse_m"])
    lines = [f"{'RMSE m':<20}" + "".join(f"{h:>9g} h" for h in horizons)]
    for m in models:
        vals = result["rmse_m"][m]
        lines.append(f"{m:<20}" + "".join(f"{v:>11.4f}" if v is not None else f"{'-':>11}" for v in vals))
    best = [
        min((result["rmse_m"][m][i] for m in models[1:] if result["rmse_m"][m][i] is not None), default=None)
        for i in range(len(horizons))
    ]
    ours = result["rmse_m"]["floodwatch"]
    gains = [
        f"{100 * (1 - o / b):>10.1f}%" if o is not None and b else f"{'-':>11}" for o, b in zip(ours, best, strict=True)
    ]
    lines.append(f"{'vs best baseline':<20}" + "".join(gains))
    if UPSTREAM_BASELINE in result["rmse_m"]:
        ref = result["rmse_m"][UPSTREAM_BASELINE]
        lines.append(f"{'x upstream regr.':<20}" + "".join(
            f"{o / r:>11.2f}" if o is not None and r else f"{'-':>11}" for o, r in zip(ours, ref, strict=True)
        ))
    if "band_coverage" in result:
        lines.append(f"{'5-95 % band holds':<20}" + "".join(
            f"{100 * v:>10.1f}%" if v is not None else f"{'-':>11}" for v in result["band_coverage"]
        ))
    lines.append(f"origins: {result['n_origins']} (every {result['origin_every_h']:g} h), "
                 f"models used: {result['model_names']}")
    for name, lag in result.get("input_lags", {}).items():
        text = f"input {name}: used in {lag['used']}/{lag['fits']} fits"
        if lag.get("median_h") is not None:
            text += f", lag {lag['median_h']:g} h (10-90 %: {lag['p10_h']:g}-{lag['p90_h']:g} h)"
        if lag.get("not_used"):
            text += ", not used: " + ", ".join(f"{why} ({n})" for why, n in lag["not_used"].items())
        lines.append(text)
    if "hit_rate" in result:
        lines.append(f"threshold {result['threshold_m']} m: crossings {result['n_crossings']}, "
                     f"floodwatch hit rate {result['hit_rate']['floodwatch']}, "
                     f"false-alarm ratio {result['false_alarm_ratio']['floodwatch']}, "
                     f"median lead {result['median_lead_time_h']['floodwatch']} h")
    return "\n".join(lines)


def _inputs(args: argparse.Namespace, grid_s: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """The --upstream and --predicted series on the level's grid (predicted ones may run past it)."""
    names = [name for name, _ in args.upstream] + [name for name, _ in args.predicted]
    if len(set(names)) != len(names):
        raise CsvFormatError(f"input names must differ, got {names}; name each --upstream/--predicted once")
    upstream = None
    if args.upstream:
        upstream = np.stack([on_grid(grid_s, *read_input(path)) for _, path in args.upstream])
        for (name, path), values in zip(args.upstream, upstream, strict=True):
            if not np.isfinite(values).any():
                raise CsvFormatError(f"--upstream {name}={path}: no reading falls within the level record's span")
    predicted = None
    if args.predicted:
        series = [on_grid(grid_s, *read_input(path), beyond=True) for _, path in args.predicted]
        width = max(max(v.size for v in series), grid_s.size)
        predicted = np.full((len(series), width), np.nan)
        for k, values in enumerate(series):
            predicted[k, : values.size] = values
        for (name, path), values in zip(args.predicted, predicted, strict=True):
            if not np.isfinite(values).any():
                raise CsvFormatError(f"--predicted {name}={path}: no value falls within the level record's span")
    return upstream, predicted, names


def run(args: argparse.Namespace) -> int:
    try:
        horizons = _parse_horizons(args.horizons)
        if args.origin_every_h <= 0 or args.window_days <= 0:
            raise CsvFormatError("--origin-every-h and --window-days must be positive")
        time_s, level = read_series(args.csv, "water_level_m")
        grid_s, level_m = to_grid(time_s, level)
        rain = None
        if args.rain_csv is not None:
            rain_time_s, rain_mm = read_series(args.rain_csv, "rain_mm")
            if np.any(rain_mm < 0):
                raise CsvFormatError(f"{args.rain_csv}: rain_mm must not be negative")
            rain = rain_on_grid(grid_s, rain_time_s, rain_mm)
        if args.refit_every_h < 0:
            raise CsvFormatError("--refit-every-h must be 0 (refit at every origin) or positive hours")
        upstream, predicted, names = _inputs(args, grid_s)
        print(
            f"backtest: {args.csv.name}: {np.isfinite(level_m).sum()} readings on a {grid_s[1] - grid_s[0]:g} s grid "
            f"({np.isnan(level_m).mean():.1%} gaps)"
            + ("" if rain is None else f", rain covers {np.isfinite(rain).mean():.0%}"),
            file=sys.stderr,
        )
        for name, values in zip(names, [*(upstream if upstream is not None else []),
                                        *(predicted if predicted is not None else [])], strict=True):
            print(f"backtest: input {name}: covers {np.isfinite(values[: grid_s.size]).mean():.0%} of the record",
                  file=sys.stderr)
        started = time.monotonic()
        result = rolling_origin_backtest(
            grid_s,
            level_m,
            rain,
            horizons_h=horizons,
            threshold_m=args.threshold,
            origin_every_s=args.origin_every_h * 3600.0,
            window_s=args.window_days * 86400.0,
            refit_every_s=args.refit_every_h * 3600.0 if args.refit_every_h > 0 else None,
            upstream_m=upstream,
            predicted_m=predicted,
            input_names=names or None,
            progress=_progress_printer(),
        )
    except FloodwatchError as exc:
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return 1
    result["csv"] = str(args.csv)
    result["rain_csv"] = None if args.rain_csv is None else str(args.rain_csv)
    result["upstream_csv"] = {name: str(path) for name, path in args.upstream}
    result["predicted_csv"] = {name: str(path) for name, path in args.predicted}
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(_table(result))
    log.info("event=backtest_done csv=%s origins=%d elapsed_s=%s json=%s",
             args.csv, result["n_origins"], result["elapsed_s"], args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m floodwatch.cli.backtest",
        description="Same as `floodwatch backtest`.\n\n" + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
