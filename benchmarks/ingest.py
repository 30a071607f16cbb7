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
import resource
import shutil
import socket
import sqlite3
import statistics
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

from floodwatch.ingest import IngestService  # noqa: E402
from floodwatch.store import open_store  # noqa: E402

from floodwatch import metrics  # noqa: E402
from floodwatch.clock import SystemClock  # noqa: E402
from floodwatch.settings import load_settings  # noqa: E402

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


def live_raw_rate(port: int, n: int, offset: int, name: str = "live-raw") -> tuple[float, int]:
    times: list[float] = []
    done = threading.Event()

    def on_message(c, u, m):
        times.append(time.perf_counter())
        if len(times) >= n:
            done.set()

    subscribed = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{name}", protocol=mqtt.MQTTv5)
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


def live_ingest_rate(port: int, n: int, offset: int, folder: Path, name: str = "live") -> dict:
    metrics.reset()
    settings = load_settings(mqtt={"url": f"mqtt://127.0.0.1:{port}", "client_id": f"bench-{name}"},
                             store={"url": f"sqlite:///{folder}/{name}.db"})
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
    with sqlite3.connect(folder / f"{name}.db") as db:
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT station || '@' || ts_s) FROM readings").fetchone()
    return {"published": n, "stored": rows, "duplicates": rows - distinct,
            "rate_per_s": stored[0] / (last[0] - first[0])}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def raw_rate(port: int, msgs: list[tuple[str, bytes]], client_id: str = "bench-raw") -> tuple[float, int, float]:
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
    cpu0 = cpu_s()
    t0 = time.perf_counter()
    c.loop_start()
    done.wait(120)
    cpu = cpu_s() - cpu0
    c.disconnect()
    c.loop_stop()
    return len(times) / (times[-1] - t0), len(times), cpu / max(1, len(times)) * 1e6


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
    cpu0 = cpu_s()
    t0 = time.perf_counter()
    service.start()
    done.wait(180)
    elapsed = time.perf_counter() - t0
    cpu = cpu_s() - cpu0
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
            "rate_per_s": stats["readings_received"] / elapsed, "batches": stats["batches"],
            "cpu_us_per_msg": cpu / max(1, stats["messages_received"]) * 1e6}


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
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate bare and ingest runs this many times and report medians (default 3): "
                        "the machine's load drifts, alternating keeps the comparison fair")
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
        live_raws, lives, drain_raws, drains = [], [], [], []
        for r in range(args.rounds):
            offset = 2 * r * args.n
            live_raws.append(live_raw_rate(port, args.n, offset, f"live-raw-{r}"))
            lives.append(live_ingest_rate(port, args.n, offset, folder, f"live-{r}"))
            single = messages(readings(args.n, now_s, offset + args.n), 1)
            drain_raws.append(raw_rate(port, single, f"bench-raw-{r}"))
            drains.append(ingest_rate(port, single, args.n, folder, f"single-{r}", args.profile and r == 0))
        batched_msgs = messages(readings(args.n, now_s, 2 * args.rounds * args.n), args.batch)
        bat = ingest_rate(port, batched_msgs, args.n, folder, "batched", args.profile)
        lat = latency(port, folder)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    med = statistics.median
    live_raw = med(x[0] for x in live_raws)
    live_ing = med(x["rate_per_s"] for x in lives)
    drain_raw = med(x[0] for x in drain_raws)
    drain_ing = med(x["rate_per_s"] for x in drains)
    result = {
        "raw_rate_per_s": round(live_raw, 1),
        "ingest_rate_per_s": round(live_ing, 1),
        "ratio": round(live_ing / live_raw, 3),
        "published": sum(x["published"] for x in lives),
        "stored": sum(x["stored"] for x in lives),
        "duplicates": sum(x["duplicates"] for x in lives),
        "raw_received": sum(x[1] for x in live_raws),
        "rounds": args.rounds,
        "ratio_per_round": [round(b["rate_per_s"] / a[0], 3) for a, b in zip(live_raws, lives, strict=True)],
        "drain_raw_rate_per_s": round(drain_raw, 1),
        "drain_ingest_rate_per_s": round(drain_ing, 1),
        "drain_ratio": round(drain_ing / drain_raw, 3),
        "drain_ratio_per_round": [round(b["rate_per_s"] / a[0], 3) for a, b in zip(drain_raws, drains, strict=True)],
        "drain_published": sum(x["published"] for x in drains),
        "drain_stored": sum(x["stored"] for x in drains),
        "drain_duplicates": sum(x["duplicates"] for x in drains),
        "drain_raw_cpu_us_per_msg": round(med(x[2] for x in drain_raws), 1),
        "drain_ingest_cpu_us_per_msg": round(med(x["cpu_us_per_msg"] for x in drains), 1),
        "batched_readings_per_message": args.batch,
        "batched_messages_published": bat["published"],
        "batched_stored": bat["stored"],
        "batched_duplicates": bat["duplicates"],
        "batched_ingest_readings_per_s": round(bat["rate_per_s"], 1),
        "batched_cpu_us_per_reading": round(bat["cpu_us_per_msg"] / args.batch, 1),
        **lat,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
