"""A simulated village loudspeaker controller (หอกระจายข่าว): plays back what it is told, acknowledges it.

It speaks the loudspeaker contract of docs/mqtt-contract.md: it subscribes
(QoS 1, persistent session) to ``{prefix}/{site}/speaker/{id}/command``,
"plays" each command once per ``message_id`` (it records it, fetches the
spoken WAV when the command names one and checks it is a WAV of some
length), and answers on ``{prefix}/{site}/speaker/{id}/reply`` with
``{"message_id": ..., "status": "played"}``. A repeated command (floodwatch
retrying because an answer was lost) is acknowledged again, not played again.

:meth:`go_offline` drops the connection the way a power cut does (no
DISCONNECT); the broker keeps the session and queues commands, which arrive
and are played after :meth:`come_online`. Uses paho directly (it subscribes;
``_link.MqttLink`` only publishes).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from floodwatch.firmware_sim._link import parse_broker_url

log = logging.getLogger("firmware_sim.loudspeaker")


@dataclass(frozen=True, slots=True)
class Played:
    """One command as the controller played it."""

    message_id: str
    zone: str
    level: int
    level_name: str
    kind: str
    text_th: str
    siren: bool
    attempt: int
    received_wall_s: float
    audio_s: float | None       # length of the spoken file, None when the command had none
    audio_note: str             # why there was no audio ("" when there was)


def wav_seconds(data: bytes) -> float:
    """Length of a WAV file in seconds (ValueError when it is not one)."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            frames = len(w.readframes(w.getnframes())) // max(1, w.getsampwidth() * w.getnchannels())
            return frames / w.getframerate()
    except (wave.Error, EOFError, ZeroDivisionError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from exc


class LoudspeakerController:
    """One simulated controller on its own MQTT connection. Use as a context manager.

    Parameters
    ----------
    broker_url : str
        ``mqtt://HOST:PORT``.
    controller_id : str
        Its id in ``[[loudspeakers.controllers]]``; also its MQTT username on a locked-down broker.
    site, prefix : str
        ``settings.site.id`` and ``settings.mqtt.topic_prefix``.
    fetch_audio : bool
        Download the spoken WAV a command names (``audio_url``), as a real controller would.
    """

    def __init__(self, broker_url: str, controller_id: str, *, site: str = "lamphaya", prefix: str = "floodwatch",
                 username: str | None = None, password: str | None = None, fetch_audio: bool = True) -> None:
        self.controller_id = controller_id
        self.command_topic = f"{prefix}/{site}/speaker/{controller_id}/command"
        self.reply_topic = f"{prefix}/{site}/speaker/{controller_id}/reply"
        self.host, self.port = parse_broker_url(broker_url)
        self.fetch_audio = fetch_audio
        self.played: list[Played] = []
        self.acks_sent = 0
        self.duplicates = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"speaker-{controller_id}",
                                   protocol=mqtt.MQTTv311, clean_session=False)
        if username:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_disconnect = lambda *a: self._subscribed.clear()
        self._client.on_message = self._on_message
        self._offline = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> LoudspeakerController:
        self._client.connect_async(self.host, self.port, keepalive=20)
        self._client.loop_start()
        return self

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """True once subscribed to its command topic."""
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        if not self._offline:
            self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> LoudspeakerController:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def go_offline(self) -> None:
        """Power cut: the connection dies without DISCONNECT; the broker queues commands for later."""
        if self._offline:
            return
        self._offline = True
        self._subscribed.clear()
        sock = self._client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._client.disconnect()
        self._client.loop_stop()
        log.info("event=controller_offline id=%s", self.controller_id)

    def come_online(self) -> None:
        """Power back: reconnect to the same session and play what was queued meanwhile."""
        if not self._offline:
            return
        self._offline = False
        try:
            self._client.reconnect()
        except OSError as exc:
            log.warning("event=controller_reconnect_failed id=%s error=%s; retrying", self.controller_id, exc)
        self._client.loop_start()

    # ------------------------------------------------------------ behaviour
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("event=controller_refused id=%s reason=%s", self.controller_id, reason_code)
            return
        client.subscribe(self.command_topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        received = time.time()
        try:
            command = json.loads(msg.payload)
            message_id = str(command["message_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("event=controller_bad_command id=%s payload=%r", self.controller_id, msg.payload[:100])
            return
        with self._lock:
            repeat = message_id in self._seen
            self._seen.add(message_id)
        if repeat:
            with self._lock:
                self.duplicates += 1
            self._reply(message_id, "played", "already played; acknowledged again")
            return
        try:
            expired = datetime.fromisoformat(str(command["expires"])).timestamp() < received
        except (KeyError, ValueError):
            expired = False
        if expired:
            self._reply(message_id, "rejected", f"expired at {command['expires']}; not played")
            return
        audio_s, note = None, str(command.get("audio_note") or "")
        url = command.get("audio_url")
        if url and self.fetch_audio:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    audio_s = wav_seconds(response.read())
            except (OSError, urllib.error.URLError, ValueError) as exc:
                note = f"audio could not be played: {exc}"
        elif not url:
            note = note or "no audio: text for the announcer"
        played = Played(message_id, str(command.get("zone", "")), int(command.get("level", 0)),
                        str(command.get("level_name", "")), str(command.get("kind", "")),
                        str(command.get("text_th", "")), bool(command.get("siren", False)),
                        int(command.get("attempt", 1)), received, audio_s, note)
        with self._lock:
            self.played.append(played)
        log.info("event=controller_played id=%s message_id=%s level=%s siren=%s audio_s=%s text=%r",
                 self.controller_id, message_id, played.level_name, played.siren, audio_s, played.text_th[:80])
        detail = f"played {command.get('repeat', 1)} times" + (f", audio {audio_s:.1f} s" if audio_s else "")
        self._reply(message_id, "played", detail)

    def _reply(self, message_id: str, status: str, detail: str) -> None:
        body = {"message_id": message_id, "status": status, "detail": detail,
                "ts": datetime.now(UTC).isoformat(timespec="seconds")}
        self._client.publish(self.reply_topic, json.dumps(body), qos=1)
        with self._lock:
            self.acks_sent += 1

    def wait_played(self, count: int, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.played) >= count:
                    return True
            time.sleep(0.01)
        with self._lock:
            return len(self.played) >= count
