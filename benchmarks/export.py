"""Export benchmark: a year of 10-minute readings for every station, streamed through the page's API.

Fills a SQLite store with a year of 10-minute readings for every station of
Lam Phaya's registry (11 stations, 578,160 rows), serves the page (uvicorn on a
free port) and downloads ``/api/export/readings.csv`` for the whole year and
every station, counting bytes as they arrive, while a thread samples the
process's resident memory (VmRSS). The baseline, measured in the same run, is
what a non-streaming export would have to hold: the same rows gathered with
``read_readings`` (tracemalloc).

``python benchmarks/export.py --json`` prints one JSON object: ``rows``,
``mb_sent``, ``seconds``, ``rows_per_s``, ``rss_growth_mb`` (the most the
process grew while streaming), ``gathered_mb`` (the rows held at once) and
``memory_ratio`` (rss_growth / gathered: small means streamed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floodwatch.clock import SystemClock  # noqa: E402
from floodwatch.gauge_page import EventHub, create_app  # noqa: E402
from floodwatch.gauge_page._serve import BackgroundServer  # noqa: E402
from floodwatch.settings import load_settings  # noqa: E402
from floodwatch.store import open_store  # noqa: E402
from floodwatch.vocabulary import QcFlag, Reading, StationId  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--days", type=float, default=365.0, help="days of 10-minute data (default 365)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fw-export-bench-"))
    settings = load_settings(store={"url": f"sqlite:///{folder}/fw.db"},
                             page={"state_url": f"sqlite:///{folder}/page.db"})
    store = open_store(settings)
    now = float(int(time.time() // 600 * 600))
    t = now - args.days * 86_400 + 600 * np.arange(int(args.days * 144))
    for s in settings.stations:
        level = s.kind == "water_level"
        store.write_batch([Reading(StationId(s.id), float(ts), seq=i, water_level_m=1.0 + 0.001 * (i % 997) if level
                                   else None, rain_mm=None if level else 0.2 * (i % 3), battery_v=3.9,
                                   rssi_dbm=-80.0, qc_flag=QcFlag.PASS) for i, ts in enumerate(t)])
    expected = len(t) * len(settings.stations)
    hub = EventHub()
    app = create_app(settings, store, SystemClock(), hub=hub)
    server = BackgroundServer(app, hub).start()
    peak = [rss_mb()]
    base = peak[0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sent = lines = 0
    start = time.perf_counter()
    try:
        with httpx.stream("GET", f"{server.url}/api/export/readings.csv", timeout=600,
                          params={"start": str(t[0]), "end": str(now + 1)}) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                sent += len(chunk)
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - start
    finally:
        done.set()
        server.stop()
        app.state.page.state.close()
    tracemalloc.start()
    gathered = [store.read_readings(StationId(s.id), t[0], now + 1) for s in settings.stations]
    gathered_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    del gathered
    store.close()
    result = {
        "stations": len(settings.stations),
        "days": args.days,
        "rows": lines - 1,
        "expected_rows": expected,
        "mb_sent": round(sent / 1e6, 1),
        "seconds": round(seconds, 1),
        "rows_per_s": round((lines - 1) / seconds),
        "rss_growth_mb": round(peak[0] - base, 1),
        "gathered_mb": round(gathered_mb, 1),
        "memory_ratio": round((peak[0] - base) / gathered_mb, 3),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0 if lines - 1 == expected else 1


if __name__ == "__main__":
    sys.exit(main())
