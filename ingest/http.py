"""HTTP ingestion for loggers that cannot hold an MQTT session: ``POST /api/v1/ingest/{station_id}``.

The body is the MQTT contract's payload (one reading, or ``{"readings": [...]}``,
docs/mqtt-contract.md); it goes through :meth:`IngestService.submit`, i.e. the
same validation, QC, dedup, transaction and quarantine as a message from the
broker, and the answer comes only once the write is durable:

- ``200`` stored (``stored``, ``duplicates``, and ``rejected`` for refused
  readings of a batch whose others were stored), ``202`` kept in ingest's spool
  because the store is unavailable (stored when it answers; do not resend);
- ``400``/``413``/``422`` nothing stored, with the quarantine's reasons
  (``bad_json``, ``oversized``, ``invalid_field``, ``future_ts``...);
- ``401`` no or wrong token, ``403`` another node's token (or none configured
  for this station), ``404`` unknown station, ``429`` over the node's rate
  (``Retry-After``), ``503`` the write failed (send again).

Each node has its own token: ``fwi.<station>.<secret>`` from ``floodwatch
ingest-token``; only its salted SHA-256 is kept (``[http_ingest] tokens``). A
token is a 256-bit random secret, so one SHA-256 is enough (no password
stretching: nothing to guess) and costs a microsecond per request. Tokens and
bodies are never logged. The router is mounted on the page's FastAPI app by
``cli/system.py``; the logic is all here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from floodwatch import metrics
from floodwatch.ingest.payload import MAX_PAYLOAD_BYTES
from floodwatch.vocabulary import StationId

if TYPE_CHECKING:
    from floodwatch.ingest.service import IngestOutcome, IngestService
    from floodwatch.settings import Settings

log = logging.getLogger(__name__)

TOKEN_PREFIX = "fwi"
SALT_BYTES = 16
# A write should be durable in milliseconds; this long means the store or disk is stuck.
WRITE_TIMEOUT_S = 30.0
# Failed log-ins a station's URL takes before it is held off for a while (per minute).
FAILED_AUTH_PER_MIN = 10.0
FAILED_AUTH_BURST = 10

metrics.describe("floodwatch_http_ingest_requests_total", "counter", "HTTP ingest requests, by station and status")

_STATUS_OF_REASON = {"oversized": 413, "bad_json": 400, "not_utf8": 400}


# ------------------------------------------------------------------ tokens
def new_token(station_id: str) -> str:
    """A fresh token for one node: ``fwi.<station>.<43 url-safe characters>`` (256 random bits)."""
    return f"{TOKEN_PREFIX}.{station_id}.{secrets.token_urlsafe(32)}"


def hash_token(token: str, salt: bytes | None = None) -> str:
    """``sha256$<salt b64>$<digest b64>``: what ``[http_ingest] tokens`` keeps instead of the token."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.sha256(salt + token.encode()).digest()
    return f"sha256${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def token_matches(token: str, stored: str) -> bool:
    """Constant-time check of a presented token against a hash from :func:`hash_token`."""
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
        if scheme != "sha256":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.sha256(salt + token.encode()).digest(), expected)


def token_station(token: str) -> str | None:
    """The station a token was made for (its middle part), or None if it is not a floodwatch token."""
    parts = token.split(".")
    if len(parts) < 3 or parts[0] != TOKEN_PREFIX:
        return None
    return ".".join(parts[1:-1])


# -------------------------------------------------------------- rate limit
class TokenBuckets:
    """A token bucket per key (node): ``rate_per_s`` sustained, ``burst`` at once. Thread-safe.

    Real (monotonic) time, not the demo's accelerated clock: it protects the server.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Any = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            level, last = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate_per_s)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate_per_s


# ------------------------------------------------------------------ router
@dataclass(frozen=True)
class _Refusal:
    status: int
    reason: str
    detail: str


def _answer(station_id: str, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> JSONResponse:
    metrics.inc("floodwatch_http_ingest_requests_total", station=station_id, status=str(status))
    return JSONResponse(body, status_code=status, headers=headers)


def _refuse(station_id: str, refusal: _Refusal, headers: dict[str, str] | None = None) -> JSONResponse:
    log.warning("event=http_ingest_refused station=%s status=%d reason=%s", station_id, refusal.status,
                refusal.reason)
    body = {"station_id": station_id, "stored": 0, "duplicates": 0,
            "rejected": [{"reason": refusal.reason, "detail": refusal.detail}]}
    return _answer(station_id, refusal.status, body, headers)


def _outcome_body(outcome: IngestOutcome) -> dict[str, Any]:
    return {
        "station_id": outcome.station_id,
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "spooled": outcome.spooled,
        "rejected": [{"reason": e.reason, "detail": e.detail} for e in outcome.errors],
    }


def http_router(settings: Settings, service: IngestService) -> APIRouter:
    """``POST /api/v1/ingest/{station_id}`` for ``service`` (a started :class:`IngestService`)."""
    cfg = settings.http_ingest
    known = {s.id for s in settings.stations}
    per_node = TokenBuckets(cfg.rate_per_min / 60.0, cfg.burst)
    failures = TokenBuckets(FAILED_AUTH_PER_MIN / 60.0, FAILED_AUTH_BURST)
    router = APIRouter(prefix="/api/v1", tags=["ingest"])

    def authenticate(station_id: str, header: str) -> _Refusal | None:
        stored = cfg.tokens.get(StationId(station_id))
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _Refusal(401, "missing_token", "send the node's token as 'Authorization: Bearer fwi.…'")
        token = token.strip()
        if stored is not None and token_matches(token, stored):
            return None
        named_in_token = token_station(token)
        named = StationId(named_in_token) if named_in_token is not None else None
        if (named is not None and named != station_id and named in cfg.tokens
                and token_matches(token, cfg.tokens[named])):
            return _Refusal(403, "wrong_station_token",
                            f"this token belongs to station {named}, not {station_id}; post to "
                            f"/api/v1/ingest/{named} or give this logger {station_id}'s token")
        if stored is None:
            return _Refusal(403, "no_token_configured",
                            f"station {station_id} has no HTTP ingest token; run `floodwatch ingest-token "
                            f"{station_id}` and add the hash it prints to [http_ingest] tokens")
        return _Refusal(401, "bad_token", f"the token is not {station_id}'s; check the logger's configuration")

    @router.post(
        "/ingest/{station_id}",
        summary="One reading or a batch from a logger, in the MQTT contract's JSON (docs/http-ingest.md)",
        responses={
            200: {"description": "stored (durable); refused readings of a batch listed under 'rejected'"},
            202: {"description": "kept in ingest's durable spool while the store is unavailable"},
            400: {"description": "not JSON / not UTF-8"}, 401: {"description": "no or wrong token"},
            403: {"description": "another node's token, or no token configured"},
            404: {"description": "unknown station"}, 413: {"description": f"over {MAX_PAYLOAD_BYTES} bytes"},
            422: {"description": "every reading refused; reasons as in the quarantine"},
            429: {"description": "over the node's rate; see Retry-After"}, 503: {"description": "not stored"},
        },
    )
    async def ingest(station_id: str, request: Request) -> JSONResponse:
        if station_id not in known:
            log.warning("event=http_ingest_refused station=unknown status=404 reason=unknown_station")
            metrics.inc("floodwatch_http_ingest_requests_total", station="unknown", status="404")
            body = {"station_id": station_id, "stored": 0, "duplicates": 0, "rejected": [
                {"reason": "unknown_station", "detail": f"station {station_id!r} is not in {settings.config_file}"}]}
            return JSONResponse(body, status_code=404)
        refusal = authenticate(station_id, request.headers.get("authorization", ""))
        if refusal is not None:
            wait_s = failures.take(station_id)
            if wait_s > 0:
                refusal = _Refusal(429, "too_many_failures", "too many failed attempts for this station; wait")
                return _refuse(station_id, refusal, {"Retry-After": str(math.ceil(wait_s))})
            return _refuse(station_id, refusal, {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None)
        wait_s = per_node.take(station_id)
        if wait_s > 0:
            return _refuse(station_id, _Refusal(429, "rate_limited",
                                                f"at most {cfg.rate_per_min:g} requests a minute per node "
                                                f"(burst {cfg.burst}); send batches less often"),
                           {"Retry-After": str(math.ceil(wait_s))})
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_PAYLOAD_BYTES:
            return _refuse(station_id, _Refusal(413, "oversized", f"body is {declared} bytes, over the "
                                                f"{MAX_PAYLOAD_BYTES}-byte limit; send smaller batches"))
        received = bytearray()
        async for chunk in request.stream():
            received += chunk
            if len(received) > MAX_PAYLOAD_BYTES:
                break  # the rest is not read; parsing what we have says 'oversized' and quarantines its head
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(service.submit(station_id, bytes(received))),
                                             WRITE_TIMEOUT_S)
        except (TimeoutError, FutureTimeout):
            return _refuse(station_id, _Refusal(503, "store_timeout", "the write did not finish in time; send again"))
        except Exception as exc:  # the store's error: nothing durable, the logger must resend
            log.warning("event=http_ingest_not_stored station=%s error=%s", station_id, exc)
            return _refuse(station_id, _Refusal(503, "not_stored", f"not stored ({exc}); send again"))
        result = _outcome_body(outcome)
        if outcome.readings == 0 and outcome.errors:
            status = _STATUS_OF_REASON.get(outcome.errors[0].reason, 422)
            log.info("event=http_ingest_rejected station=%s status=%d reasons=%s", station_id, status,
                     ",".join(e.reason for e in outcome.errors))
            return _answer(station_id, status, result)
        return _answer(station_id, 202 if outcome.spooled else 200, result)

    return router
