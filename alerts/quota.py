"""The LINE plan's monthly message quota: this month's use, and what a new alert would need.

LINE bills one message per recipient per push or multicast (replies are
free) and refuses sends past the plan's monthly limit with a 429. floodwatch
reads the limit and LINE's count every ``line.quota_check_interval_s`` and
adds what it delivered since, so it knows the use between checks; before an
alert is queued, :func:`shortfall` says how many of its recipients the quota
cannot cover, and the officers are told then, before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from floodwatch.timefmt import english_datetime, thai_datetime
from floodwatch.vocabulary import AlertLevel


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """This month's use against the plan (``limit`` None: LINE reports no limit, or not read yet)."""

    known: bool                 # LINE's quota was read at least once
    limit: int | None
    used: int                   # LINE's count at the last check plus what floodwatch delivered since
    pending: int                # recipients queued in the outbox, not yet sent
    checked_wall_s: float | None

    @property
    def left(self) -> int | None:
        return None if self.limit is None else self.limit - self.used

    @property
    def room(self) -> int | None:
        """What is left once everything already queued is sent."""
        return None if self.limit is None else self.limit - self.used - self.pending

    def as_json(self, warn_fraction: float, reserve: int) -> dict[str, Any]:
        share = None if not self.limit else self.used / self.limit
        return {"known": self.known, "type": "limited" if self.limit is not None else ("none" if self.known else None),
                "limit": self.limit, "used": self.used, "left": self.left, "pending": self.pending,
                "room_after_pending": self.room, "used_share": share, "checked_wall_s": self.checked_wall_s,
                "warn_below_share": warn_fraction, "reserve_messages": reserve,
                "low": bool(self.limit and self.left is not None and self.left < warn_fraction * self.limit)}


def use_from(quota: dict[str, Any] | None, delivered_since_check: int, pending: int,
             checked_wall_s: float | None) -> QuotaUse:
    """Combine LINE's last answer (``{"type", "value", "totalUsage"}``) with floodwatch's own count since."""
    if quota is None:
        return QuotaUse(False, None, delivered_since_check, pending, checked_wall_s)
    used = int(quota.get("totalUsage") or 0) + delivered_since_check
    limit = int(quota["value"]) if quota.get("type") == "limited" and quota.get("value") else None
    return QuotaUse(True, limit, used, pending, checked_wall_s)


def shortfall(use: QuotaUse, needed: int) -> int:
    """Recipients of a new send of ``needed`` messages that the quota cannot cover (0 when it fits)."""
    room = use.room
    if room is None or needed <= 0:
        return 0
    return max(0, needed - max(0, room))


def shortfall_text(use: QuotaUse, needed: int, missing: int, zone_th: str, zone_en: str, level: AlertLevel,
                   now_s: float) -> str:
    """The officers' warning, Thai first: which alert, how many cannot be reached, what to do now."""
    left = max(0, use.left or 0)
    th = [f"⚠️ [เจ้าหน้าที่] โควตาข้อความ LINE ไม่พอ: การแจ้ง{level.name_th} {zone_th} ต้องใช้ {needed:,} ข้อความ",
          f"เดือนนี้เหลือ {left:,} จาก {use.limit:,} (รอส่งอยู่ {use.pending:,}) ประมาณ {missing:,} คนจะไม่ได้รับ",
          "เพิ่มแพ็กเกจใน LINE Official Account Manager ทันที และประกาศทางหอกระจายข่าว",
          f"เวลา {thai_datetime(now_s)} (แจ้งก่อนส่ง)"]
    en = [f"⚠️ [Officers] LINE quota too small: this {level.name_en.upper()} alert for {zone_en} needs "
          f"{needed:,} messages.",
          f"{left:,} of {use.limit:,} are left this month ({use.pending:,} already queued); about {missing:,} "
          "residents will not get it.",
          "Raise the plan in LINE Official Account Manager now, and use the village loudspeakers.",
          f"{english_datetime(now_s)} (told before sending)"]
    return "\n".join(th) + "\n\n— English —\n" + "\n".join(en)
