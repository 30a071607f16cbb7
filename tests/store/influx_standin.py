"""A small local stand-in for InfluxDB 2.x, for testing what influxdb-client sends.

No InfluxDB 2.x server can be installed on these machines, so this HTTP
server on 127.0.0.1:

- checks every request against InfluxData's published contract
  (``tests/store/spec/influxdb-oss-excerpt.yml``, excerpted from
  ``../shared/influxdb-openapi/oss.yml``) with openapi-core, and records
  each violation (tests assert there are none); the contract declares the
  write body as ``format: byte`` (base64) although InfluxDB takes raw line
  protocol, so that one check is replaced by a strict line-protocol parser;
- checks the ``Authorization: Token ...`` header, the org and the bucket,
  answering like InfluxDB does (401/404 JSON bodies, 204 on writes);
- keeps written points with InfluxDB's (series, time) overwrite semantics;
- evaluates the subset of Flux that floodwatch sends (from, range, filter,
  pivot, aggregateWindow, group, sort, first, last, count, limit) over those
  points and answers annotated CSV as InfluxDB 2.x does (#group, #datatype,
  #default rows, one block per table);
- can be told to answer 503 for a while (store outage).

It is a test double of InfluxDB, not of floodwatch: nothing of ours is mocked.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
from collections import defaultdict
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# The paths floodwatch uses, excerpted unchanged from InfluxData's contract (see spec/excerpt.py).
SPEC = Path(__file__).with_name("spec") / "influxdb-oss-excerpt.yml"
_openapi = None
_openapi_lock = threading.Lock()


def openapi():
    global _openapi
    with _openapi_lock:
        if _openapi is None:
            from openapi_core import Config, OpenAPI

            # The published file has schema quirks (``required: true`` inside
            # properties) that fail strict spec validation; requests are still
            # validated against it.
            _openapi = OpenAPI.from_file_path(str(SPEC), config=Config(spec_validator_cls=None))
        return _openapi


# ---------------------------------------------------------------- line protocol
class LineProtocolError(ValueError):
    pass


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i, quoted = [], [], 0, False
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _field_value(raw: str) -> Any:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise LineProtocolError(f"unterminated string field {raw!r}")
        return raw[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith("i"):
        try:
            return int(raw[:-1])
        except ValueError as exc:
            raise LineProtocolError(f"invalid integer {raw!r}") from exc
    if raw.endswith("u"):
        raise LineProtocolError("unsigned integers are not enabled")
    try:
        v = float(raw)
    except ValueError as exc:
        raise LineProtocolError(f"invalid field value {raw!r}") from exc
    if not math.isfinite(v) or raw.lower() in ("nan", "inf", "+inf", "-inf"):
        raise LineProtocolError(f"invalid number {raw!r}")
    return v


_PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def parse_line(line: str, precision: str) -> tuple[str, tuple[tuple[str, str], ...], dict[str, Any], int]:
    """(measurement, sorted tags, fields, time ns) from one line; raises LineProtocolError."""
    sections = _split_unescaped(line, " ")
    sections = [s for s in sections if s != ""]
    if len(sections) not in (2, 3):
        raise LineProtocolError(f"expected 'measurement[,tags] fields [time]', got {len(sections)} sections")
    key, fields_text = sections[0], sections[1]
    key_parts = _split_unescaped(key, ",")
    measurement = _unescape(key_parts[0])
    if not measurement:
        raise LineProtocolError("missing measurement")
    tags = []
    for t in key_parts[1:]:
        kv = _split_unescaped(t, "=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise LineProtocolError(f"invalid tag {t!r}")
        tags.append((_unescape(kv[0]), _unescape(kv[1])))
    if [k for k, _ in tags] != sorted(k for k, _ in tags):
        pass  # InfluxDB accepts unsorted tags (sorting only helps it); not an error
    fields = {}
    for f in _split_unescaped(fields_text, ","):
        kv = f.split("=", 1)
        if len(kv) != 2 or not kv[0]:
            raise LineProtocolError(f"invalid field {f!r}")
        fields[_unescape(kv[0])] = _field_value(kv[1])
    if not fields:
        raise LineProtocolError("missing fields")
    if len(sections) == 3:
        if not re.fullmatch(r"-?\d+", sections[2]):
            raise LineProtocolError(f"invalid timestamp {sections[2]!r}")
        ts_ns = int(sections[2]) * _PRECISION_NS[precision]
    else:
        ts_ns = int(datetime.now(tz=timezone.utc).timestamp() * 1e9)
    return measurement, tuple(sorted(tags)), fields, ts_ns


# ------------------------------------------------------------------------- Flux
def _rfc3339(ts_ns: int) -> str:
    sec, frac = divmod(ts_ns, 1_000_000_000)
    base = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + "Z"


def _parse_time(text: str) -> int:
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text) * 1_000_000_000
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(round(when.timestamp() * 1e6)) * 1000


def _duration_ns(text: str) -> int:
    total = 0
    for amount, unit in re.findall(r"(\d+)(ns|us|ms|s|m|h|d)", text):
        total += int(amount) * {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
                                "h": 3600 * 10**9, "d": 86400 * 10**9}[unit]
    return total


def _split_stages(flux: str) -> list[str]:
    return [s.strip() for s in flux.split("|>") if s.strip()]


def _args(stage: str) -> tuple[str, str]:
    m = re.fullmatch(r"(\w+)\((.*)\)", stage.strip(), flags=re.S)
    if not m:
        raise ValueError(f"cannot parse Flux stage {stage!r}")
    return m.group(1), m.group(2)


def _arg(body: str, name: str, default: Any = None) -> Any:
    m = re.search(rf"\b{name}:\s*(\"[^\"]*\"|\[[^\]]*\]|[^,)]+)", body)
    if not m:
        return default
    raw = m.group(1).strip()
    if raw.startswith('"'):
        return raw[1:-1]
    if raw.startswith("["):
        return re.findall(r'"([^"]*)"', raw)
    if raw in ("true", "false"):
        return raw == "true"
    return raw


def _predicate(body: str):
    m = re.search(r"fn:\s*\(r\)\s*=>\s*(.*)$", body, flags=re.S)
    if not m:
        raise ValueError(f"filter without fn: {body!r}")
    expr = m.group(1).strip()
    py = re.sub(r"exists\s+r\.(\w+)", r'(_r.get("\1") is not None)', expr)
    py = re.sub(r"\br\.(\w+)", r'_r.get("\1")', py)
    code = compile(py, "<flux>", "eval")

    def pred(row: dict) -> bool:
        try:
            return bool(eval(code, {"__builtins__": {}}, {"_r": row}))  # noqa: S307 - our own test double
        except TypeError:
            return False  # comparing a missing (null) value: Flux filters the row out

    return pred


Table = tuple[tuple[tuple[str, Any], ...], list[dict]]


def _regroup(tables: list[Table], columns: list[str] | None) -> list[Table]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for _, rows in tables:
        for row in rows:
            key = tuple((c, row.get(c)) for c in columns) if columns else ()
            out[key].append(row)
    return [(k, rows) for k, rows in out.items()]


def evaluate(flux: str, points: dict, bucket_names: set[str]) -> list[Table]:
    stages = _split_stages(flux)
    name, body = _args(stages[0])
    if name != "from":
        raise ValueError("a query must start with from(bucket: ...)")
    bucket = _arg(body, "bucket")
    if bucket not in bucket_names:
        raise LookupError(f'could not find bucket "{bucket}"')
    tables: list[Table] = []
    for stage in stages[1:]:
        name, body = _args(stage)
        if name == "range":
            start = _parse_time(_arg(body, "start"))
            stop = _parse_time(_arg(body, "stop")) if _arg(body, "stop") else int(datetime.now(tz=timezone.utc).timestamp() * 1e9)
            series: dict[tuple, list[dict]] = defaultdict(list)
            for (b, measurement, tags, field, ts_ns), value in points.items():
                if b != bucket or not start <= ts_ns < stop:
                    continue
                row = {"_start": start, "_stop": stop, "_time": ts_ns, "_value": value, "_field": field,
                       "_measurement": measurement, **dict(tags)}
                series[(measurement, tags, field)].append(row)
            tables = []
            for (measurement, tags, field), rows in sorted(series.items()):
                rows.sort(key=lambda r: r["_time"])
                key = (("_start", start), ("_stop", stop), ("_field", field), ("_measurement", measurement), *tags)
                tables.append((key, rows))
        elif name == "filter":
            pred = _predicate(body)
            tables = [(k, [r for r in rows if pred(r)]) for k, rows in tables]
            tables = [(k, rows) for k, rows in tables if rows]
        elif name == "pivot":
            merged: dict[tuple, dict[int, dict]] = defaultdict(dict)
            for key, rows in tables:
                new_key = tuple((c, v) for c, v in key if c not in ("_field", "_value"))
                for r in rows:
                    target = merged[new_key].setdefault(r["_time"], {c: v for c, v in r.items()
                                                                     if c not in ("_field", "_value")})
                    target[r["_field"]] = r["_value"]
            tables = [(k, [rows[t] for t in sorted(rows)]) for k, rows in merged.items()]
        elif name == "aggregateWindow":
            every = _duration_ns(_arg(body, "every"))
            offset = _duration_ns(_arg(body, "offset", "0s"))
            fn = _arg(body, "fn")
            column = _arg(body, "column", "_value")
            out_tables = []
            for key, rows in tables:
                windows: dict[int, list] = defaultdict(list)
                for r in rows:
                    if r.get(column) is None:
                        continue
                    w = (r["_time"] - offset) // every * every + offset
                    windows[w].append(r[column])
                keyd = dict(key)
                new_rows = []
                for w in sorted(windows):
                    vals = windows[w]
                    agg = sum(vals) / len(vals) if fn == "mean" else sum(vals)
                    new_rows.append({**keyd, "_time": w, column: float(agg)})
                if new_rows:
                    out_tables.append((key, new_rows))
            tables = out_tables
        elif name == "group":
            cols = _arg(body, "columns", [])
            tables = _regroup(tables, cols)
            tables = [(tuple((c, v) for c, v in k), rows) for k, rows in tables]
        elif name == "sort":
            cols = _arg(body, "columns", ["_value"])
            desc = bool(_arg(body, "desc", False))
            tables = [(k, sorted(rows, key=lambda r: tuple(r.get(c) for c in cols), reverse=desc))
                      for k, rows in tables]
        elif name in ("last", "first"):
            column = _arg(body, "column", "_value")
            out = []
            for k, rows in tables:
                have = [r for r in rows if r.get(column) is not None]
                if have:
                    out.append((k, [have[-1] if name == "last" else have[0]]))
            tables = out
        elif name == "count":
            tables = [(k, [{**dict(k), "_value": sum(1 for r in rows if r.get("_value") is not None)}])
                      for k, rows in tables]
        elif name == "limit":
            n = int(_arg(body, "n"))
            tables = [(k, rows[:n]) for k, rows in tables]
        else:
            raise ValueError(f"the stand-in does not evaluate Flux function {name}()")
    return tables


def _datatype(values: list[Any], column: str) -> str:
    if column in ("_start", "_stop", "_time"):
        return "dateTime:RFC3339"
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "long"
        if isinstance(v, float):
            return "double"
        return "string"
    return "string"


def _cell(v: Any, datatype: str) -> str:
    if v is None:
        return ""
    if datatype == "dateTime:RFC3339":
        return _rfc3339(v)
    if datatype == "boolean":
        return "true" if v else "false"
    if datatype == "double":
        return repr(float(v))
    text = str(v)
    if any(ch in text for ch in ',"\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def annotated_csv(tables: list[Table]) -> str:
    """InfluxDB 2.x's annotated CSV: one block (annotations, header, rows) per table."""
    blocks = []
    for index, (key, rows) in enumerate(tables):
        group_cols = {c for c, _ in key}
        columns = []
        for r in rows:
            for c in r:
                if c not in columns:
                    columns.append(c)
        ordered = [c for c in ("_start", "_stop", "_time", "_value", "_field", "_measurement") if c in columns]
        ordered += sorted(c for c in columns if c not in ordered)
        types = [_datatype([r.get(c) for r in rows], c) for c in ordered]
        lines = [
            "#group,false,false," + ",".join("true" if c in group_cols else "false" for c in ordered),
            "#datatype,string,long," + ",".join(types),
            "#default,_result,," + "," * (len(ordered) - 1),
            ",result,table," + ",".join(ordered),
        ]
        for r in rows:
            lines.append(",," + str(index) + "," + ",".join(_cell(r.get(c), t) for c, t in zip(ordered, types)))
        blocks.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(blocks) + "\r\n"


# ----------------------------------------------------------------------- server
class InfluxStandIn:
    """``with InfluxStandIn(token="t", org="floodwatch", buckets={"floodwatch"}) as influx: influx.url``"""

    def __init__(self, token: str = "test-token", org: str = "floodwatch", buckets: set[str] | None = None) -> None:
        self.token = token
        self.org = org
        self.buckets = set(buckets or {"floodwatch"})
        self.points: dict[tuple, Any] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.violations: list[str] = []
        self.queries: list[str] = []
        self.write_bodies: list[str] = []
        # bodies answered 204: what InfluxDB took, as (bucket, precision, text)
        self.accepted_writes: list[tuple[str, str, str]] = []
        self._fail_status: int | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def accepted_points(self, measurement: str) -> list[tuple[tuple[tuple[str, str], ...], int]]:
        """Every point of ``measurement`` in the write bodies answered 204, as (tags, time ns), repeats kept.

        A point written twice appears twice here, though InfluxDB (and :attr:`points`) keeps one.
        """
        with self._lock:
            writes = list(self.accepted_writes)
        out = []
        for _, precision, text in writes:
            for line in text.split("\n"):
                if line.strip() and not line.startswith("#"):
                    name, tags, _, ts_ns = parse_line(line, precision)
                    if name == measurement:
                        out.append((tags, ts_ns))
        return out

    def fail_with(self, status: int | None) -> None:
        """Answer every API request with ``status`` (e.g. 503) until called with None."""
        self._fail_status = status

    def __enter__(self) -> "InfluxStandIn":
        openapi()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._handle(self, "get")

            def do_HEAD(self) -> None:
                standin._handle(self, "head")

            def do_POST(self) -> None:
                standin._handle(self, "post")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- request handling --------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"",
               content_type: str = "application/json; charset=utf-8") -> None:
        h.send_response(status)
        h.send_header("X-Influxdb-Version", "v2.7.10-standin")
        h.send_header("X-Influxdb-Build", "OSS")
        if body or status not in (204,):
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body and h.command != "HEAD":
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self._reply(h, status, json.dumps({"code": code, "message": message}).encode())

    def _validate(self, method: str, path: str, query: list, headers: dict, body: bytes) -> list[str]:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        class Req:
            host_url = "http://127.0.0.1"
            full_url_pattern = "http://127.0.0.1" + path

        req = Req()
        req.path = path  # type: ignore[attr-defined]
        req.method = method  # type: ignore[attr-defined]
        req.parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(headers),  # type: ignore[attr-defined]
                                           cookie=ImmutableMultiDict(), path={})
        req.body = body  # type: ignore[attr-defined]
        req.content_type = headers.get("Content-Type", "")  # type: ignore[attr-defined]
        result = openapi().unmarshal_request(req)
        problems = []
        for err in result.errors:
            cause = err.__cause__
            text = f"{type(err).__name__}: {cause or err}"
            schema_errors = getattr(cause, "schema_errors", None) or ()
            if (path.endswith("/write") and type(err).__name__ == "InvalidRequestBody" and schema_errors
                    and all(e.validator == "format" and e.validator_value == "byte" for e in schema_errors)):
                continue  # the contract's format: byte quirk; line protocol is checked below instead
            problems.append(text)
        return problems

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        path = split.path
        query = parse_qsl(split.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k: v for k, v in h.headers.items()}
        if path in ("/ping", "/health"):
            self.requests.append((method, path, 204))
            if path == "/health":
                self._reply(h, 200, json.dumps({"name": "influxdb", "status": "pass", "version": "v2.7.10"}).encode())
            else:
                self._reply(h, 204)
            return
        if not path.startswith("/api/v2/"):
            self._error(h, 404, "not found", "path not found")
            return
        problems = self._validate(method, path, query, headers, body)
        if problems:
            with self._lock:
                self.violations.extend(f"{method.upper()} {path}: {p}" for p in problems)
        if self._fail_status is not None:
            self.requests.append((method, path, self._fail_status))
            self._error(h, self._fail_status, "unavailable", "service unavailable (stand-in outage)")
            return
        auth = headers.get("Authorization", "")
        if auth != f"Token {self.token}":
            self.requests.append((method, path, 401))
            self._error(h, 401, "unauthorized", "unauthorized access")
            return
        params = dict(query)
        if params.get("org") not in (self.org, None):
            self._error(h, 404, "not found", f'organization name "{params.get("org")}" not found')
            return
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if path == "/api/v2/write":
            self._write(h, params, body)
        elif path == "/api/v2/query":
            self._query(h, body)
        elif path == "/api/v2/delete":
            self._delete(h, params, body)
        else:
            self._error(h, 404, "not found", "path not found")

    def _write(self, h: BaseHTTPRequestHandler, params: dict, body: bytes) -> None:
        bucket = params.get("bucket", "")
        if bucket not in self.buckets:
            self.requests.append(("post", "/api/v2/write", 404))
            self._error(h, 404, "not found", f'bucket "{bucket}" not found')
            return
        precision = params.get("precision", "ns")
        text = body.decode("utf-8")
        self.write_bodies.append(text)
        parsed = []
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            try:
                parsed.append(parse_line(line, precision))
            except LineProtocolError as exc:
                self.violations.append(f"line protocol: {exc}: {line!r}")
                self.requests.append(("post", "/api/v2/write", 400))
                self._error(h, 400, "invalid", f"unable to parse '{line}': {exc}")
                return
        with self._lock:
            for measurement, tags, fields, ts_ns in parsed:
                for field, value in fields.items():
                    self.points[(bucket, measurement, tags, field, ts_ns)] = value
            self.accepted_writes.append((bucket, precision, text))
        self.requests.append(("post", "/api/v2/write", 204))
        self._reply(h, 204)

    def _query(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        q = json.loads(body)
        flux = q["query"]
        self.queries.append(flux)
        try:
            with self._lock:
                tables = evaluate(flux, dict(self.points), self.buckets)
        except LookupError as exc:
            self._error(h, 404, "not found", str(exc).strip("'\""))
            return
        except ValueError as exc:
            self.violations.append(f"flux: {exc}")
            self._error(h, 400, "invalid", f"compilation failed: {exc}")
            return
        self.requests.append(("post", "/api/v2/query", 200))
        self._reply(h, 200, annotated_csv(tables).encode(), "text/csv; charset=utf-8")

    def _delete(self, h: BaseHTTPRequestHandler, params: dict, body: bytes) -> None:
        req = json.loads(body)
        start, stop = _parse_time(req["start"]), _parse_time(req["stop"])
        # InfluxDB's delete predicate: key="value" terms joined by AND (no OR, no parentheses).
        wanted: dict[str, str] = {}
        predicate = req.get("predicate", "").strip()
        for term in (re.split(r"\s+AND\s+", predicate) if predicate else []):
            m = re.fullmatch(r'\s*([A-Za-z_][\w]*)\s*=\s*"([^"]*)"\s*', term)
            if m is None:
                self.violations.append(f"delete predicate term {term!r} is not key=\"value\"")
                self._error(h, 400, "invalid", f"invalid predicate {predicate!r}")
                return
            wanted[m.group(1)] = m.group(2)
        bucket = params.get("bucket")

        def matches(key: tuple) -> bool:
            tags = dict(key[2])
            for name, value in wanted.items():
                have = key[1] if name == "_measurement" else tags.get(name)
                if have != value:
                    return False
            return True

        with self._lock:
            for key in [k for k in self.points if k[0] == bucket and start <= k[4] <= stop and matches(k)]:
                del self.points[key]
        self.requests.append(("post", "/api/v2/delete", 204))
        self._reply(h, 204)
