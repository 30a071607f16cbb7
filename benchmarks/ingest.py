"""Ingest benchmark: floodwatch ingestion against a bare paho subscriber, same broker, same run.

Starts its own Mosquitto on a free loopback port. Consumers:

(a) raw: a bare paho subscriber (MQTT v5, QoS 1, paho's automatic acks)
    that only counts messages;
(b) ingest: :class:`ingest.IngestService` validating, QC-flagging,
    deduplicating and durably writing to SQLite (WAL, fsync before the
    PUBACKs).

Two ways of feeding them, both reported:

- live (the headline ``raw_rate_per_s``/``ingest_rate_per_s``/``ratio``):
  a publisher in its own process sends N QoS 1 messages as fast as it can
  while the consumer runs, as a node fleet would; broker, publisher and
  consumer share the machine's cores;
- drain (``drain_*``): the N messages wait in the consumer's persistent
  session first, then the consumer drains them alone: its own ceiling.

Plus (c) batched: the same readings as buffered messages of ``--batch``
readings (drain), and (d) latency: lone readings at 100/s, publish to
``on_stored``.

``python benchmarks/ingest.py --json`` prints one JSON object with
``raw_rate_per_s``, ``ingest_rate_per_s``, ``ratio``, ``published``,
``stored``, ``duplicates`` and more. ``--profile`` prints the writer thread's
cProfile top functions to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floodwatch import metrics  # noqa: E402
from floodwatch.clock import SystemClock  # noqa: E402
from floodwatch.settings import load_settings  # noqa: E402
from ingest import IngestService  # noqa: E402
from store import open_store  # noqa: E402

STATIONS = ("LP-W01", "LP-W02", "LP-W03", "LP-W04", "LP-W05", "LP-W06", "LP-W07", "LP-R01", "LP-R02", "LP-R03")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 10000000\n"
        "max_inflight_messages 1000\nlog_dest none\n"
    )
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def readings(n: int, now_s: float, offset: int) -> list[dict]:
    """n distinct readings over the ten stations, within the last day."""
    out = []
    for i in range(n):
        sid = STATIONS[i % len(STATIONS)]
        ts = now_s - 86_000 + (offset + i) * 0.01
        body: dict = {"ts": round(ts, 3), "seq": offset + i, "boot": 1, "battery_v": 3.9, "rssi_dbm": -80}
        if sid.startswith("LP-W"):
            body["water_level_m"] = round(1.0 + 0.3 * np.sin(i / 500), 4)
        else:
            body["rain_mm"] = 0.2 * (i % 3)
        out.append((sid, body))
    return out


def messages(rs: list, batch: int) -> list[tuple[str, bytes]]:
    if batch <= 1:
        return [(f"floodwatch/{sid}/telemetry", json.dumps(b).encode()) for sid, b in rs]
    by_station: dict[str, list[dict]] = {}
    for sid, b in rs:
        by_station.setdefault(sid, []).append(b)
    out = []
    for sid, bodies in by_station.items():
        for k in range(0, len(bodies), batch):
            out.append((f"floodwatch/{sid}/telemetry", json.dumps({"readings": bodies[k:k + batch]}).encode()))
    return out


def publish_all(port: int, msgs: list[tuple[str, bytes]]) -> int:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = [0]
    done = threading.Event()

    def on_publish(c, u, mid, rc, props):
        acked[0] += 1
        if acked[0] == len(msgs):
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    window = threading.Semaphore(20_000)  # paho refuses more than 65,535 unacknowledged ids
    for topic, body in msgs:
        client.publish(topic, body, qos=1)
    done.wait(120)
    client.disconnect()
    client.loop_stop()
    del window
    return acked[0]


def session_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    return props


def make_session(port: int, client_id: str, topic: str) -> None:
    """Create a persistent QoS 1 session, then leave, so the broker queues the backlog for it."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    ready = threading.Event()
    c.on_subscribe = lambda *a: ready.set()
    c.on_connect = lambda client, u, f, rc, p: client.subscribe(topic, qos=1)
    c.connect("127.0.0.1", port, clean_start=False, properties=session_props())
    c.loop_start()
    ready.wait(10)
    c.disconnect()
    c.loop_stop()


def spawn_publisher(port: int, n: int, offset: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--publish", str(port), str(n), str(offset)])


def live_raw_rate(port: int, n: int, offset: int) -> tuple[float, int]:
    times: list[float] = []
    done = threading.Event()

    def on_message(c, u, m):
        times.append(time.perf_counter())
        if len(times) >= n:
            done.set()

    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-live-raw", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_connect = lambda client, u, f, rc, p: client.subscribe("floodwatch/+/telemetry", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    subscribed.wait(10)
    pub = spawn_publisher(port, n, offset)
    done.wait(120)
    pub.wait(60)
    c.disconnect()
    c.loop_stop()
    return (len(times) - 1) / (times[-1] - times[0]), len(times)


def live_ingest_rate(port: int, n: int, offset: int, folder: Path) -> dict:
    metrics.reset()
    settings = load_settings(mqtt={"url": f"mqtt://127.0.0.1:{port}", "client_id": "bench-live-ingest"},
                             store={"url": f"sqlite:///{folder}/live.db"})
    store = open_store(settings)
    first: list[float] = []
    last = [0.0]
    stored = [0]
    done = threading.Event()

    def on_stored(rs):
        now = time.perf_counter()
        if not first:
            first.append(now)
        stored[0] += len(rs)
        last[0] = now
        if stored[0] >= n:
            done.set()

    service = IngestService(settings, store, SystemClock(), on_stored=on_stored)
    service.start()
    service.wait_connected(10)
    pub = spawn_publisher(port, n, offset)
    done.wait(120)
    pub.wait(60)
    service.stop()
    store.close()
    with sqlite3.connect(folder / "live.db") as db:
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT station || '@' || ts_s) FROM readings").fetchone()
    return {"published": n, "stored": rows, "duplicates": rows - distinct,
            "rate_per_s": stored[0] / (last[0] - first[0])}


def raw_rate(port: int, msgs: list[tuple[str, bytes]]) -> tuple[float, int]:
    client_id = "bench-raw"
    make_session(port, client_id, "floodwatch/+/telemetry")
    publish_all(port, msgs)
    n = len(msgs)
    times: list[float] = []
    done = threading.Event()

    def on_message(c, u, m):
        times.append(time.perf_counter())
        if len(times) >= n:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port, clean_start=False, properties=session_props())
    t0 = time.perf_counter()
    c.loop_start()
    done.wait(120)
    c.disconnect()
    c.loop_stop()
    return len(times) / (times[-1] - t0), len(times)


def ingest_rate(port: int, msgs: list[tuple[str, bytes]], expected: int, folder: Path, name: str,
                profile: bool) -> dict:
    metrics.reset()
    settings = load_settings(
        mqtt={"url": f"mqtt://127.0.0.1:{port}", "client_id": f"bench-{name}"},
        store={"url": f"sqlite:///{folder}/{name}.db"},
    )
    make_session(port, f"bench-{name}", "floodwatch/+/telemetry")
    published = publish_all(port, msgs)
    store = open_store(settings)
    done = threading.Event()
    stored = [0]

    def on_stored(rs):
        stored[0] += len(rs)
        if stored[0] >= expected:
            done.set()

    service = IngestService(settings, store, SystemClock(), on_stored=on_stored)
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        loop = service._write_loop
        service._write_loop = lambda: prof.runcall(loop)  # type: ignore[method-assign]
    t0 = time.perf_counter()
    service.start()
    done.wait(180)
    elapsed = time.perf_counter() - t0
    stats = service.stats()
    service.stop()
    store.close()
    with sqlite3.connect(folder / f"{name}.db") as db:
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT station || '@' || ts_s) FROM readings").fetchone()
    if prof is not None:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(f"--- writer thread profile ({name}) ---\n{out.getvalue()}", file=sys.stderr)
    return {"published": published, "stored": rows, "duplicates": rows - distinct,
            "rate_per_s": stats["readings_received"] / elapsed, "batches": stats["batches"]}


def latency(port: int, folder: Path, n: int = 300, rate_per_s: float = 100.0) -> dict:
    metrics.reset()
    settings = load_settings(mqtt={"url": f"mqtt://127.0.0.1:{port}", "client_id": "bench-latency"},
                             store={"url": f"sqlite:///{folder}/latency.db"})
    store = open_store(settings)
    sent: dict[int, float] = {}
    lat: list[float] = []

    def on_stored(rs):
        now = time.perf_counter()
        lat.extend(now - sent[r.seq] for r in rs)

    service = IngestService(settings, store, SystemClock(), on_stored=on_stored)
    service.start()
    service.wait_connected(10)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    now_s = time.time()
    for i in range(n):
        sid = STATIONS[i % 7]
        body = json.dumps({"ts": now_s - 3600 + i, "seq": i, "boot": 1, "water_level_m": 1.0}).encode()
        sent[i] = time.perf_counter()
        pub.publish(f"floodwatch/{sid}/telemetry", body, qos=1)
        time.sleep(1.0 / rate_per_s)
    deadline = time.monotonic() + 10
    while len(lat) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    pub.disconnect()
    pub.loop_stop()
    service.stop()
    store.close()
    ms = np.array(lat) * 1000
    return {"latency_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "latency_p95_ms": round(float(np.percentile(ms, 95)), 2), "latency_samples": int(ms.size)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: readable lines)")
    parser.add_argument("-n", type=int, default=20_000, help="messages per phase (default 20000)")
    parser.add_argument("--batch", type=int, default=10, help="readings per buffered message in phase (c)")
    parser.add_argument("--profile", action="store_true", help="cProfile the ingest writer thread (stderr)")
    parser.add_argument("--publish", nargs=3, type=int, metavar=("PORT", "N", "OFFSET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:  # the publisher process of the live phases
        port, n, offset = args.publish
        publish_all(port, messages(readings(n, time.time(), offset), 1))
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="fw-bench-ingest-"))
    broker, port = start_broker(folder)
    try:
        now_s = time.time()
        live_raw, live_raw_received = live_raw_rate(port, args.n, 0)
        live = live_ingest_rate(port, args.n, 0, folder)
        single = messages(readings(args.n, now_s, 0), 1)
        raw, raw_received = raw_rate(port, single)
        ing = ingest_rate(port, single, args.n, folder, "single", args.profile)
        batched_rs = readings(args.n, now_s, args.n)
        batched_msgs = messages(batched_rs, args.batch)
        bat = ingest_rate(port, batched_msgs, args.n, folder, "batched", args.profile)
        lat = latency(port, folder)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "raw_rate_per_s": round(live_raw, 1),
        "ingest_rate_per_s": round(live["rate_per_s"], 1),
        "ratio": round(live["rate_per_s"] / live_raw, 3),
        "published": live["published"],
        "stored": live["stored"],
        "duplicates": live["duplicates"],
        "raw_received": live_raw_received,
        "drain_raw_rate_per_s": round(raw, 1),
        "drain_ingest_rate_per_s": round(ing["rate_per_s"], 1),
        "drain_ratio": round(ing["rate_per_s"] / raw, 3),
        "drain_published": ing["published"],
        "drain_stored": ing["stored"],
        "drain_duplicates": ing["duplicates"],
        "drain_ingest_batches": ing["batches"],
        "batched_readings_per_message": args.batch,
        "batched_messages_published": bat["published"],
        "batched_stored": bat["stored"],
        "batched_duplicates": bat["duplicates"],
        "batched_ingest_readings_per_s": round(bat["rate_per_s"], 1),
        "batched_us_per_reading": round(1e6 / bat["rate_per_s"], 1),
        "single_us_per_reading": round(1e6 / ing["rate_per_s"], 1),
        **lat,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
