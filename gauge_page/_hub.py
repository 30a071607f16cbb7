"""Fan-out of live events to the page's server-sent-event clients.

Ingest's writer thread, the forecaster and the alert engine call
:meth:`EventHub.publish` from their own threads; every connected browser has
a bounded asyncio queue on the server's event loop. A slow or stalled client
never blocks the publisher: when its queue is full, events are dropped for
that client only and it is told to ``resync`` (refetch everything) once it
catches up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

_CLOSE = object()


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from dataclasses, enums, numpy scalars/arrays; NaN and inf become null."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist())
    return str(value)


@dataclasses.dataclass(frozen=True)
class _Event:
    id: int
    type: str
    data: Any
    encoded: str


class _Client:
    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self.dropped = 0
        self.lagging = False

    def offer(self, item: Any) -> None:
        """Hand an event to this client's loop; never blocks the calling thread."""
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the client's loop has closed: it is going away anyway
            pass

    def _put(self, item: Any) -> None:
        if item is _CLOSE:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(item)
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            self.lagging = True


def _put_all(clients: list[_Client], event: _Event) -> None:
    for client in clients:
        client._put(event)


class EventHub:
    """Thread-safe fan-out of ``(event_type, data)`` to every live page.

    Parameters
    ----------
    queue_size : int
        Events buffered per client before that client starts losing events
        (it is then sent ``resync`` and refetches).
    """

    def __init__(self, *, queue_size: int = 256) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._clients: set[_Client] = set()
        self._listeners: list[Callable[[str, Any], None]] = []
        self._ids = itertools.count(1)
        self._closed = False
        self.published = 0

    def publish(self, event_type: str, data: Any) -> None:
        """Send an event to every connected client; callable from any thread, never blocks.

        ``data`` is anything :func:`to_jsonable` understands (dicts, lists,
        :class:`~floodwatch.vocabulary.Reading` objects, numpy arrays).
        """
        if not event_type or any(c in event_type for c in "\r\n"):
            raise ValueError(f"event type must be one line of text, got {event_type!r}")
        plain = to_jsonable(data)
        event_id = next(self._ids)
        encoded = f"id: {event_id}\nevent: {event_type}\ndata: {json.dumps(plain, ensure_ascii=False)}\n\n"
        event = _Event(event_id, event_type, plain, encoded)
        with self._lock:
            if self._closed:
                return
            clients = list(self._clients)
            listeners = list(self._listeners)
            self.published += 1
        for listener in listeners:
            try:
                listener(event_type, plain)
            except Exception:  # a broken listener must not stop ingest
                log.exception("event=hub_listener_failed type=%s", event_type)
        # One hand-over per event loop (normally just uvicorn's), not one per
        # client: the publishing thread pays a single wake-up however many
        # pages are open.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Client]] = {}
        for client in clients:
            by_loop.setdefault(client.loop, []).append(client)
        for loop, group in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, group, event)
            except RuntimeError:  # that loop has closed: its clients are going away anyway
                pass

    def add_listener(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(event_type, plain_data)`` synchronously on every publish (keep it quick)."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """End every open stream so the web server can shut down without waiting on them."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
        for client in clients:
            client.offer(_CLOSE)

    async def stream(self, *, keepalive_s: float = 15.0, retry_ms: int = 2000) -> AsyncIterator[str]:
        """Server-sent-event text for one client: a ``hello``, then events and keep-alive comments."""
        client = _Client(asyncio.get_running_loop(), self._queue_size)
        with self._lock:
            closed = self._closed
            if not closed:
                self._clients.add(client)
        try:
            # retry: how long EventSource waits before reconnecting by itself after a drop.
            yield f"retry: {retry_ms}\nevent: hello\ndata: {{}}\n\n"
            if closed:
                return
            while True:
                try:
                    item = await asyncio.wait_for(client.queue.get(), keepalive_s)
                except TimeoutError:
                    # A comment line keeps proxies and phones from closing an idle stream.
                    yield ": keep-alive\n\n"
                    continue
                if item is _CLOSE:
                    return
                if client.lagging and client.queue.empty():
                    client.lagging = False
                    log.warning("event=sse_client_lagging dropped=%d", client.dropped)
                    yield item.encoded
                    yield "event: resync\ndata: {}\n\n"
                    continue
                yield item.encoded
        finally:
            with self._lock:
                self._clients.discard(client)
