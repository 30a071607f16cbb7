"""Clocks: the real one, and an accelerated one for demos and scenario tests.

Every stage that needs "now" takes a :class:`Clock` instead of calling
``time.time()``, so a demo can run a three-day flood in three minutes and
ingestion, forecasts, alerts and the page all agree on what time it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def now_s(self) -> float:
        """UTC epoch seconds."""
        ...

    @property
    def factor(self) -> float:
        """Simulated seconds per real second (1 for the real clock)."""
        ...


class SystemClock:
    factor = 1.0

    def now_s(self) -> float:
        return time.time()


@dataclass
class AcceleratedClock:
    """Simulated time that starts at ``sim_start_s`` and runs ``factor`` times faster."""

    sim_start_s: float
    factor: float
    real_start_s: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError(f"clock factor must be positive, got {self.factor}")

    def now_s(self) -> float:
        return self.sim_start_s + (time.monotonic() - self.real_start_s) * self.factor

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.factor


@dataclass
class FixedClock:
    """A clock that stands still until moved: for replaying history and for tests."""

    at_s: float
    factor: float = 1.0

    def now_s(self) -> float:
        return self.at_s

    def advance(self, seconds: float) -> None:
        self.at_s += seconds
