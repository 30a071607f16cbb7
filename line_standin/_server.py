"""The stand-in itself: LINE's Messaging API rules over a real HTTP server on loopback.

:class:`LineStandIn` owns the state (what was received and delivered, retry
keys, rate buckets, quota, queued faults) and decides every answer in
:meth:`LineStandIn.handle`, which takes a parsed request and returns a
:class:`_Answer` without touching a socket. :class:`_Handler` is the thin
``http.server`` shell around it: read the request, call ``handle``, write (or
hold, or drop) the answer.

Order of checks, as LINE applies them: route (404) -> bearer token (401) ->
injected fault -> retry-key form (400) -> rate limit (429) -> body against
the spec and the documented limits (400) -> retry key already accepted (409)
-> monthly quota (429) -> execute (200 / 202). Rich menus and user content
(:mod:`line_standin._richmenu`) follow the same route, token and fault steps.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from floodwatch.line_standin._limits import message_limit_errors
from floodwatch.line_standin._policy import MonthlyQuota, RetryKeyLedger, TokenBucket
from floodwatch.line_standin._richmenu import MAX_MENUS, MSG_NO_IMAGE, Content, RichMenuState, menu_errors
from floodwatch.line_standin._spec import ErrorDetail, messaging_spec
from floodwatch.line_standin._webhook import DEFAULT_BOT_USER_ID, WebhookResult, media_message_event, send_webhook

log = logging.getLogger("line_standin")

MSG_AUTH_MISSING = "Authorization header required. Must follow the scheme, 'Authorization: Bearer <ACCESS TOKEN>'"
MSG_AUTH_FAILED = "Authentication failed. Confirm that the access token in the authorization header is valid."
MSG_RATE_LIMIT = "The API rate limit has been exceeded. Try again later."
MSG_MONTHLY_LIMIT = "You have reached your monthly limit."
MSG_RETRY_KEY_ACCEPTED = "The retry key is already accepted"
MSG_NOT_FOUND = "Not found"

_UUID_FORM = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PROFILE_PATH = re.compile(r"^/v2/bot/profile/(?P<user_id>[^/]+)$")

PUSH, MULTICAST, REPLY = "/v2/bot/message/push", "/v2/bot/message/multicast", "/v2/bot/message/reply"
BROADCAST, NARROWCAST = "/v2/bot/message/broadcast", "/v2/bot/message/narrowcast"
QUOTA, CONSUMPTION = "/v2/bot/message/quota", "/v2/bot/message/quota/consumption"
BOT_INFO, FOLLOWERS = "/v2/bot/info", "/v2/bot/followers/ids"
RICHMENU, RICHMENU_VALIDATE, RICHMENU_LIST = "/v2/bot/richmenu", "/v2/bot/richmenu/validate", "/v2/bot/richmenu/list"
DEFAULT_RICHMENU = "/v2/bot/user/all/richmenu"
# path patterns with an id in them, and the endpoint name each answers for
_ID_ROUTES = (
    (re.compile(r"^/v2/bot/richmenu/(?P<id>[^/]+)/content$"), "/v2/bot/richmenu/{richMenuId}/content"),
    (re.compile(r"^/v2/bot/richmenu/(?P<id>[^/]+)$"), "/v2/bot/richmenu/{richMenuId}"),
    (re.compile(r"^/v2/bot/user/all/richmenu/(?P<id>[^/]+)$"), "/v2/bot/user/all/richmenu/{richMenuId}"),
    (re.compile(r"^/v2/bot/message/(?P<id>[^/]+)/content$"), "/v2/bot/message/{messageId}/content"),
)
_ID_METHODS = {
    "/v2/bot/richmenu/{richMenuId}/content": ("GET", "POST"),
    "/v2/bot/richmenu/{richMenuId}": ("GET", "DELETE"),
    "/v2/bot/user/all/richmenu/{richMenuId}": ("POST",),
    "/v2/bot/message/{messageId}/content": ("GET",),
}
VALIDATE_PATHS = tuple(f"/v2/bot/message/validate/{kind}" for kind in ("reply", "push", "multicast", "narrowcast", "broadcast"))
SEND_PATHS = (PUSH, MULTICAST, REPLY, BROADCAST, NARROWCAST)
RETRY_KEY_PATHS = frozenset({PUSH, MULTICAST, NARROWCAST, BROADCAST})

# Requests per second per channel (LINE's table, approximate; see the shared README).
DEFAULT_RATES_PER_S: dict[str, float] = {
    MULTICAST: 200.0,
    PUSH: 2000.0,
    REPLY: 2000.0,
    BROADCAST: 60.0 / 3600.0,
    NARROWCAST: 60.0 / 3600.0,
}

# Headers worth keeping with each recorded request (never the token itself).
_RECORDED_HEADERS = ("content-type", "user-agent", "x-line-retry-key")


class DeliveredMessage(NamedTuple):
    """One message object that reached one user, and the request that carried it."""

    user_id: str | None
    message: dict[str, Any]
    retry_key: str | None
    request_id: str

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        """``d[0]`` like a tuple, and ``d["user_id"]`` like the JSON the control endpoint serves."""
        if isinstance(key, str):
            if key not in self._fields:
                raise KeyError(key)
            return getattr(self, key)
        return tuple.__getitem__(self, key)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the stand-in saw and answered it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    request_id: str
    received_at_s: float
    token_valid: bool
    response: Any

    def __getitem__(self, key: str) -> Any:
        """``r["status"]``, like the JSON the control endpoint serves."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "status": self.status,
            "request_id": self.request_id,
            "received_at_s": self.received_at_s,
            "token_valid": self.token_valid,
            "response": self.response,
        }


@dataclass
class _Fault:
    kind: str  # "status" | "delay" | "ack_lost"
    remaining: int
    path: str | None
    status: int = 503
    delay_s: float = 0.0
    execute: bool = True
    drop: bool = True

    def matches(self, path: str) -> bool:
        return self.path is None or self.path == path


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop_connection: bool = False
    raw: bytes | None = None  # a binary answer (content, rich menu image) instead of JSON ``body``
    content_type: str = "application/json"


def _error(status: int, message: str, details: Iterable[ErrorDetail] = ()) -> _Answer:
    body: dict[str, Any] = {"message": message}
    details = [d.as_json() for d in details]
    if details:
        body["details"] = details
    return _Answer(status, body)


_STATUS_MESSAGES = {
    429: MSG_RATE_LIMIT,
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class LineStandIn:
    """A local LINE Messaging API for tests and the demo. Use as a context manager.

    Parameters
    ----------
    tokens : iterable of str
        Channel access tokens accepted in ``Authorization: Bearer``.
    host, port : str, int
        Where to listen; port 0 picks a free one (read :attr:`base_url`).
    multicast_rate_per_s : float
        Multicast requests per second before 429 (LINE: about 200).
    monthly_quota : int or None
        Messages (one per recipient per request) allowed this month; ``None``
        means no limit is set, as ``GET /v2/bot/message/quota`` then reports.
    rate_limits_per_s : mapping, optional
        Override other endpoints' rates by path, e.g. ``{"/v2/bot/message/push": 10}``.
    burst_s : float
        Each rate bucket holds ``rate * burst_s`` requests (at least 1): how
        bunched a client may send before 429. The default 0.25 s lets a client
        pacing itself at 200/s stall for a quarter second (50 multicasts) and
        catch up without a 429, while 200 multicasts still take at least
        0.75 s.
    check_reply_tokens : bool
        Reply only with tokens the stand-in sent in a webhook, once each (as
        LINE); unknown or reused tokens get 400 "Invalid reply token".
    bot_user_id : str
        The bot's user id: ``GET /v2/bot/info`` and webhook ``destination``.

    Examples
    --------
    >>> with LineStandIn(tokens={"tok"}) as standin:  # doctest: +SKIP
    ...     api = MessagingApi(ApiClient(Configuration(host=standin.base_url, access_token="tok")))
    ...     api.multicast(MulticastRequest(to=[user], messages=[TextMessage(text="...")]))
    ...     standin.messages_for(user)
    """

    def __init__(
        self,
        tokens: Iterable[str],
        host: str = "127.0.0.1",
        port: int = 0,
        multicast_rate_per_s: float = 200.0,
        monthly_quota: int | None = None,
        *,
        rate_limits_per_s: Mapping[str, float] | None = None,
        burst_s: float = 0.25,
        check_reply_tokens: bool = True,
        bot_user_id: str = DEFAULT_BOT_USER_ID,
        bot_display_name: str = "floodwatch (stand-in)",
    ) -> None:
        if isinstance(tokens, str):
            tokens = {tokens}
        self.tokens = frozenset(tokens)
        if not self.tokens or any(not t for t in self.tokens):
            raise ValueError("LineStandIn needs at least one non-empty channel access token, e.g. tokens={'tok'}")
        self.host, self._requested_port = host, port
        self.monthly_quota = monthly_quota
        self.check_reply_tokens = check_reply_tokens
        self.bot_user_id, self.bot_display_name = bot_user_id, bot_display_name
        self._rates = dict(DEFAULT_RATES_PER_S)
        self._rates[MULTICAST] = multicast_rate_per_s
        self._rates.update(rate_limits_per_s or {})
        self._burst_s = burst_s
        self._spec = messaging_spec()
        for path in SEND_PATHS:  # build the validators now, not on the first (timed) request
            self._spec.errors(self._spec.request_schema_name(path) or "", {})
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reset_state()

    # -- lifecycle ---------------------------------------------------------

    def _reset_state(self) -> None:
        self._requests: list[RecordedRequest] = []
        self._delivered: list[DeliveredMessage] = []
        self._webhooks: list[WebhookResult] = []
        self._retry_keys = RetryKeyLedger()
        self._quota = MonthlyQuota(self.monthly_quota)
        self._buckets = {
            path: TokenBucket(rate, max(1.0, rate * self._burst_s)) for path, rate in self._rates.items()
        }
        self._faults: list[_Fault] = []
        self._reply_tokens: dict[str, str] = {}
        self._profiles: dict[str, dict[str, Any]] = {}
        self._followers: dict[str, None] = {}
        self._menus = RichMenuState()

    def start(self) -> "LineStandIn":
        if self._server is not None:
            raise RuntimeError("this LineStandIn is already running at " + self.base_url)
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="line-standin", daemon=True
        )
        self._thread.start()
        log.info("event=line_standin_started base_url=%s", self.base_url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # cut injected delays short
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None
        log.info("event=line_standin_stopped")

    def __enter__(self) -> "LineStandIn":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not running; use it as a context manager or call start()")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- what the tests read -----------------------------------------------

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Every request received, in order (optionally only those to ``path``)."""
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def delivered_messages(self) -> list[DeliveredMessage]:
        """Every (user_id, message, retry_key, request_id) actually delivered, in order.

        Push and multicast give one entry per recipient per message object;
        reply gives the user the reply token was issued to; broadcast gives
        every follower the stand-in knows of (from webhooks it sent).
        """
        with self._lock:
            return list(self._delivered)

    def messages_for(self, user_id: str) -> list[dict[str, Any]]:
        """The message objects delivered to ``user_id``, in order."""
        with self._lock:
            return [d.message for d in self._delivered if d.user_id == user_id]

    def webhooks_sent(self) -> list[WebhookResult]:
        with self._lock:
            return list(self._webhooks)

    def quota_used(self) -> int:
        with self._lock:
            return self._quota.total_usage(time.time())

    def reset(self) -> None:
        """Forget requests, deliveries, retry keys, quota use, faults and reply tokens."""
        with self._lock:
            self._reset_state()

    def received_json(self, counts_only: bool = False, user_id: str | None = None) -> dict[str, Any]:
        """What ``GET /_standin/received`` answers: counts, requests, deliveries.

        ``counts_only`` (``?only=counts``) leaves out the lists, which run to
        megabytes after a 100,000-resident fan-out; ``user_id`` (``?user_id=``)
        keeps only that user's deliveries.
        """
        with self._lock:
            requests = list(self._requests)
            delivered = list(self._delivered)
            used = self._quota.total_usage(time.time())
        out: dict[str, Any] = {
            "counts": {
                "requests": len(requests),
                "accepted": sum(1 for r in requests if 200 <= r.status < 300),
                "delivered_messages": len(delivered),
                "recipients": len({d.user_id for d in delivered}),
                "quota_used": used,
            }
        }
        if not counts_only:
            out["requests"] = [r.as_json() for r in requests]
            out["delivered"] = [d._asdict() for d in delivered if user_id is None or d.user_id == user_id]
        return out

    # -- what the tests arrange ----------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503, *, path: str | None = None) -> None:
        """Answer the next ``n`` API requests (to ``path``, or any) with ``status``, not executing them.

        429 carries LINE's rate-limit body, so clients see exactly what LINE sends.
        """
        self._add_fault(_Fault("status", n, path, status=status))

    def delay_next(
        self, n: int = 1, delay_s: float = 30.0, *, path: str | None = None, execute: bool = True
    ) -> None:
        """Hold the answer to the next ``n`` requests for ``delay_s`` (longer than the client's timeout).

        ``execute=True``: the request is carried out (messages delivered, retry
        key accepted) before the wait, the case a timeout cannot tell apart from
        success. ``execute=False``: nothing is carried out and 503 follows.
        """
        self._add_fault(_Fault("delay", n, path, delay_s=delay_s, execute=execute, status=503))

    def lose_ack_next(self, n: int = 1, *, path: str | None = None, drop_connection: bool = True) -> None:
        """Carry out the next ``n`` requests, then lose the answer: drop the connection, or answer 500.

        The "delivered but not acknowledged" crash: a client that retries with
        the same ``X-Line-Retry-Key`` must then get 409, not a second delivery.
        """
        self._add_fault(_Fault("ack_lost", n, path, status=500, drop=drop_connection))

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError(f"a fault needs n >= 1 requests, got {fault.remaining}")
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def rich_menus(self) -> list[dict[str, Any]]:
        """The channel's rich menus as ``GET /v2/bot/richmenu/list`` answers, plus ``hasImage``."""
        with self._lock:
            return [{**m.response(), "hasImage": m.image is not None} for m in self._menus.menus.values()]

    def default_rich_menu(self) -> str | None:
        with self._lock:
            return self._menus.default_id

    def rich_menu_image(self, rich_menu_id: str) -> bytes | None:
        with self._lock:
            menu = self._menus.menus.get(rich_menu_id)
            return None if menu is None else menu.image

    def put_content(self, message_id: str, data: bytes, content_type: str = "image/jpeg") -> None:
        """Serve ``data`` at ``GET /v2/bot/message/{message_id}/content`` (what a user sent)."""
        with self._lock:
            self._menus.contents[message_id] = Content(bytes(data), content_type)

    def media_event(self, user_id: str, data: bytes, content_type: str = "image/jpeg", kind: str = "image",
                    **kwargs: Any) -> dict[str, Any]:
        """An image / video / audio message event whose bytes the content endpoint serves."""
        event = media_message_event(user_id, kind, **kwargs)
        self.put_content(event["message"]["id"], data, content_type)
        return event

    def add_profile(self, user_id: str, display_name: str, *, language: str | None = None) -> None:
        """Make ``GET /v2/bot/profile/{user_id}`` answer; users met in a follow event get one too."""
        profile = {"userId": user_id, "displayName": display_name}
        if language:
            profile["language"] = language
        with self._lock:
            self._profiles[user_id] = profile

    def send_webhook(
        self, url: str, channel_secret: str, events: list[dict[str, Any]], **kwargs: Any
    ) -> WebhookResult:
        """Post signed ``events`` to ``url`` as LINE would, and remember what they imply.

        Reply tokens in the events become valid for one reply each; follow adds
        the user to the followers (broadcast, profile), unfollow removes them.
        """
        with self._lock:
            for event in events:
                user_id = event.get("source", {}).get("userId")
                if "replyToken" in event and user_id:
                    self._reply_tokens[event["replyToken"]] = user_id
                if event.get("type") == "follow" and user_id:
                    self._followers[user_id] = None
                    self._profiles.setdefault(
                        user_id, {"userId": user_id, "displayName": f"Resident {user_id[-4:]}", "language": "th"}
                    )
                elif event.get("type") == "unfollow" and user_id:
                    self._followers.pop(user_id, None)
        kwargs.setdefault("destination", self.bot_user_id)
        result = send_webhook(url, channel_secret, events, **kwargs)
        with self._lock:
            self._webhooks.append(result)
        return result

    # -- the API ----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes) -> _Answer:
        """Decide the answer to one request and record it. ``headers`` keys are lower-case."""
        request_id = str(uuid.uuid4())
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query)
        body: Any = None
        token_valid = False
        try:
            if path.startswith("/_standin/"):
                return self._control(method, path, query)  # not LINE's API: not recorded
            body, token_valid, answer = self._api(method, path, query, headers, raw_body, request_id)
        except Exception:  # a bug here must answer 500 like a server, not kill the thread
            log.exception("event=line_standin_error path=%s", path)
            answer = _error(500, "Internal server error")
        answer.headers["x-line-request-id"] = request_id
        record = RecordedRequest(
            method=method,
            path=path,
            query=query,
            headers={k: headers[k] for k in _RECORDED_HEADERS if k in headers},
            body=body,
            status=answer.status,
            request_id=request_id,
            received_at_s=time.time(),
            token_valid=token_valid,
            response=answer.body,
        )
        with self._lock:
            self._requests.append(record)
        return answer

    def _control(self, method: str, path: str, query: Mapping[str, list[str]]) -> _Answer:
        if method == "GET" and path == "/_standin/received":
            only = query.get("only", [""])[0]
            user_id = query.get("user_id", [None])[0]
            return _Answer(200, self.received_json(counts_only=only == "counts", user_id=user_id))
        if method == "POST" and path == "/_standin/reset":
            self.reset()
            return _Answer(200, {})
        return _error(404, MSG_NOT_FOUND)

    def _route(self, method: str, path: str) -> str | None:
        """The endpoint name the stand-in answers for ``method path``, or None for 404."""
        if method == "POST" and (path in SEND_PATHS or path in VALIDATE_PATHS):
            return path
        if (method, path) in (("POST", RICHMENU), ("POST", RICHMENU_VALIDATE), ("GET", RICHMENU_LIST),
                              ("GET", DEFAULT_RICHMENU), ("DELETE", DEFAULT_RICHMENU)):
            return path
        if path not in (RICHMENU_LIST, RICHMENU_VALIDATE):
            for pattern, name in _ID_ROUTES:
                if pattern.match(path) and method in _ID_METHODS[name]:
                    return name
        if method == "GET" and path in (QUOTA, CONSUMPTION, BOT_INFO, FOLLOWERS):
            return path
        if method == "GET" and _PROFILE_PATH.match(path):
            return "/v2/bot/profile/{userId}"
        return None

    def _api(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        raw_body: bytes,
        request_id: str,
    ) -> tuple[Any, bool, _Answer]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if raw_body and content_type and "json" not in content_type:
            body: Any = {"bytes": len(raw_body), "content_type": content_type}  # an upload: recorded, not parsed
        else:
            body = _parse_json(raw_body)
        endpoint = self._route(method, path)
        if endpoint is None:
            return body, False, _error(404, MSG_NOT_FOUND)
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return body, False, _error(401, MSG_AUTH_MISSING)
        if token.strip() not in self.tokens:
            return body, False, _error(401, MSG_AUTH_FAILED)

        fault = self._take_fault(path)
        if fault is not None and fault.kind == "status":
            return body, True, _error(fault.status, _STATUS_MESSAGES.get(fault.status, "Injected failure"))
        if fault is not None and fault.kind == "delay" and not fault.execute:
            answer = _error(fault.status, _STATUS_MESSAGES.get(fault.status, "Injected failure"))
            answer.delay_s = fault.delay_s
            return body, True, answer

        if endpoint.startswith(("/v2/bot/richmenu", DEFAULT_RICHMENU, "/v2/bot/message/{messageId}")):
            answer = self._menus_and_content(method, endpoint, path, headers, raw_body, body)
        elif method == "GET":
            answer = self._get(endpoint, path)
        else:
            answer = self._post(endpoint, headers, raw_body, body, request_id)
        if fault is not None and fault.kind == "delay":
            answer.delay_s = fault.delay_s
        elif fault is not None and fault.kind == "ack_lost":
            log.info("event=line_standin_ack_lost path=%s status=%s request_id=%s", path, answer.status, request_id)
            executed = answer.status
            answer = _error(500, "Internal server error")
            answer.drop_connection = fault.drop
            answer.headers["x-line-standin-executed-status"] = str(executed)
        return body, True, answer

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _get(self, endpoint: str, path: str) -> _Answer:
        now = time.time()
        if endpoint == QUOTA:
            if self.monthly_quota is None:
                return _Answer(200, {"type": "none"})
            return _Answer(200, {"type": "limited", "value": self.monthly_quota})
        if endpoint == CONSUMPTION:
            with self._lock:
                return _Answer(200, {"totalUsage": self._quota.total_usage(now)})
        if endpoint == BOT_INFO:
            return _Answer(
                200,
                {
                    "userId": self.bot_user_id,
                    "basicId": "@floodwatch",
                    "displayName": self.bot_display_name,
                    "chatMode": "bot",
                    "markAsReadMode": "auto",
                },
            )
        if endpoint == FOLLOWERS:
            with self._lock:
                return _Answer(200, {"userIds": list(self._followers)[:1000]})
        user_id = _PROFILE_PATH.match(path)["user_id"]  # type: ignore[index]
        with self._lock:
            profile = self._profiles.get(user_id)
        if profile is None:
            return _error(404, MSG_NOT_FOUND)
        return _Answer(200, dict(profile))

    def _post(
        self, endpoint: str, headers: Mapping[str, str], raw_body: bytes, body: Any, request_id: str
    ) -> _Answer:
        retry_key = headers.get("x-line-retry-key")
        if retry_key is not None:
            if endpoint not in RETRY_KEY_PATHS:
                return _error(400, "X-Line-Retry-Key is accepted on push, multicast, narrowcast and broadcast only")
            if not _UUID_FORM.match(retry_key):
                return _error(
                    400,
                    "The X-Line-Retry-Key header must be a UUID in hexadecimal form, "
                    "e.g. 123e4567-e89b-12d3-a456-426614174000",
                )

        bucket = self._buckets.get(endpoint)
        if bucket is not None:
            with self._lock:
                allowed = bucket.try_take(time.monotonic())
            if not allowed:
                return _error(429, MSG_RATE_LIMIT)

        if body is _INVALID_JSON:
            return _error(400, "The request body has 1 error(s)", [ErrorDetail("Invalid JSON", "")])
        details = self._validate(endpoint, body)
        if details:
            return _error(400, f"The request body has {len(details)} error(s)", details)
        if endpoint in VALIDATE_PATHS:
            return _Answer(200, {})

        recipients = self._recipients(endpoint, body)
        if isinstance(recipients, _Answer):
            return recipients
        now_mono, now_wall = time.monotonic(), time.time()
        with self._lock:
            if retry_key is not None:
                accepted_id = self._retry_keys.accepted_request_id(retry_key, now_mono)
                if accepted_id is not None:
                    answer = _error(409, MSG_RETRY_KEY_ACCEPTED)
                    answer.headers["x-line-accepted-request-id"] = accepted_id
                    return answer
            if endpoint != REPLY and not self._quota.try_consume(len(recipients), now_wall):
                return _error(429, MSG_MONTHLY_LIMIT)
            if endpoint == REPLY and self.check_reply_tokens:
                # One reply per token; a concurrent reply may have used it since _recipients looked.
                if self._reply_tokens.pop(body["replyToken"], None) is None:
                    return _error(400, "Invalid reply token")
            if retry_key is not None:
                self._retry_keys.accept(retry_key, request_id, now_mono)
            self._delivered.extend(
                DeliveredMessage(user_id, message, retry_key, request_id)
                for user_id in recipients
                for message in body["messages"]
            )
        if endpoint in (PUSH, REPLY):
            sent = [{"id": _message_id(), "quoteToken": uuid.uuid4().hex} for _ in body["messages"]]
            return _Answer(200, {"sentMessages": sent})
        return _Answer(202 if endpoint == NARROWCAST else 200, {})

    def _menus_and_content(self, method: str, endpoint: str, path: str, headers: Mapping[str, str],
                           raw_body: bytes, body: Any) -> _Answer:
        """Rich menus (create, validate, list, get, delete, image, default) and user content."""
        ident = None
        for pattern, name in _ID_ROUTES:
            found = pattern.match(path)
            if found and name == endpoint:
                ident = found["id"]
        if endpoint in (RICHMENU, RICHMENU_VALIDATE):
            if body is _INVALID_JSON:
                return _error(400, "The request body has 1 error(s)", [ErrorDetail("Invalid JSON", "")])
            details = self._spec.errors("RichMenuRequest", body) if isinstance(body, dict) else [
                ErrorDetail("must be of type object", "")]
            seen = set(details)
            details.extend(d for d in menu_errors(body) if d not in seen)
            if details:
                return _error(400, f"The request body has {len(details)} error(s)", details)
            if endpoint == RICHMENU_VALIDATE:
                return _Answer(200, {})
            with self._lock:
                menu = self._menus.create(body)
            if menu is None:
                return _error(400, f"The number of rich menus has reached the limit ({MAX_MENUS})")
            return _Answer(200, {"richMenuId": menu.rich_menu_id})
        with self._lock:
            state = self._menus
            if endpoint == RICHMENU_LIST:
                return _Answer(200, {"richmenus": [m.response() for m in state.menus.values()]})
            if endpoint == DEFAULT_RICHMENU:
                if method == "DELETE":
                    state.default_id = None
                    return _Answer(200, {})
                if state.default_id is None:
                    return _error(404, "no default richmenu")
                return _Answer(200, {"richMenuId": state.default_id})
            if endpoint == "/v2/bot/message/{messageId}/content":
                content = state.contents.get(ident or "")
                if content is None:
                    return _error(404, MSG_NOT_FOUND)
                return _Answer(200, None, raw=content.data, content_type=content.content_type)
            menu = state.menus.get(ident or "")
            if menu is None:
                return _error(404, MSG_NOT_FOUND)
            if endpoint == "/v2/bot/richmenu/{richMenuId}":
                if method == "DELETE":
                    state.delete(menu.rich_menu_id)
                    return _Answer(200, {})
                return _Answer(200, menu.response())
            if endpoint == "/v2/bot/user/all/richmenu/{richMenuId}":
                if menu.image is None:
                    return _error(400, MSG_NO_IMAGE)
                state.default_id = menu.rich_menu_id
                return _Answer(200, {})
            # /v2/bot/richmenu/{richMenuId}/content
            if method == "GET":
                if menu.image is None:
                    return _error(404, MSG_NOT_FOUND)
                return _Answer(200, None, raw=menu.image, content_type=menu.image_type or "image/png")
            refused = state.upload_errors(menu, headers.get("content-type", ""), raw_body)
            if refused is not None:
                return _error(*refused)
            menu.image = bytes(raw_body)
            menu.image_type = headers.get("content-type", "").split(";")[0].strip().lower()
            return _Answer(200, {})

    def _validate(self, endpoint: str, body: Any) -> list[ErrorDetail]:
        schema_name = self._spec.request_schema_name(endpoint)
        if schema_name is None:
            return []
        details = self._spec.errors(schema_name, body)
        if isinstance(body, dict):
            seen = set(details)
            details.extend(d for d in message_limit_errors(body.get("messages")) if d not in seen)
        return details

    def _recipients(self, endpoint: str, body: dict[str, Any]) -> list[str | None] | _Answer:
        if endpoint == MULTICAST:
            return body["to"]
        if endpoint == PUSH:
            return [body["to"]]
        if endpoint == REPLY:
            token = body["replyToken"]
            with self._lock:
                user_id = self._reply_tokens.get(token)
            if user_id is None and self.check_reply_tokens:
                return _error(400, "Invalid reply token")
            return [user_id]
        if endpoint == BROADCAST:
            with self._lock:
                return list(self._followers)
        return []  # narrowcast: audiences and demographics are not emulated


_INVALID_JSON = object()


def _parse_json(raw_body: bytes) -> Any:
    if not raw_body:
        return None
    try:
        return json.loads(raw_body)
    except ValueError:
        return _INVALID_JSON


def _message_id() -> str:
    return str(uuid.uuid4().int % 10**18)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    standin: LineStandIn

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        # Keep-alive connections would otherwise keep their threads reading until the client hangs up.
        with self._open_lock:
            open_sockets, self._open = list(self._open), set()
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: line-bot-sdk reuses its connections
    disable_nagle_algorithm = True  # one small answer per request; do not wait for delayed ACKs
    server_version = "line-standin"
    sys_version = ""
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        standin = self.server.standin
        answer = standin.handle(self.command, self.path, headers, raw_body)
        if answer.delay_s > 0 and standin._stopping.wait(answer.delay_s):
            self.close_connection = True
            return
        if answer.drop_connection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if answer.raw is not None:
            payload = answer.raw
        else:
            payload = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        head = [f"{self.protocol_version} {answer.status} {self.responses.get(answer.status, ('',))[0]}"]
        head.append(f"Content-Type: {answer.content_type}")
        head.append(f"Content-Length: {len(payload)}")
        head.extend(f"{k}: {v}" for k, v in answer.headers.items())
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("event=line_standin_http " + format, *args)
