"""A short soak: `benchmarks/soak.py` for a minute, every fault of the long run injected once or twice.

The whole system (Mosquitto, `floodwatch serve` with ingest, forecasts,
alerts and the page), 100 gauges, live page clients, probe gauges crossing
their warning level; faults: the broker SIGKILLed, LINE answering 503, the
store locked, `floodwatch serve` SIGKILLed. Published = stored and every
decided message delivered once. The 30-minute run with 1,000 gauges and the
memory figures are in docs/operations.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from floodwatch.settings import PROJECT_ROOT


@pytest.mark.slow
def test_a_short_soak_with_every_fault_loses_nothing_and_delivers_each_message_once(tmp_path):
    run = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--minutes", "1", "--stations", "100", "--sse", "5",
         "--forecast-interval", "20", "--lock-s", "3", "--settle-s", "120", "--keep", str(tmp_path), "--json"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=420)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)
    print(f"soak: published {result['published']}, stored {result['stored']}, decisions {result['decisions']}, "
          f"chunks {result['chunks_by_status']}, duplicates {result['duplicate_messages']}, "
          f"missing {result['missing_messages']}, 503s {result['line_503_answered']}, "
          f"sse events (min per client) {result['sse_events_min']}, faults {[f['fault'] for f in result['faults']]}")
    assert {f["fault"] for f in result["faults"]} == {"broker_kill", "line_5xx", "store_lock", "ingest_kill"}
    assert result["published"] > 0 and result["lost"] == 0 and result["stored_twice"] == 0
    assert result["resident_decisions"] >= 1 and result["messages_delivered"] >= 1
    assert result["delivered_once"], result
    assert result["sse_events_min"] > 0, "a live page client saw nothing"
