"""One MQTT connection that carries one node or many: the only module that imports paho.

A real station gets its own link, so the broker holds its last will
(``offline`` on its status topic). Synthetic load-test nodes share a few
links (MQTT has one will per connection, so they get none; they publish
``online``/``offline`` themselves).

QoS 1 publishes are bounded by a window of unacknowledged messages: paho
numbers them with 16-bit ids and refuses more than 65,535 in flight, and a
bounded window is what gives the fleet back-pressure instead of a growing
queue in memory.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

log = logging.getLogger("firmware_sim.link")

MAX_WINDOW = 60_000  # below paho's 65,535 message-id limit, with room for status messages
CONGESTED_HOLD_S = 0.2  # after the window stayed full, refuse at once for this long


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``tcp://``, or ``host:port``) -> (host, port).

    Raises
    ------
    ValueError
        With the expected form.
    """
    parsed = urlparse(url if "://" in url else f"mqtt://{url}")
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(
            f"broker URL {url!r} is not understood; use mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883"
        )
    return parsed.hostname, parsed.port or 1883


class MqttLink:
    """A paho client on its own network thread, with a bounded QoS 1 window.

    Parameters
    ----------
    broker_url : str
    client_id : str
    status_topics : list of str
        Status topics of the stations this link carries: ``online`` is
        published there (retained) on every (re)connect, ``offline`` on stop.
    will_topic : str, optional
        The last will (``offline``, retained, QoS 1) the broker publishes if
        this connection dies.
    window : int
        Unacknowledged QoS 1 publishes allowed at once.
    keepalive_s : int
        MQTT keepalive; the broker fires the will after 1.5 x this.
    reconnect_delay_s : (int, int)
        paho's reconnect back-off, minimum and maximum seconds.
    """

    def __init__(
        self,
        broker_url: str,
        client_id: str,
        status_topics: list[str] | None = None,
        will_topic: str | None = None,
        window: int = 1000,
        keepalive_s: int = 30,
        reconnect_delay_s: tuple[int, int] = (1, 4),
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW} unacknowledged publishes, got {window}")
        self.host, self.port = parse_broker_url(broker_url)
        self.client_id = client_id
        self.status_topics = list(status_topics or [])
        self.window = window
        self._slots = threading.BoundedSemaphore(window)
        self._connected = threading.Event()
        self._stopping = False
        self._cut = False
        self._suspended = False
        self.connects = 0
        self.disconnects = 0
        self.published = 0  # PUBACKs received
        self.window_full = 0  # publishes refused because the window stayed full
        self._congested_until = 0.0
        self._lock = threading.Lock()
        # Which acknowledged message ids hold a window slot. Never hold _lock
        # while calling paho: paho calls on_publish under its own mutex.
        self._window_mids: set[int] = set()
        self._status_mids: set[int] = set()  # status messages sit outside the window
        self._early_acks: set[int] = set()  # acked before publish() returned
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        # paho's own queue must never refuse what the window let through.
        self._client.max_inflight_messages_set(min(window, 65_535))
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(*reconnect_delay_s)
        if username:
            self._client.username_pw_set(username, password)
        if will_topic:
            self._client.will_set(will_topic, "offline", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._keepalive_s = keepalive_s

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after a loss."""
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish ``offline`` on every status topic, wait for the acks, disconnect cleanly."""
        if self._cut:
            return
        self.resume()
        self._stopping = True
        infos = []
        if self.connected:
            for topic in self.status_topics:
                infos.append(self._publish_status(topic, "offline"))
        deadline = time.monotonic() + timeout_s
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                break
        # Wait for the window to drain so no acknowledged reading is abandoned.
        while self.in_flight > 0 and time.monotonic() < deadline and self.connected:
            time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def cut(self) -> None:
        """Simulate a power cut: the TCP connection dies without DISCONNECT.

        The broker then publishes this link's last will (``offline``). The
        link is dead afterwards; :meth:`stop` does nothing more.
        """
        self._stopping = True
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            # The link is TCP or TLS (paho types it as any socket-like; only real sockets shut down).
            if isinstance(sock, socket.socket):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            sock.close()
        self._connected.clear()
        self._cut = True

    def suspend(self) -> None:
        """The modem loses the network: the connection dies without DISCONNECT (the will fires).

        Unlike :meth:`cut` the link can :meth:`resume`; paho keeps the
        unacknowledged messages and re-sends them after the reconnect.
        Returns at once: the network thread notices the dead socket and ends.
        """
        if self._suspended or self._cut:
            return
        self._suspended = True
        self._connected.clear()
        sock = self._client.socket()
        # The link is TCP or TLS (paho types it as any socket-like; only real sockets shut down).
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the DISCONNECT below cannot go out
            except OSError:
                pass
        # Marks the client as disconnecting so paho's loop ends instead of reconnecting.
        self._client.disconnect()
        self.disconnects += 1
        log.info("event=link_suspended client=%s", self.client_id)

    def resume(self) -> None:
        """The network is back: reconnect (paho keeps retrying in the background if it fails)."""
        if not self._suspended:
            return
        self._client.loop_stop()  # the old network thread has ended or ends now
        self._suspended = False
        try:
            self._client.reconnect()
        except OSError as exc:
            log.warning("event=reconnect_failed client=%s error=%s; retrying in the background",
                        self.client_id, exc)
        self._client.loop_start()

    # ------------------------------------------------------------ publishing
    @property
    def in_flight(self) -> int:
        return self.window - self._slots._value

    def publish(self, topic: str, payload: bytes | str, retain: bool = False,
                timeout_s: float = 0.5) -> bool:
        """QoS 1 publish within the window.

        Returns False, having sent nothing, when the link is down or the
        window stayed full for ``timeout_s``: the caller keeps the data
        (store and forward). After such a wait the link answers False at
        once for ``CONGESTED_HOLD_S``, so one slow broker does not stall a
        scheduler with thousands of nodes. True means paho owns the message
        and will deliver it, across reconnects if need be.
        """
        if not self.connected or self._stopping:
            return False
        wait_s = timeout_s if time.monotonic() >= self._congested_until else 0.0
        if not self._slots.acquire(timeout=wait_s):
            self._congested_until = time.monotonic() + CONGESTED_HOLD_S
            self.window_full += 1
            return False
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # NO_CONN still queues the message in paho (sent on reconnect);
            # anything else was refused and is still ours.
            self._slots.release()
            return False
        self._track(info.mid, self._window_mids)
        return True

    # ------------------------------------------------------------ callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("event=connect_refused client=%s reason=%s", self.client_id, reason_code)
            return
        self.connects += 1
        for topic in self.status_topics:
            # Status messages bypass the window: few, and must go first.
            self._publish_status(topic, "online")
        self._connected.set()
        log.info("event=connected client=%s broker=%s:%s connects=%d", self.client_id, self.host,
                 self.port, self.connects)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stopping and not self._suspended:
            self.disconnects += 1
            log.warning("event=link_lost client=%s reason=%s in_flight=%d", self.client_id,
                        reason_code, self.in_flight)

    def _publish_status(self, topic: str, status: str):
        info = self._client.publish(topic, status, qos=1, retain=True)
        self._track(info.mid, self._status_mids)
        return info

    def _track(self, mid: int, kind: set[int]) -> None:
        with self._lock:
            if mid in self._early_acks:
                self._early_acks.discard(mid)
                early = True
            else:
                kind.add(mid)
                early = False
        if early:
            self._acknowledged(kind is self._window_mids)

    def _acknowledged(self, in_window: bool) -> None:
        if in_window:
            with self._lock:
                self.published += 1
            self._slots.release()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._window_mids:
                self._window_mids.discard(mid)
                in_window = True
            elif mid in self._status_mids:
                self._status_mids.discard(mid)
                in_window = False
            else:
                self._early_acks.add(mid)
                return
        self._acknowledged(in_window)
