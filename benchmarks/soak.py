"""Soak: the whole system under a fleet for a long while, with faults injected on a schedule.

Everything real, on this machine:
- Mosquitto with persistence saved on every change (what ``floodwatch
  mqtt-config --persistence-dir`` writes; anonymous here, so one connection
  can carry many stations);
- ``floodwatch serve`` in its own process: ingest (durable SQLite writes, QC),
  forecasts (every ``--forecast-interval`` s), the alert engine with its
  outbox, the page;
- ``--stations`` background gauges (default 1,000) publishing every
  ``--interval`` s from this process through links that re-send until the
  broker acknowledges, and probe gauges that cross their warning level and
  fall back, so alerts are decided and cleared all along;
- the LINE stand-in in this process, residents subscribed to the probe zones;
- ``--sse`` live page clients (default 20) on ``/api/events``, reconnecting
  after a restart as a browser does.

Faults, spread over the run: the broker SIGKILLed (and restarted), LINE
answering 503 to a burst of multicasts, the store locked by another writer
for ``--lock-s`` seconds, and ingest killed (``floodwatch serve`` SIGKILLed
and restarted, the way a crash takes it).

At the end: published (readings the broker acknowledged) = stored (rows in
the store), every decided message delivered exactly once (every outbox chunk
settled, each recipient got each of its messages once, counted at the
stand-in by retry key), and memory per process: RSS at the start and end of
its longest uninterrupted stretch.

``python benchmarks/soak.py --json`` prints one JSON object with
``published``, ``stored``, ``lost``, ``decisions``, ``delivered_once``,
``duplicate_messages``, ``missing_messages``, ``faults`` and ``rss``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from alert_latency import (  # noqa: E402
    BACKGROUND_LEVEL_M,
    PROBE_WARNING_M,
    bench_config,
    serve_env,
)
from floodwatch.cli.broker import find_mosquitto, free_port, wait_for_port  # noqa: E402
from floodwatch.line_standin import LineStandIn  # noqa: E402
from memory import children, memory_kb  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
MULTICAST = "/v2/bot/message/multicast"
RESIDENTS_PER_PROBE = 30
STATIONS_PER_LINK = 100


def log(*parts: object) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


# -- the broker ------------------------------------------------------------------------------------

class Broker:
    """Mosquitto with the production persistence lines, anonymous, SIGKILLable and restartable."""

    def __init__(self, folder: Path) -> None:
        from floodwatch.cli.mqtt_config import mosquitto_conf

        self.folder = folder
        self.port = free_port()
        data = folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        generated = mosquitto_conf(folder, port=self.port, bind_address="127.0.0.1", certfile=None, keyfile=None,
                                   persistence_dir=data, run_as="root" if os.geteuid() == 0 else None)
        keep = [line for line in generated.splitlines()
                if not line.startswith(("password_file", "acl_file", "allow_anonymous", "#"))]
        (folder / "mosquitto.conf").write_text("\n".join(keep + ["allow_anonymous true", "log_dest none"]) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_mosquitto()
        assert binary, "mosquitto is not installed; run scripts/setup --test"
        self.proc = subprocess.Popen([binary, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port)
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# -- nodes -----------------------------------------------------------------------------------------

class Link:
    """One MQTT connection carrying many stations; re-sends what the broker has not acknowledged after a reconnect."""

    def __init__(self, port: int, name: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311,
                                  clean_session=True)
        self.client.max_inflight_messages_set(2000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.5, 2)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self.pending: dict[tuple[str, int], tuple[str, bytes, int]] = {}  # key -> (topic, payload, readings)
        self.acked_readings = 0
        self.acked_keys: set[tuple[str, int]] = set()
        self._mid_key: dict[int, tuple[str, int]] = {}
        self._early: set[int] = set()
        self._reconnected = threading.Event()
        self.connects = 0
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connects += 1
            if self.connects > 1:
                self._reconnected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            key = self._mid_key.pop(mid, None)
            if key is None:
                self._early.add(mid)
            else:
                self._settle(key)

    def _settle(self, key: tuple[str, int]) -> None:
        item = self.pending.pop(key, None)
        if item is not None and key not in self.acked_keys:
            self.acked_keys.add(key)
            self.acked_readings += item[2]

    def send(self, key: tuple[str, int], topic: str, payload: bytes, readings: int = 1) -> None:
        with self._lock:
            if key in self.acked_keys:
                return
            self.pending[key] = (topic, payload, readings)
        info = self.client.publish(topic, payload, qos=1)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self._settle(key)
            else:
                self._mid_key[info.mid] = key

    def resend_if_reconnected(self) -> int:
        if not self._reconnected.is_set():
            return 0
        self._reconnected.clear()
        with self._lock:
            again = list(self.pending.items())
        for key, (topic, payload, readings) in again:
            self.send(key, topic, payload, readings)
        return len(again)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Fleet:
    """Background gauges every ``interval_s`` (a tide plus noise) and probe gauges driven by the schedule."""

    def __init__(self, port: int, stations: int, interval_s: float) -> None:
        self.stations, self.interval_s = stations, interval_s
        self.links = [Link(port, f"soak-link-{k}") for k in range(max(1, math.ceil(stations / STATIONS_PER_LINK)))]
        self.probe_link = Link(port, "soak-probes")
        self.seq: Counter[str] = Counter()
        self.resent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-fleet", daemon=True)

    def start(self) -> Fleet:
        self._thread.start()
        return self

    def _run(self) -> None:
        period_s = self.interval_s / self.stations
        next_t = time.monotonic()
        i = 0
        while not self._stop.is_set():
            for link in self.links + [self.probe_link]:
                self.resent += link.resend_if_reconnected()
            station = i % self.stations
            sid = f"BG-{station:05d}"
            self.seq[sid] += 1
            now_s = time.time()
            level_m = BACKGROUND_LEVEL_M + 0.30 * math.sin(2 * math.pi * now_s / 44_714.0 + station) \
                + random.gauss(0.0, 0.004)
            body = json.dumps({"ts": round(now_s, 3), "seq": self.seq[sid], "water_level_m": round(level_m, 3)})
            self.links[station // STATIONS_PER_LINK].send((sid, self.seq[sid]), f"floodwatch/{sid}/telemetry",
                                                          body.encode())
            i += 1
            next_t += period_s
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def probe(self, index: int, levels_m: list[float], step_s: float = 600.0) -> None:
        """One message with ``levels_m`` as readings ``step_s`` apart, the last one now."""
        sid = f"PROBE-{index:04d}"
        now_s = time.time()
        readings = []
        for k, level in enumerate(levels_m):
            self.seq[sid] += 1
            readings.append({"ts": round(now_s - step_s * (len(levels_m) - 1 - k), 3), "seq": self.seq[sid],
                             "water_level_m": level})
        self.probe_link.send((sid, self.seq[sid]), f"floodwatch/{sid}/telemetry",
                             json.dumps({"readings": readings}).encode(), len(readings))

    def acked_readings(self) -> int:
        return sum(link.acked_readings for link in self.links + [self.probe_link])

    def pending(self) -> int:
        return sum(len(link.pending) for link in self.links + [self.probe_link])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def close(self) -> None:
        for link in self.links + [self.probe_link]:
            link.close()


# -- live page clients ------------------------------------------------------------------------------

class SseClient(threading.Thread):
    """A browser's EventSource, as a real HTTP client: reads events, reconnects after the page restarts."""

    def __init__(self, port: int, k: int) -> None:
        super().__init__(name=f"sse-{k}", daemon=True)
        self.port = port
        self.events: Counter[str] = Counter()
        self.connects = 0
        self._stop_event = threading.Event()
        self._conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self._conn.request("GET", "/api/events", headers={"Accept": "text/event-stream"})
                response = self._conn.getresponse()
                if response.status != 200:
                    raise OSError(f"status {response.status}")
                self.connects += 1
                while not self._stop_event.is_set():
                    line = response.fp.readline()
                    if not line:
                        break
                    if line.startswith(b"event: "):
                        self.events[line[7:].strip().decode()] += 1
            except (OSError, http.client.HTTPException):
                pass
            finally:
                if self._conn is not None:
                    self._conn.close()
            self._stop_event.wait(1.0)

    def stop(self) -> None:
        self._stop_event.set()
        if self._conn is not None and self._conn.sock is not None:
            try:
                self._conn.sock.shutdown(2)
            except OSError:
                pass


# -- memory ----------------------------------------------------------------------------------------

class Memory:
    """RSS of each process over time: (seconds since the run started, pid, kB), per role."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.samples: dict[str, list[tuple[float, int, int]]] = {}

    def sample(self, pids: dict[str, int]) -> None:
        now = time.monotonic() - self.t0
        for name, pid in pids.items():
            rss = memory_kb(pid).get("VmRSS")
            if rss:
                self.samples.setdefault(name, []).append((now, pid, rss))

    def report(self, warmup_s: float) -> dict[str, dict[str, float]]:
        """Per role: RSS at the start (after ``warmup_s``) and end of the longest stretch of one process."""
        out = {}
        for name, rows in self.samples.items():
            by_pid: dict[int, list[tuple[float, int]]] = {}
            for t, pid, rss in rows:
                by_pid.setdefault(pid, []).append((t, rss))
            pid, series = max(by_pid.items(), key=lambda kv: kv[1][-1][0] - kv[1][0][0])
            t_first = series[0][0]
            settled = [s for s in series if s[0] >= t_first + warmup_s] or series
            start_t, start_kb = settled[0]
            end_t, end_kb = settled[-1]
            peak_kb = max(rss for _, rss in settled)
            hours = max((end_t - start_t) / 3600.0, 1e-9)
            out[name] = {"pid": pid, "processes": len(by_pid), "from_s": round(start_t), "to_s": round(end_t),
                         "rss_start_mb": round(start_kb / 1024, 1), "rss_end_mb": round(end_kb / 1024, 1),
                         "rss_peak_mb": round(peak_kb / 1024, 1),
                         "growth_mb": round((end_kb - start_kb) / 1024, 1),
                         "growth_mb_per_h": round((end_kb - start_kb) / 1024 / hours, 1)}
        return out


# -- the run ---------------------------------------------------------------------------------------

def _get(port: int, path: str, timeout_s: float = 5.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _wait_page(port: int, timeout_s: float = 120.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if _get(port, "/api/health") == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the page on port {port} did not answer within {timeout_s:.0f} s")


def _store_rows(db: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute("SELECT COUNT(*), COUNT(DISTINCT station || '@' || ts_s) FROM readings").fetchone()


def _outbox(alerts_db: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(f"file:{alerts_db}?mode=ro", uri=True, timeout=30) as conn:
        chunks = conn.execute("SELECT retry_key, user_ids, messages, status FROM outbox").fetchall()
        decisions = conn.execute("SELECT kind, audience, recipients, delivered, failed FROM decisions").fetchall()
    return chunks, decisions


def run(args: argparse.Namespace, work: Path) -> dict:
    t0 = time.monotonic()
    duration_s = args.minutes * 60.0
    faults: list[dict] = []
    broker = Broker(work / "broker")
    broker.start()
    with LineStandIn(tokens={TOKEN}) as standin:
        config = work / "soak.toml"
        config.write_text(bench_config(args.stations, args.probes, args.interval))
        env = serve_env(config, broker, standin, work)  # type: ignore[arg-type]
        env.update(FLOODWATCH_FORECAST__INTERVAL_S=str(args.forecast_interval),
                   FLOODWATCH_ALERTS__CLEAR_AFTER_S="60", FLOODWATCH_ALERTS__COOLDOWN_S="60",
                   FLOODWATCH_LINE__RETRY_MAX_S="5", FLOODWATCH_STORE__BUSY_TIMEOUT_S="1")
        page_port = int(env["FLOODWATCH_PAGE__PORT"])
        sub = subprocess.run(
            [sys.executable, "-c",
             "from floodwatch.clock import SystemClock\nfrom floodwatch.settings import load_settings\n"
             "from floodwatch.alerts import AlertService\ns = AlertService(load_settings(), SystemClock())\n"
             f"s.subscribe_many([('U' + format(p * 1000 + r, '032x'), 'probe-%04d' % p) for p in range({args.probes})"
             f" for r in range({RESIDENTS_PER_PROBE})])\ns.db.close()\n"],
            env=env, cwd=work, capture_output=True, text=True)
        if sub.returncode != 0:
            raise RuntimeError(f"subscribing the residents failed:\n{sub.stderr}")
        serve_log = open(work / "serve.log", "ab")

        def start_serve() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "floodwatch.cli.main", "serve"], env=env, cwd=work,
                                    stdout=serve_log, stderr=subprocess.STDOUT)

        serve = start_serve()
        startup_s = _wait_page(page_port)
        log(f"serve up in {startup_s:.1f} s; {args.stations} stations, {args.sse} live clients, {args.minutes} min")
        fleet = Fleet(broker.port, args.stations, args.interval).start()
        clients = [SseClient(page_port, k) for k in range(args.sse)]
        for c in clients:
            c.start()
        memory = Memory(t0)

        def pids() -> dict[str, int]:
            out = {"serve": serve.pid, "driver": os.getpid()}
            if broker.proc is not None:
                out["mosquitto"] = broker.proc.pid
            out.update({f"serve/{role}": pid for role, pid in children(serve.pid).items()
                        if role == "forecast"})
            return out

        # probes cross WARNING then fall back; faults in between, so decisions meet them
        schedule: list[tuple[float, str]] = []
        for f, name in ((0.10, "line_5xx"), (0.15, "broker_kill"), (0.30, "ingest_kill"), (0.45, "store_lock"),
                        (0.55, "line_5xx"), (0.60, "broker_kill"), (0.75, "store_lock")):
            schedule.append((f * duration_s, name))
        probe_rounds = max(2, int(duration_s // 150))
        for k in range(probe_rounds):
            start = (0.05 + 0.8 * k / probe_rounds) * duration_s
            schedule.append((start, f"probe_rise:{k % args.probes}"))
            schedule.append((start + min(90.0, 0.5 * 0.8 * duration_s / probe_rounds), f"probe_fall:{k % args.probes}"))
        schedule.sort()
        run_t0 = time.monotonic()
        next_sample = 0.0
        for at_s, action in schedule + [(duration_s, "end")]:
            while time.monotonic() - run_t0 < at_s:
                if serve.poll() is not None and action != "end":
                    raise RuntimeError(f"floodwatch serve exited (code {serve.returncode}); see {work}/serve.log")
                if time.monotonic() - run_t0 >= next_sample:
                    memory.sample(pids())
                    next_sample += 10.0
                time.sleep(0.2)
            elapsed = round(time.monotonic() - run_t0, 1)
            if action == "end":
                break
            kind, _, arg = action.partition(":")
            if kind == "probe_rise":
                fleet.probe(int(arg), [1.33, 1.37, 1.41, 1.46, PROBE_WARNING_M + 0.03, PROBE_WARNING_M + 0.06])
            elif kind == "probe_fall":
                fleet.probe(int(arg), [0.60, 0.58], step_s=60.0)
            elif kind == "line_5xx":
                standin.fail_next(12, status=503, path=MULTICAST)
                faults.append({"at_s": elapsed, "fault": "line_5xx", "multicasts": 12})
            elif kind == "broker_kill":
                broker.kill()
                time.sleep(2.0)
                broker.start()
                faults.append({"at_s": elapsed, "fault": "broker_kill", "down_s": 2.0})
            elif kind == "store_lock":
                locker = sqlite3.connect(work / "floodwatch.db", isolation_level=None, timeout=30)
                locker.execute("BEGIN EXCLUSIVE")
                time.sleep(args.lock_s)
                locker.execute("ROLLBACK")
                locker.close()
                faults.append({"at_s": elapsed, "fault": "store_lock", "held_s": args.lock_s})
            elif kind == "ingest_kill":
                serve.send_signal(signal.SIGKILL)
                serve.wait(10)
                serve = start_serve()
                restart_s = _wait_page(page_port)
                faults.append({"at_s": elapsed, "fault": "ingest_kill", "serve_back_after_s": round(restart_s, 1)})
            if kind in ("line_5xx", "broker_kill", "store_lock", "ingest_kill"):
                log(f"fault {faults[-1]}")
        # the end: stop publishing, let everything settle
        fleet.stop()
        log("publishing stopped; settling")
        settle_deadline = time.monotonic() + args.settle_s
        while fleet.pending() and time.monotonic() < settle_deadline:
            memory.sample(pids())
            time.sleep(0.5)
        published = fleet.acked_readings()
        rows = distinct = 0
        while time.monotonic() < settle_deadline:
            rows, distinct = _store_rows(work / "floodwatch.db")
            if distinct >= published:
                break
            memory.sample(pids())
            time.sleep(1.0)
        chunks: list[tuple] = []
        decisions: list[tuple] = []
        while time.monotonic() < settle_deadline:
            chunks, decisions = _outbox(work / "alerts.db")
            if not any(status == "pending" for *_, status in chunks):
                break
            time.sleep(1.0)
        memory.sample(pids())
        for c in clients:
            c.stop()
        serve.terminate()
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
        fleet.close()
        broker.stop()
        # exactly once, counted at LINE: each chunk's recipients got each of its messages once
        got = Counter((d.retry_key, d.user_id) for d in standin.delivered_messages())
        duplicates = missing = 0
        for retry_key, user_ids, messages, status in chunks:
            want = len(json.loads(messages))
            for user in json.loads(user_ids):
                n = got.get((retry_key, user), 0)
                duplicates += max(0, n - want)
                if status == "delivered":
                    missing += max(0, want - n)
        stray = sum(n for (key, _), n in got.items() if key not in {c[0] for c in chunks})
        status_503 = sum(1 for r in standin.requests(MULTICAST) if r.status == 503)
        status_409 = sum(1 for r in standin.requests(MULTICAST) if r.status == 409)
        sse_events = [sum(c.events.values()) for c in clients]
        result = {
            "minutes": args.minutes, "stations": args.stations, "interval_s": args.interval,
            "serve_startup_s": round(startup_s, 1),
            "published": published, "stored": distinct, "lost": published - distinct,
            "stored_twice": rows - distinct, "nodes_resent": fleet.resent,
            "decisions": dict(Counter(kind for kind, *_ in decisions)),
            "resident_decisions": sum(1 for _, audience, *_ in decisions if audience == "residents"),
            "chunks": len(chunks), "chunks_by_status": dict(Counter(c[3] for c in chunks)),
            "messages_delivered": sum(got.values()),
            "duplicate_messages": duplicates, "missing_messages": missing, "stray_messages": stray,
            # superseded chunks were never sent (a higher alert for the zone replaced them): settled too
            "delivered_once": duplicates == 0 and missing == 0 and stray == 0
            and all(c[3] in ("delivered", "superseded") for c in chunks),
            "line_503_answered": status_503, "line_409_answered": status_409,
            "faults": faults,
            "sse_clients": len(clients), "sse_events_min": min(sse_events) if sse_events else 0,
            "sse_events_total": sum(sse_events), "sse_reconnects": sum(c.connects - 1 for c in clients),
            "rss": memory.report(warmup_s=min(120.0, duration_s / 4)),
            "wall_s": round(time.monotonic() - t0, 1),
        }
        serve_log.close()
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock minutes of load (default 30)")
    parser.add_argument("--stations", type=int, default=1000, help="background gauges (default 1000)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a gauge's readings (default 10)")
    parser.add_argument("--probes", type=int, default=4, help="probe zones that flood and clear (default 4)")
    parser.add_argument("--sse", type=int, default=20, help="live page clients on /api/events (default 20)")
    parser.add_argument("--forecast-interval", type=float, default=120.0,
                        help="seconds between forecasts (default 120)")
    parser.add_argument("--lock-s", type=float, default=8.0, help="how long the store is held locked (default 8)")
    parser.add_argument("--settle-s", type=float, default=180.0, help="at most this long to settle at the end")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here (logs, databases)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="fw-soak-") as tmp:
            result = run(args, Path(tmp))
    print(json.dumps(result, indent=None if args.json else 2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
