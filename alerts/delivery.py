"""Delivery workers: drain the durable outbox to LINE, exactly once per recipient.

Each outbox chunk (<= 500 user ids) already carries its ``X-Line-Retry-Key``
when a worker first sees it. A worker sends it, and only after LINE answered
2xx or 409 marks it delivered. A crash in between leaves it pending; the next
process sends it again with the same key and LINE answers 409, so nobody gets
a second message. 5xx, 429 and timeouts back off and retry with the same key;
any other 4xx marks the chunk failed and is never retried.

Evacuation chunks go first (the outbox is ordered by priority), and while the
monthly quota is nearly used up only EVACUATE-priority chunks are sent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable

from floodwatch import metrics
from floodwatch.vocabulary import AlertLevel

from floodwatch.alerts._db import AlertDb, OutboxChunk
from floodwatch.alerts.line_client import LineClient, Pacer

log = logging.getLogger("floodwatch.alerts.delivery")

metrics.describe("floodwatch_line_deliveries_total", "counter",
                 "LINE multicast chunks by outcome (delivered, duplicate_409, retry, failed, quota)")
metrics.describe("floodwatch_line_api_errors_total", "counter", "LINE API error answers by HTTP status")
metrics.describe("floodwatch_line_recipients_delivered_total", "counter", "LINE recipients delivered")
metrics.describe("floodwatch_line_request_seconds", "histogram", "seconds one LINE multicast request took, by outcome")
metrics.describe("floodwatch_line_delivery_seconds", "histogram",
                 "seconds from an alert chunk queued in the outbox to LINE accepting it (waits and retries included)")


class DeliveryWorkers:
    """``threads`` workers sharing one pacer (``rate_per_s`` requests/s) over one outbox."""

    def __init__(
        self,
        db: AlertDb,
        client: LineClient,
        rate_per_s: float = 200.0,
        threads: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        on_quota_exhausted: Callable[[], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.client = client
        self.pacer = Pacer(rate_per_s)
        self.threads = max(1, threads)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.on_quota_exhausted = on_quota_exhausted
        self.wall_clock = wall_clock
        # below this priority nothing is sent while the quota is nearly used up
        self.min_priority = -1
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._claimed: set[int] = set()
        self._not_before: dict[int, float] = {}  # chunk id -> monotonic time of its next attempt
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for n in range(self.threads):
            t = threading.Thread(target=self._run, name=f"line-delivery-{n}", daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        for t in self._workers:
            t.join(timeout_s)
        self._workers.clear()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is pending or in flight (for tests, benchmarks and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._wake:
                busy = bool(self._claimed)
            if not busy and self.db.pending_chunks() == 0:
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------ loop
    def _claim(self) -> OutboxChunk | None:
        with self._wake:
            now = time.monotonic()
            for chunk_id in self.db.pending_ids(limit=64, exclude=self._claimed, min_priority=self.min_priority):
                if self._not_before.get(chunk_id, 0.0) <= now:
                    self._claimed.add(chunk_id)
                    break
            else:
                return None
        return self.db.chunk(chunk_id)

    def _release(self, chunk_id: int) -> None:
        with self._wake:
            self._claimed.discard(chunk_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self._claim()
            except Exception:  # the state file is closing or locked: wait and look again
                log.exception("event=outbox_read_failed")
                chunk = None
                self._stop.wait(0.5)
            if chunk is None:
                with self._wake:
                    self._wake.wait(0.2)
                continue
            try:
                self._deliver(chunk)
            except Exception:  # a bug must not kill the worker: keep the chunk pending and say so
                log.exception("event=delivery_crash chunk=%s retry_key=%s", chunk.id, chunk.retry_key)
                self._not_before[chunk.id] = time.monotonic() + self.backoff_max_s
            finally:
                self._release(chunk.id)

    def _deliver(self, chunk: OutboxChunk) -> None:
        self.pacer.wait()
        started = time.monotonic()
        outcome = self.client.multicast(chunk.user_ids, chunk.messages, chunk.retry_key)
        metrics.observe("floodwatch_line_request_seconds", time.monotonic() - started, outcome=outcome.result)
        if outcome.status is not None and outcome.status >= 400:
            metrics.inc("floodwatch_line_api_errors_total", status=str(outcome.status))
        if outcome.result == "delivered":
            label = "duplicate_409" if outcome.status == 409 else "delivered"
            self.db.mark_done(chunk.id, "delivered", outcome.status, outcome.message or None, self.wall_clock())
            self._not_before.pop(chunk.id, None)
            metrics.inc("floodwatch_line_deliveries_total", outcome=label)
            metrics.inc("floodwatch_line_recipients_delivered_total", amount=len(chunk.user_ids))
            if chunk.created_wall_s:
                metrics.observe("floodwatch_line_delivery_seconds", max(0.0, time.time() - chunk.created_wall_s))
            log.info("event=line_delivered chunk=%s decision=%s recipients=%d status=%s retry_key=%s",
                     chunk.id, chunk.decision_id, len(chunk.user_ids), outcome.status, chunk.retry_key)
            return
        if outcome.result == "failed":
            self.db.mark_done(chunk.id, "failed", outcome.status, outcome.message, self.wall_clock())
            metrics.inc("floodwatch_line_deliveries_total", outcome="failed")
            log.error("event=line_failed chunk=%s status=%s message=%r retry_key=%s fix=%s", chunk.id,
                      outcome.status, outcome.message, chunk.retry_key,
                      "check the channel access token and the message body; this chunk is not retried")
            return
        # retry or quota: same key, later
        self.db.mark_attempt(chunk.id, outcome.status, outcome.message)
        attempts = chunk.attempts + 1
        delay_s = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempts - 1, 10))
        delay_s *= random.uniform(0.8, 1.2)  # spread retries of many chunks apart
        self._not_before[chunk.id] = time.monotonic() + delay_s
        metrics.inc("floodwatch_line_deliveries_total", outcome=outcome.result)
        log.warning("event=line_retry chunk=%s status=%s message=%r attempt=%d next_in_s=%.2f retry_key=%s",
                    chunk.id, outcome.status, outcome.message, attempts, delay_s, chunk.retry_key)
        if outcome.result == "quota":
            # only evacuation messages may use what is left (if anything) until the quota check says otherwise
            self.min_priority = int(AlertLevel.EVACUATE)
            if self.on_quota_exhausted is not None:
                self.on_quota_exhausted()
