"""``floodwatch simulate``: run simulated sensor nodes against any MQTT broker.

The same tool drives the demo's nodes, the end-to-end tests and the load
benchmarks: the registry's stations (each on its own connection, with its
last will) plus any number of synthetic ``SIM-00001``... nodes for load,
publishing a scenario in accelerated time, with progress lines and a final
summary of what was sent. Runnable as ``python -m floodwatch.cli.simulate``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from floodwatch import logs
from floodwatch.clock import AcceleratedClock
from floodwatch.errors import ConfigError
from floodwatch.settings import load_settings

log = logging.getLogger("floodwatch.simulate")

DEFAULT_ACCELERATION = 600.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="run simulated sensor nodes (10 to 10,000) publishing a scenario over MQTT",
        description="Run simulated sensor nodes against an MQTT broker: the site's stations "
        "plus synthetic SIM-00001... nodes for load tests, publishing a scenario (tide, floods, rain, "
        "faults) in accelerated time, with progress and a summary of what was sent.\n\n"
        "examples:\n"
        "  floodwatch simulate --list\n"
        "  floodwatch simulate --scenario monsoon_flood --acceleration 600 --duration 60\n"
        "  floodwatch simulate --broker mqtt://127.0.0.1:1883 --nodes 10000 --rate 5000 --duration 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(run=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="list the scenarios with one line each and exit")
    p.add_argument("--scenario", default="monsoon_flood",
                   help="scenario name from firmware_sim/scenarios or a path to a TOML file (default monsoon_flood)")
    p.add_argument("--broker", default=None, metavar="URL",
                   help="broker as mqtt://HOST:PORT (default: FLOODWATCH_MQTT__URL or the config file's [mqtt] url)")
    p.add_argument("--nodes", type=int, default=None, metavar="N",
                   help="total nodes: the registry's stations first, then synthetic SIM-00001... up to N "
                   "(default: the registry's stations; fewer than that simulates the first N)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--acceleration", type=float, default=None, metavar="FACTOR",
                       help=f"simulated seconds per real second (default {DEFAULT_ACCELERATION:g}: one real minute "
                       "is ten scenario hours)")
    speed.add_argument("--rate", type=float, default=None, metavar="MSG_PER_S",
                       help="target readings per real second for the whole fleet; sets the acceleration "
                       "from the nodes' publish intervals (fast-rising stations publish more)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="real seconds to run (default: the scenario's length at this acceleration; Ctrl-C stops early)")
    p.add_argument("--seed", type=int, default=0, help="seed for noise, clock drift and start phases (default 0)")
    p.add_argument("--converted", action="store_true",
                   help="publish water_level_m / rain_mm instead of the raw distance_m / rain_tips real nodes send")
    p.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                   help="print a progress line this often (default 5; 0 turns it off)")
    p.add_argument("--credentials", type=Path, default=None, metavar="PATH",
                   help="the username:password file `floodwatch mqtt-config` writes: each registry node logs in "
                   "as its station id (for a locked-down broker; synthetic nodes need an open one)")
    p.add_argument("--summary-json", type=Path, default=None, metavar="PATH",
                   help="also write the final summary as JSON to PATH")


def acceleration_for_rate(rate_per_s: float, publish_intervals_s: list[float]) -> float:
    """The clock factor at which nodes with these publish intervals send ``rate_per_s`` readings a second."""
    if rate_per_s <= 0:
        raise ValueError(f"--rate must be positive readings per second, got {rate_per_s}")
    readings_per_sim_s = sum(1.0 / i for i in publish_intervals_s)
    return rate_per_s / readings_per_sim_s


def run(args: argparse.Namespace) -> int:
    from floodwatch import firmware_sim

    if args.list:
        for name in firmware_sim.list_scenarios():
            scenario = firmware_sim.load_scenario(name)
            print(f"{name:<24} {scenario.duration_s / 3600:>5.0f} h  {scenario.description}")
        return 0
    try:
        settings = load_settings()
        scenario = firmware_sim.load_scenario(args.scenario)
    except ConfigError as exc:
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return 1
    broker_url = args.broker or settings.mqtt.url
    try:
        firmware_sim.parse_broker_url(broker_url)
    except ValueError as exc:
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return 2
    registry = list(settings.own_stations)
    n_nodes = len(registry) if args.nodes is None else args.nodes
    if n_nodes < 1:
        print("error: --nodes must be at least 1", file=sys.stderr)
        return 2
    stations = registry[:n_nodes]
    extra = max(0, n_nodes - len(registry))
    intervals = [s.publish_interval_s for s in stations] + [
        s.publish_interval_s for s in firmware_sim.synthetic_stations(settings, extra)
    ]
    factor = args.acceleration or (
        acceleration_for_rate(args.rate, intervals) if args.rate else DEFAULT_ACCELERATION
    )
    duration_s = args.duration if args.duration is not None else scenario.duration_s / factor
    start_s = time.time()
    clock = AcceleratedClock(sim_start_s=start_s, factor=factor)
    credentials = None
    if args.credentials is not None:
        from floodwatch.cli.mqtt_config import read_credentials

        if not args.credentials.is_file():
            print(f"error: credentials file {args.credentials} does not exist; "
                  "`floodwatch mqtt-config` writes one next to the broker's configuration", file=sys.stderr)
            return 2
        credentials = read_credentials(args.credentials)
    fleet = firmware_sim.Fleet(
        settings, scenario, broker_url, clock, seed=args.seed, stations=stations, extra_nodes=extra,
        publish_raw=not args.converted, credentials=credentials,
    )
    print(
        f"floodwatch simulate: {len(fleet.nodes)} nodes ({len(stations)} registry, {extra} synthetic) on "
        f"{len(fleet.links)} connections to {broker_url}\n"
        f"  scenario {scenario.name} at {factor:g}x (1 real minute = {factor / 60:g} scenario hours), "
        f"for {duration_s:.0f} real s; Ctrl-C stops",
        flush=True,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    fleet.start()
    last_published, last_t = 0, started
    try:
        while not stop.is_set():
            remaining = duration_s - (time.monotonic() - started)
            if remaining <= 0:
                break
            every = args.progress_every if args.progress_every > 0 else remaining
            stop.wait(min(every, remaining))
            if args.progress_every > 0:
                stats = fleet.stats()
                now = time.monotonic()
                rate = (stats["published"] - last_published) / max(now - last_t, 1e-9)
                last_published, last_t = stats["published"], now
                print(_progress_line(stats, rate, now - started), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        fleet.stop()
    elapsed = time.monotonic() - started
    stats = fleet.stats()
    summary = _summary(stats, scenario.name, broker_url, factor, elapsed, args.seed)
    print(_summary_text(summary), flush=True)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    if stats["published"] == 0:
        print(f"error: nothing was published; is a broker listening at {broker_url}? "
              "(floodwatch demo starts one; or run /usr/sbin/mosquitto)", file=sys.stderr)
        return 1
    return 0


def _progress_line(stats: dict, rate_per_s: float, elapsed_s: float) -> str:
    return (
        f"  +{elapsed_s:6.1f}s  scenario +{stats['scenario_s'] / 3600:7.2f} h  published={stats['published']}"
        f"  rate={rate_per_s:.0f}/s  buffered={stats['buffered']}  dropped={stats['dropped']}"
        f"  connected={stats['connected']}/{stats['connections']}  lag={stats['lag_s']:.0f}s"
    )


def _summary(stats: dict, scenario: str, broker_url: str, factor: float, elapsed_s: float, seed: int) -> dict:
    per_station = stats["per_station"]
    registry_counts = {k: v for k, v in per_station.items() if not k.startswith("SIM-")}
    return {
        "scenario": scenario,
        "broker": broker_url,
        "acceleration": factor,
        "seed": seed,
        "real_seconds": round(elapsed_s, 2),
        "scenario_hours": round(stats["scenario_s"] / 3600.0, 2),
        "nodes": stats["nodes"],
        "connections": stats["connections"],
        "readings_made": stats["readings_made"],
        "published": stats["published"],
        "messages_sent": stats["messages_sent"],
        "acknowledged": stats["acknowledged"],
        "batches_sent": stats["batches_sent"],
        "duplicates_sent": stats["duplicates_sent"],
        "buffered": stats["buffered"],
        "dropped": stats["dropped"],
        "reboots": stats["reboots"],
        "readings_per_s": round(stats["published"] / max(elapsed_s, 1e-9), 1),
        "per_station": registry_counts,
        "synthetic_published": sum(v for k, v in per_station.items() if k.startswith("SIM-")),
    }


def _summary_text(summary: dict) -> str:
    lines = [
        f"sent {summary['published']} readings in {summary['messages_sent']} messages "
        f"({summary['batches_sent']} batched flushes, {summary['duplicates_sent']} duplicates) from "
        f"{summary['nodes']} nodes in {summary['real_seconds']:.1f} s real = {summary['scenario_hours']:.1f} h "
        f"of {summary['scenario']}; {summary['readings_per_s']:.0f} readings/s; "
        f"acknowledged {summary['acknowledged']}, still buffered {summary['buffered']}, dropped {summary['dropped']}",
    ]
    if summary["per_station"]:
        lines.append("  per station: " + ", ".join(f"{k} {v}" for k, v in summary["per_station"].items()))
    if summary["synthetic_published"]:
        lines.append(f"  synthetic SIM-* nodes: {summary['synthetic_published']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m floodwatch.cli.simulate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(logging.WARNING)  # node passwords must not reach a log line either
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
