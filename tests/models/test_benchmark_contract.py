"""benchmarks/forecast.py keeps its contract: one JSON object with the agreed keys (not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_prints_one_json_object_with_the_contract_keys():
    done = subprocess.run(
        [sys.executable, "benchmarks/forecast.py", "--json", "--stations", "24", "--loop-stations", "3",
         "--utide-stations", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"stations", "vectorised_s", "loop_s_scaled", "speedup"} <= result.keys()
    assert result["stations"] == 24
    assert result["vectorised_s"] > 0 and result["loop_s_scaled"] > 0
    ratio = result["loop_s_scaled"] / result["vectorised_s"]  # both rounded in the JSON
    assert abs(result["speedup"] - ratio) <= 0.05 * ratio + 0.1
    assert sum(result["models_used"].values()) == 24
