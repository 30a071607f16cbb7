"""Another floodwatch site's gauges over MQTT, read-only (Nakhon Chai Si reading Lam Phaya).

Both sides say so in their configuration: the owner lists the stations a
peer may read under ``[[peers]]`` (``floodwatch mqtt-config`` turns that into
a broker account ``peer-<site>`` that may read exactly those stations'
telemetry and publish nothing); the reader lists them as external stations
with ``feed = "<this feed>"``, the owner's calibration (``sensor``,
``mount_height_m``) and warning levels.

Durable like ingest: a persistent MQTT session (clean start off), QoS 1, and
acknowledgements only after the readings are stored and synced, so the
owner's broker keeps what arrived while this site was down and hands it over
when it reconnects (the cursor is the broker session). paho's callbacks only
queue; the scheduled run parses each message exactly as ingest parses a
node's (:func:`~floodwatch.ingest.payload.parse_message`), QCs, stores, then
acknowledges.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from floodwatch.errors import ConfigError, FeedError
from floodwatch.feeds._health import RunReport

if TYPE_CHECKING:
    from floodwatch.clock import Clock
    from floodwatch.feeds._state import FeedState
    from floodwatch.feeds._writer import FeedWriter
    from floodwatch.settings import FeedConfig, Settings

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86_400
MAX_PER_RUN = 5000


class _Msg(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_s: float


class PeerFeed:
    """Subscribe to a peer site's shared stations; store what arrives on each scheduled run."""

    kind = "floodwatch_mqtt"

    def __init__(self, cfg: FeedConfig, settings: Settings, writer: FeedWriter, state: FeedState,
                 clock: Clock) -> None:
        self.cfg = cfg
        self.settings = settings
        self.writer = writer
        self.state = state
        self.clock = clock
        self.stations = [s for s in settings.stations if s.feed == cfg.id]
        # topic station id (the peer's) -> our registry id
        self.local_id = {(s.feed_station or s.id): s.id for s in self.stations}
        self._queue: queue.SimpleQueue[_Msg] = queue.SimpleQueue()
        self._held: list[_Msg] = []  # parsed but not yet stored (the store was away): retried first
        self._generation = 0
        self._connected = threading.Event()
        self._refused: list[str] = []
        self._client: mqtt.Client | None = None
        self._last_message_s: float | None = None

    # ------------------------------------------------------------- topics
    def topics(self) -> list[str]:
        prefix, site = self.cfg.topic_prefix, self.cfg.site
        out = []
        for peer_id in self.local_id:
            out.append(f"{prefix}/{site}/{peer_id}/telemetry")
            if self.cfg.single_site_topics:
                out.append(f"{prefix}/{peer_id}/telemetry")
        return out

    def _peer_station(self, topic: str) -> str | None:
        parts = topic.split("/")
        if len(parts) == 4 and parts[0] == self.cfg.topic_prefix and parts[1] == self.cfg.site:
            return parts[2]
        if self.cfg.single_site_topics and len(parts) == 3 and parts[0] == self.cfg.topic_prefix:
            return parts[1]
        return None

    # ---------------------------------------------------------- lifecycle
    def start(self) -> None:
        url = urlparse(self.cfg.url or "")
        if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not url.hostname:
            raise ConfigError(f"feed {self.cfg.id!r}: url {self.cfg.url!r} should look like mqtts://host:8883")
        tls = url.scheme in ("mqtts", "ssl")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"floodwatch-peer-{self.settings.site.id}-{self.cfg.id}",
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if self.cfg.username:
            password = os.environ.get(self.cfg.password_env or "", "") or None
            if self.cfg.password_env and password is None:
                log.error("event=peer_password_missing feed=%s fix=%s", self.cfg.id,
                          f"set the environment variable {self.cfg.password_env} to the password "
                          f"`floodwatch mqtt-config` made for {self.cfg.username} on the peer's broker")
            client.username_pw_set(self.cfg.username, password)
        if tls:
            client.tls_set(ca_certs=str(self.cfg.ca_file) if self.cfg.ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(url.hostname, url.port or (8883 if tls else 1883), keepalive=30, clean_start=False,
                             properties=props)
        client.loop_start()
        self._client = client
        log.info("event=peer_feed_start feed=%s broker=%s topics=%s", self.cfg.id, url.netloc, self.topics())

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    # --------------------------------------------------------- paho side
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("event=peer_connect_refused feed=%s reason=%s fix=%s", self.cfg.id, reason_code,
                      "check the feed's username and the password in its password_env")
            return
        self._generation += 1
        client.subscribe([(t, mqtt.SubscribeOptions(qos=1)) for t in self.topics()])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        topics = self.topics()
        self._refused = [t for t, rc in zip(topics, reason_codes, strict=False) if rc.is_failure]
        if self._refused:
            log.error("event=peer_subscribe_refused feed=%s topics=%s fix=%s", self.cfg.id, self._refused,
                      f"the peer site {self.cfg.site!r} must list these stations under [[peers]] for "
                      f"{self.settings.site.id!r} and regenerate its broker ACL (floodwatch mqtt-config)")
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Msg(msg.topic, msg.payload, msg.mid, msg.qos, self._generation, self.clock.now_s()))

    # ----------------------------------------------------------- the run
    def run_once(self) -> RunReport:
        now_s = self.clock.now_s()
        report = RunReport()
        batch = self._held
        self._held = []
        while len(batch) < MAX_PER_RUN:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        payloads: list[tuple[str, bytes]] = []
        for m in batch:
            peer_id = self._peer_station(m.topic)
            local = self.local_id.get(peer_id or "")
            if local is None:
                report.problem(now_s, "unexpected_topic", f"message on {m.topic!r}, which names no station of this "
                               "feed; it is ignored")
                continue
            payloads.append((local, m.payload))
        if batch:
            try:
                outcome = self.writer.write_payloads(payloads, now_s, self.writer.tips)
            except FeedError:
                self._held = batch  # not acknowledged: stored on a later run (or redelivered after a restart)
                raise
            self._ack(batch)
            self._last_message_s = max(m.received_s for m in batch)
            report.fetched = len(batch)
            report.stored = len(outcome.stored)
            report.duplicates = outcome.duplicates
            report.rejected = len(outcome.rejected)
            for err in outcome.rejected:
                report.problem(now_s, err.reason, err.detail, err.station_id)
            for r in outcome.stored:
                report.last_data_s[r.station_id] = max(report.last_data_s.get(r.station_id, r.ts_s), r.ts_s)
        if self._refused:
            report.ok = False
            from floodwatch.feeds._health import Problem

            report.error = Problem(now_s, "subscribe_refused",
                                   f"the peer's broker refused {', '.join(self._refused)}; the peer site must list "
                                   "these stations under [[peers]] and regenerate its ACL")
        elif self._client is not None and not self._connected.is_set():
            report.ok = False
            from floodwatch.feeds._health import Problem

            report.error = Problem(now_s, "unreachable", f"not connected to the peer's broker {self.cfg.url}; "
                                   "paho keeps reconnecting (the broker keeps our session meanwhile)")
        return report

    def _ack(self, batch: list[_Msg]) -> None:
        client = self._client
        if client is None:
            return
        for m in batch:
            # A message from before a reconnect carries a stale packet id: the broker redelivers it instead.
            if m.qos > 0 and m.generation == self._generation:
                client.ack(m.mid, m.qos)
