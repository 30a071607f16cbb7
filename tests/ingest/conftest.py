"""Fixtures for ingest tests: a real Mosquitto on a free port, settings pointing at tmp files."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

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
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited with {self.proc.returncode}")
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM): Mosquitto saves its persistence file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def make_settings(tmp_path: Path, broker_url: str, **mqtt: object) -> Settings:
    return load_settings(
        mqtt={"url": broker_url, "client_id": f"fw-test-{os.getpid()}-{time.monotonic_ns()}", **mqtt},
        store={"url": f"sqlite:///{tmp_path}/fw.db", "spool_path": str(tmp_path / "spool.db"),
               "busy_timeout_s": 0.2},
    )


@pytest.fixture
def settings(tmp_path: Path, broker: Broker) -> Settings:
    return make_settings(tmp_path, broker.url)
