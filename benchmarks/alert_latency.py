"""End-to-end alert latency: a node's publish that crosses a warning level -> the LINE request.

Set-up, all real and on this machine:
- Mosquitto on a free port;
- ``floodwatch serve`` in its own process (ingest with durable SQLite writes
  and QC, the alert engine with its durable decision log and outbox, the
  page, the forecaster) with Lam Phaya's registry plus 1,000 background
  stations and one probe station per probe zone;
- 1,000 background stations publishing every 10 s (100 messages/s, QoS 1,
  real timestamps) from this process;
- the LINE stand-in in this process, timestamping each request it receives.

Each probe station first reports a realistic rise (a batch of readings ten
minutes apart, the last one already above the warning level), then the
reading that confirms the crossing; the alert rules want two consecutive
readings above a level so a single spike never warns anyone. Latency is from
that confirming publish to the multicast reaching the stand-in.

In the same run, a bare pipeline (a paho subscriber that POSTs each message
to the stand-in, in its own process, with the same background load) gives the
floor a Python process can reach on this machine.

Contract: ``python benchmarks/alert_latency.py --json`` prints one JSON object
with at least ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``, ``alerts``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from floodwatch.cli.broker import LocalBroker, free_port  # noqa: E402
from floodwatch.settings import DEFAULT_CONFIG_FILE  # noqa: E402
from floodwatch.line_standin import LineStandIn  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
SECRET = "bench-secret-0123456789abcdef"
PROBE_WATCH_M, PROBE_WARNING_M, PROBE_EVACUATE_M = 1.00, 1.50, 2.00
BACKGROUND_LEVEL_M = 0.40
BACKGROUND_PER_ZONE = 10


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def bench_config(background: int, probes: int, background_interval_s: float = 10.0) -> str:
    """Lam Phaya's registry plus background stations and one probe station per probe zone."""
    text = DEFAULT_CONFIG_FILE.read_text()
    parts = [text]
    # A zone has a handful of gauges (Lam Phaya: 1-3), so background stations come ten to a zone;
    # one zone of thousands would make every reading re-decide thousands of stations.
    for z in range(math.ceil(background / BACKGROUND_PER_ZONE)):
        parts.append(f'\n[[zones]]\nid = "bench-bg-{z:04d}"\nname_th = "พื้นหลัง {z}"\nname_en = "Background {z}"\n')
    for i in range(background):
        parts.append(
            f'\n[[stations]]\nid = "BG-{i:05d}"\nname_th = "พื้นหลัง {i}"\nname_en = "Background {i}"\n'
            f'kind = "water_level"\nsensor = "pressure"\nzone = "bench-bg-{i // BACKGROUND_PER_ZONE:04d}"\n'
            'lat = 14.0\nlon = 100.1\n'
            f"publish_interval_s = {background_interval_s:g}\n"
            f"[stations.levels]\nwatch_m = {PROBE_WATCH_M}\nwarning_m = {PROBE_WARNING_M}\nevacuate_m = {PROBE_EVACUATE_M}\n"
        )
    for i in range(probes):
        parts.append(
            f'\n[[zones]]\nid = "probe-{i:04d}"\nname_th = "หมู่ทดสอบ {i}"\nname_en = "Probe zone {i}"\n'
            f'\n[[stations]]\nid = "PROBE-{i:04d}"\nname_th = "สถานีทดสอบ {i}"\nname_en = "Probe {i}"\n'
            f'kind = "water_level"\nsensor = "pressure"\nzone = "probe-{i:04d}"\nlat = 14.0\nlon = 100.1\n'
            "publish_interval_s = 600\n"
            f"[stations.levels]\nwatch_m = {PROBE_WATCH_M}\nwarning_m = {PROBE_WARNING_M}\nevacuate_m = {PROBE_EVACUATE_M}\n"
        )
    return "".join(parts)


def probe_user(i: int) -> str:
    return f"U{i:032x}"


class Background:
    """``stations`` nodes each publishing every ``interval_s`` real seconds, staggered."""

    def __init__(self, port: int, stations: int, interval_s: float, topic_of) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bg-{os.getpid()}")
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.stations, self.interval_s, self.topic_of = stations, interval_s, topic_of
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Background":
        self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        period_s = self.interval_s / self.stations
        next_t = time.monotonic()
        i = 0
        while not self._stop.is_set():
            station = i % self.stations
            if station == 0:
                seq += 1
            now_s = time.time()
            # A tide plus sensor noise: a flat line would (rightly) be flagged by QC.
            tide_m = 0.30 * math.sin(2 * math.pi * now_s / 44_714.0 + station)
            level_m = BACKGROUND_LEVEL_M + tide_m + random.gauss(0.0, 0.004)
            payload = json.dumps({"ts": round(now_s, 3), "seq": seq, "water_level_m": round(level_m, 3)})
            self.client.publish(self.topic_of(station), payload, qos=1)
            self.sent += 1
            i += 1
            next_t += period_s
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def _wait_delivery(standin: LineStandIn, user_id: str, after_index: int, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for r in standin.requests()[after_index:]:
            body = r.body if isinstance(r.body, dict) else {}
            if 200 <= r.status < 300 and user_id in (body.get("to") or [body.get("to")]):
                return r
        time.sleep(0.0005)
    return None


def serve_env(config: Path, broker: LocalBroker, standin: LineStandIn, work: Path) -> dict[str, str]:
    """Environment for a ``floodwatch serve`` on this config, broker and stand-in, with its files in ``work``."""
    env = dict(os.environ)
    env.update(
        FLOODWATCH_CONFIG=str(config),
        FLOODWATCH_DATA_DIR=str(work),  # the page's state and anything else relative stay in work too
        FLOODWATCH_MQTT__URL=broker.url,
        FLOODWATCH_MQTT__CLIENT_ID="floodwatch-bench",
        FLOODWATCH_STORE__URL=f"sqlite:///{work}/floodwatch.db",
        FLOODWATCH_ALERTS__STATE_URL=f"sqlite:///{work}/alerts.db",
        FLOODWATCH_LINE__API_BASE_URL=standin.base_url,
        FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN=TOKEN,
        FLOODWATCH_LINE__CHANNEL_SECRET=SECRET,
        FLOODWATCH_PAGE__PORT=str(free_port()),
    )
    return env


def run_floodwatch(args, broker: LocalBroker, standin: LineStandIn, work: Path) -> dict:
    config = work / "bench.toml"
    config.write_text(bench_config(args.background, args.probes, args.interval))
    env = serve_env(config, broker, standin, work)
    if args.forecast_interval is not None:
        # Forecasts (the GIL-heavy numpy work) while probes are timed, not only at start-up.
        env["FLOODWATCH_FORECAST__INTERVAL_S"] = str(args.forecast_interval)
    # Residents of each probe zone subscribe before the service starts (as they would have, long before).
    sub = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom floodwatch.clock import SystemClock\nfrom floodwatch.settings import load_settings\n"
         "from floodwatch.alerts import AlertService\ns = AlertService(load_settings(), SystemClock())\n"
         f"s.subscribe_many([('{probe_user(0)[:1]}' + format(i, '032x'), 'probe-%04d' % i) for i in range({args.probes})])\n"
         "s.db.close() if hasattr(s.db, 'close') else None\n"],
        env=env, cwd=work, capture_output=True, text=True,
    )
    if sub.returncode != 0:
        raise RuntimeError(f"subscribing the probe residents failed:\n{sub.stderr}")
    log_file = open(work / "serve.log", "w")
    serve = subprocess.Popen([sys.executable, "-m", "floodwatch.cli.main", "serve"], env=env, cwd=work,
                             stdout=log_file, stderr=subprocess.STDOUT)
    profiler = None
    try:
        _wait_http(f"http://127.0.0.1:{env['FLOODWATCH_PAGE__PORT']}/api/health")
        if args.profile is not None:
            # Sampled with py-spy (pip install py-spy): every thread, idle ones left out.
            profiler = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(serve.pid), "--threads",
                 "--rate", "500", "--format", args.profile_format, "--output", str(args.profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        background = Background(broker.port, args.background, args.interval, lambda s: f"floodwatch/BG-{s:05d}/telemetry").start()
        time.sleep(args.warmup)
        probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
        probe.connect("127.0.0.1", broker.port)
        probe.loop_start()
        latencies_ms: list[float] = []
        missed = 0
        for i in range(args.probes):
            topic = f"floodwatch/PROBE-{i:04d}/telemetry"
            now_s = time.time()
            # A steady rise of about 10 cm/h (below the fast-rise rule), the last reading just over warning.
            rise = [1.33, 1.37, 1.41, 1.46, PROBE_WARNING_M + 0.03]
            history = {"readings": [{"ts": round(now_s - 1800 * (len(rise) - k), 3), "seq": k + 1, "water_level_m": v}
                                    for k, v in enumerate(rise)]}
            probe.publish(topic, json.dumps(history), qos=1).wait_for_publish(5)
            time.sleep(0.25 + random.uniform(0, 0.1))
            seen = len(standin.requests())
            confirming = json.dumps({"ts": round(time.time(), 3), "seq": len(rise) + 1, "water_level_m": PROBE_WARNING_M + 0.06})
            t0 = time.time()
            probe.publish(topic, confirming, qos=1)
            arrived = _wait_delivery(standin, probe_user(i), seen)
            if arrived is None:
                missed += 1
                continue
            latencies_ms.append((arrived.received_at_s - t0) * 1000.0)
            time.sleep(random.uniform(0.05, 0.15))
        probe.loop_stop()
        probe.disconnect()
        background.stop()
        bg_sent = background.sent
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT, not on SIGTERM
            try:
                profiler.wait(20)
            except subprocess.TimeoutExpired:
                profiler.kill()
        serve.terminate()
        try:
            serve.wait(20)
        except subprocess.TimeoutExpired:
            serve.kill()
        log_file.close()
    return {"latencies_ms": latencies_ms, "missed": missed, "background_sent": bg_sent}


BARE_RELAY = r"""
import json, sys, urllib.request
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, base, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def on_message(c, u, m):
    if not m.topic.startswith("bare/probe/"):
        return
    user = m.topic.rsplit("/", 1)[1]
    body = json.dumps({"to": [user], "messages": [{"type": "text", "text": "bare relay"}]}).encode()
    req = urllib.request.Request(base + "/v2/bot/message/multicast", data=body, method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-relay")
c.on_message = on_message
c.connect("127.0.0.1", port)
c.subscribe("bare/#", qos=1)
print("ready", flush=True)
c.loop_forever()
"""


def run_bare(args, broker: LocalBroker, standin: LineStandIn) -> dict:
    relay = subprocess.Popen([sys.executable, "-c", BARE_RELAY, str(broker.port), standin.base_url, TOKEN],
                             stdout=subprocess.PIPE, text=True)
    try:
        relay.stdout.readline()
        background = Background(broker.port, args.background, args.interval, lambda s: f"bare/bg/{s}").start()
        time.sleep(min(args.warmup, 3))
        probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-probe")
        probe.connect("127.0.0.1", broker.port)
        probe.loop_start()
        latencies_ms = []
        for i in range(args.probes):
            user = f"U{(10**6 + i):032x}"
            seen = len(standin.requests())
            t0 = time.time()
            probe.publish(f"bare/probe/{user}", b"{}", qos=1)
            arrived = _wait_delivery(standin, user, seen)
            if arrived is not None:
                latencies_ms.append((arrived.received_at_s - t0) * 1000.0)
            time.sleep(random.uniform(0.05, 0.15))
        probe.loop_stop()
        probe.disconnect()
        background.stop()
    finally:
        relay.terminate()
        relay.wait(10)
    return {"latencies_ms": latencies_ms}


def _summary(latencies_ms: list[float]) -> dict:
    return {
        "p50_ms": round(_quantile(latencies_ms, 0.50), 2),
        "p95_ms": round(_quantile(latencies_ms, 0.95), 2),
        "p99_ms": round(_quantile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2) if latencies_ms else None,
        "mean_ms": round(statistics.fmean(latencies_ms), 2) if latencies_ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--probes", type=int, default=200, help="alerts to time (default 200)")
    parser.add_argument("--background", type=int, default=1000, help="background stations (default 1000)")
    parser.add_argument("--interval", type=float, default=10.0, help="background publish interval, s (default 10)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of background load before timing")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare paho -> HTTP baseline")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder (logs, databases) here")
    parser.add_argument("--forecast-interval", type=float, default=None,
                        help="forecast every this many seconds during the run (default: the config's 600 s)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="sample the serve process with py-spy while timing; write the profile here")
    parser.add_argument("--profile-format", default="raw", choices=("raw", "flamegraph", "speedscope"),
                        help="py-spy output format (default raw: collapsed stacks, one per line)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fw-latency-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        # A kept folder from an earlier run holds zones already at WARNING: start from nothing.
        for stale in [*work.glob("*.db*"), *work.glob("*.log")]:
            stale.unlink()
        shutil.rmtree(work / "broker", ignore_errors=True)
        with LocalBroker(work / "broker") as broker, LineStandIn(
            tokens={TOKEN}, multicast_rate_per_s=200.0
        ) as standin:
            bare = None if args.no_bare else run_bare(args, broker, standin)
            fw = run_floodwatch(args, broker, standin, work)
    if args.keep is not None:
        (args.keep / "latencies_ms.json").write_text(json.dumps(fw["latencies_ms"]))
    result = {
        **_summary(fw["latencies_ms"]),
        "alerts": len(fw["latencies_ms"]),
        "missed": fw["missed"],
        "background_stations": args.background,
        "background_interval_s": args.interval,
        "background_messages": fw["background_sent"],
        "broker": broker.kind,
        "forecast_interval_s": args.forecast_interval,
    }
    if bare is not None:
        b = _summary(bare["latencies_ms"])
        result["bare_paho_http"] = b
        result["p50_ratio_to_bare"] = round(result["p50_ms"] / b["p50_ms"], 2) if b["p50_ms"] else None
        result["p99_ratio_to_bare"] = round(result["p99_ms"] / b["p99_ms"], 2) if b["p99_ms"] else None
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0 if result["alerts"] > 0 and result["missed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
