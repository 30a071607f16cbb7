"""A local MQTT broker for the demo and the tests: Mosquitto if installed, amqtt otherwise.

Mosquitto is the real thing (MQTT 5, shared subscriptions, persistent
sessions). amqtt is a pure-Python fallback for a laptop without Mosquitto:
MQTT 3.1.1 only and about 1,000-2,300 messages/s, enough for a demo.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class DemoExtrasMissing(RuntimeError):
    """The demo's own parts (a broker, the LINE stand-in) are not installed: a production install."""


DEMO_EXTRAS_HINT = ("the demo's LINE stand-in and pure-Python broker are not installed (a production install "
                    "leaves them out): pip install 'floodwatch[demo]', or run scripts/demo from a checkout")


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if nothing listens there, else any free loopback port."""
    if preferred is not None and not port_open("127.0.0.1", preferred):
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", preferred))
                return preferred
        except OSError:
            pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing is listening on {host}:{port} after {timeout_s:.0f} s")


def find_mosquitto() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("mosquitto")


def mosquitto_config(port: int, data_dir: Path, *, persistence: bool = True) -> str:
    """A loopback-only configuration for development and tests.

    ``max_queued_messages`` is raised from Mosquitto's default of 1000 per
    client, which silently drops QoS 1 messages for a slow subscriber.
    """
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "max_queued_messages 1000000",
        "max_inflight_messages 1000",
        "persistent_client_expiration 2d",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    if persistence:
        lines += ["persistence true", f"persistence_location {data_dir}/", "autosave_interval 5"]
    if os.geteuid() == 0:
        # As root Mosquitto drops to its own user, which cannot write a private data folder.
        lines.append("user root")
    return "\n".join(lines) + "\n"


class LocalBroker:
    """Starts a broker on 127.0.0.1 and stops it; ``url`` is what clients connect to."""

    def __init__(self, data_dir: Path, port: int | None = None, *, prefer: str = "mosquitto") -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port(port)
        self.prefer = prefer
        self.kind = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._amqtt_thread: threading.Thread | None = None
        self._amqtt_loop: asyncio.AbstractEventLoop | None = None
        self._amqtt_broker = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalBroker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = find_mosquitto() if self.prefer == "mosquitto" else None
        if binary:
            self._start_mosquitto(binary)
        else:
            self._start_amqtt()
        wait_for_port("127.0.0.1", self.port)
        log.info("broker started kind=%s url=%s", self.kind, self.url)

    def _start_mosquitto(self, binary: str) -> None:
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(mosquitto_config(self.port, self.data_dir))
        log_file = open(self.data_dir / "mosquitto.log", "ab")
        self._process = subprocess.Popen([binary, "-c", str(conf)], stdout=log_file, stderr=log_file)
        self.kind = "mosquitto"

    def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise DemoExtrasMissing("Mosquitto is not installed and neither is the pure-Python broker: install "
                                    "Mosquitto (apt-get install mosquitto) or pip install 'floodwatch[demo]'") from exc

        # amqtt logs every state transition and each port probe as an error.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        logging.getLogger("transitions").setLevel(logging.WARNING)

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                "amqtt.plugins.sys.broker.BrokerSysPlugin": {"sys_interval": 0},
            },
        }
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._amqtt_loop = loop
            asyncio.set_event_loop(loop)
            self._amqtt_broker = Broker(config, loop=loop)
            loop.run_until_complete(self._amqtt_broker.start())
            ready.set()
            loop.run_forever()

        self._amqtt_thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._amqtt_thread.start()
        if not ready.wait(10):
            raise RuntimeError("the amqtt fallback broker did not start within 10 s")
        self.kind = "amqtt"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._amqtt_loop is not None and self._amqtt_broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._amqtt_broker.shutdown(), self._amqtt_loop)
            try:
                fut.result(5)
            except Exception:  # a broker that fails to shut down cleanly is still stopped below
                log.warning("amqtt broker did not shut down cleanly")
            self._amqtt_loop.call_soon_threadsafe(self._amqtt_loop.stop)
            if self._amqtt_thread is not None:
                self._amqtt_thread.join(5)
            self._amqtt_loop = None
