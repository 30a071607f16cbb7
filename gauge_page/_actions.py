"""The one seam between officer actions and the alert service (helper F's ``alerts.AlertService``).

When the service offers a method for an action (``send_manual_message``,
``send_test_alert``, ``set_maintenance``, ``acknowledge``), it is called.
Until it does, manual and test messages go through the service's own
decision log and LINE outbox (``AlertService.db.record`` + ``workers.wake``),
so they are delivered by the same workers, retried with the same retry keys
and shown in the same alert log as automatic alerts. When the service is not
running, the action is refused with a clear HTTP error and nothing happens.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException

from floodwatch.vocabulary import AlertLevel

log = logging.getLogger(__name__)

# Outbox priorities as alerts.service uses them: officers' messages jump the queue.
_OFFICER_PRIORITY = 2
_MANUAL_PRIORITY = int(AlertLevel.WARNING)


def _require(alerts: Any) -> Any:
    if alerts is None:
        raise HTTPException(503, "the alert service is not running in this process; start floodwatch serve")
    return alerts


def manual_text(text_th: str, text_en: str, lang: str = "th") -> str:
    """What residents read: their language first, then the other (Thai first by default)."""
    th, en = text_th.strip(), text_en.strip()
    first, second = (en, th) if lang == "en" and en else (th, en)
    return first + ("\n\n" + second if second else "")


def recipient_count(alerts: Any, zone_id: str) -> int | None:
    """Residents subscribed to a zone, or None when the alert service cannot say."""
    if alerts is None or not hasattr(alerts, "subscribers"):
        return None
    return len(list(alerts.subscribers(zone_id)))


def set_maintenance(alerts: Any, station_id: str, on: bool, *, by: str) -> bool:
    """Tell the alert service (so the station's readings stop alerting residents); False if it cannot."""
    if alerts is None or not hasattr(alerts, "set_maintenance"):
        return False
    alerts.set_maintenance(station_id, on, by=by)
    return True


def acknowledge(alerts: Any, alert_id: str, *, by: str) -> bool:
    """Forward an acknowledgement when the service keeps them; the page records it either way."""
    if alerts is None or not hasattr(alerts, "acknowledge"):
        return False
    alerts.acknowledge(alert_id, by=by)
    return True


def _record_via_outbox(alerts: Any, rows: list[tuple[dict[str, Any], list[tuple[list[str], list[dict]]], int]]) -> list[int]:
    db = getattr(alerts, "db", None)
    if db is None or not hasattr(db, "record"):
        raise HTTPException(501, "this alert service offers neither send_manual_message() nor an outbox; "
                                 "update alerts/ to a version that does")
    ids = db.record({}, rows, alerts.clock.now_s())
    workers = getattr(alerts, "workers", None)
    if workers is not None:
        workers.wake()
    return ids


def send_manual(alerts: Any, zones: list[str], text_th: str, text_en: str, *, by: str) -> dict[str, Any]:
    """Queue a manual message to every subscriber of each zone; one alert-log entry per zone."""
    _require(alerts)
    if hasattr(alerts, "send_manual_message"):
        return {"via": "alerts.send_manual_message",
                "result": alerts.send_manual_message(zones, text_th, text_en, by=by)}
    from alerts import messages as msg

    english = alerts.db.english_readers()
    now_s = alerts.clock.now_s()
    rows = []
    recipients = {}
    for zone_id in zones:
        users = list(alerts.subscribers(zone_id))
        recipients[zone_id] = len(users)
        groups = [
            (ids, [msg.text_message(manual_text(text_th, text_en, lang))])
            for ids, lang in (([u for u in users if u not in english], "th"), ([u for u in users if u in english], "en"))
            if ids
        ]
        row = dict(ts_s=now_s, kind="manual", audience="residents", zone_id=zone_id, station_id=None,
                   level=int(AlertLevel.NORMAL), text=manual_text(text_th, text_en))
        rows.append((row, groups, _MANUAL_PRIORITY))
    ids = _record_via_outbox(alerts, rows)
    log.info("event=manual_message_queued by=%s zones=%s recipients=%d", by, ",".join(zones), sum(recipients.values()))
    return {"via": "outbox", "alert_ids": ids, "recipients": recipients}


def send_test(alerts: Any, text: str, *, by: str) -> dict[str, Any]:
    """Queue a test message to the officers' LINE accounts only, never to residents."""
    _require(alerts)
    text = text.strip() or f"ทดสอบระบบแจ้งเตือน floodwatch โดย {by}\n\nfloodwatch test alert from {by}"
    if hasattr(alerts, "send_test_alert"):
        return {"via": "alerts.send_test_alert", "result": alerts.send_test_alert(text, by=by)}
    from alerts import messages as msg

    officers = list(alerts.officers())
    row = dict(ts_s=alerts.clock.now_s(), kind="test", audience="officers", zone_id=None, station_id=None,
               level=int(AlertLevel.NORMAL), text=text)
    groups = [(officers, [msg.text_message(text)])] if officers else []
    ids = _record_via_outbox(alerts, [(row, groups, _OFFICER_PRIORITY)])
    return {"via": "outbox", "alert_ids": ids, "recipients": len(officers)}
