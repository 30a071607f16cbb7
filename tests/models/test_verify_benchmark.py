"""benchmarks/verify.py keeps its contract: one JSON object with the agreed keys (not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_verify_benchmark_prints_one_json_object_with_the_contract_keys():
    done = subprocess.run([sys.executable, "benchmarks/verify.py", "--json", "--origins", "48", "--loop-origins", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"origins", "batched_s", "per_origin_s_scaled", "speedup", "batched_cpu_s", "replay_s"} <= result.keys()
    assert result["origins"] == 48 and result["batched_s"] > 0 and result["per_origin_s_scaled"] > 0
    ratio = result["per_origin_s_scaled"] / result["batched_s"]
    assert abs(result["speedup"] - ratio) <= 0.05 * ratio + 0.1
