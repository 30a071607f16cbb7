"""`floodwatch verify --csv` as a user runs it, on a vendored slice of the Rhine, and its messages for bad input.

The slice (tests/cli/data, README there) is 16 days of the Rhine at
Duesseldorf in December 2017; the forecaster's history is cut to 2 days
(FLOODWATCH_FORECAST__HISTORY_DAYS) so the replay takes seconds.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from floodwatch.cli import verify

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
RHINE = DATA / "rhine_duesseldorf_2017-12_15min.csv"
RAIN = DATA / "rain_duesseldorf_airport_2017-12_hourly.csv"
CONTRACT = {"events", "hits", "misses", "warnings", "false_alarms", "pod", "far", "csi", "lead_h"}


def _rows(path: Path) -> tuple[str, list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0], lines[1:]


def _messy_copy(tmp_path: Path) -> Path:
    """From 8 December, as a logger might hand it over: half a day missing, rows out of order, repeated rows."""
    header, rows = _rows(RHINE)
    rows = [r for r in rows if r >= "2017-12-08" and not r.startswith("2017-12-09T0")]  # a gap in the history
    rows[100:110] = rows[100:110][::-1]
    rows = rows[:300] + rows[290:296] + rows[300:]
    out = tmp_path / "rhine_messy.csv"
    out.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return out


@pytest.mark.slow
def test_verify_writes_the_contract_the_warnings_and_the_picture(tmp_path: Path):
    messy = _messy_copy(tmp_path)
    out, warnings_csv, png = tmp_path / "scores.json", tmp_path / "warnings.csv", tmp_path / "rhine.png"
    env = {**os.environ, "FLOODWATCH_FORECAST__HISTORY_DAYS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "floodwatch.cli.verify", "--csv", str(messy), "--rain-csv", str(RAIN),
         "--levels", "5.0,6.0,9.0", "--json", str(out), "--alerts-csv", str(warnings_csv), "--plot", str(png)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # The checks said what they fixed.
    assert "not in time order" in done.stderr and "repeat an earlier time stamp" in done.stderr
    assert "gaps longer than" in done.stderr
    result = json.loads(out.read_text())
    assert [row["level_m"] for row in result["levels"]] == [5.0, 6.0, 9.0]
    for row in result["levels"]:
        for who in ("floodwatch", "observed_only"):
            assert CONTRACT <= row[who].keys(), (row["level_m"], who)
            assert set(row[who]["lead_h"]) == {"median", "mean", "p10"}
    five, six, nine = result["levels"]
    assert five["floodwatch"]["events"] == 1 and six["floodwatch"]["events"] == 1
    assert five["floodwatch"]["hits"] == 1 and six["observed_only"]["hits"] == 1
    # A slow river: the forecast gives the lead that the observed-only baseline cannot.
    assert six["floodwatch"]["lead_h"]["median"] > six["observed_only"]["lead_h"]["median"]
    # A level the river never reaches: said so, and the rest still scored.
    assert nine["floodwatch"]["events"] == 0 and nine["floodwatch"]["pod"] is None
    assert any("9 m: the record never reaches it" in n for n in result["record"]["notes"])
    assert result["record"]["unsorted_rows"] > 0 and result["record"]["duplicate_times"] == 6
    assert result["forecast"]["issued"] > 1000 - 2 * 144 and result["band_coverage"]
    assert 0.0 <= result["band_coverage"][0]["coverage"] <= 1.0
    assert "observed_only" in done.stdout and "5-95 % band" in done.stdout
    with warnings_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0])[:3] == ["time", "level_m", "kind"]
    assert {r["kind"] for r in rows} <= {"observed", "forecast", "rise"} and "forecast" in {r["kind"] for r in rows}
    assert all(r["time"].endswith("Z") and r["level_m"] in ("5", "6") for r in rows)
    assert len(rows) == result["warnings_issued"]["floodwatch"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = verify.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize(
    ("change", "levels", "expect"),
    [
        ("centimetres", "5.0,6.0,7.0", "looks like centimetres"),
        ("none", "500,600", "look like centimetres: give --levels in metres"),
        ("none", "6.0,5.0", "must rise"),
        ("none", "five", "should be metres separated by commas"),
        ("none", "1,2,3,4", "1 to 3 levels"),
        ("no_offset", "5.0", "has no UTC offset"),
        ("bad_number", "5.0", "is not a number"),
        ("bad_header", "5.0", "the header must have columns 'time' and 'water_level_m'"),
        ("missing", "5.0", "does not exist"),
    ],
)
def test_bad_input_gets_a_message_that_names_the_fix_not_a_traceback(tmp_path, capsys, change, levels, expect):
    header, rows = _rows(RHINE)
    path = tmp_path / "gauge.csv"
    if change == "centimetres":
        rows = [f"{r.split(',')[0]},{float(r.split(',')[1]) * 100:.0f}" for r in rows]
    elif change == "no_offset":
        rows = [r.replace("Z,", ",", 1) for r in rows]
    elif change == "bad_number":
        rows[5] = rows[5].split(",")[0] + ",4.1m"
    elif change == "bad_header":
        header = "time,stage_cm"
    if change != "missing":
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    code, text = _run(capsys, "--csv", str(path), "--levels", levels, "--no-progress")
    assert code == 1
    assert expect in text and "Traceback" not in text


def test_a_record_shorter_than_the_forecast_history_says_so(capsys):
    # The site's 30-day history does not fit in 16 days: the message names the setting.
    code, text = _run(capsys, "--csv", str(RHINE), "--levels", "6.0", "--no-progress")
    assert code == 1 and "forecast.history_days = 30 days" in text


def test_negative_rain_and_bad_sweeps_are_refused(tmp_path, capsys, monkeypatch):
    rain = tmp_path / "rain.csv"
    rain.write_text("time,rain_mm\n2017-12-05T01:00:00Z,1.0\n2017-12-05T02:00:00Z,-3\n2017-12-05T03:00:00Z,0\n")
    monkeypatch.setenv("FLOODWATCH_FORECAST__HISTORY_DAYS", "3")
    code, text = _run(capsys, "--csv", str(RHINE), "--rain-csv", str(rain), "--levels", "6.0")
    assert code == 1 and "rain_mm must not be negative" in text
    code, text = _run(capsys, "--csv", str(RHINE), "--levels", "6.0", "--sweep", "exceed_probability=1.5")
    assert code == 1 and "out of range for exceed_probability" in text
    code, text = _run(capsys, "--csv", str(RHINE), "--levels", "6.0", "--sweep", "speed=1")
    assert code == 1 and "KEY one of" in text
    code, text = _run(capsys, "--csv", str(RHINE), "--levels", "6.0", "--profile", "eager")
    assert code == 1 and "warning profile 'eager'" in text and "early" in text


def test_the_picture_without_matplotlib_says_how_to_get_it(monkeypatch):
    from floodwatch.cli import _verify_plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(_verify_plot.PlotUnavailable, match=r"pip install 'floodwatch\[plot\]'"):
        _verify_plot._pyplot()


def test_help_has_an_example():
    from floodwatch.cli.main import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["verify"].format_help()
    assert "floodwatch verify --csv" in help_text and "--scenario" in help_text


def _pulses(t_s, centres_s, height_m: float, width_s: float):
    import numpy as np

    return sum(height_m * np.exp(-0.5 * ((t_s - c) / width_s) ** 2) for c in centres_s)


@pytest.mark.slow
def test_an_upstream_gauge_buys_the_lead_its_travel_time_allows(tmp_path: Path):
    """A river whose floods pass an upstream gauge 12 h before ours: with --upstream the warnings come
    hours earlier than from our gauge's own history, with no more warnings for nothing."""
    import numpy as np

    rng = np.random.default_rng(7)
    t0 = 1_767_225_600.0  # 2026-01-01T00:00Z
    t = t0 + 600.0 * np.arange(50 * 144)
    centres = t0 + 86400.0 * np.array([9.0, 14.3, 18.9, 24.1, 29.6, 33.8, 39.2, 44.5])
    upstream = 2.0 + _pulses(t, centres, 1.6, 7 * 3600.0) + rng.normal(0, 0.01, t.size)
    ours = 1.0 + 0.9 * (2.0 + _pulses(t, centres + 12 * 3600.0, 1.6, 7 * 3600.0)) + rng.normal(0, 0.01, t.size)

    def write(path: Path, level) -> Path:
        rows = [f"{verify._iso(ts)},{v:.3f}" for ts, v in zip(t, level, strict=True)]
        path.write_text("time,water_level_m\n" + "\n".join(rows) + "\n", encoding="utf-8")
        return path

    ours_csv, up_csv = write(tmp_path / "ours.csv", ours), write(tmp_path / "up.csv", upstream)
    env = {**os.environ, "FLOODWATCH_FORECAST__HISTORY_DAYS": "6", "FLOODWATCH_FORECAST__NETWORK_HISTORY_DAYS": "6",
           "FLOODWATCH_FORECAST__LEAD_H": "12"}
    results = {}
    for name, extra in (("alone", []), ("upstream", ["--upstream", f"UP={up_csv}"])):
        out = tmp_path / f"{name}.json"
        done = subprocess.run(
            [sys.executable, "-m", "floodwatch.cli.verify", "--csv", str(ours_csv), "--levels", "3.6",
             "--json", str(out), "--no-progress", *extra],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr
        results[name] = json.loads(out.read_text())["levels"][0]["floodwatch"]
    alone, upstream_fw = results["alone"], results["upstream"]
    print(f"alone {alone}\nupstream {upstream_fw}")
    assert upstream_fw["events"] >= 5 and upstream_fw["pod"] == 1.0
    assert upstream_fw["lead_h"]["median"] >= alone["lead_h"]["median"] + 3.0
    assert upstream_fw["false_alarms"] <= alone["false_alarms"]
