"""Broker crashes with SIGKILL, and what saving Mosquitto's state more often costs.

Mosquitto keeps sessions, subscriptions and queued messages in memory and
saves them to its persistence file on a graceful stop and on a schedule. A
SIGKILL (a crash, the OOM killer, a power cut) loses what changed since the
last save. This benchmark reproduces the losses of issue 17 on the
configuration ``floodwatch mqtt-config --persistence-dir`` wrote before
(``autosave_interval 60``: every 60 s), and measures the one it writes now
(``autosave_interval 1``: every second, in practice every ~2 s) and saving
after every change (``autosave_on_changes true``), with real Mosquitto,
``floodwatch ingest`` processes logging in with the generated credentials,
and nodes that re-send until acknowledged (``tests/ingest/crash_rig.py``).

Scenarios (each on a fresh broker and store):

- ``broker_killed``: nodes stream 4,000 readings at 400/s; the broker is
  SIGKILLed 8 s after ingest subscribed and restarted a second later;
- ``broker_killed_ingest_away``: ingest is stopped (a deploy), the nodes send
  1,000 readings, the broker is SIGKILLed, then both come back; also with a
  second worker on the shared subscription that stays up;
- ``broker_and_ingest_killed``: both SIGKILLed at once mid-stream (a power cut);
  also with nodes that re-send their last 30 s of acknowledged readings after
  a reconnect (docs/mqtt-contract.md).

Cost (per configuration, same run): a burst of readings as fast as the nodes
can send (throughput to the store), and a steady stream at 100 readings/s
(the broker's disk writes per second and saves per second), from
``/proc/PID/io`` and the broker's own log.

``python benchmarks/broker_crash.py --json`` prints one JSON object:
``scenarios`` (lost / published / session kept, per configuration) and
``cost`` (``burst_rate_per_s``, ``burst_ratio`` against the 60 s
configuration, ``steady_disk_bytes_per_s``, ``steady_saves_per_s``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from floodwatch.settings import load_settings  # noqa: E402
from tests.ingest import crash_rig as rig  # noqa: E402

EVERY_60_S = ["autosave_interval 60"]  # what `floodwatch mqtt-config` wrote before issue 17
ON_CHANGES = ["autosave_on_changes true", "autosave_interval 1"]  # after every change: measured, not chosen
CONFIGS = {"every_60s": EVERY_60_S,
           "every_1s": None,  # None: exactly what mqtt-config writes now (autosave_interval 1)
           "on_changes": ON_CHANGES}


def cost(folder: Path, autosave: list[str] | None, burst: int, steady_s: float) -> dict:
    settings = load_settings()
    broker = rig.ProductionBroker(folder, settings, autosave=autosave).start()
    ingest = rig.IngestProcess(folder, broker).start()
    nodes = rig.ResendingNodes(broker)
    try:
        ingest.wait_subscribed()
        now_s = time.time()
        readings = nodes.readings(burst + int(steady_s * 100), now_s)
        t0 = time.monotonic()
        bytes0, saves0 = broker.disk_bytes(), broker.saves()
        nodes.stream(readings[:burst], 0.0)
        acked = nodes.wait_all_acked(burst, 120.0)
        rig.wait_until(lambda: rig.stored_rows(ingest.db)[1] >= acked, 120.0, 0.01)
        burst_s = time.monotonic() - t0
        burst_bytes, burst_saves = broker.disk_bytes() - bytes0, broker.saves() - saves0
        nodes.close()
        nodes = rig.ResendingNodes(broker)
        time.sleep(0.5)
        bytes1, saves1 = broker.disk_bytes(), broker.saves()
        t1 = time.monotonic()
        nodes.stream(readings[burst:], 100.0)
        nodes.wait_all_acked(len(readings) - burst, steady_s + 30)
        steady_wall_s = time.monotonic() - t1
        steady_bytes, steady_saves = broker.disk_bytes() - bytes1, broker.saves() - saves1
        db_file = broker.data / "mosquitto.db"
        return {
            "burst_readings": burst, "burst_stored_s": round(burst_s, 2),
            "burst_rate_per_s": round(burst / burst_s, 1),
            "burst_disk_bytes": burst_bytes, "burst_saves": burst_saves,
            "steady_rate_per_s": 100, "steady_s": round(steady_wall_s, 1),
            "steady_disk_bytes_per_s": round(steady_bytes / steady_wall_s),
            "steady_saves_per_s": round(steady_saves / steady_wall_s, 1),
            "persistence_file_bytes": db_file.stat().st_size if db_file.exists() else 0,
        }
    finally:
        nodes.close()
        ingest.stop()
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--burst", type=int, default=6000, help="readings in the throughput burst (default 6000)")
    parser.add_argument("--steady-s", type=float, default=20.0, help="seconds of the 100/s stream (default 20)")
    parser.add_argument("--skip-crashes", action="store_true", help="measure the cost only")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"which configurations, comma-separated (default {','.join(CONFIGS)})")
    args = parser.parse_args()
    settings = load_settings()
    chosen = {name: CONFIGS[name] for name in args.configs.split(",")}
    out: dict = {"scenarios": {}, "cost": {}}
    progress = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="fw-broker-crash-") as tmp:
        runs = 0

        def folder() -> Path:
            nonlocal runs
            runs += 1
            return Path(tmp) / f"run-{runs}"

        if not args.skip_crashes:
            plan = [
                ("broker_killed", lambda f, a: rig.broker_killed_mid_stream(f, settings, autosave=a), CONFIGS),
                ("broker_killed_ingest_away", lambda f, a: rig.broker_killed_while_ingest_away(f, settings, autosave=a),
                 CONFIGS),
                ("broker_killed_ingest_away_second_worker_up",
                 lambda f, a: rig.broker_killed_while_ingest_away(f, settings, autosave=a, workers=2), CONFIGS),
                ("broker_and_ingest_killed",
                 lambda f, a: rig.broker_killed_mid_stream(f, settings, autosave=a, with_ingest=True), CONFIGS),
                ("broker_and_ingest_killed_nodes_replay_30s",
                 lambda f, a: rig.broker_killed_mid_stream(f, settings, autosave=a, with_ingest=True,
                                                           replay_acked_s=30.0), CONFIGS),
            ]
            for name, run, _ in plan:
                for label, autosave in chosen.items():
                    progress(f"{name} / {label} ...")
                    result = run(folder(), autosave)
                    progress(f"  lost {result['lost']} of {result['published']}, session kept "
                             f"{result['session_present_after_restart']}")
                    out["scenarios"].setdefault(name, {})[label] = result
        for label, autosave in chosen.items():
            progress(f"cost / {label} ...")
            out["cost"][label] = cost(folder(), autosave, args.burst, args.steady_s)
            progress(f"  {out['cost'][label]}")
    base = out["cost"].get("every_60s", next(iter(out["cost"].values())))["burst_rate_per_s"]
    for figures in out["cost"].values():
        figures["burst_ratio"] = round(figures["burst_rate_per_s"] / base, 3)
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
