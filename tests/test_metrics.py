"""Metrics: prometheus_client behind floodwatch.metrics, rendered in the text format Prometheus parses."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from floodwatch import metrics


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_counters_gauges_histograms_and_process_metrics_render_and_parse():
    metrics.describe("floodwatch_test_widgets_total", "counter", "widgets made in a test")
    metrics.describe("floodwatch_test_wait_seconds", "histogram", "a test wait", buckets=(0.1, 1.0, 10.0))
    before = metrics.value("floodwatch_test_widgets_total", station="LP-W01")
    metrics.inc("floodwatch_test_widgets_total", 2, station="LP-W01")
    metrics.inc("floodwatch_test_widgets_total", station="LP-W02")
    metrics.set_gauge("floodwatch_test_depth_m", 1.25, station="LP-W01")
    for seconds in (0.05, 0.5, 5.0, 50.0):
        metrics.observe("floodwatch_test_wait_seconds", seconds)
    assert metrics.value("floodwatch_test_widgets_total", station="LP-W01") == before + 2
    assert metrics.total("floodwatch_test_widgets_total") >= 3
    assert metrics.value("floodwatch_test_depth_m", station="LP-W01") == 1.25

    families = _families(metrics.render())
    widgets = families["floodwatch_test_widgets"]
    assert widgets.type == "counter" and widgets.documentation == "widgets made in a test"
    wait = families["floodwatch_test_wait_seconds"]
    assert wait.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in wait.samples if s.name.endswith("_bucket")}
    assert buckets["0.1"] >= 1 and buckets["10.0"] - buckets["1.0"] >= 1 and buckets["+Inf"] >= 4
    # The process's own figures, for the usual Prometheus dashboards and alerts.
    assert "process_resident_memory_bytes" in families and "process_cpu_seconds" in families
    assert "python_gc_objects_collected" in families


def test_a_metric_keeps_its_label_names_and_kind():
    metrics.inc("floodwatch_test_labelled_total", zone="moo-1")
    with pytest.raises(ValueError, match=r"has labels \['zone'\]; this call gave \['station'\]"):
        metrics.inc("floodwatch_test_labelled_total", station="LP-W01")
    with pytest.raises(ValueError, match="is a counter"):
        metrics.set_gauge("floodwatch_test_labelled_total", 3.0, zone="moo-1")


def test_a_failing_collector_does_not_break_the_page():
    def broken() -> None:
        raise RuntimeError("the store is closed")

    metrics.add_collector(broken)
    metrics.set_gauge("floodwatch_test_alive", 1.0)
    assert "floodwatch_test_alive 1.0" in metrics.render()


def test_the_stages_histograms_are_declared():
    # Importing the stages declares their metrics; the example alert rules use these names.
    import floodwatch.alerts.delivery  # noqa: F401
    import floodwatch.alerts.service  # noqa: F401
    import floodwatch.ingest.service  # noqa: F401

    for name in ("floodwatch_ingest_lag_seconds", "floodwatch_alert_latency_seconds",
                 "floodwatch_line_delivery_seconds", "floodwatch_line_request_seconds"):
        assert metrics._described[name][0] == "histogram", name
