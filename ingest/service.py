"""The ingest shell: paho in, durable batches out, acknowledgements only after the write.

Threads:

- paho's network thread runs :meth:`IngestService._on_message`, which only
  puts ``(topic, payload, mid, qos, generation)`` on a queue: the broker
  connection never waits for validation or the disk.
- one writer thread takes whatever is queued (up to ``store.batch_size``),
  validates and converts it (:mod:`ingest.payload`), QC-flags it
  (:mod:`ingest.checker`), commits it in one transaction (or to the spool
  when the store is unavailable) and calls ``on_stored``. When the queue is
  empty it flushes at once: there is no batch timer, so an idle system
  stores a lone reading in about a millisecond.
- one acknowledger thread makes the commits power-safe (``store.sync()``,
  one fsync for every batch committed since the last one: group commit) and
  only then sends the PUBACKs, in the order the messages arrived. The writer
  goes on with the next batch meanwhile.

The MQTT session is persistent (MQTT v5, clean start off, session expiry
``mqtt.session_expiry_s``), subscriptions are QoS 1, and paho's automatic
acknowledgement is off (``manual_ack=True``): the broker keeps a message until
its PUBACK, which is sent after the reading is on disk. A crash before that
means redelivery, and the store's keys make redelivery harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from floodwatch.logs import redact_url
from floodwatch import metrics
from floodwatch.errors import ConfigError, PayloadError, StoreError, StoreUnavailable
from floodwatch.vocabulary import Reading, StationId
from floodwatch.ingest.checker import QcChecker
from floodwatch.ingest.payload import QUARANTINE_PAYLOAD_BYTES, TipCounters, parse_message, station_from_topic
from floodwatch.ingest.spool import Spool
from floodwatch.store.base import Rejection

if TYPE_CHECKING:
    from floodwatch.clock import Clock
    from floodwatch.settings import Settings
    from floodwatch.store.base import Store

log = logging.getLogger(__name__)

OnStored = Callable[[list[Reading]], None]
OnStatus = Callable[[StationId, str, float], None]

SEED_HISTORY_S = 7 * 3600.0
RETENTION_EVERY_S = 3600.0
SPOOL_RETRY_S = 0.5
SPOOL_RETRY_MAX_S = 5.0
SUBSCRIBE_CHUNK = 200
_STOP = object()

metrics.describe("floodwatch_readings_ingested_total", "counter", "readings stored by ingest")
metrics.describe("floodwatch_readings_rejected_total", "counter", "payloads or readings refused, by reason")
metrics.describe("floodwatch_readings_duplicate_total", "counter", "readings dropped as already stored")
metrics.describe("floodwatch_last_reading_age_seconds", "gauge", "age of the newest reading per station")
metrics.describe("floodwatch_ingest_messages_received_total", "counter",
                 "MQTT messages this worker received, by kind (telemetry, status); with a shared subscription "
                 "the workers' telemetry counts add up to what the nodes published")
metrics.describe("floodwatch_ingest_messages_redelivered_total", "counter",
                 "messages the broker flagged as redelivered (DUP): sent before, not acknowledged")
metrics.describe("floodwatch_ingest_lag_seconds", "histogram",
                 "seconds from a reading's arrival from the broker to its durable write in the store")


class _Msg(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_s: float
    dup: bool = False


def spool_path(settings: "Settings") -> str:
    """The spool file: ``store.spool_path``, else beside the SQLite file, else var/ingest-spool.db in the data dir."""
    if settings.store.spool_path:
        return settings.store.spool_path
    if settings.store.url.startswith("sqlite:///"):
        return settings.store.url[len("sqlite:///"):] + ".spool"
    return str(settings.data_dir / "var" / "ingest-spool.db")


def _parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"mqtt url {redact_url(url)!r} should look like mqtt://host:1883 or mqtts://host:8883")
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls


class IngestService:
    """Subscribe to every station's telemetry and status, store readings exactly once.

    Parameters
    ----------
    settings, store, clock : the process's settings, an open store, its clock.
    on_stored : called from the writer thread with the readings newly stored
        (duplicates left out) after each durable write.
    on_status : called with (station_id, "online" | "offline", clock time s)
        for each status message.
    """

    def __init__(
        self,
        settings: "Settings",
        store: "Store",
        clock: "Clock",
        on_stored: OnStored | None = None,
        on_status: OnStatus | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.on_stored = on_stored
        self.on_status = on_status
        self._known = {s.id for s in settings.stations}
        self._prefix = settings.mqtt.topic_prefix
        self._batch_size = max(1, settings.store.batch_size)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._generation = 0
        self._connected = threading.Event()
        self._writer: threading.Thread | None = None
        self._acker: threading.Thread | None = None
        self._acks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._client: mqtt.Client | None = None
        self._checker = QcChecker(settings)
        self._tips = TipCounters()
        self._spool: Spool | None = None
        self._last_ts: dict[str, float] = {}
        self._counts: Counter[str] = Counter()
        self._started = False
        self._last_retention_s = 0.0
        # While the store is away, try it again after a growing pause rather than
        # on every batch: a hung store must not slow the spooling to a crawl.
        self._replay_after = 0.0
        self._replay_backoff_s = SPOOL_RETRY_S

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Seed QC history from the store, start the writer, connect and subscribe (returns at once)."""
        if self._started:
            return
        self._started = True
        self._spool = Spool(spool_path(self.settings))
        self._tips.last.update(self._spool.load_tips())
        self._seed_history()
        metrics.add_collector(self._collect_ages)
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        self._acker = threading.Thread(target=self._ack_loop, name="ingest-acker", daemon=True)
        self._acker.start()
        self._client = self._make_client()
        host, port, _ = _parse_mqtt_url(self.settings.mqtt.url)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.mqtt.session_expiry_s
        self._client.connect_async(
            host, port, keepalive=self.settings.mqtt.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()
        log.info("event=ingest_start broker=%s:%d client_id=%s shared_group=%s",
                 host, port, self.settings.mqtt.client_id, self.settings.mqtt.shared_group)

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Block until the broker acknowledged the subscriptions (SUBACK); False on timeout."""
        return self._connected.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store and acknowledge what is queued, then disconnect. Unacknowledged messages stay at the broker."""
        if not self._started:
            return
        self._started = False
        self._queue.put(_STOP)
        if self._writer is not None:
            self._writer.join(timeout_s)
        self._acks.put(_STOP)
        if self._acker is not None:
            self._acker.join(timeout_s)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._spool is not None:
            self._spool.close()
        log.info("event=ingest_stop %s", " ".join(f"{k}={v}" for k, v in self.stats().items()))

    def stats(self) -> dict[str, Any]:
        """Counters since start: received, stored, duplicates, rejected, spooled, queue depth..."""
        c = self._counts
        return {
            "connected": self._connected.is_set(),
            "messages_received": c["messages"],
            "telemetry_received": c["telemetry"],
            "redelivered": c["redelivered"],
            "readings_received": c["readings"],
            "stored": c["stored"],
            "duplicates": c["duplicates"],
            "rejected": c["rejected"],
            "status_messages": c["status"],
            "batches": c["batches"],
            "spooled_batches": c["spooled"],
            "spool_pending": len(self._spool) if self._spool is not None else 0,
            "queue_depth": self._queue.qsize(),
        }

    # -- MQTT ----------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.settings.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        _, _, tls = _parse_mqtt_url(cfg.url)
        if tls:
            # A municipality's broker often has its own CA: trust that file, else the system's CAs.
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
        # Keep up with a node fleet flushing buffers: paho's default of 20
        # in-flight messages would throttle the broker's QoS 1 window.
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _topics(self) -> list[str]:
        """Telemetry and status topics, in the per-site form and (if enabled) the single-site form.

        A worker that owns only some zones subscribes to its stations by name,
        so readings of another worker's zones never reach it.
        """
        prefix, site = self._prefix, self.settings.site.id
        forms = [f"{prefix}/{site}/{{station}}"]
        if self.settings.mqtt.single_site_topics:
            forms.append(f"{prefix}/{{station}}")
        if self.settings.worker.is_partial:
            telemetry = [f.format(station=s.id) + "/telemetry" for s in self.settings.own_stations for f in forms]
            status = [f.format(station=s.id) + "/status" for s in self.settings.own_stations for f in forms]
        else:
            telemetry = [f.format(station="+") + "/telemetry" for f in forms]
            status = [f.format(station="+") + "/status" for f in forms]
        group = self.settings.mqtt.shared_group
        if group:
            # Telemetry is split between the workers; status stays unshared so
            # every worker knows every node's state.
            telemetry = [f"$share/{group}/{t}" for t in telemetry]
            # Rain gauges' tip counters are cumulative: each reading's rain is
            # the difference from the previous one, so every worker must see
            # every rain reading. They come unshared as well (the store keeps
            # one copy; every worker computes the same rain for it).
            telemetry += [f.format(station=s.id) + "/telemetry" for s in self.settings.rain_stations for f in forms]
        return telemetry + status

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("event=mqtt_connect_failed reason=%s", reason_code)
            return
        # Messages queued under the previous connection are still written, but
        # their PUBACKs would carry stale packet ids; the broker redelivers them.
        self._generation += 1
        topics = self._topics()
        # Chunks keep each SUBSCRIBE packet well under brokers' packet-size limits (thousands of stations).
        for i in range(0, len(topics), SUBSCRIBE_CHUNK):
            client.subscribe([(t, mqtt.SubscribeOptions(qos=1)) for t in topics[i:i + SUBSCRIBE_CHUNK]])
        log.info("event=mqtt_connected session_present=%s generation=%d",
                 getattr(flags, "session_present", "?"), self._generation)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("event=mqtt_subscribe_refused topics=%s reasons=%s; check the broker's ACL for this client",
                      self._topics(), refused)
            return
        self._connected.set()
        log.info("event=mqtt_subscribed topics=%s", self._topics())

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        if self._started:
            log.warning("event=mqtt_disconnected reason=%s; paho reconnects", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Runs in paho's network thread for every message: keep it to one tuple and one put.
        self._queue.put(_Msg(msg.topic, msg.payload, msg.mid, msg.qos, self._generation, self.clock.now_s(),
                             bool(msg.dup)))

    # -- writer --------------------------------------------------------------
    def _write_loop(self) -> None:
        stopping = False
        while True:
            try:
                first = self._queue.get(timeout=SPOOL_RETRY_S if self._spool_pending() else 1.0)
            except queue.Empty:
                try:
                    self._housekeeping()
                except Exception:
                    log.exception("event=housekeeping_failed; retrying later")
                if stopping:
                    return
                continue
            batch: list[_Msg] = []
            item = first
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._handle(batch)
                except Exception:  # never let one batch kill ingestion; the broker redelivers it
                    log.exception("event=batch_failed messages=%d; not acknowledged, broker will redeliver", len(batch))
            if stopping and self._queue.empty():
                return

    def _spool_pending(self) -> bool:
        return self._spool is not None and len(self._spool) > 0

    def _housekeeping(self) -> None:
        if self._spool_pending():
            self._replay_spool()
        now_s = self.clock.now_s()
        if now_s - self._last_retention_s > RETENTION_EVERY_S and hasattr(self.store, "apply_retention"):
            self._last_retention_s = now_s
            try:
                self.store.apply_retention(now_s)  # type: ignore[attr-defined]
            except StoreUnavailable as exc:
                log.warning("event=retention_skipped error=%s", exc)

    def _handle(self, batch: list[_Msg]) -> None:
        now_s = self.clock.now_s()
        readings: list[Reading] = []
        rejections: list[Rejection] = []
        statuses: list[tuple[str, str]] = []
        counts = self._counts
        counts["messages"] += len(batch)
        redelivered = sum(1 for m in batch if m.dup)
        if redelivered:
            counts["redelivered"] += redelivered
            metrics.inc("floodwatch_ingest_messages_redelivered_total", redelivered)
        status_messages = 0
        for m in batch:
            if m.topic.endswith("/status"):
                status_messages += 1
                status = self._parse_status(m, rejections)
                if status is not None:
                    statuses.append(status)
                continue
            parsed = parse_message(m.topic, m.payload, self.settings, now_s, self._tips)
            readings.extend(parsed.readings)
            for err in parsed.errors:
                rejections.append(self._rejection(m, err))
        counts["telemetry"] += len(batch) - status_messages
        metrics.inc("floodwatch_ingest_messages_received_total", len(batch) - status_messages, kind="telemetry")
        if status_messages:
            metrics.inc("floodwatch_ingest_messages_received_total", status_messages, kind="status")
        counts["readings"] += len(readings)
        if readings:
            readings = self._checker.check(readings, now_s)

        stored = self._write(readings, rejections)
        if self._tips.changed:
            assert self._spool is not None
            self._spool.save_tips({sid: self._tips.last[sid] for sid in self._tips.changed})
            self._tips.changed.clear()
        counts["batches"] += 1
        for station_id, status in statuses:
            counts["status"] += 1
            if self.on_status is not None:
                self._call(self.on_status, StationId(station_id), status, now_s)
        if stored is not None:
            self._after_store(readings, stored)
        # PUBACKs wait for the acknowledger's fsync; spooled batches are fsynced already.
        self._acks.put((batch, stored is not None))

    def _write(self, readings: list[Reading], rejections: list[Rejection]) -> list[Reading] | None:
        """Store or spool; return the newly stored readings, or None when spooled."""
        assert self._spool is not None
        self._count_rejections(rejections)
        if self._spool_pending():
            self._replay_spool()
        if not self._spool_pending():
            try:
                stored = self.store.insert_new(readings) if readings else []  # type: ignore[attr-defined]
                if rejections:
                    self.store.write_rejections(rejections)  # type: ignore[attr-defined]
                return stored
            except StoreUnavailable as exc:
                log.warning("event=store_unavailable readings=%d action=spool error=%s", len(readings), exc)
            except StoreError as exc:
                # Not an outage but a refusal (token, bucket, a bug): keep the data
                # and say so loudly; it replays once the cause is fixed.
                log.error("event=store_refused readings=%d action=spool error=%s", len(readings), exc)
        # Order matters: anything after a spooled batch is spooled too, and the
        # spool replays oldest first.
        self._spool.append(readings, rejections)
        self._counts["spooled"] += 1
        return None

    def _replay_spool(self) -> None:
        assert self._spool is not None
        if time.monotonic() < self._replay_after:
            return
        while True:
            item = self._spool.oldest()
            if item is None:
                return
            batch_id, readings, rejections = item
            try:
                stored = self.store.insert_new(readings) if readings else []  # type: ignore[attr-defined]
                if rejections:
                    self.store.write_rejections(rejections)  # type: ignore[attr-defined]
                if hasattr(self.store, "sync"):
                    self.store.sync()  # the spool forgets the batch only once the store cannot
            except StoreError as exc:
                self._replay_after = time.monotonic() + self._replay_backoff_s
                log.debug("event=spool_replay_deferred batch=%d retry_in_s=%.1f error=%s",
                          batch_id, self._replay_backoff_s, exc)
                self._replay_backoff_s = min(SPOOL_RETRY_MAX_S, self._replay_backoff_s * 2)
                return
            self._replay_backoff_s = SPOOL_RETRY_S
            self._spool.remove(batch_id)
            log.info("event=spool_replayed batch=%d readings=%d stored=%d", batch_id, len(readings), len(stored))
            self._after_store(readings, stored)

    def _after_store(self, readings: list[Reading], stored: list[Reading]) -> None:
        counts = self._counts
        counts["stored"] += len(stored)
        counts["duplicates"] += len(readings) - len(stored)
        per_station: Counter[str] = Counter(r.station_id for r in stored)
        for sid, n in per_station.items():
            metrics.inc("floodwatch_readings_ingested_total", n, station=sid)
        stored_at_s = self.clock.now_s()
        for r in stored:
            if r.received_s is not None:
                metrics.observe("floodwatch_ingest_lag_seconds", max(0.0, stored_at_s - r.received_s))
        if len(stored) != len(readings):
            stored_keys = {(r.station_id, r.ts_s) for r in stored}
            dup_station: Counter[str] = Counter(
                r.station_id for r in readings if (r.station_id, r.ts_s) not in stored_keys
            )
            for sid, n in dup_station.items():
                metrics.inc("floodwatch_readings_duplicate_total", n, station=sid)
        last = self._last_ts
        for r in stored:
            if r.ts_s > last.get(r.station_id, -1.0):
                last[r.station_id] = r.ts_s
        if stored and self.on_stored is not None:
            self._call(self.on_stored, stored)

    def _ack_loop(self) -> None:
        sync = getattr(self.store, "sync", None)
        while True:
            item = self._acks.get()
            rounds = []
            stopping = False
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    rounds.append(item)
                try:
                    item = self._acks.get_nowait()
                except queue.Empty:
                    break
            if rounds:
                if sync is not None and any(need_sync for _, need_sync in rounds):
                    try:
                        sync()
                    except Exception:
                        # Not acknowledged: the broker redelivers after the next reconnect.
                        log.exception("event=store_sync_failed messages=%d", sum(len(b) for b, _ in rounds))
                        rounds = []
                for batch, _ in rounds:
                    self._ack(batch)
            if stopping:
                return

    def _ack(self, batch: list[_Msg]) -> None:
        client = self._client
        if client is None:
            return
        generation = self._generation
        for m in batch:
            if m.qos > 0 and m.generation == generation:
                client.ack(m.mid, m.qos)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            # A failing consumer (alerts, the page) must not stop ingestion.
            log.exception("event=callback_failed callback=%r", fn)

    # -- small helpers -------------------------------------------------------
    def _parse_status(self, m: _Msg, rejections: list[Rejection]) -> tuple[str, str] | None:
        try:
            station_id = station_from_topic(m.topic, self._prefix, "status", self.settings.site.id,
                                            self.settings.mqtt.single_site_topics)
        except PayloadError as err:
            rejections.append(self._rejection(m, err))
            return None
        text = m.payload.decode("utf-8", "replace").strip().strip('"').lower()
        if text.startswith("{"):
            import json

            try:
                text = str(json.loads(m.payload).get("status", "")).lower()
            except (ValueError, AttributeError):
                text = ""
        if station_id not in self._known:
            err = PayloadError("unknown_station", f"status for station {station_id!r}, which is not in the registry")
            rejections.append(self._rejection(m, err))
            return None
        if text not in ("online", "offline"):
            err = PayloadError("bad_status", f"status payload {text!r:.40} is not 'online' or 'offline'", station_id)
            rejections.append(self._rejection(m, err))
            return None
        return station_id, text

    def _rejection(self, m: _Msg, err: PayloadError) -> Rejection:
        station = err.station_id if err.station_id in self._known else None
        log.warning("event=payload_rejected topic=%s reason=%s station=%s detail=%r",
                    m.topic, err.reason, station or "unknown", err.detail)
        return Rejection(
            received_s=m.received_s,
            topic=m.topic,
            reason=err.reason,
            detail=err.detail,
            payload=m.payload[:QUARANTINE_PAYLOAD_BYTES],
            station_id=station,
        )

    def _count_rejections(self, rejections: list[Rejection]) -> None:
        self._counts["rejected"] += len(rejections)
        for r in rejections:
            metrics.inc("floodwatch_readings_rejected_total", reason=r.reason, station=r.station_id or "unknown")

    def _seed_history(self) -> None:
        now_s = self.clock.now_s()
        seeded = 0
        for station in self.settings.stations:
            try:
                rs = self.store.read_readings(station.id, now_s - SEED_HISTORY_S, now_s + 86_400.0)
            except StoreUnavailable as exc:
                log.warning("event=qc_seed_skipped station=%s error=%s", station.id, exc)
                continue
            self._checker.seed(rs[-64:])
            if rs:
                self._last_ts[station.id] = rs[-1].ts_s
            seeded += len(rs)
        log.info("event=qc_history_seeded readings=%d", seeded)

    def _collect_ages(self) -> None:
        now_s = self.clock.now_s()
        for sid, ts_s in list(self._last_ts.items()):
            metrics.set_gauge("floodwatch_last_reading_age_seconds", max(0.0, now_s - ts_s), station=sid)

