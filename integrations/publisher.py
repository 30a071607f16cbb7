"""The state publisher: retained MQTT state and Home Assistant discovery, after the alerts in the data flow.

It reads what the other stages decided (newest readings, the alert service's
station and zone levels, the latest forecast) and keeps, on the broker,
retained JSON per station and per zone (:mod:`integrations.state`) plus Home
Assistant discovery messages (:mod:`integrations.homeassistant`). Node-RED, Home
Assistant and village controllers subscribe and always have the current
picture, even right after they (re)connect.

Threads: the callbacks (:meth:`on_readings`, :meth:`on_forecast`,
:meth:`on_status`, :meth:`on_decisions`) only note what changed and wake the
publisher's own thread, so ingest and alerts never wait on this broker
connection; that thread publishes what :func:`integrations.state.worth_publishing`
lets through, at most every ``COALESCE_S``, and looks again every ``TICK_S``
(the alert service lowers levels on its own timer, and ``refresh_s`` must be
kept). paho's own thread reconnects; on every (re)connect everything is
published again (discovery, ``online``, all state), so a broker that lost its
retained messages is repaired.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from floodwatch import metrics
from floodwatch.errors import ConfigError
from floodwatch.integrations import homeassistant
from floodwatch.integrations.state import (
    Latest,
    station_state,
    station_topic,
    status_topic,
    worth_publishing,
    zone_state,
    zone_topic,
)
from floodwatch.vocabulary import QcFlag, Reading

if TYPE_CHECKING:
    from floodwatch.clock import Clock
    from floodwatch.settings import Settings

log = logging.getLogger(__name__)

COALESCE_S = 0.5
TICK_S = 15.0
USABLE = (QcFlag.PASS, QcFlag.NOT_EVALUATED)

metrics.describe("floodwatch_state_published_total", "counter", "retained state messages published, by kind")


def _broker(url: str) -> tuple[str, int, bool]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"mqtt_state url {url!r} should look like mqtt://host:1883 or mqtts://host:8883")
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls


class StatePublisher:
    """Retained station and zone state on the broker, for anything that speaks MQTT.

    Parameters
    ----------
    settings : floodwatch.settings.Settings
        ``mqtt_state`` says where and as whom; ``mqtt.topic_prefix`` and ``site.id`` the topics.
    clock : floodwatch.clock.Clock
    alerts : alerts.AlertService, optional
        Its ``station_levels()`` and ``zone_levels()`` give the level of danger.
    forecasts : scheduler.ForecastJob, optional
        Its ``latest()`` gives the forecast peak (also handed in by :meth:`on_forecast`).
    store : store.base.Store, optional
        Read once at start for each station's newest reading.
    """

    def __init__(self, settings: Settings, clock: Clock, *, alerts: Any = None, forecasts: Any = None,
                 store: Any = None) -> None:
        self.settings = settings
        self.cfg = settings.mqtt_state
        self.clock = clock
        self.alerts = alerts
        self.forecasts = forecasts
        self.store = store
        # Our own gauges only, as in discovery (integrations/homeassistant.py).
        self._stations = {s.id: s for s in settings.own_stations}
        self._latest: dict[str, Latest] = {}
        self._rain: dict[str, deque[tuple[float, float]]] = {s.id: deque() for s in settings.rain_stations
                                                              if not s.external}
        self._online: dict[str, bool] = {}
        self._issued: Any = None
        self._published: dict[str, tuple[dict[str, Any], float]] = {}  # topic -> (payload, when)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._force = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self.published = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> StatePublisher:
        host, port, tls = _broker(self.cfg.url or self.settings.mqtt.url)
        client_id = f"{self.cfg.client_id}-{self.settings.site.id}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if self.cfg.username:
            client.username_pw_set(self.cfg.username,
                                   self.cfg.password.get_secret_value() if self.cfg.password else None)
        if tls:
            client.tls_set(ca_certs=str(self.cfg.ca_file) if self.cfg.ca_file else None)
        # If floodwatch dies, consumers see "offline" here (Home Assistant marks every entity unavailable).
        client.will_set(status_topic(self.settings), "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._seed()
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self._thread = threading.Thread(target=self._loop, name="state-publisher", daemon=True)
        self._thread.start()
        log.info("event=state_publisher_start broker=%s:%d user=%s", host, port, self.cfg.username or "-")
        return self

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self) -> None:
        """Say ``offline`` (retained) and disconnect; the retained state stays for consumers."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._client is not None:
            if self._connected.is_set():
                info = self._client.publish(status_topic(self.settings), "offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(3)
                except (RuntimeError, ValueError):
                    pass
            self._client.disconnect()
            self._client.loop_stop()

    def _seed(self) -> None:
        if self.store is None:
            return
        try:
            newest = self.store.latest(list(self._stations))
        except Exception as exc:  # the state appears with the first reading instead
            log.warning("event=state_seed_failed error=%s", exc)
            return
        self.on_readings(list(newest.values()))

    # ------------------------------------------------------------ callbacks
    def on_readings(self, readings: list[Reading]) -> None:
        """Readings ingest just stored (any thread); only usable ones (QC pass, not yet judged) count."""
        with self._lock:
            for r in readings:
                station = self._stations.get(r.station_id)
                if station is None or r.qc_flag not in USABLE:
                    continue
                old = self._latest.get(r.station_id)
                if old is not None and r.ts_s < old.ts_s:
                    continue
                if station.kind == "rain":
                    window = self._rain[r.station_id]
                    if r.rain_mm is not None:
                        window.append((r.ts_s, r.rain_mm))
                    while window and window[0][0] <= r.ts_s - 3600.0:
                        window.popleft()
                    self._latest[r.station_id] = Latest(r.ts_s, r.rain_mm, r.qc_flag, r.battery_v,
                                                        sum(mm for _, mm in window))
                elif r.water_level_m is not None:
                    self._latest[r.station_id] = Latest(r.ts_s, r.water_level_m, r.qc_flag, r.battery_v)
        self._wake.set()

    def on_forecast(self, issued: Any) -> None:
        with self._lock:
            self._issued = issued
        self._wake.set()

    def on_status(self, station_id: str, status: str, ts_s: float) -> None:
        with self._lock:
            self._online[station_id] = status == "online"
        self._wake.set()

    def on_decisions(self, decisions: list[dict[str, Any]], zones_changed: list[str]) -> None:
        """``AlertService.add_decision_listener``: an alert decided or a zone's state changed."""
        self._wake.set()

    # --------------------------------------------------------------- mqtt
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("event=state_connect_refused reason=%s fix=%s", reason_code,
                      "check mqtt_state.username/password (the floodwatch-state account of `floodwatch mqtt-config`)")
            return
        client.publish(status_topic(self.settings), "online", qos=1, retain=True)
        if self.cfg.home_assistant:
            for topic, payload in homeassistant.discovery_messages(self.settings):
                client.publish(topic, payload, qos=1, retain=True)
        self._connected.set()
        self._force.set()
        self._wake.set()
        log.info("event=state_connected")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("event=state_disconnected reason=%s; paho reconnects", reason_code)

    # ---------------------------------------------------------------- loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            if self._stop.is_set():
                return
            self._wake.clear()
            if self._connected.is_set():
                try:
                    self.publish_changed(force=self._force.is_set())
                    self._force.clear()
                except Exception:
                    log.exception("event=state_publish_failed; trying again at the next change")
            self._stop.wait(COALESCE_S)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every station's and zone's state as it would be published now: {topic: payload}."""
        now_s = self.clock.now_s()
        levels: dict[str, dict[str, Any]] = {}
        zones: dict[str, dict[str, Any]] = {}
        if self.alerts is not None:
            levels = dict(self.alerts.station_levels())
            zones = dict(self.alerts.zone_states())
        with self._lock:
            latest = dict(self._latest)
            online = dict(self._online)
            issued = self._issued
        if issued is None and self.forecasts is not None:
            issued = self.forecasts.latest()
        out: dict[str, dict[str, Any]] = {}
        for sid, station in self._stations.items():
            info = levels.get(sid)
            node_online = online.get(sid, info.get("online") if info else None)
            out[station_topic(self.settings, sid)] = station_state(station, latest.get(sid), info, issued,
                                                                  node_online, now_s)
        for zone in self.settings.zones:
            z = zones.get(zone.id, {})
            out[zone_topic(self.settings, zone.id)] = zone_state(zone.id, zone.name_th, zone.name_en,
                                                                 int(z.get("level", 0)), z.get("since_s"), now_s)
        return out

    def publish_changed(self, force: bool = False) -> int:
        """Publish every state worth publishing (all of them with ``force``); returns how many."""
        client = self._client
        if client is None:
            return 0
        now_s = self.clock.now_s()
        count = 0
        for topic, payload in self.snapshot().items():
            old = self._published.get(topic)
            if not force and not worth_publishing(old[0] if old else None, payload, self.cfg,
                                                  old[1] if old else None, now_s):
                continue
            info = client.publish(topic, json.dumps(payload, ensure_ascii=False), qos=1, retain=True)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("event=state_publish_refused topic=%s rc=%s", topic, info.rc)
                continue
            self._published[topic] = (payload, now_s)
            metrics.inc("floodwatch_state_published_total", kind=topic.split("/")[-2])
            count += 1
        self.published += count
        if count:
            log.debug("event=state_published messages=%d", count)
        return count

