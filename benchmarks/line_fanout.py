"""Benchmark: one alert to 100,000 residents of one zone through the LINE stand-in at LINE's rate limit.

floodwatch's real delivery path end to end: AlertService decides a WARNING
from two readings, writes 200 outbox chunks of 500 user ids (each with its
retry key) in one SQLite transaction, and its delivery workers multicast them
with line-bot-sdk, paced to 200 requests/s, to a LINE stand-in that enforces
that same limit (429 beyond it) and validates every body against LINE's
OpenAPI spec. The floor LINE's limit sets is chunks / rate (200 / 200 = 1 s);
the goal is within 1.5 x the floor with zero duplicates.

The stand-in runs in its own process by default (``--server subprocess``), as
LINE would, so its validation does not share floodwatch's interpreter lock.

Run: ``python benchmarks/line_fanout.py --json`` (``--residents 10000`` for a quick run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pydantic import SecretStr  # noqa: E402

from floodwatch.alerts import AlertService  # noqa: E402
from floodwatch.settings import PROJECT_ROOT, load_settings  # noqa: E402
from floodwatch.vocabulary import QcFlag, Reading, StationId  # noqa: E402

TOKEN = "fanout-bench-token"
ZONE = "moo-1"
STATION = "LP-W02"  # warning 2.00 m MSL
T0_S = 1_795_930_800.0


class _Clock:
    factor = 1.0

    def __init__(self, t_s: float) -> None:
        self.t_s = t_s

    def now_s(self) -> float:
        return self.t_s


@contextlib.contextmanager
def _standin(mode: str, rate_per_s: float) -> Iterator[tuple[str, object]]:
    if mode == "inprocess":
        from floodwatch.line_standin import LineStandIn

        with LineStandIn(tokens={TOKEN}, multicast_rate_per_s=rate_per_s) as standin:
            yield standin.base_url, standin
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "floodwatch.cli.line_standin", "--port", "0", "--token", TOKEN,
         "--multicast-rate", str(rate_per_s)],
        stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the LINE stand-in did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip(), None
    finally:
        process.terminate()
        process.wait(timeout=10)


def _received(base_url: str, standin: object) -> dict:
    if standin is not None:
        return standin.received_json()  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"{base_url}/_standin/received", timeout=60) as response:
        return json.load(response)


def run(residents: int, rate_per_s: float, threads: int, server: str) -> dict:
    users = [f"U{i:032x}" for i in range(residents)]
    with tempfile.TemporaryDirectory() as tmp, _standin(server, rate_per_s) as (base_url, standin):
        settings = load_settings()
        settings.alerts.state_url = f"sqlite:///{tmp}/alerts.db"
        settings.line.api_base_url = base_url
        settings.line.channel_access_token = SecretStr(TOKEN)
        settings.line.multicast_rate_per_s = rate_per_s
        settings.line.delivery_threads = threads
        clock = _Clock(T0_S)
        service = AlertService(settings, clock)
        try:
            service.subscribe_many((u, ZONE) for u in users)
            service.start()
            readings = []
            for level in (2.05, 2.06):
                clock.t_s += 600
                readings.append(Reading(StationId(STATION), clock.t_s, water_level_m=level, qc_flag=QcFlag.PASS))
            started = time.perf_counter()
            service.on_readings(readings[:1])
            service.on_readings(readings[1:])  # the second reading confirms the WARNING
            decided = time.perf_counter()
            if not service.wait_delivered(timeout_s=max(60.0, 10 * residents / 500 / rate_per_s)):
                raise RuntimeError("delivery did not finish; see the log for LINE's answers")
            seconds = time.perf_counter() - started
            entry = service.log(1)[0]
        finally:
            service.close()
        received = _received(base_url, standin)
    multicasts = [r for r in received["requests"] if r["path"] == "/v2/bot/message/multicast"]
    per_user = Counter(d["user_id"] for d in received["delivered"])
    chunks = math.ceil(residents / 500)
    floor_s = chunks / rate_per_s
    return {
        "residents": residents,
        "zone": ZONE,
        "chunks": chunks,
        "requests": len(multicasts),
        "rate_limited_429": sum(1 for r in multicasts if r["status"] == 429),
        "seconds": round(seconds, 3),
        "decide_and_enqueue_seconds": round(decided - started, 3),
        "floor_seconds": round(floor_s, 3),
        "ratio_to_floor": round(seconds / floor_s, 3),
        "delivered": sum(1 for u in users if per_user[u] >= 1),
        "duplicates": sum(n - 1 for n in per_user.values() if n > 1),
        "alert_state": entry["state"],
        "rate_per_s": rate_per_s,
        "delivery_threads": threads,
        "standin": server,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=100_000, help="residents in the zone (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=200.0, help="LINE multicast limit, requests/s (default: 200)")
    parser.add_argument("--threads", type=int, default=4, help="delivery worker threads (default: %(default)s)")
    parser.add_argument("--server", choices=("subprocess", "inprocess"), default="subprocess",
                        help="where the LINE stand-in runs (default: its own process, as LINE would)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    result = run(args.residents, args.rate, args.threads, args.server)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
    return 0 if result["duplicates"] == 0 and result["delivered"] == result["residents"] else 1


if __name__ == "__main__":
    sys.exit(main())
