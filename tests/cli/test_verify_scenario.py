"""`floodwatch verify --scenario`: a cloudburst through ingest, store, forecasts, alerts and LINE, in simulated time.

Real parts only: the nodes' firmware, ingest's parsing and QC, SQLite, the
forecast job, the alert service with its SQLite state and delivery workers,
line-bot-sdk and the LINE stand-in. The forecaster's history is cut to two
days so the first three hours of the cloudburst run in seconds.
"""

from __future__ import annotations

import pytest

from floodwatch.cli._verify_scenario import report, run_scenario, table

pytestmark = pytest.mark.slow


def test_a_cloudburst_warns_every_zone_whose_water_rose_and_nobody_else(make_settings, tmp_path):
    settings = make_settings(forecast={"history_days": 2.0})
    run = run_scenario(settings, "cloudburst", hours=3.0, workdir=tmp_path)
    result = report(run, settings, window_s=24 * 3600.0)
    print(table(result))
    zones = {z["zone_id"]: z for z in result["zones"]}
    # The truth: Khlong Lam Phaya (moo-4) and the village street (moo-6) pass every level within 3 h.
    reached = {(z, lv["name"]) for z, zone in zones.items() for lv in zone["levels"]}
    assert {("moo-4", "watch"), ("moo-4", "warning"), ("moo-6", "watch")} <= reached
    assert {z for z, _ in reached} == {"moo-4", "moo-6"}
    # Every one of them got a message of its level (or higher) through the stand-in, at most an hour late.
    assert result["summary"]["all_warned"], table(result)
    for zone_id in ("moo-4", "moo-6"):
        for lv in zones[zone_id]["levels"]:
            assert lv["first_message_s"] is not None and lv["lead_h"] >= -1.0
            assert lv["kind"] in ("observed", "forecast", "rise")
    # Nobody whose water stayed low heard anything.
    assert result["summary"]["false_messages"] == 0
    assert all(zones[z]["warnings_delivered"] == 0 for z in zones if z not in ("moo-4", "moo-6"))
    # Each delivery was seen at the stand-in after its decision, in simulated time.
    assert run.deliveries and all(d["delivered_s"] >= d["decided_s"] for d in run.deliveries)
    assert run.readings_stored > 100 and run.forecasts >= 18 and run.readings_rejected == 0
