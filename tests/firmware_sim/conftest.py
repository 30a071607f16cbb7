"""Fixtures for the simulator tests: a real Mosquitto that can be stopped and restarted on its port,
and a plain paho subscriber that records what arrived."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from floodwatch.settings import load_settings

MOSQUITTO = "/usr/sbin/mosquitto"


def _free_port() -> int:
    """A free port below the ephemeral range.

    A client reconnecting in a loop to a stopped broker's ephemeral port can,
    by TCP simultaneous open, connect to itself and hold the port, so the
    restarted broker cannot bind it. Ports below the ephemeral range are
    never picked as client source ports.
    """
    low, _ = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, max(20_001, low))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class MosquittoProcess:
    """``/usr/sbin/mosquitto -c <conf>`` on a fixed loopback port, stoppable and restartable.

    ``persistence=True`` keeps sessions across a restart (saved on SIGTERM),
    so a subscriber's queued QoS 1 messages survive the broker going away.
    """

    def __init__(self, workdir: Path, persistence: bool = False) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 0"]
        else:
            lines += ["persistence false"]
        if os.geteuid() == 0:
            # As root Mosquitto drops to its own user, which cannot write our tmp folder.
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while not _listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path):
    b = MosquittoProcess(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path):
    b = MosquittoProcess(tmp_path / "mosquitto-persistent", persistence=True)
    b.start()
    yield b
    b.stop()


class Recorder:
    """A plain paho subscriber (QoS 1) that records every telemetry reading and status message.

    With ``client_id`` and ``clean_session=False`` the broker keeps its
    subscription and queues messages while it is disconnected.
    """

    def __init__(self, port: int, topic: str = "floodwatch/#", client_id: str = "",
                 clean_session: bool = True, username: str | None = None, password: str | None = None) -> None:
        self.messages: list[tuple[str, dict | str]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=clean_session)
        self.client.reconnect_delay_set(1, 1)
        if username:
            self.client.username_pw_set(username, password)
        self.topic = topic
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "the test subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        text = msg.payload.decode()
        body = json.loads(text) if msg.topic.endswith("/telemetry") else text
        with self.lock:
            self.messages.append((msg.topic, body))

    def readings(self, station_id: str) -> list[dict]:
        """Every reading of one station in arrival order, batches unpacked."""
        out: list[dict] = []
        with self.lock:
            for topic, body in self.messages:
                if topic != f"floodwatch/{station_id}/telemetry":
                    continue
                out.extend(body["readings"] if "readings" in body else [body])
        return out

    def telemetry_messages(self) -> list[tuple[str, dict]]:
        with self.lock:
            return [(t, b) for t, b in self.messages if t.endswith("/telemetry")]

    def statuses(self, station_id: str) -> list[str]:
        with self.lock:
            return [b for t, b in self.messages if t == f"floodwatch/{station_id}/status"]

    def wait_for(self, predicate, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def settings():
    return load_settings()
