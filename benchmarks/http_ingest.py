"""HTTP ingest against MQTT ingest, same ingest service, same store, same run.

Starts its own Mosquitto on a free loopback port, one :class:`ingest.IngestService`
on a SQLite file, and the page's FastAPI app (uvicorn, on a free port) with the
HTTP ingest router, as ``floodwatch serve`` wires them. Three ways to get N
readings stored, one after the other:

- ``mqtt``: a paho publisher sends N single-reading messages at QoS 1 (the
  baseline: what nodes do);
- ``http``: ``--clients`` loggers each post their share of single readings,
  one request at a time on a keep-alive connection, each answered only once
  durable (as a cellular logger would);
- ``http_batch``: the same loggers post buffers of ``--batch`` readings.

Each phase's rate is readings durably stored per second (the store's row count,
until all N are there). ``python benchmarks/http_ingest.py --json`` prints one
JSON object: ``mqtt_rate_per_s``, ``http_rate_per_s``, ``http_ratio``
(HTTP / MQTT), ``http_batch_readings_per_s``, ``http_p50_ms``, ``http_p95_ms``,
``stored``, ``expected``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floodwatch.clock import SystemClock  # noqa: E402
from floodwatch.gauge_page import EventHub, create_app  # noqa: E402
from floodwatch.gauge_page._serve import BackgroundServer  # noqa: E402
from floodwatch.ingest import IngestService  # noqa: E402
from floodwatch.ingest.http import hash_token, http_router, new_token  # noqa: E402
from floodwatch.settings import load_settings  # noqa: E402
from floodwatch.store import open_store  # noqa: E402

STATIONS = ("LP-W01", "LP-W02", "LP-W03", "LP-W04", "LP-W05", "LP-W06", "LP-W07")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"
                    "max_inflight_messages 1000\nlog_dest none\nuser root\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def body(i: int, t0: float, boot: int = 1) -> dict:
    return {"ts": round(t0 + i * 0.001, 3), "seq": i, "boot": boot, "distance_m": 3.0 + (i % 100) / 1000}


def count(db_path: Path) -> int:
    with sqlite3.connect(db_path, timeout=10) as db:
        return db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]


def wait_stored(db_path: Path, want: int, timeout_s: float = 300.0) -> float:
    deadline = time.monotonic() + timeout_s
    while count(db_path) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count(db_path)} of {want} readings stored")
        time.sleep(0.01)
    return time.perf_counter()


def mqtt_phase(port: int, n: int, t0: float, db: Path, before: int) -> float:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-node", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.perf_counter()
    infos = [client.publish(f"floodwatch/{STATIONS[i % len(STATIONS)]}/telemetry", json.dumps(body(i, t0)), qos=1)
             for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    end = wait_stored(db, before + n)
    client.loop_stop()
    client.disconnect()
    return n / (end - start)


def http_phase(url: str, tokens: dict, n: int, t0: float, clients: int, batch: int, db: Path,
               before: int, boot: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def logger(k: int) -> None:
        sid = STATIONS[k % len(STATIONS)]
        mine = list(range(k, n, clients))
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens[sid]}"}, timeout=60) as c:
            for j in range(0, len(mine), batch):
                part = [body(i, t0, boot) for i in mine[j:j + batch]]
                payload = part[0] if batch == 1 else {"readings": part}
                t = time.perf_counter()
                r = c.post(f"/api/v1/ingest/{sid}", json=payload)
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    return
                with lock:
                    latencies.append(dt)

    start = time.perf_counter()
    threads = [threading.Thread(target=logger, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise RuntimeError(f"HTTP ingest refused: {errors[0]}")
    end = wait_stored(db, before + n)
    return n / (end - start), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("-n", type=int, default=3000, help="readings per phase (default 3000)")
    parser.add_argument("--clients", type=int, default=7, help="concurrent HTTP loggers (default 7, one per station)")
    parser.add_argument("--batch", type=int, default=50, help="readings per post in the batched phase (default 50)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fw-http-bench-"))
    broker, port = start_broker(folder)
    tokens = {sid: new_token(sid) for sid in STATIONS}
    settings = load_settings(
        mqtt={"url": f"mqtt://127.0.0.1:{port}", "client_id": "bench-ingest"},
        store={"url": f"sqlite:///{folder}/fw.db", "spool_path": str(folder / "spool.db")},
        page={"state_url": f"sqlite:///{folder}/page.db"},
        http_ingest={"tokens": {sid: hash_token(t) for sid, t in tokens.items()}, "rate_per_min": 1e9,
                     "burst": 1_000_000},
    )
    store = open_store(settings)
    service = IngestService(settings, store, SystemClock())
    service.start()
    service.wait_connected(10)
    hub = EventHub()
    app = create_app(settings, store, SystemClock(), hub=hub, ingest=service)
    app.include_router(http_router(settings, service))
    server = BackgroundServer(app, hub).start()
    db = folder / "fw.db"
    try:
        t0 = time.time() - 86_400
        mqtt_rate = mqtt_phase(port, args.n, t0, db, 0)
        http_rate, lat = http_phase(server.url, tokens, args.n, t0 + 10_000, args.clients, 1, db, args.n, 2)
        batch_rate, _ = http_phase(server.url, tokens, args.n, t0 + 20_000, args.clients, args.batch, db, 2 * args.n,
                                   3)
        stored = count(db)
    finally:
        server.stop()
        app.state.page.state.close()
        service.stop()
        store.close()
        broker.terminate()
        broker.wait(10)
    lat_ms = sorted(x * 1000 for x in lat)
    result = {
        "readings_per_phase": args.n,
        "http_clients": args.clients,
        "mqtt_rate_per_s": round(mqtt_rate, 1),
        "http_rate_per_s": round(http_rate, 1),
        "http_ratio": round(http_rate / mqtt_rate, 3),
        "http_batch": args.batch,
        "http_batch_readings_per_s": round(batch_rate, 1),
        "http_batch_ratio": round(batch_rate / mqtt_rate, 3),
        "http_p50_ms": round(statistics.median(lat_ms), 2),
        "http_p95_ms": round(lat_ms[int(0.95 * (len(lat_ms) - 1))], 2),
        "expected": 3 * args.n,
        "stored": stored,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0 if stored == 3 * args.n else 1


if __name__ == "__main__":
    sys.exit(main())
