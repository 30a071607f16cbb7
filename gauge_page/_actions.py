"""The one seam between officer actions and the alert service (``alerts.AlertService``).

Each function names the AlertService method it calls: ``send_manual_message``,
``send_test_alert``, ``set_maintenance``, ``acknowledge``, ``subscribers``.
Messages go through the service's own outbox, so the same workers deliver
them exactly once and they appear in the same alert log as automatic alerts.
When the service is not running, an action is refused with a clear HTTP error
and nothing happens.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException


def _method(alerts: Any, name: str) -> Any:
    if alerts is None:
        raise HTTPException(503, "the alert service is not running in this process; start floodwatch serve")
    method = getattr(alerts, name, None)
    if method is None:
        raise HTTPException(501, f"this alert service has no {name}(); update alerts/ to a version that does")
    return method


def manual_text(text_th: str, text_en: str) -> str:
    """What a Thai reader sees: Thai first, then English (as alerts.messages.bilingual words it)."""
    th, en = text_th.strip(), text_en.strip()
    return th + ("\n\n" + en if en else "")


def recipient_count(alerts: Any, zone_id: str) -> int | None:
    """Residents subscribed to a zone, or None when the alert service cannot say."""
    if alerts is None or not hasattr(alerts, "subscribers"):
        return None
    return len(list(alerts.subscribers(zone_id)))


def set_maintenance(alerts: Any, station_id: str, on: bool, *, by: str) -> bool:
    """Tell the alert service, so the station's readings stop alerting anyone; False if it is not running."""
    if alerts is None:
        return False
    _method(alerts, "set_maintenance")(station_id, on, by=by)
    return True


def acknowledge(alerts: Any, alert_id: str, *, by: str) -> None:
    _method(alerts, "acknowledge")(alert_id, by=by)


def send_manual(alerts: Any, zones: list[str], text_th: str, text_en: str, *, by: str) -> Any:
    """Queue an officer's message to every subscriber of each zone; one alert-log entry per zone."""
    return _method(alerts, "send_manual_message")(zones, text_th.strip(), text_en.strip(), by=by)


def send_test(alerts: Any, text: str, *, by: str) -> Any:
    """Queue a test message to the officers' LINE accounts only, never to residents."""
    text = text.strip() or f"ทดสอบระบบแจ้งเตือน floodwatch โดย {by}\n\nfloodwatch test alert from {by}"
    return _method(alerts, "send_test_alert")(text, by=by)
