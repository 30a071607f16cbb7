"""Login throttling that an attacker cannot turn against the officers.

Failures are counted per client address and per (address, username), never
per username alone: five wrong passwords for ``officer`` from an attacker's
address slow that address down, while the duty officer logging in from
another address is never refused. Password spraying (one wrong password for
each of many usernames) is slowed by the per-address count.

Behind a reverse proxy every request comes from the proxy's address; the
client's own address is then read from ``X-Forwarded-For``, but only when
the request really came from a configured trusted proxy
(``page.trusted_proxies``), so nobody can pick their address by sending
the header themselves.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable

# a client address: at most this many wrong passwords (for any usernames) per window
MAX_FAILURES_PER_ADDRESS = 10
# one username from one address: at most this many wrong passwords per window
MAX_FAILURES_PER_ADDRESS_AND_NAME = 5
FAILURE_WINDOW_S = 300.0
# memory bound: many made-up addresses or names, oldest forgotten first
MAX_TRACKED = 10_000


class LoginThrottle:
    """Counts wrong passwords per address and per (address, username) in a sliding window (wall clock)."""

    def __init__(self, *, per_address: int = MAX_FAILURES_PER_ADDRESS,
                 per_address_and_name: int = MAX_FAILURES_PER_ADDRESS_AND_NAME,
                 window_s: float = FAILURE_WINDOW_S) -> None:
        self.per_address = per_address
        self.per_address_and_name = per_address_and_name
        self.window_s = window_s
        self._lock = threading.Lock()
        self._failures: dict[object, list[float]] = {}

    def _recent(self, key: object, now_s: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now_s - t < self.window_s]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def wait_s(self, address: str, username: str, now_s: float) -> float:
        """0 when this attempt may be judged; else seconds until it may (answer 429)."""
        with self._lock:
            waits = []
            for key, limit in ((address, self.per_address), ((address, username), self.per_address_and_name)):
                times = self._recent(key, now_s)
                if len(times) >= limit:
                    waits.append(times[-limit] + self.window_s - now_s)
            return max(waits, default=0.0)

    def failed(self, address: str, username: str, now_s: float) -> None:
        with self._lock:
            if len(self._failures) > MAX_TRACKED:
                stale = sorted(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0.0)
                for key in stale[: len(stale) // 2]:
                    del self._failures[key]
            for key in (address, (address, username)):
                self._failures.setdefault(key, []).append(now_s)

    def succeeded(self, address: str, username: str) -> None:
        """The right password: forget this name's failures from this address (not the address's)."""
        with self._lock:
            self._failures.pop((address, username), None)
