"""Process-wide metrics on prometheus_client, behind the few functions every stage calls.

Every stage counts what it does here (readings ingested, rejected, alert
deliveries, LINE API errors, how long things take); the page serves
:func:`render` at ``/metrics`` in Prometheus' text format, with the
process's own CPU, memory and file-descriptor figures beside them.

    metrics.describe("floodwatch_readings_ingested_total", "counter", "readings stored by ingest")
    metrics.inc("floodwatch_readings_ingested_total", 12, station="LP-W01")
    metrics.set_gauge("floodwatch_line_quota_remaining", 4200)
    metrics.observe("floodwatch_ingest_lag_seconds", 0.03)

A metric's label names are fixed by its first use (prometheus_client needs
them up front); a later call with other names raises ``ValueError``. Use
:func:`describe` before the first use to give help text, or histogram buckets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: from a few milliseconds (a local write) to minutes (a backlog or LINE retries).
DEFAULT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
_lock = threading.Lock()
_described: dict[str, tuple[str, str, Sequence[float] | None]] = {}
_metrics: dict[str, tuple[Any, tuple[str, ...], str]] = {}
_children: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
_collectors: list[Callable[[], None]] = []


def _new_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


_registry = _new_registry()


def describe(name: str, kind: str, help_text: str, *, buckets: Sequence[float] | None = None) -> None:
    """Declare a metric's type ('counter', 'gauge' or 'histogram'), help line and (histograms) buckets."""
    if kind not in _KINDS:
        raise ValueError(f"metric {name}: kind {kind!r} should be one of {sorted(_KINDS)}")
    with _lock:
        known = _metrics.get(name)
        if known is not None and known[2] != kind:
            raise ValueError(f"metric {name} is already a {known[2]}, not a {kind}")
        # The first description wins: several stages describe the same shared gauge.
        _described.setdefault(name, (kind, help_text, buckets))


def _child(name: str, kind: str, labels: dict[str, Any]) -> Any:
    key = (name, kind, tuple(sorted((k, str(v)) for k, v in labels.items())))
    child = _children.get(key)
    if child is not None:
        return child
    with _lock:
        child = _children.get(key)
        if child is not None:
            return child
        label_names = tuple(k for k, _ in key[2])
        known = _metrics.get(name)
        if known is None:
            described_kind, help_text, buckets = _described.get(name, (kind, "", None))
            if described_kind != kind:
                raise ValueError(f"metric {name} is described as a {described_kind}; it cannot be used as a {kind}")
            options: dict[str, Any] = {"labelnames": label_names, "registry": _registry}
            if kind == "histogram":
                options["buckets"] = tuple(buckets or DEFAULT_BUCKETS_S)
            known = (_KINDS[kind](name, help_text or name.replace("_", " "), **options), label_names, kind)
            _metrics[name] = known
        metric, expected, actual_kind = known
        if actual_kind != kind:
            raise ValueError(f"metric {name} is a {actual_kind}; it cannot be used as a {kind}")
        if label_names != expected:
            raise ValueError(f"metric {name} has labels {list(expected)}; this call gave {list(label_names)}")
        child = metric.labels(*(v for _, v in key[2])) if label_names else metric
        _children[key] = child
        return child


def inc(name: str, amount: float = 1.0, **labels: Any) -> None:
    """Add ``amount`` to a counter (name ends in ``_total``)."""
    _child(name, "counter", labels).inc(amount)


def set_gauge(name: str, value: float, **labels: Any) -> None:
    _child(name, "gauge", labels).set(value)


def observe(name: str, value: float, **labels: Any) -> None:
    """Record one observation (seconds, usually) in a histogram."""
    _child(name, "histogram", labels).observe(value)


def _sample_name(name: str, kind: str) -> str:
    if kind == "counter":
        return name if name.endswith("_total") else name + "_total"
    if kind == "histogram":
        return name + "_count"
    return name


def value(name: str, **labels: Any) -> float:
    """A counter's or gauge's value (a histogram's observation count); 0 when never set."""
    with _lock:
        known = _metrics.get(name)
    if known is None:
        return 0.0
    found = _registry.get_sample_value(_sample_name(name, known[2]), {k: str(v) for k, v in labels.items()})
    return 0.0 if found is None else float(found)


def total(name: str) -> float:
    """Sum over every label set of a counter (a histogram's observations)."""
    with _lock:
        known = _metrics.get(name)
    if known is None:
        return 0.0
    metric, _, kind = known
    wanted = _sample_name(name, kind)
    return float(sum(s.value for family in metric.collect() for s in family.samples if s.name == wanted))


def add_collector(collect: Callable[[], None]) -> None:
    """Register a callback that refreshes gauges just before rendering (e.g. reading ages)."""
    with _lock:
        _collectors.append(collect)


def reset() -> None:
    """Forget everything (a new process, or a test)."""
    global _registry
    with _lock:
        _registry = _new_registry()
        _metrics.clear()
        _children.clear()
        _collectors.clear()


def render() -> str:
    """Every metric in Prometheus' text exposition format (serve with :data:`CONTENT_TYPE`)."""
    with _lock:
        collectors = list(_collectors)
    for collect in collectors:
        try:
            collect()
        except Exception:  # a closed store behind one callback must not break /metrics
            log.warning("event=metrics_collector_failed", exc_info=True)
    return generate_latest(_registry).decode()
