"""`floodwatch backtest` as a user runs it: CSV in, JSON and a table out (via python -m floodwatch.cli.backtest)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BANGKOK = timezone(timedelta(hours=7))
KEYS = {"horizons_h", "n_origins", "rmse_m", "mae_m"}
MODELS = {"floodwatch", "persistence", "tide_only", "tide_plus_residual"}


def _backtest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "floodwatch.cli.backtest", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def _write_gauge(path: Path, *, iso: bool, days: float = 9.0, seed: int = 0) -> None:
    """A tidal gauge logged roughly every 15 min with jitter, dropped readings and a blank value."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 9, 1, tzinfo=UTC).timestamp()
    t_s = start + 900.0 * np.arange(int(days * 96)) + rng.integers(-20, 20, int(days * 96))
    t_s = t_s[rng.random(t_s.size) > 0.04]
    t_h = (t_s - start) / 3600.0
    level = 1.2 + 0.6 * np.cos(2 * np.pi * t_h / 12.4206) + 0.2 * np.cos(2 * np.pi * t_h / 23.9345 + 1.0)
    level += np.cumsum(rng.normal(0, 0.004, t_s.size)) + rng.normal(0, 0.01, t_s.size)
    lines = ["time,water_level_m,battery_v"]
    for i, (t, v) in enumerate(zip(t_s, level, strict=True)):
        stamp = datetime.fromtimestamp(t, BANGKOK).isoformat() if iso else f"{t:.0f}"
        lines.append(f"{stamp},{'' if i == 50 else f'{v:.3f}'},3.9")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_rain(path: Path, days: float = 9.0) -> None:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rng = np.random.default_rng(1)
    lines = ["time,rain_mm"]
    for h in range(1, int(days * 24)):
        rain = rng.exponential(3.0) if rng.random() < 0.1 else 0.0
        lines.append(f"{(start + timedelta(hours=h)).isoformat().replace('+00:00', 'Z')},{rain:.1f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("iso", [True, False], ids=["iso-with-offset", "epoch-seconds"])
def test_backtest_writes_the_contract_keys(tmp_path: Path, iso: bool):
    csv_path = tmp_path / "gauge.csv"
    _write_gauge(csv_path, iso=iso)
    out = tmp_path / "scores.json"
    done = _backtest("--csv", str(csv_path), "--horizons", "1,3,6", "--window-days", "4", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert KEYS <= result.keys()
    assert result["horizons_h"] == [1.0, 3.0, 6.0]
    assert set(result["rmse_m"]) == MODELS and set(result["mae_m"]) == MODELS
    # Four days of warm-up, hourly origins, 6 h kept for the last horizon: about 4.75 days of origins.
    assert 100 < result["n_origins"] < 120
    assert result["rmse_m"]["floodwatch"][2] < result["rmse_m"]["persistence"][2]
    assert "floodwatch" in done.stdout and "persistence" in done.stdout, "a table on stdout"
    assert "origins" in done.stderr, "progress on stderr"


def test_backtest_with_rain_and_a_threshold(tmp_path: Path):
    csv_path, rain_path, out = tmp_path / "gauge.csv", tmp_path / "rain.csv", tmp_path / "scores.json"
    _write_gauge(csv_path, iso=True, seed=3)
    _write_rain(rain_path)
    done = _backtest(
        "--csv", str(csv_path), "--rain-csv", str(rain_path), "--threshold", "1.9",
        "--window-days", "4", "--origin-every-h", "2", "--json", str(out),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ("hit_rate", "false_alarm_ratio", "median_lead_time_h"):
        assert set(result[key]) == MODELS
    assert len(result["hit_rate"]["floodwatch"]) == 3
    assert result["rain_csv"] == str(rain_path)
    assert result["origin_every_h"] == 2.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("when,level\n1,2\n", "must have columns 'time' and 'water_level_m'"),
        ("time,water_level_m\n2026-09-01T00:00:00,1.0\n", "has no UTC offset"),
        ("time,water_level_m\nyesterday,1.0\n", "neither epoch seconds nor ISO-8601"),
        ("time,water_level_m\n1,abc\n", "is not a number"),
    ],
)
def test_bad_csv_is_rejected_with_the_fix(tmp_path: Path, content: str, message: str):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(content, encoding="utf-8")
    out = tmp_path / "scores.json"
    done = _backtest("--csv", str(csv_path), "--json", str(out))
    assert done.returncode == 1
    assert message in done.stderr
    assert not out.exists()


def test_bad_horizons_and_missing_file(tmp_path: Path):
    done = _backtest("--csv", str(tmp_path / "nope.csv"), "--json", str(tmp_path / "o.json"))
    assert done.returncode == 1 and "does not exist" in done.stderr
    csv_path = tmp_path / "gauge.csv"
    _write_gauge(csv_path, iso=False, days=2)
    done = _backtest("--csv", str(csv_path), "--horizons", "1,x", "--json", str(tmp_path / "o.json"))
    assert done.returncode == 1 and "e.g. 1,3,6" in done.stderr


def test_help_shows_an_example():
    done = _backtest("--help")
    assert done.returncode == 0
    assert "example:" in done.stdout and "--rain-csv" in done.stdout and "--threshold" in done.stdout


def test_add_parser_registers_the_subcommand():
    import argparse

    from floodwatch.cli import backtest

    parser = argparse.ArgumentParser(prog="floodwatch")
    backtest.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["backtest", "--csv", "a.csv", "--json", "b.json", "--threshold", "1.5"])
    assert args.command == "backtest" and args.run is backtest.run and args.threshold == 1.5
    assert args.horizons == "1,3,6"


def test_rain_is_credited_when_it_is_reported():
    from floodwatch.cli.backtest import rain_on_grid

    grid_s = 36_000.0 + 900.0 * np.arange(12)  # 10:00 .. 12:45 in 15-min steps
    rain_time_s = np.array([39_600.0, 43_200.0])  # hourly totals stamped 11:00 and 12:00
    rain = rain_on_grid(grid_s, rain_time_s, np.array([4.0, 0.0]))
    assert rain[4] == 4.0, "the 10:00-11:00 total arrives at 11:00"
    np.testing.assert_array_equal(rain[1:4], 0.0)  # not spread back into the hour: no look-ahead
    np.testing.assert_array_equal(rain[5:9], 0.0)
    assert np.isnan(rain[0]) and np.all(np.isnan(rain[9:])), "outside any reported hour: no input"
