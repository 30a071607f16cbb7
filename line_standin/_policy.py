"""LINE's server-side rules as small state machines: rate limits, the monthly quota, retry keys.

Each takes "now" as an argument (seconds) so tests can drive them without
sleeping; the server passes ``time.monotonic()`` or ``time.time()``. None of
them is thread-safe on its own: the server calls them under its one lock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

RETRY_KEY_TTL_S = 24 * 3600.0
# LINE counts the month in Japan time.
_JST = dt.timezone(dt.timedelta(hours=9))


@dataclass
class TokenBucket:
    """Allows ``rate_per_s`` requests a second on average, bursts of ``capacity``.

    A full bucket holds ``capacity`` tokens; each request takes one; tokens
    come back at ``rate_per_s``. Starts full.
    """

    rate_per_s: float
    capacity: float
    tokens: float = field(init=False)
    updated_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.capacity < 1:
            raise ValueError(
                f"rate limit needs rate_per_s > 0 and capacity >= 1, got {self.rate_per_s}, {self.capacity}"
            )
        self.tokens = self.capacity

    def try_take(self, now_s: float) -> bool:
        if self.updated_s is not None:
            self.tokens = min(self.capacity, self.tokens + (now_s - self.updated_s) * self.rate_per_s)
        self.updated_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def jst_month(epoch_s: float) -> tuple[int, int]:
    """(year, month) in Japan time, the calendar LINE's monthly quota follows."""
    when = dt.datetime.fromtimestamp(epoch_s, _JST)
    return when.year, when.month


@dataclass
class MonthlyQuota:
    """Messages sent this month against an optional limit (``None``: no limit set).

    LINE counts one message per recipient per request, however many message
    objects (up to 5) the request carries; reply messages are free.
    """

    limit: int | None
    used: int = 0
    month: tuple[int, int] | None = None

    def _roll(self, epoch_s: float) -> None:
        month = jst_month(epoch_s)
        if month != self.month:
            self.month, self.used = month, 0

    def try_consume(self, count: int, epoch_s: float) -> bool:
        self._roll(epoch_s)
        if self.limit is not None and self.used + count > self.limit:
            return False
        self.used += count
        return True

    def total_usage(self, epoch_s: float) -> int:
        self._roll(epoch_s)
        return self.used


@dataclass
class RetryKeyLedger:
    """Retry keys LINE has accepted, each remembered for 24 hours with its request id."""

    ttl_s: float = RETRY_KEY_TTL_S
    _accepted: dict[str, tuple[str, float]] = field(default_factory=dict)

    def accepted_request_id(self, key: str, now_s: float) -> str | None:
        entry = self._accepted.get(key.lower())
        if entry is None:
            return None
        request_id, accepted_s = entry
        if now_s - accepted_s >= self.ttl_s:
            del self._accepted[key.lower()]
            return None
        return request_id

    def accept(self, key: str, request_id: str, now_s: float) -> None:
        self._accepted[key.lower()] = (request_id, now_s)

    def forget(self, key: str) -> None:
        self._accepted.pop(key.lower(), None)

    def clear(self) -> None:
        self._accepted.clear()
