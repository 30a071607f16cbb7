"""Village loudspeakers and sirens (หอกระจายข่าว): a zone's alert as an MQTT command, acknowledged.

The contract (docs/mqtt-contract.md, "Loudspeakers"):

- floodwatch publishes each command, QoS 1, not retained, to
  ``{prefix}/{site}/speaker/{controller_id}/command``;
- the controller answers on ``{prefix}/{site}/speaker/{controller_id}/reply``
  with ``{"message_id": ..., "status": "played" | "received" | "rejected"}``;
- no answer within ``loudspeakers.ack_timeout_s``: the command is shown to
  officers as **undelivered** and sent again, same ``message_id`` (a
  controller plays a message id once), up to ``max_attempts``; then failed.

A command is decided in the same SQLite transaction as the alert that causes
it (:func:`plan`, pure), so a crash never loses one, and sent by a thread of
its own right after the commit. A newer command for a controller supersedes
its older unacknowledged one (an EVACUATE is not queued behind a WATCH).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from floodwatch import metrics, migrations
from floodwatch.settings import LoudspeakerController, Settings
from floodwatch.timefmt import to_bangkok
from floodwatch.vocabulary import AlertLevel

from floodwatch.alerts import _db
from floodwatch.alerts._db import sqlite_path
from floodwatch.alerts.messages import ADVICE_EN, ADVICE_TH
from floodwatch.alerts.rules import Action
from floodwatch.alerts.speech import speak_thai

log = logging.getLogger("floodwatch.alerts.loudspeaker")

metrics.describe("floodwatch_loudspeaker_commands_total", "counter",
                 "loudspeaker commands by outcome (sent, resent, acknowledged, failed)")

ANNOUNCED_KINDS = ("escalate", "forecast", "rise", "reminder")
LOWERING_KINDS = ("deescalate", "all_clear")
COMMAND_TTL_S = 6 * 3600.0
STATES = ("pending", "sent", "undelivered", "acknowledged", "failed", "superseded")

# ============================================================================
# SQLite table of this module, in the alert state file (settings.alerts.state_url).
# Kept together here so it can become one numbered migration.
# ============================================================================
# The table lives in the alert state file: version 4 of alerts/_db.py MIGRATIONS.
LOUDSPEAKER_SCHEMA = _db.LOUDSPEAKER_TABLES


def command_topic(settings: Settings, controller_id: str) -> str:
    return f"{settings.mqtt.topic_prefix}/{settings.site.id}/speaker/{controller_id}/command"


def reply_topic(settings: Settings, controller_id: str) -> str:
    return f"{settings.mqtt.topic_prefix}/{settings.site.id}/speaker/{controller_id}/reply"


def announcement(action: Action, zone_th: str, zone_en: str, site_th: str, site_en: str) -> tuple[str, str]:
    """What the loudspeaker says (Thai, spoken or read out) and its English, short and repeatable."""
    lv = action.level
    if action.kind == "all_clear":
        th = f"ประกาศจาก{site_th} ยกเลิกการเตือนน้ำท่วม {zone_th} ระดับน้ำกลับสู่ปกติ {ADVICE_TH[AlertLevel.NORMAL]}"
        en = (f"{site_en}: the flood alert for {zone_en} is over; water is back to normal. "
              f"{ADVICE_EN[AlertLevel.NORMAL]}")
        return th, en
    lead_th = "ลดระดับการเตือนเป็น" if action.kind == "deescalate" else "ประกาศ"
    lead_en = "alert lowered to" if action.kind == "deescalate" else "alert:"
    level_m = "" if action.water_level_m != action.water_level_m else f" ระดับน้ำ {action.water_level_m:.2f} เมตร"
    th = f"ประกาศจาก{site_th} {lead_th} {lv.name_th} น้ำท่วม {zone_th}{level_m} {ADVICE_TH[lv]}"
    en = f"{site_en} {lead_en} FLOOD {lv.name_en.upper()} for {zone_en}. {ADVICE_EN[lv]}"
    return th, en


@dataclass(frozen=True, slots=True)
class PlannedCommand:
    message_id: str
    controller_id: str
    action_index: int       # which of the committed actions caused it
    zone_id: str
    level: int
    kind: str
    payload: dict[str, Any]


def plan(actions: list[Action], controllers: Iterable[LoudspeakerController], announced: dict[tuple[str, str], int],
         settings: Settings, now_s: float) -> list[PlannedCommand]:
    """The commands a commit's actions cause (pure).

    Parameters
    ----------
    now_s : float
        Real (wall-clock) time of the decision: the command's ``issued``, and ``expires`` 6 h later.
    announced : {(controller id, zone id): level}
        The level each controller last announced for each zone (its
        all-clear or lowering follows only when it announced the alert).
    """
    out: list[PlannedCommand] = []
    site = settings.site
    for index, a in enumerate(actions):
        if a.audience != "residents":
            continue
        for c in controllers:
            if a.zone_id not in c.zones:
                continue
            floor = int(AlertLevel[c.min_level])
            before = announced.get((c.id, a.zone_id), 0)
            if a.kind in ANNOUNCED_KINDS and int(a.level) >= floor:
                pass
            elif a.kind in LOWERING_KINDS and before >= floor:
                pass
            else:
                continue
            zone = settings.zone(a.zone_id)
            text_th, text_en = announcement(a, zone.name_th, zone.name_en, site.name_th, site.name_en)
            message_id = str(uuid.uuid4())
            issued = to_bangkok(now_s)
            payload = {"message_id": message_id, "controller": c.id, "site": site.id, "zone": a.zone_id,
                       "level": int(a.level), "level_name": a.level.name, "kind": a.kind,
                       "issued": issued.isoformat(timespec="seconds"),
                       "expires": (issued + timedelta(seconds=COMMAND_TTL_S)).isoformat(timespec="seconds"),
                       "siren": a.level >= AlertLevel.EVACUATE and a.kind in ANNOUNCED_KINDS,
                       "repeat": 3 if a.level >= AlertLevel.EVACUATE else 2,
                       "text_th": text_th, "text_en": text_en, "audio_url": None}
            out.append(PlannedCommand(message_id, c.id, index, a.zone_id, int(a.level), a.kind, payload))
            announced[(c.id, a.zone_id)] = int(a.level) if a.kind in ANNOUNCED_KINDS else 0
    return out


def parse_reply(payload: bytes) -> tuple[str, str, str] | None:
    """``(message_id, status, detail)`` from a controller's reply, or None when it is not one."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("message_id"), str):
        return None
    status = str(data.get("status", "played")).lower()
    if status not in ("played", "received", "rejected"):
        return None
    return data["message_id"], status, str(data.get("detail", ""))[:300]


def _broker(url: str) -> tuple[str, int, bool]:
    u = urlparse(url)
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls


class Loudspeakers:
    """Sends planned commands over MQTT, follows acknowledgements, retries, and tells officers.

    Parameters
    ----------
    settings : floodwatch.settings.Settings
    on_change : callable, optional
        ``on_change(state_dict)`` whenever a command's state changes (the page's live events).
    wall_clock : callable
        Real time for acknowledgement timeouts.
    """

    def __init__(self, settings: Settings, on_change: Callable[[dict[str, Any]], None] | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.cfg = settings.loudspeakers
        self.controllers = {c.id: c for c in self.cfg.controllers}
        self.on_change = on_change
        self.wall_clock = wall_clock
        self._lock = threading.RLock()
        path = sqlite_path(settings.alerts.state_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        migrations.migrate(self._conn, _db.MIGRATIONS, name=str(path))
        self.announced: dict[tuple[str, str], int] = {}
        for controller_id, zone_id, level, kind in self._conn.execute(
                "SELECT controller_id, zone_id, level, kind FROM loudspeaker_commands ORDER BY created_wall_s"):
            self.announced[(controller_id, zone_id)] = level if kind in ANNOUNCED_KINDS else 0
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._connected = threading.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.controllers)

    # ------------------------------------------------------------ decisions
    def plan(self, actions: list[Action], now_s: float) -> list[PlannedCommand]:
        """The commands for a commit's actions; ``issued``/``expires`` in real time (a loudspeaker plays now)."""
        if not self.enabled:
            return []
        with self._lock:
            return plan(actions, self.controllers.values(), self.announced, self.settings, self.wall_clock())

    def writer(self, planned: list[PlannedCommand], now_s: float) -> Callable[[sqlite3.Cursor, list[int]], None]:
        """Write ``planned`` in the alert decision's own transaction (``AlertDb.record_superseding(also=)``)."""
        wall = self.wall_clock()

        def write(cur: sqlite3.Cursor, decision_ids: list[int]) -> None:
            for p in planned:
                # an older command still waiting for this controller is replaced by the newer one
                cur.execute("UPDATE loudspeaker_commands SET status = 'superseded' WHERE controller_id = ?"
                            " AND status IN ('pending', 'sent', 'undelivered')", (p.controller_id,))
                decision_id = decision_ids[p.action_index] if p.action_index < len(decision_ids) else None
                cur.execute("INSERT INTO loudspeaker_commands (message_id, controller_id, decision_id, zone_id, level,"
                            " kind, payload, created_s, created_wall_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (p.message_id, p.controller_id, decision_id, p.zone_id, p.level, p.kind,
                             json.dumps(p.payload, ensure_ascii=False), now_s, wall))
        return write

    def committed(self, planned: list[PlannedCommand]) -> None:
        """The commands are on disk: send them now."""
        if planned:
            self.wake()

    def forget_plan(self) -> None:
        """The commit failed: re-read what was really announced."""
        with self._lock:
            self.announced.clear()
            for controller_id, zone_id, level, kind in self._conn.execute(
                    "SELECT controller_id, zone_id, level, kind FROM loudspeaker_commands ORDER BY created_wall_s"):
                self.announced[(controller_id, zone_id)] = level if kind in ANNOUNCED_KINDS else 0

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        import paho.mqtt.client as mqtt

        cfg, mq = self.cfg, self.settings.mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=mqtt.MQTTv311,
                             clean_session=False)
        username = cfg.mqtt_username or mq.username
        password = cfg.mqtt_password if cfg.mqtt_username else mq.password
        if username:
            client.username_pw_set(username, password.get_secret_value() if password else None)
        host, port, tls = _broker(mq.url)
        if tls:
            client.tls_set(ca_certs=str(mq.ca_file) if mq.ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *a: self._connected.clear()
        client.on_message = self._on_message
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self._client = client
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="loudspeakers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        with self._lock:
            self._conn.close()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("event=loudspeaker_mqtt_refused reason=%s fix=%s", reason_code,
                      "check loudspeakers.mqtt_username/password (floodwatch mqtt-config makes floodwatch-alerts)")
            return
        topics = [(reply_topic(self.settings, c), 1) for c in self.controllers]
        client.subscribe(topics)
        self._connected.set()
        log.info("event=loudspeaker_mqtt_connected controllers=%d", len(topics))
        self.wake()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        parsed = parse_reply(msg.payload)
        controller_id = msg.topic.split("/")[-2] if msg.topic.count("/") >= 4 else ""
        if parsed is None:
            log.warning("event=loudspeaker_reply_rejected topic=%s payload=%r", msg.topic, msg.payload[:120])
            return
        message_id, status, detail = parsed
        new = "failed" if status == "rejected" else "acknowledged"
        with self._lock:
            cur = self._conn.execute(
                "UPDATE loudspeaker_commands SET status = ?, acked_wall_s = ?, reply_status = ?, detail = ?"
                " WHERE message_id = ? AND controller_id = ? AND status IN ('pending', 'sent', 'undelivered',"
                " 'superseded')", (new, self.wall_clock(), status, detail or None, message_id, controller_id))
        if cur.rowcount:
            metrics.inc("floodwatch_loudspeaker_commands_total", outcome=new)
            log.info("event=loudspeaker_acknowledged controller=%s message_id=%s status=%s", controller_id,
                     message_id, status)
            self._changed(message_id)

    # ---------------------------------------------------------------- sending
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay_s = self._work()
            except Exception:  # a bug must not stop the loudspeakers: log it and keep going
                log.exception("event=loudspeaker_loop_failed")
                delay_s = 1.0
            with self._wake:
                self._wake.wait(delay_s)

    def _work(self) -> float:
        """Send what is pending, resend what is overdue; returns how long to wait before looking again."""
        now = self.wall_clock()
        timeout = self.cfg.ack_timeout_s
        with self._lock:
            rows = self._conn.execute(
                "SELECT message_id, controller_id, payload, status, attempts, last_sent_wall_s, created_wall_s"
                " FROM loudspeaker_commands WHERE status IN ('pending', 'sent', 'undelivered')"
                " ORDER BY created_wall_s").fetchall()
        next_due = 1.0
        for message_id, controller_id, payload, status, attempts, last_sent, created in rows:
            if status == "pending":
                if self._send(message_id, controller_id, json.loads(payload), attempts):
                    next_due = min(next_due, timeout)
                elif now >= created + timeout:
                    # never sent: the broker is unreachable; officers must not take silence for delivery
                    with self._lock:
                        self._conn.execute("UPDATE loudspeaker_commands SET status = 'undelivered',"
                                           " undelivered_wall_s = ?, detail = ? WHERE message_id = ?",
                                           (now, "the MQTT broker cannot be reached", message_id))
                    log.warning("event=loudspeaker_undelivered controller=%s message_id=%s reason=broker_unreachable",
                                controller_id, message_id)
                    self._changed(message_id)
                else:
                    next_due = min(next_due, created + timeout - now)
                continue
            # the first attempt is due one period after the decision, so officers see silence within it
            due = (created if attempts <= 1 or last_sent is None else last_sent) + timeout
            if now < due:
                next_due = min(next_due, due - now)
                continue
            if status == "sent":
                with self._lock:
                    self._conn.execute("UPDATE loudspeaker_commands SET status = 'undelivered', undelivered_wall_s = ?"
                                       " WHERE message_id = ? AND status = 'sent'", (now, message_id))
                log.warning("event=loudspeaker_undelivered controller=%s message_id=%s attempts=%d fix=%s",
                            controller_id, message_id, attempts, "check the controller's power and network; "
                            "floodwatch keeps sending")
                self._changed(message_id)
            if attempts >= self.cfg.max_attempts:
                with self._lock:
                    self._conn.execute("UPDATE loudspeaker_commands SET status = 'failed', detail = ?"
                                       " WHERE message_id = ?", (f"no answer after {attempts} attempts", message_id))
                metrics.inc("floodwatch_loudspeaker_commands_total", outcome="failed")
                log.error("event=loudspeaker_failed controller=%s message_id=%s attempts=%d fix=%s", controller_id,
                          message_id, attempts, "announce by hand or send someone to the village")
                self._changed(message_id)
                continue
            self._send(message_id, controller_id, json.loads(payload), attempts)
            next_due = min(next_due, timeout)
        return max(0.05, next_due)

    def _audio(self, payload: dict[str, Any]) -> None:
        """Attach the spoken file's URL (made once per command) when speech and a public URL are set."""
        if not self.cfg.speech or payload.get("audio_url") or not self.cfg.public_base_url:
            return
        path = self.audio_path(payload["message_id"])
        if not path.exists():
            problem = speak_thai(payload["text_th"], path)
            if problem is not None:
                payload["audio_note"] = problem
                return
        base = self.cfg.public_base_url.rstrip("/")
        payload["audio_url"] = f"{base}/api/loudspeakers/audio/{payload['message_id']}.wav"

    def audio_path(self, message_id: str) -> Path:
        uuid.UUID(message_id)  # only ids floodwatch made name files
        return Path(self.cfg.audio_dir) / f"{message_id}.wav"

    def _send(self, message_id: str, controller_id: str, payload: dict[str, Any], attempts: int) -> bool:
        """Publish one attempt; False when it could not be handed to the broker (retried later)."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False  # sent once connected (on_connect wakes the loop)
        if attempts == 0:
            self._audio(payload)
        payload["attempt"] = attempts + 1
        info = client.publish(command_topic(self.settings, controller_id),
                              json.dumps(payload, ensure_ascii=False).encode("utf-8"), qos=1)
        if info.rc != 0:
            log.warning("event=loudspeaker_publish_failed controller=%s rc=%s", controller_id, info.rc)
            return False
        stored = {k: v for k, v in payload.items() if k != "attempt"}
        with self._lock:
            self._conn.execute(
                "UPDATE loudspeaker_commands SET attempts = attempts + 1, last_sent_wall_s = ?, payload = ?,"
                " status = CASE status WHEN 'pending' THEN 'sent' ELSE status END WHERE message_id = ?",
                (self.wall_clock(), json.dumps(stored, ensure_ascii=False), message_id))
        metrics.inc("floodwatch_loudspeaker_commands_total", outcome="sent" if attempts == 0 else "resent")
        log.info("event=loudspeaker_sent controller=%s message_id=%s attempt=%d level=%s", controller_id, message_id,
                 attempts + 1, payload.get("level_name"))
        if attempts == 0:
            self._changed(message_id)
        return True

    # ---------------------------------------------------------------- views
    def _changed(self, message_id: str) -> None:
        if self.on_change is None:
            return
        row = self.command(message_id)
        if row is not None:
            self.on_change(row)

    _FIELDS = ("message_id", "controller_id", "decision_id", "zone_id", "level", "kind", "status", "attempts",
               "created_s", "created_wall_s", "last_sent_wall_s", "undelivered_wall_s", "acked_wall_s",
               "reply_status", "detail", "payload")

    def _row(self, row: tuple) -> dict[str, Any]:
        out = dict(zip(self._FIELDS, row, strict=True))
        payload = json.loads(out.pop("payload"))
        out.update(level_name=AlertLevel(out["level"]).name, text_th=payload.get("text_th"),
                   text_en=payload.get("text_en"), audio_url=payload.get("audio_url"),
                   audio_note=payload.get("audio_note"))
        return out

    def command(self, message_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(self._FIELDS)} FROM loudspeaker_commands WHERE message_id = ?",
                                     (message_id,)).fetchone()
        return None if row is None else self._row(row)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(self._FIELDS)} FROM loudspeaker_commands"
                                      " ORDER BY created_wall_s DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [self._row(r) for r in rows]

    def status(self) -> dict[str, Any]:
        """Each controller with its latest command, and the recent commands (the page's panel)."""
        recent = self.recent(100)
        latest: dict[str, dict[str, Any]] = {}
        for cmd in recent:
            latest.setdefault(cmd["controller_id"], cmd)
        controllers = [{"id": c.id, "name_th": c.name_th, "name_en": c.name_en, "zones": list(c.zones),
                        "min_level": c.min_level, "lat": c.lat, "lon": c.lon, "latest": latest.get(c.id)}
                       for c in self.controllers.values()]
        return {"enabled": self.enabled, "connected": self._connected.is_set(), "ack_timeout_s": self.cfg.ack_timeout_s,
                "controllers": controllers, "commands": recent[:30]}
