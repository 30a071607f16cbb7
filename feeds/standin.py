"""A local stand-in for HII's ThaiWater public API: real HTTP on 127.0.0.1, recorded shapes.

For the tests and for ``floodwatch demo`` (which has no internet). It answers
the three paths :mod:`floodwatch.feeds.thaiwater` reads, with every field in
the shape public code shows the real API uses (strings for levels, naive
Bangkok times, nested station/agency/geocode objects), and it can be told to
fail the way a real network and a real government API do:

==============  ==============================================================
mode            what the next matching request gets
==============  ==============================================================
``timeout``     nothing for ``hang_s`` seconds (longer than the feed waits)
``slow``        the right answer, dripped out over ``slow_s`` seconds
``html``        200 with an HTML maintenance page instead of JSON
``5xx``         502 with an HTML gateway error page
``half_json``   the first half of the JSON, complete as far as HTTP goes
``cut``         a Content-Length it never finishes (connection closed)
``missing``     the answer without the gauge or dam named by ``station``
``stale``       data as of 26 hours ago (the agency's server stopped updating)
``centimetres`` the gauge named by ``station`` in centimetres
==============  ==============================================================

Values come from functions of (station, UTC epoch seconds) -> level (m MSL)
or release (m3/s), so the demo serves an upstream flood consistent with its
scenario and tests serve series they can check. It is a test double of
ThaiWater, not of floodwatch.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

BANGKOK = ZoneInfo("Asia/Bangkok")
API_PREFIX = "/api/v1/thaiwater30"
MODES = ("timeout", "slow", "html", "5xx", "half_json", "cut", "missing", "stale", "centimetres")
STALE_BY_S = 26 * 3600.0


@dataclass(frozen=True)
class Gauge:
    """A telemetry water-level gauge as ThaiWater lists it."""

    thaiwater_id: int
    oldcode: str
    name_th: str
    name_en: str
    lat: float
    lon: float
    min_bank_m: float
    ground_level_m: float
    agency_th: str = "กรมชลประทาน"
    agency_en: str = "Royal Irrigation Department"
    agency_short_th: str = "ชป."
    agency_short_en: str = "RID"
    province_th: str = "สุพรรณบุรี"
    province_en: str = "Suphan Buri"
    river_name: str = "แม่น้ำท่าจีน"
    # free for the caller: which truth series this gauge follows
    truth_id: str = ""


@dataclass(frozen=True)
class Dam:
    dam_id: int
    oldcode: str
    name_th: str
    name_en: str
    normal_storage_mcm: float = 240.0
    truth_id: str = ""


@dataclass
class _Failure:
    mode: str
    times: int | None
    path: str | None
    station: str | None


@dataclass
class ThaiWaterStandIn:
    """ThaiWater on a free loopback port; use as a context manager; ``url`` is the API base.

    Parameters
    ----------
    gauges, dams : what the API lists.
    level_m : (gauge, t_s array) -> level m MSL array.
    release_m3_s : (dam, t_s array) -> release m3/s array.
    now_s : the stand-in's clock (the demo passes its accelerated clock's ``now_s``).
    step_s : gauges report every ``step_s`` seconds.
    """

    gauges: list[Gauge]
    dams: list[Dam] = field(default_factory=list)
    level_m: Callable[[Gauge, Any], Any] = lambda g, t: 2.0 + 0 * t  # noqa: E731
    release_m3_s: Callable[[Dam, Any], Any] = lambda d, t: 30.0 + 0 * t  # noqa: E731
    now_s: Callable[[], float] = time.time
    step_s: float = 900.0
    hang_s: float = 5.0
    slow_s: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------- lifecycle
    def start(self) -> ThaiWaterStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                standin._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="thaiwater-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ThaiWaterStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base a ``thaiwater`` feed's ``url`` takes."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # ----------------------------------------------------------- failures
    def fail(self, mode: str, *, times: int | None = 1, path: str | None = None, station: str | None = None) -> None:
        """Fail the next ``times`` requests (None: until :meth:`heal`) whose path ends with ``path``."""
        if mode not in MODES:
            raise ValueError(f"unknown failure mode {mode!r}; use one of {', '.join(MODES)}")
        with self._lock:
            self._failures.append(_Failure(mode, times, path, station))

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()

    def _failure_for(self, path: str) -> _Failure | None:
        with self._lock:
            for f in self._failures:
                if f.path is None or path.endswith(f.path):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._failures.remove(f)
                    return f
        return None

    # ------------------------------------------------------------ answers
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        failure = self._failure_for(path)
        mode = failure.mode if failure else None
        now_s = self.now_s() - (STALE_BY_S if mode == "stale" else 0.0)
        try:
            if path == f"{API_PREFIX}/public/waterlevel_load":
                doc = self.waterlevel_load(now_s, failure)
            elif path == f"{API_PREFIX}/public/waterlevel_graph":
                doc = self.waterlevel_graph(query, now_s)
            elif path == f"{API_PREFIX}/analyst/dam":
                doc = self.dam(now_s, failure)
            else:
                self._send(h, path, 404, b'{"result":"NO","error":"not found"}', "application/json")
                return
        except (KeyError, ValueError) as exc:
            self._send(h, path, 422, json.dumps({"result": "NO", "error": str(exc)}).encode(), "application/json")
            return
        body = json.dumps(doc, ensure_ascii=False).encode()
        if mode == "timeout":
            time.sleep(self.hang_s)
            self._send(h, path, 200, body, "application/json")
        elif mode == "html":
            self._send(h, path, 200, _html("ThaiWater - ปิดปรับปรุงระบบชั่วคราว"), "text/html; charset=utf-8")
        elif mode == "5xx":
            self._send(h, path, 502, _html("502 Bad Gateway"), "text/html")
        elif mode == "half_json":
            self._send(h, path, 200, body[: len(body) // 2], "application/json")
        elif mode == "cut":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 3])
            h.wfile.flush()
            h.close_connection = True
            self.requests.append((path, "cut", 200))
        elif mode == "slow":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            pieces = 5
            for k in range(pieces):
                h.wfile.write(body[k * len(body) // pieces:(k + 1) * len(body) // pieces])
                h.wfile.flush()
                time.sleep(self.slow_s / pieces)
            self.requests.append((path, "slow", 200))
        else:
            self._send(h, path, 200, body, "application/json")

    def _send(self, h: BaseHTTPRequestHandler, path: str, status: int, body: bytes, content_type: str) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test): nothing to send to
        self.requests.append((path, "", status))

    def _latest_s(self, now_s: float) -> float:
        return math.floor(now_s / self.step_s) * self.step_s

    def waterlevel_load(self, now_s: float, failure: _Failure | None) -> dict[str, Any]:
        import numpy as np

        t = self._latest_s(now_s)
        rows = []
        for k, g in enumerate(self.gauges):
            if failure and failure.mode == "missing" and failure.station in (g.oldcode, str(g.thaiwater_id)):
                continue
            level, previous = (float(v) for v in np.asarray(self.level_m(g, np.array([t, t - self.step_s]))))
            if failure and failure.mode == "centimetres" and failure.station in (g.oldcode, str(g.thaiwater_id)):
                level, previous = level * 100.0, previous * 100.0
            rows.append(_waterlevel_row(k + 1, g, t, level, previous))
        return {"waterlevel_data": {"data": rows}, "scale": _SCALE}

    def waterlevel_graph(self, query: dict[str, str], now_s: float) -> dict[str, Any]:
        import numpy as np

        if query.get("station_type") != "tele_waterlevel":
            raise ValueError("station_type must be tele_waterlevel")
        gauge = next((g for g in self.gauges if str(g.thaiwater_id) == query["station_id"]), None)
        if gauge is None:
            raise KeyError(f"no station {query['station_id']}")
        start = datetime.fromisoformat(query["start_date"]).replace(tzinfo=BANGKOK).timestamp()
        end = datetime.fromisoformat(query["end_date"]).replace(tzinfo=BANGKOK).timestamp()
        last = min(end, self._latest_s(now_s))
        t = np.arange(math.ceil(start / self.step_s) * self.step_s, last + 1.0, self.step_s)
        values = np.asarray(self.level_m(gauge, t), dtype=float) if t.size else np.empty(0)
        graph = [{"datetime": _bangkok(ts), "value": round(float(v), 2), "discharge": None}
                 for ts, v in zip(t, values, strict=True)]
        return {"result": "OK", "data": {"graph_data": graph, "min_bank": gauge.min_bank_m,
                                         "ground_level": gauge.ground_level_m}}

    def dam(self, now_s: float, failure: _Failure | None) -> dict[str, Any]:
        import numpy as np

        local = datetime.fromtimestamp(now_s, tz=UTC).astimezone(BANGKOK)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        hour_start = local.replace(minute=0, second=0, microsecond=0)
        daily, hourly = [], []
        for d in self.dams:
            if failure and failure.mode == "missing" and failure.station in (d.oldcode, str(d.dam_id)):
                continue
            # Yesterday's full day (RID publishes a day once it is over) and the last full hour.
            yesterday = (day_start - timedelta(days=1)).timestamp()
            day_mean = float(np.mean(np.asarray(self.release_m3_s(d, yesterday + np.arange(0, 86_400, 900.0)))))
            prev_hour = (hour_start - timedelta(hours=1)).timestamp()
            hour_mean = float(np.mean(np.asarray(self.release_m3_s(d, prev_hour + np.arange(0, 3600, 300.0)))))
            daily.append(_dam_row(d, (day_start - timedelta(days=1)).strftime("%Y-%m-%d"), day_mean * 86_400 / 1e6))
            hourly.append(_dam_row(d, hour_start.strftime("%Y-%m-%d %H:%M"), hour_mean * 3600 / 1e6,
                                   key="dam_datetime"))
        return {"result": "OK", "data": {"dam_daily": daily, "dam_hourly": hourly, "dam_medium": []}}


# ------------------------------------------------------------------ shapes
def _bangkok(ts_s: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).astimezone(BANGKOK).strftime(fmt)


def _html(title: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
            "<p>ขออภัยในความไม่สะดวก</p></body></html>").encode()


_SCALE = {"scale": [{"operator": "<=", "term": "10", "color": "#DB802B", "situation": "น้ำน้อยวิกฤต"},
                    {"operator": "<=", "term": "30", "color": "#FFC000", "situation": "น้ำน้อย"},
                    {"operator": "<=", "term": "70", "color": "#00B050", "situation": "น้ำปกติ"},
                    {"operator": "<=", "term": "100", "color": "#003CFA", "situation": "น้ำมาก"},
                    {"operator": ">", "term": "100", "color": "#FF0000", "situation": "น้ำล้นตลิ่ง"}]}


def _situation(percent: float) -> int:
    # The stand-in's own mapping of bank percentage to a 1-5 class (not HII's published rule).
    for level, top in enumerate((10.0, 30.0, 70.0, 100.0), start=1):
        if percent <= top:
            return level
    return 5


def _waterlevel_row(row_id: int, g: Gauge, ts_s: float, level_m: float, previous_m: float) -> dict[str, Any]:
    span = max(g.min_bank_m - g.ground_level_m, 0.1)
    percent = (level_m - g.ground_level_m) / span * 100.0
    diff = g.min_bank_m - level_m
    return {
        "id": row_id,
        "waterlevel_datetime": _bangkok(ts_s),
        "waterlevel_m": None,
        "waterlevel_msl": f"{level_m:.2f}",
        "waterlevel_msl_previous": f"{previous_m:.2f}",
        "flow_rate": None,
        "discharge": None,
        "storage_percent": f"{percent:.2f}",
        "sort_order": None,
        "station_type": "tele_waterlevel",
        "situation_level": _situation(percent),
        "agency": {"id": 12, "agency_name": {"th": g.agency_th, "en": g.agency_en},
                   "agency_shortname": {"th": g.agency_short_th, "en": g.agency_short_en}},
        "basin": {"id": 14, "basin_code": 14, "basin_name": {"th": "ลุ่มน้ำท่าจีน", "en": "Tha Chin"}},
        "station": {
            "id": g.thaiwater_id,
            "tele_station_name": {"th": g.name_th, "en": g.name_en},
            "tele_station_lat": g.lat,
            "tele_station_long": g.lon,
            "tele_station_oldcode": g.oldcode,
            "tele_station_type": "W",
            "left_bank": g.min_bank_m + 0.2,
            "right_bank": g.min_bank_m,
            "min_bank": g.min_bank_m,
            "ground_level": g.ground_level_m,
            "offset": None,
            "sub_basin_id": 140,
            "agency_id": 12,
            "geocode_id": 7201,
            "hydro_id": None,
            "qmax": None,
            "is_key_station": True,
            "warning_level_m": None,
            "critical_level_m": None,
            "critical_level_msl": None,
        },
        "geocode": {"area_code": "3", "area_name": {"th": "ภาคกลาง", "en": "Central"},
                    "province_code": "72", "province_name": {"th": g.province_th, "en": g.province_en},
                    "amphoe_code": "01", "amphoe_name": {"th": "", "en": ""},
                    "tumbon_code": "01", "tumbon_name": {"th": "", "en": ""}},
        "diff_wl_bank": f"{abs(diff):.2f}",
        "diff_wl_bank_text": "ต่ำกว่าตลิ่ง (ม.)" if diff >= 0 else "ล้นตลิ่ง (ม.)",
        "river_gid": 1402,
        "river_name": g.river_name,
    }


def _dam_row(d: Dam, when: str, released_mcm: float, key: str = "dam_date") -> dict[str, Any]:
    return {
        key: when,
        "dam_storage": f"{0.62 * d.normal_storage_mcm:.2f}",
        "dam_storage_percent": "62.00",
        "dam_inflow": f"{released_mcm * 0.8:.4f}",
        "dam_released": f"{released_mcm:.4f}",
        "dam_spilled": "0",
        "dam_losses": "0",
        "dam_evap": "0.0187",
        "dam_level": "98.50",
        "dam_uses_water": f"{0.5 * d.normal_storage_mcm:.2f}",
        "dam": {"id": d.dam_id, "dam_oldcode": d.oldcode, "dam_name": {"th": d.name_th, "en": d.name_en},
                "dam_lat": 14.85, "dam_long": 99.63, "normal_storage": d.normal_storage_mcm,
                "max_storage": d.normal_storage_mcm * 1.1, "min_storage": 20.0},
        "agency": {"id": 12, "agency_name": {"th": "กรมชลประทาน", "en": "Royal Irrigation Department"}},
    }
