"""Process-wide counters and gauges, rendered in Prometheus text format.

Every stage counts what it does here (readings ingested, rejected, alert
deliveries, LINE API errors); the page serves :func:`render` at /metrics.
Thread-safe, dependency-free, and cheap enough for the ingest hot path.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_help: dict[str, tuple[str, str]] = {}
_collectors: list[Callable[[], None]] = []


def describe(name: str, kind: str, help_text: str) -> None:
    """Declare a metric's type ('counter' or 'gauge') and help line."""
    with _lock:
        _help[name] = (kind, help_text)


def inc(name: str, amount: float = 1.0, **labels: str) -> None:
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    with _lock:
        _counters[key] = _counters.get(key, 0.0) + amount


def set_gauge(name: str, value: float, **labels: str) -> None:
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    with _lock:
        _gauges[key] = value


def value(name: str, **labels: str) -> float:
    """Current value of a counter or gauge (0 when never set); for tests and summaries."""
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    with _lock:
        return _counters.get(key, _gauges.get(key, 0.0))


def total(name: str) -> float:
    """Sum of a counter over all its label sets."""
    with _lock:
        return sum(v for (n, _), v in _counters.items() if n == name)


def add_collector(collect: Callable[[], None]) -> None:
    """Register a callback that refreshes gauges just before rendering (e.g. reading ages)."""
    with _lock:
        _collectors.append(collect)


def reset() -> None:
    """Forget everything (a new process, or a test)."""
    with _lock:
        _counters.clear()
        _gauges.clear()
        _collectors.clear()


def _fmt_labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
        for k, v in labels
    )
    return "{" + ",".join(escaped) + "}"


def _fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def render() -> str:
    with _lock:
        collectors = list(_collectors)
    for collect in collectors:
        collect()
    with _lock:
        lines: list[str] = []
        names = sorted({n for n, _ in _counters} | {n for n, _ in _gauges})
        for name in names:
            kind, help_text = _help.get(name, ("counter" if any(n == name for n, _ in _counters) else "gauge", ""))
            if help_text:
                lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for store in (_counters, _gauges):
                for (n, labels), v in sorted(store.items()):
                    if n == name:
                        lines.append(f"{name}{_fmt_labels(labels)} {_fmt_value(v)}")
        return "\n".join(lines) + "\n"
