"""benchmarks/line_fanout.py keeps its contract: one JSON object with the agreed keys (small run)."""

from __future__ import annotations

import json
import subprocess
import sys

from floodwatch.settings import PROJECT_ROOT


def test_line_fanout_json_contract():
    result = subprocess.run(
        [sys.executable, "benchmarks/line_fanout.py", "--json", "--residents", "3000", "--server", "inprocess"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"residents", "requests", "seconds", "floor_seconds", "delivered", "duplicates"} <= figures.keys()
    assert figures["residents"] == figures["delivered"] == 3000
    assert figures["duplicates"] == 0
    assert figures["requests"] == 6 and figures["floor_seconds"] == 0.03
