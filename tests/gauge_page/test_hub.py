"""EventHub: publish from any thread, fan out to every stream, never block on a slow client."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest

from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.gauge_page import EventHub, to_jsonable


def run_async(coro_fn):
    """asyncio.run on a fresh thread: Playwright's sync API may own this thread's event loop."""
    result = {}

    def target():
        try:
            result["value"] = asyncio.run(coro_fn())
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30.0)
    if "error" in result:
        raise result["error"]
    return result["value"]


def _parse(chunk: str) -> tuple[str | None, object]:
    event = data = None
    for line in chunk.strip().splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
    return event, data


def test_events_published_from_another_thread_reach_every_stream():
    hub = EventHub()

    async def scenario() -> list[list[tuple[str | None, object]]]:
        streams = [hub.stream(keepalive_s=5.0) for _ in range(3)]
        for s in streams:
            assert _parse(await s.__anext__())[0] == "hello"
        assert hub.client_count == 3
        reading = Reading(StationId("LP-W01"), 1.5e9, seq=1, water_level_m=1.234, qc_flag=QcFlag.PASS)
        thread = threading.Thread(target=lambda: hub.publish("readings", [reading]))
        thread.start()
        thread.join()
        got = [[_parse(await s.__anext__())] for s in streams]
        for s in streams:
            await s.aclose()
        return got

    got = run_async(scenario)
    for [(event, data)] in got:
        assert event == "readings"
        assert data[0]["station_id"] == "LP-W01" and data[0]["water_level_m"] == 1.234
        assert data[0]["qc_flag"] == 1
    assert hub.client_count == 0


def test_a_stalled_client_never_blocks_the_publisher_and_is_told_to_resync():
    hub = EventHub(queue_size=8)

    async def scenario() -> tuple[float, list[str | None]]:
        stream = hub.stream(keepalive_s=5.0)
        await stream.__anext__()  # hello; then the client stops reading
        started = time.perf_counter()
        publisher = threading.Thread(target=lambda: [hub.publish("readings", {"n": n}) for n in range(5000)])
        publisher.start()
        while publisher.is_alive():
            await asyncio.sleep(0.01)
        publish_s = time.perf_counter() - started
        await asyncio.sleep(0.05)  # let the loop run the hand-over callbacks
        events = [_parse(await stream.__anext__())[0] for _ in range(9)]
        await stream.aclose()
        return publish_s, events

    publish_s, events = run_async(scenario)
    assert publish_s < 5.0
    # The bounded queue kept the first 8; then the client learns it missed the rest.
    assert events == ["readings"] * 8 + ["resync"]


def test_keep_alive_comment_when_idle_and_close_ends_streams():
    hub = EventHub()

    async def scenario() -> list[str]:
        stream = hub.stream(keepalive_s=0.05)
        chunks = [await stream.__anext__(), await stream.__anext__()]
        hub.close()
        chunks += [c async for c in stream]
        return chunks

    chunks = run_async(scenario)
    assert chunks[0].startswith("retry: ")
    assert chunks[1] == ": keep-alive\n\n"
    assert len(chunks) <= 3  # ended promptly after close (at most one keep-alive in between)


def test_listeners_see_plain_data_and_a_failing_listener_does_not_stop_publish():
    hub = EventHub()
    seen = []
    hub.add_listener(lambda kind, data: 1 / 0)
    hub.add_listener(lambda kind, data: seen.append((kind, data)))
    hub.publish("status", {"station_id": "LP-W01", "status": "offline", "ts_s": np.float64(5.0)})
    assert seen == [("status", {"station_id": "LP-W01", "status": "offline", "ts_s": 5.0})]


def test_to_jsonable_turns_nan_into_null_and_arrays_into_lists():
    assert to_jsonable({"a": np.array([1.0, np.nan]), "b": float("inf"), "c": (QcFlag.FAIL,)}) == {
        "a": [1.0, None], "b": None, "c": [4]}


def test_event_type_must_be_one_line():
    with pytest.raises(ValueError, match="one line"):
        EventHub().publish("bad\ntype", {})
