"""Helpers for ingest tests: a restartable real Mosquitto, a node-like publisher, row counts."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import threading
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from floodwatch.settings import Settings, load_settings

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real Mosquitto with persistence, restartable on the same port and data folder."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1\n"
            "log_dest none\n"
            # Started as root, Mosquitto would switch to user 'mosquitto' and
            # silently fail to write its persistence file in our tmp folder.
            f"user {getpass.getuser()}\n"
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError as err:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited with {self.proc.returncode}") from err
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM): Mosquitto saves its persistence file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def make_settings(tmp_path: Path, broker_url: str, **mqtt: object) -> Settings:
    return load_settings(
        mqtt={"url": broker_url, "client_id": f"fw-test-{os.getpid()}-{time.monotonic_ns()}", **mqtt},
        store={"url": f"sqlite:///{tmp_path}/fw.db", "spool_path": str(tmp_path / "spool.db"),
               "busy_timeout_s": 0.2},
    )


def telemetry(n: int, now_s: float, stations: tuple[str, ...] = ("LP-W01", "LP-W02", "LP-W03", "LP-W04"),
              prefix: str = "floodwatch") -> list[tuple[str, bytes]]:
    """``n`` distinct good readings spread over ``stations``, oldest first, all in the past."""
    msgs = []
    for i in range(n):
        station = stations[i % len(stations)]
        ts_s = now_s - 10.0 * (n - i) - 1.0
        body = {"ts": round(ts_s, 3), "seq": i, "boot": 1, "water_level_m": round(0.5 + 0.001 * (i % 500), 4),
                "battery_v": 3.9}
        msgs.append((f"{prefix}/{station}/telemetry", json.dumps(body).encode()))
    return msgs


class Publisher:
    """A node-like QoS 1 publisher that survives a broker restart (persistent MQTT v5 session)."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.acked: set[int] = set()
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.acked.add(mid)

    def publish(self, msgs: list[tuple[str, bytes]], pause_every: int = 0, pause_s: float = 0.0) -> None:
        for i, (topic, body) in enumerate(msgs):
            self.infos.append(self.client.publish(topic, body, qos=1))
            if pause_every and i % pause_every == pause_every - 1:
                time.sleep(pause_s)

    def wait_all_acked(self, timeout_s: float = 20.0) -> int:
        # PUBACKs are counted by message id (on_publish): a message published
        # while the broker was down is queued by paho and resent on reconnect,
        # but its MQTTMessageInfo keeps the "not connected" code.
        want = {info.mid for info in self.infos}
        assert len(want) == len(self.infos), "more messages than message ids; publish fewer per test"
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                missing = len(want - self.acked)
            if not missing:
                return len(self.infos)
            if time.monotonic() > deadline:
                raise AssertionError(f"publisher: {missing} messages never acknowledged by the broker")
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def count_rows(db_path: Path) -> tuple[int, int]:
    """(rows, distinct (station, ts)) in the readings table, read straight from the file."""
    with sqlite3.connect(db_path, timeout=5) as db:
        return db.execute("SELECT COUNT(*), COUNT(DISTINCT station || '@' || ts_s) FROM readings").fetchone()


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
