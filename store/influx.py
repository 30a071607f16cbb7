"""The production time-series store: InfluxDB 2.x through influxdb-client.

Data design (see docs/storage.md):

- measurement ``reading``; tags ``station`` (LP-W01...) and ``kind``
  (water_level | rain | discharge): few series, one per station, which is what InfluxDB
  indexes well; fields ``water_level_m``, ``rain_mm``, ``battery_v``,
  ``rssi_dbm``, ``discharge_m3_s`` (float), ``seq``, ``boot``, ``qc_flag`` (integer), ``qc_tests``
  (string), ``received_s`` (float); timestamp = the reading's ``ts`` at
  millisecond precision. InfluxDB keys a point by (series, time), so a
  re-written reading overwrites itself: the (station, ts) dedup is native.
  The (station, boot, seq) key is checked with one query per batch before
  writing, which also tells ingest which readings were new.
- measurement ``quarantine``; tags ``reason``, ``station`` ("unknown" when
  the topic named no known station); fields ``topic``, ``detail``,
  ``payload_hex``; nanosecond timestamps so rejections in one millisecond do
  not overwrite each other.

Writes are synchronous, one HTTP request per ingest batch: ingest already
batches and must know a batch is stored before it acknowledges the broker.
:meth:`InfluxStore.bulk_write` (import-csv) uses the client's batching
WriteApi instead. 5xx answers, timeouts and refused connections raise
:class:`~floodwatch.errors.StoreUnavailable` (ingest spools); 4xx raise
:class:`~floodwatch.errors.StoreError` with the fix.

Retention: give the bucket a retention period (``influx bucket create -n
floodwatch -r 400d``); :meth:`apply_retention` also deletes older readings
through the delete API for buckets created without one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS, WriteOptions
from influxdb_client.rest import ApiException

from floodwatch.logs import redact_url
from floodwatch.errors import ConfigError, StoreError, StoreUnavailable
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.store.base import Field, Rejection, StoreStats, Window, WriteResult, empty_window

if TYPE_CHECKING:
    from floodwatch.settings import Settings

log = logging.getLogger(__name__)

MEASUREMENT = "reading"
QUARANTINE = "quarantine"
_FIELDS = ("water_level_m", "rain_mm", "battery_v", "rssi_dbm", "discharge_m3_s")
_SUMMED = ("rain_mm",)
_PREDICTED_AHEAD_S = 400 * 86_400.0  # as far as ingest lets a predicted series reach


def http_url(url: str) -> str:
    """``influxdb+http://host:8086`` -> ``http://host:8086``; http(s) URLs unchanged."""
    for prefix in ("influxdb+http://", "influxdb+https://"):
        if url.startswith(prefix):
            return url[len("influxdb+"):]
    if url.startswith(("http://", "https://")):
        return url
    raise ConfigError(f"store url {redact_url(url)!r} is not an InfluxDB url; write it as influxdb+http://host:8086")


# -- line protocol (written by hand: Point objects cost ~20 us each) ---------
def _tag(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _str_field(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _flux_str(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ts_ms(ts_s: float) -> int:
    return int(round(ts_s * 1000.0))


def reading_line(r: Reading, kind: str) -> str:
    fields = []
    for name in _FIELDS:
        v = getattr(r, name)
        if v is not None:
            fields.append(f"{name}={float(v)!r}")
    if r.seq is not None:
        fields.append(f"seq={int(r.seq)}i")
    if r.boot is not None:
        fields.append(f"boot={int(r.boot)}i")
    fields.append(f"qc_flag={int(r.qc_flag)}i")
    if r.qc_tests:
        fields.append(f"qc_tests={_str_field(r.qc_tests)}")
    if r.received_s is not None:
        fields.append(f"received_s={float(r.received_s)!r}")
    return f"{MEASUREMENT},kind={_tag(kind)},station={_tag(r.station_id)} {','.join(fields)} {_ts_ms(r.ts_s)}"


def _rfc3339(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


class InfluxStore:
    """Readings and the quarantine in an InfluxDB 2.x bucket."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        kinds: dict[str, str] | None = None,
        retention_days: float = 400.0,
        timeout_s: float = 10.0,
    ) -> None:
        if not token:
            raise ConfigError("InfluxDB needs a token: set FLOODWATCH_STORE__INFLUX_TOKEN (an API token with "
                              "read/write on the bucket)")
        self.url = http_url(url)
        self.org = org
        self.bucket = bucket
        self.retention_days = retention_days
        self._kinds = kinds or {}
        # No urllib3 retries: a store that does not answer should make ingest
        # spool now, not hang the writer for a minute.
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0))
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._query = self._client.query_api()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "InfluxStore":
        cfg = settings.store
        token = cfg.influx_token.get_secret_value() if cfg.influx_token else ""
        return cls(cfg.url, token, cfg.influx_org, cfg.influx_bucket,
                   kinds={s.id: s.kind for s in settings.stations}, retention_days=cfg.retention_days)

    # -- errors ------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            status = exc.status or 0
            body = (exc.body or "")[:300] if isinstance(exc.body, str) else str(exc.body)[:300]
            if status >= 500 or status == 429:
                raise StoreUnavailable(f"InfluxDB at {self.url} answered {status} to {what}; retrying later") from exc
            hint = {
                401: "check FLOODWATCH_STORE__INFLUX_TOKEN",
                403: "give the token read/write permission on the bucket",
                404: f"create bucket {self.bucket!r} in org {self.org!r} (influx bucket create -n {self.bucket})",
            }.get(status, "see the message")
            raise StoreError(f"InfluxDB at {self.url} refused {what} with {status}: {body}; {hint}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} cannot be reached for {what} ({exc}); retrying later") from exc

    def _rows(self, flux: str) -> list[dict[str, Any]]:
        tables = self._call("a query", self._query.query, flux, org=self.org)
        return [rec.values for table in tables for rec in table.records]

    # -- writes ------------------------------------------------------------------
    def _kind(self, station_id: str) -> str:
        return self._kinds.get(station_id, "unknown")

    def insert_new(self, readings: Sequence[Reading]) -> list[Reading]:
        if not readings:
            return []
        existing_ts, existing_seq = self._existing_keys(readings)
        new: list[Reading] = []
        for r in readings:
            key_ts = (r.station_id, _ts_ms(r.ts_s))
            key_seq = (r.station_id, r.boot, r.seq) if r.boot is not None and r.seq is not None else None
            if key_ts in existing_ts or (key_seq is not None and key_seq in existing_seq):
                continue
            existing_ts.add(key_ts)
            if key_seq is not None:
                existing_seq.add(key_seq)
            new.append(r)
        if new:
            lines = [reading_line(r, self._kind(r.station_id)) for r in new]
            self._call("a write", self._write.write, bucket=self.bucket, org=self.org, record=lines,
                       write_precision=WritePrecision.MS)
        return new

    def _existing_keys(self, readings: Sequence[Reading]) -> tuple[set, set]:
        stations = sorted({r.station_id for r in readings})
        start_s = min(r.ts_s for r in readings)
        stop_s = max(r.ts_s for r in readings) + 0.001
        with_seq = [r for r in readings if r.seq is not None and r.boot is not None]
        if with_seq:
            # A re-sent buffer may carry new stamps for old (boot, seq): look a day around it.
            start_s = min(start_s, min(r.ts_s for r in with_seq) - 86_400.0)
            stop_s = max(stop_s, max(r.ts_s for r in with_seq) + 86_400.0)
        flux = (
            f'from(bucket: {_flux_str(self.bucket)})\n'
            f'  |> range(start: {_rfc3339(start_s)}, stop: {_rfc3339(stop_s)})\n'
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}")\n'
            f'  |> filter(fn: (r) => {self._station_predicate(stations)})\n'
            '  |> filter(fn: (r) => r._field == "qc_flag" or r._field == "seq" or r._field == "boot")\n'
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        )
        ts_keys: set = set()
        seq_keys: set = set()
        for row in self._rows(flux):
            station = row["station"]
            ts_keys.add((station, _ts_ms(row["_time"].timestamp())))
            if row.get("seq") is not None and row.get("boot") is not None:
                seq_keys.add((station, int(row["boot"]), int(row["seq"])))
        return ts_keys, seq_keys

    def replace_readings(self, station_id: StationId, start_s: float, end_s: float,
                         readings: Sequence[Reading]) -> list[Reading]:
        """Replace one station's readings in [start_s, end_s]: delete that range, then write.

        Two requests, not one transaction: a crash between them leaves the range empty
        until the feed loads it again (its cursor has not moved, so it does).
        """
        stray = [r for r in readings if r.station_id != station_id or not start_s <= r.ts_s <= end_s]
        if stray:
            raise StoreError(
                f"replace_readings for {station_id} over [{start_s}, {end_s}] got {len(stray)} readings outside "
                "it; pass only that station's readings in the range"
            )
        self._call("a delete", self._client.delete_api().delete,
                   datetime.fromtimestamp(start_s, tz=timezone.utc), datetime.fromtimestamp(end_s, tz=timezone.utc),
                   f'_measurement="{MEASUREMENT}" AND station={_flux_str(station_id)}',
                   bucket=self.bucket, org=self.org)
        if readings:
            lines = [reading_line(r, self._kind(r.station_id)) for r in readings]
            self._call("a write", self._write.write, bucket=self.bucket, org=self.org, record=lines,
                       write_precision=WritePrecision.MS)
        return list(readings)

    def write_batch(self, readings: Sequence[Reading]) -> WriteResult:
        stored = self.insert_new(readings)
        return WriteResult(stored=len(stored), duplicates=len(readings) - len(stored))

    def sync(self) -> None:
        """Nothing to do: InfluxDB answers 204 only after the write is in its WAL."""

    def bulk_write(self, readings: Sequence[Reading], batch_size: int = 5000) -> None:
        """Write many readings (history import) with the client's batching WriteApi; no dedup query.

        Points overwrite themselves by (station, ts), so importing twice is harmless.
        """
        errors: list[Exception] = []

        def on_error(conf: Any, data: Any, exc: Exception) -> None:
            errors.append(exc)

        with self._client.write_api(write_options=WriteOptions(batch_size=batch_size, flush_interval=1_000,
                                                               max_retries=3), error_callback=on_error) as api:
            api.write(bucket=self.bucket, org=self.org,
                      record=[reading_line(r, self._kind(r.station_id)) for r in readings],
                      write_precision=WritePrecision.MS)
        if errors:
            raise StoreError(f"InfluxDB bulk write failed: {errors[0]}") from errors[0]

    def write_rejections(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        lines = []
        for i, r in enumerate(rejections):
            ts_ns = int(r.received_s * 1e9) + i  # distinct times: rejections never overwrite each other
            lines.append(
                f"{QUARANTINE},reason={_tag(r.reason)},station={_tag(r.station_id or 'unknown')} "
                f"topic={_str_field(r.topic)},detail={_str_field(r.detail)},payload_hex={_str_field(r.payload.hex())} "
                f"{ts_ns}"
            )
        self._call("a quarantine write", self._write.write, bucket=self.bucket, org=self.org, record=lines,
                   write_precision=WritePrecision.NS)

    def apply_retention(self, now_s: float) -> int:
        """Delete readings older than the retention window (the bucket's own retention does this too).

        InfluxDB does not say how many points went; returns 0.
        """
        cutoff = datetime.fromtimestamp(now_s - self.retention_days * 86_400.0, tz=timezone.utc)
        self._call("a delete", self._client.delete_api().delete, datetime(1970, 1, 1, tzinfo=timezone.utc), cutoff,
                   f'_measurement="{MEASUREMENT}"', bucket=self.bucket, org=self.org)
        return 0

    # -- reads -------------------------------------------------------------------
    @staticmethod
    def _station_predicate(station_ids: Sequence[str]) -> str:
        return " or ".join(f"r.station == {_flux_str(s)}" for s in station_ids)

    def read_window(
        self,
        station_ids: Sequence[StationId],
        field: Field,
        start_s: float,
        end_s: float,
        step_s: float,
        *,
        include_failed: bool = False,
    ) -> Window:
        window = empty_window(station_ids, field, _FIELDS, start_s, end_s, step_s)
        ids, t_s, values, n_bins = window.station_ids, window.t_s, window.values, window.t_s.size
        if not ids:
            return window
        keep = f"exists r.{field}" + ("" if include_failed else f" and r.qc_flag != {int(QcFlag.FAIL)}")
        fn = "sum" if field in _SUMMED else "mean"
        # Windows start at start_s: Flux aligns them to the epoch plus this offset.
        offset_s = math.fmod(start_s, step_s)
        flux = (
            f'from(bucket: {_flux_str(self.bucket)})\n'
            f'  |> range(start: {_rfc3339(start_s)}, stop: {_rfc3339(end_s)})\n'
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}")\n'
            f'  |> filter(fn: (r) => {self._station_predicate(ids)})\n'
            f'  |> filter(fn: (r) => r._field == "{field}" or r._field == "qc_flag")\n'
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
            f'  |> filter(fn: (r) => {keep})\n'
            f'  |> aggregateWindow(every: {_duration(step_s)}, offset: {_duration(offset_s)}, fn: {fn}, '
            f'column: "{field}", timeSrc: "_start", createEmpty: false)\n'
        )
        row_of = {sid: i for i, sid in enumerate(ids)}
        for row in self._rows(flux):
            v = row.get(field)
            sid = row.get("station")
            if v is None or sid not in row_of:
                continue
            b = int(round((row["_time"].timestamp() - start_s) / step_s))
            if 0 <= b < n_bins:
                values[row_of[sid], b] = float(v)
        return Window(ids, t_s, values)

    def _readings_flux(self, station_ids: Sequence[str], start_s: float, end_s: float) -> str:
        return (
            f'from(bucket: {_flux_str(self.bucket)})\n'
            f'  |> range(start: {_rfc3339(start_s)}, stop: {_rfc3339(end_s)})\n'
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}")\n'
            f'  |> filter(fn: (r) => {self._station_predicate(station_ids)})\n'
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        )

    def read_readings(self, station_id: StationId, start_s: float, end_s: float) -> list[Reading]:
        flux = self._readings_flux([station_id], start_s, end_s) + '  |> sort(columns: ["_time"])\n'
        return [_row_to_reading(row) for row in self._rows(flux)]

    def latest(self, station_ids: Sequence[StationId] | None = None) -> dict[StationId, Reading]:
        ids = list(station_ids) if station_ids is not None else list(self._kinds)
        if not ids:
            return {}
        now_s = datetime.now(tz=timezone.utc).timestamp()
        found: dict[StationId, Reading] = {}
        # Look back a week first (the page asks often, and stations report every
        # 10 minutes); only silent stations cost a scan of the whole retention.
        for lookback_s in (7 * 86_400.0, self.retention_days * 86_400.0):
            todo = [sid for sid in ids if sid not in found]
            if not todo:
                break
            flux = (
                # Far ahead too: a predicted series' newest reading is where its prediction ends.
                self._readings_flux(todo, now_s - lookback_s, now_s + _PREDICTED_AHEAD_S)
                + '  |> group(columns: ["station"])\n'
                + '  |> sort(columns: ["_time"])\n'
                + '  |> last(column: "qc_flag")\n'
            )
            for row in self._rows(flux):
                found[StationId(row["station"])] = _row_to_reading(row)
        return found

    def quarantine(self, limit: int = 100, station_id: str | None = None) -> list[Rejection]:
        now_s = datetime.now(tz=timezone.utc).timestamp()
        station_filter = f'  |> filter(fn: (r) => r.station == {_flux_str(station_id)})\n' if station_id else ""
        flux = (
            f'from(bucket: {_flux_str(self.bucket)})\n'
            f'  |> range(start: {_rfc3339(now_s - self.retention_days * 86_400.0)}, stop: {_rfc3339(now_s + 86_400.0)})\n'
            f'  |> filter(fn: (r) => r._measurement == "{QUARANTINE}")\n'
            + station_filter
            + '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
            '  |> group()\n'
            '  |> sort(columns: ["_time"], desc: true)\n'
            f'  |> limit(n: {int(limit)})\n'
        )
        out = []
        for row in self._rows(flux):
            station = row.get("station")
            out.append(Rejection(
                received_s=row["_time"].timestamp(),
                topic=row.get("topic", ""),
                reason=row.get("reason", ""),
                detail=row.get("detail", ""),
                payload=bytes.fromhex(row.get("payload_hex", "")),
                station_id=None if station in (None, "unknown") else station,
            ))
        return out

    def quarantine_counts(self) -> dict[tuple[str, str], int]:
        now_s = datetime.now(tz=timezone.utc).timestamp()
        flux = (
            f'from(bucket: {_flux_str(self.bucket)})\n'
            f'  |> range(start: {_rfc3339(now_s - self.retention_days * 86_400.0)}, stop: {_rfc3339(now_s + 86_400.0)})\n'
            f'  |> filter(fn: (r) => r._measurement == "{QUARANTINE}" and r._field == "topic")\n'
            '  |> group(columns: ["reason", "station"])\n'
            '  |> count()\n'
        )
        out = {}
        for row in self._rows(flux):
            station = row.get("station")
            out[(row["reason"], "" if station == "unknown" else station)] = int(row["_value"])
        return out

    def stats(self) -> StoreStats:
        now_s = datetime.now(tz=timezone.utc).timestamp()
        base = (
            f'from(bucket: {_flux_str(self.bucket)})\n'
            f'  |> range(start: {_rfc3339(now_s - self.retention_days * 86_400.0)}, stop: {_rfc3339(now_s + 86_400.0)})\n'
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r._field == "qc_flag")\n'
        )
        per_station = self._rows(base + "  |> count()\n")
        firsts = [r["_time"].timestamp() for r in self._rows(base + "  |> first()\n")] if per_station else []
        lasts = [r["_time"].timestamp() for r in self._rows(base + "  |> last()\n")] if per_station else []
        return StoreStats(
            readings=sum(int(r["_value"]) for r in per_station),
            stations=len(per_station),
            oldest_s=min(firsts) if firsts else None,
            newest_s=max(lasts) if lasts else None,
            quarantined=sum(self.quarantine_counts().values()),
        )

    def close(self) -> None:
        self._write.close()
        self._client.close()

    def __enter__(self) -> "InfluxStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _row_to_reading(row: dict[str, Any]) -> Reading:
    def num(name: str) -> float | None:
        v = row.get(name)
        return None if v is None else float(v)

    def integer(name: str) -> int | None:
        v = row.get(name)
        return None if v is None else int(v)

    return Reading(
        station_id=StationId(row["station"]),
        ts_s=_ts_ms(row["_time"].timestamp()) / 1000.0,
        seq=integer("seq"),
        boot=integer("boot"),
        water_level_m=num("water_level_m"),
        rain_mm=num("rain_mm"),
        battery_v=num("battery_v"),
        rssi_dbm=num("rssi_dbm"),
        qc_flag=QcFlag(int(row.get("qc_flag") or QcFlag.NOT_EVALUATED)),
        qc_tests=row.get("qc_tests") or "",
        received_s=num("received_s"),
        discharge_m3_s=num("discharge_m3_s"),
    )
