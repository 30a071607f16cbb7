"""Resident memory of each process at 10,000 stations.

Set-up, all real and on this machine:
- Mosquitto on a free port;
- ``floodwatch serve`` in its own process with Lam Phaya's registry plus
  ``--stations`` background stations (default 10,000), each a level station
  reporting every ``--interval`` s (default 60: 167 messages/s);
- a publisher process sending those stations' readings (QoS 1, real
  timestamps, a tide plus sensor noise), one connection for all;
- the LINE stand-in in this process.

It runs for ``--duration`` s (default 90) after the service is up, and at
least until the service's start-up forecast over every station has been
issued, sampling each process's ``VmRSS`` from ``/proc/PID/status`` every
half second. It reports per process: the resident memory at the end
(``rss_mb``), the largest sample (``rss_peak_sampled_mb``) and the kernel's
high-water mark (``hwm_mb``, ``VmHWM``: the peak, even between samples).
The service's children are reported as ``serve/forecast`` (the forecast
process, see scheduler/forecast_job.py) and ``serve/resource_tracker``.

Usage::

    python benchmarks/memory.py --json
    python benchmarks/memory.py --stations 1000 --duration 40
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from alert_latency import _wait_http, bench_config, serve_env  # noqa: E402
from floodwatch.cli.broker import LocalBroker  # noqa: E402
from floodwatch.line_standin import LineStandIn  # noqa: E402

SAMPLE_EVERY_S = 0.5
FORECAST_LINE = re.compile(r"forecast issued stations=(\d+) .* seconds=([0-9.]+)")

PUBLISHER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from alert_latency import Background
stations, interval_s, port = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
bg = Background(port, stations, interval_s, lambda s: f"floodwatch/BG-{s:05d}/telemetry").start()
print("ready", flush=True)
try:
    sys.stdin.read()  # runs until the parent closes stdin
finally:
    bg.stop()
    print(bg.sent, flush=True)
"""


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a live process, kB (empty once it has exited)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def children(pid: int) -> dict[str, int]:
    """Child processes of ``pid`` by role: the forecast process, multiprocessing's resource tracker, others."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            try:
                cmd = Path(f"/proc/{kid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            role = ("forecast" if "spawn_main" in cmd else "resource_tracker" if "resource_tracker" in cmd
                    else f"child-{kid}")
            out[role] = kid
    return out


class Sampler:
    """Latest and largest VmRSS, and the last VmHWM, per named pid (children of ``parent`` found as they start)."""

    def __init__(self, pids: dict[str, int], parent: str | None = None) -> None:
        self.pids = dict(pids)
        self.parent = parent
        self.last: dict[str, dict[str, int]] = {name: {} for name in pids}
        self.peak_kb: dict[str, int] = {name: 0 for name in pids}

    def sample(self) -> None:
        if self.parent is not None:
            for role, pid in children(self.pids[self.parent]).items():
                name = f"{self.parent}/{role}"
                if name not in self.pids:
                    self.pids[name] = pid
                    self.last[name], self.peak_kb[name] = {}, 0
        for name, pid in self.pids.items():
            m = memory_kb(pid)
            if m:
                self.last[name] = m
                self.peak_kb[name] = max(self.peak_kb[name], m.get("VmRSS", 0))

    def report(self) -> dict[str, dict[str, float]]:
        mb = 1024.0
        return {
            name: {
                "pid": self.pids[name],
                "rss_mb": round(self.last[name].get("VmRSS", 0) / mb, 1),
                "rss_peak_sampled_mb": round(self.peak_kb[name] / mb, 1),
                "hwm_mb": round(self.last[name].get("VmHWM", 0) / mb, 1),
            }
            for name in self.pids
        }


def forecasts_issued(log_path: Path) -> list[tuple[int, float]]:
    """(stations, seconds) of each forecast the service logged so far."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [(int(m.group(1)), float(m.group(2))) for m in FORECAST_LINE.finditer(text)]


def run(args: argparse.Namespace, work: Path) -> dict:
    config = work / "memory.toml"
    config.write_text(bench_config(args.stations, 0, args.interval))
    with LocalBroker(work / "broker") as broker, LineStandIn(tokens={"unused"}) as standin:
        env = serve_env(config, broker, standin, work)
        log_path = work / "serve.log"
        with open(log_path, "w") as log_file:
            serve = subprocess.Popen([sys.executable, "-m", "floodwatch.cli.main", "serve"], env=env, cwd=work,
                                     stdout=log_file, stderr=subprocess.STDOUT)
        publisher = None
        try:
            started = time.monotonic()
            _wait_http(f"http://127.0.0.1:{env['FLOODWATCH_PAGE__PORT']}/api/health", timeout_s=300)
            startup_s = time.monotonic() - started
            publisher = subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, str(ROOT / "benchmarks"), str(args.stations), str(args.interval),
                 str(broker.port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=work)
            publisher.stdout.readline()
            broker_pid = broker._process.pid if broker._process is not None else None
            pids = {"serve": serve.pid, "publisher": publisher.pid}
            if broker_pid is not None:
                pids = {"broker": broker_pid, **pids}
            sampler = Sampler(pids, parent="serve")
            deadline = time.monotonic() + args.duration
            hard_deadline = deadline + args.forecast_timeout
            while True:
                sampler.sample()
                now = time.monotonic()
                if now >= deadline and (forecasts_issued(log_path) or now >= hard_deadline):
                    break
                if serve.poll() is not None:
                    raise RuntimeError(f"floodwatch serve exited early (code {serve.returncode}); see {log_path}")
                time.sleep(SAMPLE_EVERY_S)
            sampler.sample()
            publisher.stdin.close()
            sent = int(publisher.stdout.readline() or 0)
            publisher.wait(10)
            publisher = None
        finally:
            if publisher is not None:
                publisher.kill()
            serve.terminate()
            try:
                serve.wait(30)
            except Exception:
                serve.kill()
        with sqlite3.connect(work / "floodwatch.db") as db:
            stored = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    forecasts = forecasts_issued(log_path)
    return {
        "stations": args.stations,
        "interval_s": args.interval,
        "duration_s": args.duration,
        "messages_published": sent,
        "readings_stored": stored,
        "serve_startup_s": round(startup_s, 1),
        "forecast_runs": len(forecasts),
        "forecast_stations": forecasts[0][0] if forecasts else None,
        "forecast_seconds": forecasts[0][1] if forecasts else None,
        "broker": broker.kind,
        "processes": sampler.report(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON result, on one line")
    parser.add_argument("--stations", type=int, default=10_000, help="stations added to Lam Phaya's (default 10000)")
    parser.add_argument("--interval", type=float, default=60.0, help="each station's publish interval, s (default 60)")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of publishing (default 90)")
    parser.add_argument("--forecast-timeout", type=float, default=300.0,
                        help="after --duration, wait at most this long for the start-up forecast (default 300)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder (logs, databases) here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fw-memory-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        for stale in [*work.glob("*.db*"), *work.glob("*.log")]:
            stale.unlink()
        result = run(args, work)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0 if result["readings_stored"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
