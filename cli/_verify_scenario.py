"""``floodwatch verify --scenario``: a simulated flood through the real system, in simulated time.

The scenario's ground truth (:meth:`firmware_sim.Scenario.crossings`) says when
each zone's water reached each level. The simulated nodes' firmware
(:class:`firmware_sim.NodeCore`: sampling, noise, faults, buffering) makes the
payloads; they go through ingest's own processing (``ingest.parse_message``,
``ingest.QcChecker``, ``store.insert_new``, in the order ``IngestService``
applies them), the SQLite store, the forecast job (``scheduler.ForecastJob``,
every ``forecast.interval_s``, and early when a reading departs from the
forecast's band, as ``floodwatch serve`` does), the alert service
(``alerts.AlertService``: SQLite state, outbox, delivery workers) and
line-bot-sdk to the LINE stand-in. Time is a
:class:`~floodwatch.clock.FixedClock` moved from one event (a node's wake, a
forecast run, a ticker tick) to the next: no accelerated wall clock, so a slow
machine gives the same answer, only later. The MQTT hop is left out: its
delivery is tested elsewhere and adds only latency.

Each zone has one subscribed resident; what the stand-in delivered to them,
matched to its decision by the ``X-Line-Retry-Key`` header, is what residents
heard, stamped with the simulated time it arrived.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from floodwatch.alerts.verification import LATE_S, lead_summary
from pydantic import SecretStr

from floodwatch.clock import FixedClock
from floodwatch.errors import FloodwatchError
from floodwatch.settings import Settings

LEVEL_NAMES = ("watch", "warning", "evacuate")
WARNING_KINDS = ("escalate", "forecast", "rise")
KIND_NAMES = {"escalate": "observed", "forecast": "forecast", "rise": "rise"}
ORIGIN_S = datetime(2026, 10, 27, tzinfo=UTC).timestamp()
"""Scenario time 0 (a late-monsoon day); fixed so two runs give the same answer."""
TICK_S = 60.0
"""The alert service's ticker, in simulated seconds."""
DELIVERY_WAIT_S = 30.0


@dataclass
class ScenarioRun:
    """What happened: the truth, the decisions and what the stand-in delivered, in simulated time."""

    name: str
    origin_s: float
    end_s: float
    crossings: list[Any]
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # resident warnings seen at the stand-in
    decisions: list[dict[str, Any]] = field(default_factory=list)
    forecasts: int = 0
    early_forecasts: int = 0
    readings_stored: int = 0
    readings_rejected: int = 0
    wall_s: float = 0.0


def run_scenario(settings: Settings, name: str, *, hours: float | None = None, workdir: Path,
                 seed: int = 7, progress: Any = None, forecast_tape: dict | None = None) -> ScenarioRun:
    """Run scenario ``name`` through ingest, store, forecasts, alerts and LINE delivery; see the module docstring.

    ``forecast_tape``: a sweep runs one scenario many times with different rules. The
    forecasts depend on the readings only (not on the rules or on LINE), so the first run
    records every forecast issued in it, keyed by (simulated time, early), and later runs
    hand the recorded ones to the alert service instead of fitting them again.
    """
    from floodwatch.alerts import AlertService
    from floodwatch.cli.demo import demo_resident_ids
    from floodwatch.firmware_sim import FirmwareConfig, NodeCore
    from floodwatch.ingest import QcChecker, TipCounters, parse_message
    from floodwatch.line_standin import LineStandIn
    from floodwatch.scheduler import ForecastJob, departs_from_forecast

    from floodwatch import firmware_sim
    from floodwatch import store as store_module

    started = time.monotonic()
    scenario = firmware_sim.load_scenario(name)
    duration_s = scenario.duration_s if hours is None else min(scenario.duration_s, hours * 3600.0)
    if duration_s <= 0:
        raise FloodwatchError(f"--hours must be positive, got {hours}")
    settings = settings.model_copy(deep=True)
    settings.store.url = f"sqlite:///{workdir}/floodwatch.db"
    settings.store.spool_path = str(workdir / "spool.db")
    settings.alerts.state_url = f"sqlite:///{workdir}/alerts.db"
    settings.alerts.officers = []  # residents only: officers' copies would be counted as residents' messages
    settings.alerts.officers_get_zone_alerts = False
    token = "verify-" + secrets.token_hex(12)
    origin_s = ORIGIN_S
    end_s = origin_s + duration_s
    clock = FixedClock(origin_s)
    crossings = scenario.crossings(settings, start_s=origin_s, until_s=duration_s)
    run = ScenarioRun(name=scenario.name, origin_s=origin_s, end_s=end_s, crossings=crossings)

    with LineStandIn(tokens={token}) as standin:
        settings.line.api_base_url = standin.base_url
        settings.line.channel_access_token = SecretStr(token)
        store = store_module.open_store(settings)
        alerts = None
        forecaster = None
        try:
            # History before the scenario, so the first forecast has the window the job reads.
            history_s = settings.forecast.history_days * 86400.0
            past = firmware_sim.history(scenario, settings, origin_s - history_s, origin_s, 600.0, origin_s=origin_s)
            checker = QcChecker(settings)
            store.write_batch(checker.check(past, origin_s))
            del past
            # Ingest seeds QC with each station's recent readings when it starts; so does this.
            for st in settings.own_stations:
                checker.seed(store.read_readings(st.id, origin_s - 7 * 3600.0, origin_s + 1.0)[-64:])
            tips = TipCounters()
            # One LINE client's worth of workers, a ticker driven from here (FixedClock: each tick is a step).
            alerts = AlertService(settings, clock, tick_interval_s=3600.0)
            alerts.start()
            residents = {z.id: demo_resident_ids(z.id, 1)[0] for z in settings.zones}
            for zone_id, user_id in residents.items():
                alerts.subscribe(user_id, zone_id)
            zone_of_user = {u: z for z, u in residents.items()}
            forecaster = ForecastJob(settings, store, clock, on_forecast=alerts.on_forecast, isolated=False)
            latest: list[Any] = [None]

            def issue(early: bool) -> bool:
                key = (clock.now_s(), early)
                if forecast_tape is not None and key in forecast_tape:
                    latest[0] = forecast_tape[key]
                    alerts.on_forecast(latest[0])
                    return True
                issued = forecaster.run_once(early=early)
                if issued is None:
                    return False
                latest[0] = issued
                if forecast_tape is not None:
                    forecast_tape[key] = issued
                return True

            def stored(readings: list) -> None:
                # floodwatch serve's wiring (cli/system.py): alerts first, then an early forecast
                # when a reading leaves the band (run here, at this simulated moment, not on a thread).
                alerts.on_readings(readings)
                if any(r.water_level_m is not None and departs_from_forecast(latest[0], r.station_id, r.ts_s,
                                                                             r.water_level_m) for r in readings):
                    if issue(early=True):
                        run.early_forecasts += 1

            nodes = [NodeCore(station=st, origin_s=origin_s, faults=scenario.faults_for(st.id),
                              config=FirmwareConfig(), seed=seed * 1_000_003 + i)
                     for i, st in enumerate(settings.own_stations)]
            prefix = settings.mqtt.topic_prefix
            topics = [f"{prefix}/{st.id}/telemetry" for st in settings.own_stations]
            ids = np.array([st.id for st in settings.own_stations], dtype=object)
            # Events in scenario seconds: (time, order, what, node index); forecasts before ticks at one time.
            heap: list[tuple[float, int, str, int]] = [(core.first_wake_s(0.0), 0, "wake", i)
                                                       for i, core in enumerate(nodes)]
            heap.append((0.0, 1, "forecast", -1))
            heap.append((TICK_S, 2, "tick", -1))
            heapq.heapify(heap)
            seen = 0
            decided_by_key: dict[str, dict[str, Any]] = {}
            while heap and heap[0][0] <= duration_s:
                t, order, what, i = heapq.heappop(heap)
                clock.at_s = origin_s + t
                if what == "wake":
                    due = [i]
                    while heap and heap[0][0] == t and heap[0][2] == "wake":
                        due.append(heapq.heappop(heap)[3])
                    level = scenario.level_at(ids[due], np.full(len(due), t))
                    rain_cum = scenario.rain_cumulative_mm(ids[due], np.full(len(due), t))
                    rain_rate = scenario.rain_rate_at(ids[due], np.full(len(due), t))
                    messages = []
                    for k, n in enumerate(due):
                        outcome = nodes[n].wake(t, float(level[k]), float(rain_cum[k]), float(rain_rate[k]))
                        messages += _deliver(nodes[n], outcome, topics[n])
                        heapq.heappush(heap, (outcome.next_wake_s, 0, "wake", n))
                    readings = []
                    for topic, payload in messages:
                        parsed = parse_message(topic, payload, settings, clock.now_s(), tips)
                        readings += parsed.readings
                        run.readings_rejected += len(parsed.errors)
                    if readings:
                        new = store.insert_new(checker.check(readings, clock.now_s()))
                        run.readings_stored += len(new)
                        if new:
                            stored(new)
                elif what == "forecast":
                    if issue(early=False):
                        run.forecasts += 1
                    heapq.heappush(heap, (t + settings.forecast.interval_s, 1, "forecast", -1))
                else:
                    alerts.tick()
                    heapq.heappush(heap, (t + TICK_S, 2, "tick", -1))
                # What residents got from this moment's decisions arrives now, in simulated time.
                if not alerts.wait_delivered(DELIVERY_WAIT_S):
                    raise FloodwatchError("LINE deliveries to the stand-in did not finish within "
                                          f"{DELIVERY_WAIT_S:g} s; is the machine overloaded?")
                delivered = standin.delivered_messages()
                if len(delivered) > seen:
                    fresh = delivered[seen:]
                    seen = len(delivered)
                    if any(d.retry_key not in decided_by_key for d in fresh):
                        decided_by_key = alerts.db.decisions_by_retry_key()
                    for d in fresh:
                        decision = decided_by_key.get(d.retry_key or "")
                        if decision is None or d.user_id not in zone_of_user:
                            continue
                        run.deliveries.append(dict(
                            delivered_s=clock.now_s(), decided_s=decision["ts_s"], zone_id=zone_of_user[d.user_id],
                            level=int(decision["level"]), kind=decision["kind"], decision_id=decision["id"],
                            station_id=decision["station_id"]))
                if progress is not None and t < duration_s:
                    progress(int(t), int(duration_s))
            if progress is not None:
                progress(int(duration_s), int(duration_s))
            run.decisions = alerts.db.resident_decisions(origin_s, WARNING_KINDS + ("reminder", "deescalate",
                                                                                    "all_clear"))
        finally:
            if forecaster is not None:
                forecaster.close()
            if alerts is not None:
                alerts.close()
            store.close()
    run.wall_s = time.monotonic() - started
    return run


def _deliver(core: Any, outcome: Any, topic: str) -> list[tuple[str, bytes]]:
    """A node's store-and-forward (firmware_sim Node.deliver): buffer while offline, flush oldest first."""
    reading = outcome.reading
    if reading is None:
        return []
    if outcome.offline:
        core.keep(reading)
        return []
    out = []
    while core.buffer:
        batch = core.next_batch()
        body = batch[0] if len(batch) == 1 else {"readings": batch}
        out.append((topic, json.dumps(body, separators=(",", ":")).encode()))
    payload = json.dumps(reading, separators=(",", ":")).encode()
    out.append((topic, payload))
    if outcome.duplicate:
        out.append((topic, payload))
    return out


def report(run: ScenarioRun, settings: Settings, *, window_s: float) -> dict[str, Any]:
    """Per zone and level: the true crossing, the first message of that level (or higher) delivered, the
    lead; and every resident warning to a zone whose water never reached its level."""
    station_zone = {s.id: s.zone for s in settings.stations}
    zone_cross: dict[tuple[str, int], float] = {}
    for c in run.crossings:
        key = (station_zone[c.station_id], LEVEL_NAMES.index(c.level_name) + 1)
        zone_cross[key] = min(zone_cross.get(key, math.inf), c.ts_s)
    warnings = [d for d in run.deliveries if d["kind"] in WARNING_KINDS]
    zones_out = []
    leads: list[float] = []
    reached = warned = false_total = 0
    for zone in settings.zones:
        mine = sorted((d for d in warnings if d["zone_id"] == zone.id), key=lambda d: d["delivered_s"])
        levels = []
        for k in (1, 2, 3):
            crossing = zone_cross.get((zone.id, k))
            if crossing is None:
                continue
            reached += 1
            counting = [d for d in mine
                        if d["level"] >= k and crossing - window_s <= d["delivered_s"] <= crossing + LATE_S]
            first = counting[0] if counting else None
            lead_h = None if first is None else (crossing - first["delivered_s"]) / 3600.0
            if lead_h is not None:
                warned += 1
                leads.append(lead_h)
            levels.append({"level": k, "name": LEVEL_NAMES[k - 1], "crossing_s": crossing, "crossing": _iso(crossing),
                           "first_message_s": None if first is None else first["delivered_s"],
                           "first_message": None if first is None else _iso(first["delivered_s"]),
                           "kind": None if first is None else KIND_NAMES[first["kind"]],
                           "station_id": None if first is None else first["station_id"],
                           "message_level": None if first is None else LEVEL_NAMES[first["level"] - 1],
                           "lead_h": None if lead_h is None else round(lead_h, 3), "warned": first is not None})
        false = [{"delivered_s": d["delivered_s"], "delivered": _iso(d["delivered_s"]),
                  "level": LEVEL_NAMES[d["level"] - 1], "kind": KIND_NAMES[d["kind"]], "station_id": d["station_id"]}
                 for d in mine if (zone.id, d["level"]) not in zone_cross]
        false_total += len(false)
        zones_out.append({"zone_id": zone.id, "name_en": zone.name_en, "levels": levels,
                          "warnings_delivered": len(mine), "false_messages": false})
    return {
        "scenario": run.name,
        "origin_s": run.origin_s,
        "origin": _iso(run.origin_s),
        "hours": (run.end_s - run.origin_s) / 3600.0,
        "window_h": window_s / 3600.0,
        "zones": zones_out,
        "summary": {
            "zone_levels_reached": reached,
            "zone_levels_warned": warned,
            "all_warned": warned == reached,
            "lead_h": lead_summary(leads),
            "resident_warnings": len(warnings),
            "false_messages": false_total,
        },
        "forecasts": run.forecasts,
        "early_forecasts": run.early_forecasts,
        "readings_stored": run.readings_stored,
        "readings_rejected": run.readings_rejected,
        "wall_s": round(run.wall_s, 1),
    }


def table(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [f"scenario {result['scenario']} ({result['hours']:g} h simulated from {result['origin']}): "
             f"{result['readings_stored']:,} readings, {result['forecasts']} forecasts "
             f"(+{result['early_forecasts']} early), {result['wall_s']:.0f} s",
             f"{'zone':<8}{'level':<10}{'water reached':<22}{'first message':<22}{'kind':<10}{'gauge':<8}{'lead h':>7}"]
    for z in result["zones"]:
        for lv in z["levels"]:
            lead = "-" if lv["lead_h"] is None else f"{lv['lead_h']:.1f}"
            first = lv["first_message"] or "NONE"
            lines.append(f"{z['zone_id']:<8}{lv['name']:<10}{lv['crossing']:<22}{first:<22}{lv['kind'] or '':<10}"
                         f"{lv['station_id'] or '':<8}{lead:>7}")
        for f in z["false_messages"]:
            lines.append(f"{z['zone_id']:<8}{f['level']:<10}{'(never reached)':<22}{f['delivered']:<22}"
                         f"{f['kind']:<10}{f['station_id'] or '':<8}{'':>7}  <- for nothing")
    lead = s["lead_h"]
    lines.append(f"zone levels reached {s['zone_levels_reached']}, warned {s['zone_levels_warned']}"
                 f" ({'all' if s['all_warned'] else 'NOT all'}); lead median "
                 f"{'-' if lead['median'] is None else lead['median']} h; resident warnings {s['resident_warnings']}, "
                 f"for nothing {s['false_messages']}")
    return "\n".join(lines)


def run_scenario_command(args: argparse.Namespace, settings: Settings, sweep: dict[str, list[float]]) -> int:
    """The shell of ``floodwatch verify --scenario``: run (once per swept setting), print, write JSON."""
    from floodwatch.cli.verify import progress_bar

    if args.csv is not None or args.levels or args.rain_csv or args.alerts_csv or args.plot or args.station:
        raise FloodwatchError("--scenario takes its truth, gauges and levels from the scenario and the registry; "
                              "drop --levels, --station, --rain-csv, --alerts-csv and --plot")
    combos = _combinations(sweep)
    results = []
    tape: dict | None = {} if len(combos) > 1 else None
    for values in combos:
        run_settings = _with_rules(settings, values, args.profile)
        with tempfile.TemporaryDirectory(prefix="floodwatch-verify-") as tmp:
            run = run_scenario(run_settings, args.scenario, hours=args.hours, workdir=Path(tmp),
                               progress=None if args.no_progress else progress_bar("simulated", "s"),
                               forecast_tape=tape)
        result = report(run, run_settings, window_s=args.window_h * 3600.0)
        result["rules"] = {"exceed_probability": run_settings.forecast.exceed_probability,
                           "lead_h": run_settings.forecast.lead_h,
                           "confirm_readings": run_settings.alerts.confirm_readings,
                           "rise_rate_cm_per_h": run_settings.alerts.rise_rate_cm_per_h, "profile": args.profile}
        results.append(result)
        print(table(result))
    out: dict[str, Any] = results[0] if len(results) == 1 else {"scenario": args.scenario, "sweep": results}
    if len(results) > 1:
        print("trade-off:")
        print(f"{'p':>5}{'lead h':>8}{'confirm':>8}{'rise':>6}{'reached':>9}{'warned':>8}{'median lead h':>15}"
              f"{'warnings':>10}{'for nothing':>13}")
        for r in results:
            s, rules = r["summary"], r["rules"]
            med = s["lead_h"]["median"]
            print(f"{rules['exceed_probability']:>5g}{rules['lead_h']:>8g}{rules['confirm_readings']:>8}"
                  f"{rules['rise_rate_cm_per_h']:>6g}{s['zone_levels_reached']:>9}{s['zone_levels_warned']:>8}"
                  f"{'-' if med is None else med:>15}{s['resident_warnings']:>10}{s['false_messages']:>13}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def _combinations(sweep: dict[str, list[float]]) -> list[dict[str, float]]:
    import itertools

    if not sweep:
        return [{}]
    keys = list(sweep)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(sweep[k] for k in keys))]


def _with_rules(settings: Settings, values: dict[str, float], profile: str | None) -> Settings:
    """The site's settings with swept values (and a profile for every level station) applied."""
    out = settings.model_copy(deep=True)
    if "exceed_probability" in values:
        out.forecast.exceed_probability = values["exceed_probability"]
    if "lead_h" in values:
        out.forecast.lead_h = values["lead_h"]
    if "confirm_readings" in values:
        out.alerts.confirm_readings = int(values["confirm_readings"])
    if "rise_rate_cm_per_h" in values:
        out.alerts.rise_rate_cm_per_h = values["rise_rate_cm_per_h"]
    if profile is not None:
        settings.warning_profile(profile)  # names the fix for an unknown profile
        out.stations = [s.model_copy(update={"warning_profile": profile}) if s.kind == "water_level" else s
                        for s in out.stations]
    return out


def _iso(ts_s: float) -> str:
    return datetime.fromtimestamp(float(ts_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":  # pragma: no cover - use floodwatch verify --scenario
    sys.exit("use: floodwatch verify --scenario NAME")
