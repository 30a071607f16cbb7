"""Times as Thai residents read them: Asia/Bangkok, Buddhist-era years."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

BANGKOK = ZoneInfo("Asia/Bangkok")
BUDDHIST_ERA_OFFSET_YEARS = 543

_THAI_MONTHS_ABBR = (
    "ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.",
    "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค.",
)


def to_bangkok(ts_s: float) -> datetime:
    return datetime.fromtimestamp(ts_s, tz=timezone.utc).astimezone(BANGKOK)


def thai_datetime(ts_s: float) -> str:
    """'29 พ.ย. 2569 14:05 น.' — day, Thai month, Buddhist-era year, 24-hour time."""
    t = to_bangkok(ts_s)
    return (
        f"{t.day} {_THAI_MONTHS_ABBR[t.month - 1]} {t.year + BUDDHIST_ERA_OFFSET_YEARS} "
        f"{t:%H:%M} น."
    )


def thai_time(ts_s: float) -> str:
    return f"{to_bangkok(ts_s):%H:%M} น."


def english_datetime(ts_s: float) -> str:
    """'29 Nov 2026 14:05 (Bangkok time)'."""
    t = to_bangkok(ts_s)
    return f"{t.day} {t:%b %Y %H:%M} (Bangkok time)"


def english_time(ts_s: float) -> str:
    return f"{to_bangkok(ts_s):%H:%M}"
