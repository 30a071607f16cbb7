"""Crash rig: Mosquitto on the production configuration, nodes that re-send until acknowledged, ingest processes.

Shared by ``tests/ingest/test_broker_crash.py`` and ``benchmarks/broker_crash.py``.

- :class:`ProductionBroker` runs Mosquitto on exactly what ``floodwatch
  mqtt-config --persistence-dir`` writes (passwords, ACL, persistence,
  autosave), on loopback without TLS; it can be SIGKILLed and restarted on
  the same port and data folder, and reports the bytes it wrote to disk.
- :class:`ResendingNodes` is a plain QoS 1 publisher per station (each logs
  in as itself, as the ACL wants) that re-publishes every reading the broker
  has not acknowledged after each reconnect: what a node that keeps its
  buffer until PUBACK does. What counts as "published" is what the broker
  acknowledged.
- :class:`IngestProcess` is ``python -m floodwatch.cli.ingest`` with the
  ingest account's password, SIGKILLable.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from floodwatch.cli.broker import find_mosquitto, free_port
from floodwatch.cli.mqtt_config import INGEST_USER, read_credentials, write_config
from floodwatch.settings import PROJECT_ROOT, Settings

STATIONS = ("LP-W01", "LP-W02", "LP-W03", "LP-W04")


class ProductionBroker:
    """Mosquitto on the configuration ``floodwatch mqtt-config --persistence-dir`` writes.

    ``autosave`` replaces the generated autosave lines (to measure other
    settings, or the ones an older floodwatch wrote); None keeps them.
    """

    def __init__(self, folder: Path, settings: Settings, *, autosave: list[str] | None = None) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.data = self.folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "mqtt"
        write_config(settings, config, port=self.port, bind_address="127.0.0.1", persistence_dir=self.data,
                     run_as="root" if os.geteuid() == 0 else None)
        self.conf = config / "mosquitto.conf"
        lines = self.conf.read_text().splitlines()
        if autosave is not None:
            lines = [line for line in lines if not line.startswith("autosave_")] + list(autosave)
        # the broker's own log, to count its saves (the generated file logs to the default destination)
        lines += [f"log_dest file {self.folder / 'mosquitto.log'}", "log_type error", "log_type warning",
                  "log_type information"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.autosave = [line for line in lines if line.startswith("autosave_")]
        self.credentials = read_credentials(config / "credentials")
        self.proc: subprocess.Popen[bytes] | None = None
        self.bytes_written = 0  # by earlier broker processes on this folder

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> ProductionBroker:
        binary = find_mosquitto()
        assert binary is not None, "mosquitto is not installed; run scripts/setup --test"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        """SIGKILL: no chance to save anything (a crash, the OOM killer, a power cut for the broker)."""
        if self.proc is not None and self.proc.poll() is None:
            self.bytes_written += self.disk_bytes()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.bytes_written += self.disk_bytes()
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def disk_bytes(self) -> int:
        """Bytes the running broker process caused to be written to storage (``/proc/PID/io``)."""
        if self.proc is None:
            return 0
        try:
            text = Path(f"/proc/{self.proc.pid}/io").read_text()
        except OSError:
            return 0
        return int(re.search(r"^write_bytes: (\d+)", text, re.M).group(1))  # type: ignore[union-attr]

    def saves(self) -> int:
        """How many times the broker saved its in-memory database (from its log)."""
        return self.log().count("Saving in-memory database")

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


class _Node:
    """One station's connection: publishes QoS 1, re-sends whatever was not acknowledged after a reconnect.

    ``replay_acked_s`` > 0: also re-send, after a reconnect, the readings the broker acknowledged
    in the last ``replay_acked_s`` seconds before the link dropped (docs/mqtt-contract.md: what a
    broker that crashed may have acknowledged without saving).
    """

    def __init__(self, port: int, station: str, password: str, replay_acked_s: float = 0.0) -> None:
        self.station = station
        self.replay_acked_s = replay_acked_s
        self._recent: list[tuple[float, int, bytes]] = []  # (acknowledged at, seq, payload)
        self._link_lost_at: float | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{station}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.username_pw_set(station, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self._lock = threading.Lock()
        self.pending: dict[int, bytes] = {}      # seq -> payload, until the broker acknowledges it
        self.acked: set[int] = set()
        self.refused: set[int] = set()
        self._mid_seq: dict[int, int] = {}
        self._early: dict[int, bool] = {}        # acknowledged before publish() returned the mid
        self._reconnected = threading.Event()
        self.connects = 0
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    @property
    def topic(self) -> str:
        return f"floodwatch/{self.station}/telemetry"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connects += 1
            if self.connects > 1:
                self._reconnected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._link_lost_at is None:
            self._link_lost_at = time.monotonic()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        ok = not reason_code.is_failure
        with self._lock:
            seq = self._mid_seq.pop(mid, None)
            if seq is None:
                self._early[mid] = ok
            else:
                self._settle(seq, ok)

    def _settle(self, seq: int, ok: bool) -> None:
        if ok:
            self.acked.add(seq)
            payload = self.pending.pop(seq, None)
            if self.replay_acked_s > 0 and payload is not None:
                now = time.monotonic()
                self._recent.append((now, seq, payload))
                while self._recent and self._recent[0][0] < now - 4 * self.replay_acked_s:
                    self._recent.pop(0)
        else:
            self.refused.add(seq)
            self.pending.pop(seq, None)

    def send(self, seq: int, payload: bytes, replay: bool = False) -> None:
        with self._lock:
            if seq in self.acked and not replay:
                return
            self.pending[seq] = payload
        info = self.client.publish(self.topic, payload, qos=1)
        with self._lock:
            if info.mid in self._early:
                self._settle(seq, self._early.pop(info.mid))
            else:
                self._mid_seq[info.mid] = seq

    def resend_if_reconnected(self) -> int:
        """After a reconnect, publish again everything the broker has not acknowledged."""
        if not self._reconnected.is_set():
            return 0
        self._reconnected.clear()
        with self._lock:
            again = sorted(self.pending.items())
            lost_at, self._link_lost_at = self._link_lost_at, None
            replay = [(seq, payload) for t, seq, payload in self._recent
                      if lost_at is not None and t >= lost_at - self.replay_acked_s]
        for seq, payload in again:
            self.send(seq, payload)
        for seq, payload in replay:
            self.send(seq, payload, replay=True)
        return len(again) + len(replay)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ResendingNodes:
    """Readings from a few stations, each station publishing as itself and re-sending until acknowledged."""

    def __init__(self, broker: ProductionBroker, stations: tuple[str, ...] = STATIONS,
                 replay_acked_s: float = 0.0) -> None:
        self.nodes = {s: _Node(broker.port, s, broker.credentials[s], replay_acked_s) for s in stations}
        self.resent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def readings(self, n: int, now_s: float) -> list[tuple[str, int, bytes]]:
        """``n`` distinct good readings over the stations, ten seconds apart, all in the past."""
        stations = list(self.nodes)
        out = []
        for i in range(n):
            ts_s = now_s - 10.0 * (n - i) - 1.0
            body = {"ts": round(ts_s, 3), "seq": i, "boot": 1, "water_level_m": round(0.5 + 0.001 * (i % 500), 4)}
            out.append((stations[i % len(stations)], i, json.dumps(body).encode()))
        return out

    def stream(self, readings: list[tuple[str, int, bytes]], rate_per_s: float) -> ResendingNodes:
        """Publish in a background thread at ``rate_per_s``; keeps re-sending after reconnects until stopped."""
        def run() -> None:
            period_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
            next_t = time.monotonic()
            for station, seq, payload in readings:
                if self._stop.is_set():
                    return
                self._resend()
                self.nodes[station].send(seq, payload)
                self.sent += 1
                next_t += period_s
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            while not self._stop.wait(0.05):
                self._resend()

        self._thread = threading.Thread(target=run, name="resending-nodes", daemon=True)
        self._thread.start()
        return self

    def _resend(self) -> None:
        for node in self.nodes.values():
            self.resent += node.resend_if_reconnected()

    def done_sending(self, total: int) -> bool:
        return self.sent >= total

    def acked(self) -> int:
        return sum(len(n.acked) for n in self.nodes.values())

    def refused(self) -> int:
        return sum(len(n.refused) for n in self.nodes.values())

    def wait_all_acked(self, total: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.acked() + self.refused() >= total:
                break
            time.sleep(0.05)
        return self.acked()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for node in self.nodes.values():
            node.close()


class IngestProcess:
    """``python -m floodwatch.cli.ingest`` logging in as the ingest account; SIGKILLable and restartable."""

    def __init__(self, folder: Path, broker: ProductionBroker, *, client_id: str = "ingest-1",
                 shared_group: str | None = None, db: Path | None = None) -> None:
        self.folder = Path(folder)
        self.broker = broker
        self.client_id = client_id
        self.shared_group = shared_group
        self.db = db or self.folder / "floodwatch.db"
        self.log_path = self.folder / f"{client_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        env = {
            **os.environ,
            "FLOODWATCH_MQTT__URL": self.broker.url,
            "FLOODWATCH_MQTT__USERNAME": INGEST_USER,
            "FLOODWATCH_MQTT__PASSWORD": self.broker.credentials[INGEST_USER],
            "FLOODWATCH_MQTT__CLIENT_ID": self.client_id,
            "FLOODWATCH_STORE__URL": f"sqlite:///{self.db}",
            "FLOODWATCH_STORE__SPOOL_PATH": str(self.folder / f"{self.client_id}.spool"),
        }
        args = [sys.executable, "-m", "floodwatch.cli.ingest", "--stats-every", "1"]
        if self.shared_group:
            args += ["--shared-group", self.shared_group]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        return self

    def log(self, since_start: bool = True) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset if since_start else 0:].decode(errors="replace")

    def subscriptions(self) -> int:
        """SUBACKs received by the current process (one per (re)connect)."""
        return self.log().count("event=mqtt_subscribed")

    def wait_subscribed(self, count: int = 1, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.subscriptions() >= count:
                return
            assert self.proc is not None and self.proc.poll() is None, self.log()[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"{self.client_id} did not subscribe {count} time(s): {self.log()[-3000:]}")

    def sessions_present(self) -> list[bool]:
        """``session_present`` of each connection of the current process, in order."""
        return [flag == "True" for flag in re.findall(r"event=mqtt_connected session_present=(\w+)", self.log())]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> int:
        """SIGTERM: stores and acknowledges what it has, then exits (a deploy, a restart)."""
        code = 0
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            code = self.proc.wait(20)
        self.proc = None
        return code


def stored_rows(db: Path) -> tuple[int, int]:
    """(rows, distinct (station, ts)) in the readings table, 0s before the file exists."""
    import sqlite3

    if not db.exists():
        return 0, 0
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return conn.execute("SELECT COUNT(*), COUNT(DISTINCT station || '@' || ts_s) FROM readings").fetchone()
        except sqlite3.OperationalError:
            return 0, 0


def wait_until(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


# -- the crashes ------------------------------------------------------------------------------------

def _settle(nodes: ResendingNodes, db: Path, total: int, timeout_s: float) -> tuple[int, int]:
    """Wait until the nodes have everything acknowledged and the store holds it (or time runs out)."""
    acked = nodes.wait_all_acked(total, timeout_s)
    # rows arrive steadily while ingest catches up; give up once they stop growing for a while
    last, still_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = stored_rows(db)[1]
        if rows >= acked:
            break
        if rows != last:
            last, still_since = rows, time.monotonic()
        elif time.monotonic() - still_since > 8.0:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # a late redelivery would show up now (it must not add rows)
    rows, distinct = stored_rows(db)
    return acked, distinct


def broker_killed_mid_stream(folder: Path, settings: Settings, *, autosave: list[str] | None = None,
                             workers: int = 1, n: int = 4000, rate_per_s: float = 400.0,
                             kill_after_s: float = 8.0, down_s: float = 1.0,
                             with_ingest: bool = False, replay_acked_s: float = 0.0) -> dict:
    """SIGKILL the broker ``kill_after_s`` after ingest subscribed, while nodes stream; restart it.

    ``with_ingest``: SIGKILL the ingest workers at the same moment (a power cut takes both) and
    restart them with the broker. ``replay_acked_s``: nodes re-send what was acknowledged that
    long before the link dropped (0: a plain QoS 1 publisher).
    """
    broker = ProductionBroker(folder, settings, autosave=autosave).start()
    group = "ingest" if workers > 1 else None
    ingests = [IngestProcess(folder, broker, client_id=f"ingest-{k}", shared_group=group).start()
               for k in range(1, workers + 1)]
    nodes = ResendingNodes(broker, replay_acked_s=replay_acked_s)
    try:
        for ingest in ingests:
            ingest.wait_subscribed()
        subscribed_at = time.monotonic()
        nodes.stream(nodes.readings(n, time.time()), rate_per_s)
        time.sleep(max(0.0, subscribed_at + kill_after_s - time.monotonic()))
        acked_at_kill = nodes.acked()
        if with_ingest:
            for ingest in ingests:
                ingest.kill()
        broker.kill()
        time.sleep(down_s)
        broker.start()
        if with_ingest:
            for ingest in ingests:
                ingest.start()
        for ingest in ingests:
            ingest.wait_subscribed(1 if with_ingest else 2)
        acked, stored = _settle(nodes, ingests[0].db, n, 60.0)
        sessions = [ingest.sessions_present()[-1] for ingest in ingests]
    finally:
        nodes.close()
        for ingest in ingests:
            ingest.stop()
        broker.stop()
    return {"published": acked, "stored": stored, "lost": acked - stored, "acked_at_kill": acked_at_kill,
            "session_present_after_restart": sessions, "resent_by_nodes": nodes.resent,
            "refused": nodes.refused(), "autosave": broker.autosave, "workers": workers}


def broker_killed_while_ingest_away(folder: Path, settings: Settings, *, autosave: list[str] | None = None,
                                    workers: int = 1, n: int = 1000, rate_per_s: float = 500.0,
                                    away_after_s: float = 2.0, replay_acked_s: float = 0.0) -> dict:
    """Ingest worker 1 stops for a deploy; the nodes go on; the broker is SIGKILLed; both come back."""
    broker = ProductionBroker(folder, settings, autosave=autosave).start()
    group = "ingest" if workers > 1 else None
    ingests = [IngestProcess(folder, broker, client_id=f"ingest-{k}", shared_group=group).start()
               for k in range(1, workers + 1)]
    nodes = ResendingNodes(broker, replay_acked_s=replay_acked_s)
    try:
        for ingest in ingests:
            ingest.wait_subscribed()
        time.sleep(away_after_s)
        ingests[0].stop()  # a deploy: graceful, its session (and subscription) stays at the broker
        nodes.stream(nodes.readings(n, time.time()), rate_per_s)
        acked_before_kill = nodes.wait_all_acked(n, 30.0)
        time.sleep(0.2)
        broker.kill()
        time.sleep(0.5)
        broker.start()
        ingests[0].start()
        for k, ingest in enumerate(ingests):
            ingest.wait_subscribed(1 if k == 0 else 2)
        acked, stored = _settle(nodes, ingests[0].db, n, 30.0)
        sessions = [ingest.sessions_present()[-1] for ingest in ingests]
    finally:
        nodes.close()
        for ingest in ingests:
            ingest.stop()
        broker.stop()
    return {"published": acked, "acked_before_kill": acked_before_kill, "stored": stored, "lost": acked - stored,
            "session_present_after_restart": sessions, "autosave": broker.autosave, "workers": workers}
