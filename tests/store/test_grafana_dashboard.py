"""The Grafana dashboard's Flux queries, run for real against InfluxDB's contract.

Every query in ``deploy/grafana/floodwatch.json`` (panels, annotations, the
station variable) is read from the file, interpolated the way Grafana does
(``pkg/tsdb/influxdb/flux/macros.go``: ``v.timeRangeStart``/``v.timeRangeStop``
as RFC 3339, ``v.windowPeriod`` as a Go duration, ``v.defaultBucket`` quoted;
``${station}`` by the template variable), sent by influxdb-client to the
InfluxDB stand-in (requests checked against InfluxData's contract) and
evaluated over what floodwatch wrote: readings, forecasts, alert decisions.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from floodwatch.settings import load_settings
from floodwatch.store import open_store
from floodwatch.vocabulary import QcFlag, Reading, StationId
from tests.store.influx_standin import InfluxStandIn

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "floodwatch.json"
HOUR = 3600.0


def dashboard_queries() -> dict[str, str]:
    """Every Flux query in the dashboard, by refId (``var:<name>`` for template variables)."""
    dash = json.loads(DASHBOARD.read_text())
    out = {}
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out[target["refId"]] = target["query"]
    for anno in dash["annotations"]["list"]:
        if "target" in anno:
            out[anno["target"]["refId"]] = anno["target"]["query"]
    for var in dash["templating"]["list"]:
        out[f"var:{var['name']}"] = var["query"]
    return out


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for whole milliseconds: 600 s -> "10m0s", 30 s -> "30s"."""
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s = rest / 1000
    text = f"{s:g}s"
    if h or m:
        text = f"{m}m" + text
    if h:
        text = f"{h}h" + text
    return text


def grafana_interpolate(flux: str, start_s: float, stop_s: float, interval_s: float, bucket: str,
                        variables: dict[str, str]) -> str:
    """What Grafana sends for a dashboard query (its macros, then the template variables)."""
    def rfc3339(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

    for name, value in variables.items():
        flux = flux.replace("${" + name + "}", value).replace("$" + name, value)
    for match in set(re.findall(r"([a-zA-Z]+)\.([a-zA-Z]+)", flux)):
        whole = ".".join(match)
        replacement = {"timeRangeStart": rfc3339(start_s), "timeRangeStop": rfc3339(stop_s),
                       "windowPeriod": go_duration(interval_s), "defaultBucket": f'"{bucket}"'}.get(match[1])
        if replacement is not None and match[0] == "v":
            flux = flux.replace(whole, replacement)
    return flux


def test_go_duration_matches_go():
    assert [go_duration(s) for s in (600, 30, 3600, 5400, 1.5, 86400)] == [
        "10m0s", "30s", "1h0m0s", "1h30m0s", "1.5s", "24h0m0s"]


@pytest.fixture
def influx():
    with InfluxStandIn(token="grafana-token", org="floodwatch", buckets={"floodwatch"}) as standin:
        yield standin
    assert not standin.violations, "requests broke InfluxData's contract:\n" + "\n".join(standin.violations)


@pytest.fixture
def written(influx):
    """Six hours of what floodwatch writes: readings (one QC-failed), two forecasts, alert decisions."""
    settings = load_settings(store={"url": influx.url.replace("http://", "influxdb+http://"),
                                    "influx_token": "grafana-token"})
    store = open_store(settings)
    now = float(int(time.time() // 600 * 600))
    t0 = now - 6 * HOUR
    readings = []
    for k in range(36):
        ts = t0 + 600 * k
        flag = QcFlag.FAIL if k == 20 else QcFlag.PASS
        level = 9.99 if k == 20 else 1.0 + 0.01 * k
        readings.append(Reading(StationId("LP-W01"), ts, water_level_m=level, qc_flag=flag))
        readings.append(Reading(StationId("LP-W02"), ts, water_level_m=0.5, qc_flag=QcFlag.PASS))
        readings.append(Reading(StationId("LP-R01"), ts, rain_mm=0.2 * (k % 3), qc_flag=QcFlag.PASS))
    store.write_batch(readings)
    lead = now + 600 * np.arange(1, 13)
    store.write_forecast(now - 600, ["LP-W01", "LP-W02"], lead - 600, np.full((2, 12), 1.2),
                         np.full((2, 12), 1.0), np.full((2, 12), 1.4))
    store.write_forecast(now, ["LP-W01", "LP-W02"], lead, np.vstack([1.5 + 0.01 * np.arange(12), np.full(12, 0.6)]),
                         np.full((2, 12), 1.3), np.full((2, 12), 1.8))
    store.write_alert_decisions([
        dict(id=1, ts_s=now - 3 * HOUR, kind="escalate", audience="residents", zone_id="moo-5", station_id="LP-W01",
             level=1, level_name_en="watch", text="เฝ้าระวัง LP-W01", recipients=120),
        dict(id=2, ts_s=now - 2 * HOUR, kind="qc", audience="officers", zone_id="moo-5", station_id="LP-W01",
             level=2, level_name_en="warning", text="QC failed, spike", recipients=3),
        dict(id=3, ts_s=now - HOUR, kind="escalate", audience="residents", zone_id="moo-1", station_id="LP-W02",
             level=2, level_name_en="warning", text="เตือนภัย LP-W02", recipients=40),
    ])
    yield store, now, t0
    store.close()


def run(store, flux: str) -> list[dict]:
    return [rec.values for table in store._query.query(flux, org=store.org) for rec in table.records]


def test_every_dashboard_query_runs_and_answers_what_the_panel_needs(written, influx):
    store, now, t0 = written
    queries = dashboard_queries()
    # The tests below cover exactly these; a new query in the dashboard must get its own check.
    assert set(queries) == {"A", "B", "C", "D", "Anno", "var:station"}
    answers = {}
    for ref, flux in queries.items():
        sent = grafana_interpolate(flux, t0, now + 3 * HOUR, 600.0, "floodwatch", {"station": "LP-W01"})
        assert "v." not in re.sub(r'"[^"]*"', "", sent) and "${" not in sent, sent
        answers[ref] = run(store, sent)
        print(f"{ref}: {len(answers[ref])} rows")

    assert sorted(r["_value"] for r in answers["var:station"]) == ["LP-W01", "LP-W02"]  # level gauges only

    observed = answers["A"]
    assert all(set(r) - {"result", "table"} == {"_time", "water_level_m"} for r in observed)
    values = [r["water_level_m"] for r in observed]
    assert len(values) == 35 and 9.99 not in values  # the QC-failed reading is not drawn
    assert observed[0]["_time"].timestamp() == t0 + 600  # windows stamped with their end, as in Flux
    assert values[:3] == pytest.approx([1.00, 1.01, 1.02])

    forecast = answers["B"]
    assert [r["_time"].timestamp() for r in forecast] == list(now - 600 + 600 * np.arange(1, 14))
    newest = {r["_time"].timestamp(): r for r in forecast}
    assert newest[now + 600]["median_m"] == pytest.approx(1.5)  # the newer forecast overwrote the older
    assert newest[now]["median_m"] == pytest.approx(1.2)  # a time only the older covered keeps its value
    assert all(r["lower_m"] <= r["median_m"] <= r["upper_m"] for r in forecast)

    rain = answers["C"]
    assert {r["station"] for r in rain} == {"LP-R01"}
    assert sum(r["_value"] for r in rain) == pytest.approx(sum(0.2 * (k % 3) for k in range(36)))

    table = answers["D"]
    assert [r["text"] for r in table] == ["เตือนภัย LP-W02", "QC failed, spike", "เฝ้าระวัง LP-W01"]
    assert table[0]["recipients"] == 40 and table[0]["level_name"] == "warning"

    anno = answers["Anno"]
    assert [(r["level_name"], r["text"]) for r in anno] == [("watch", "เฝ้าระวัง LP-W01")]


def test_the_dashboard_is_importable_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["__inputs"][0]["pluginId"] == "influxdb"
    assert {p["type"] for p in dash["panels"]} <= {"timeseries", "table"}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert dash["timezone"] == "Asia/Bangkok"
