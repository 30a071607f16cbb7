"""The imperative shell: nodes and fleets that follow a clock and publish over MQTT.

One scheduler thread wakes every node when its scenario time comes (a heap
of next wake times), asks the scenario for the truth of all due nodes in one
vectorised call, runs each node's firmware (:class:`NodeCore`) and hands the
payloads to the node's :class:`MqttLink`. Real stations each get a link of
their own (so their last will works); synthetic load-test nodes share a
handful. Threads: one scheduler plus one paho network thread per link.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping

import numpy as np

from floodwatch.firmware_sim._firmware import FirmwareConfig, NodeCore, WakeOutcome, contract_topic
from floodwatch.firmware_sim._link import MqttLink
from floodwatch.firmware_sim._scenario import Scenario

log = logging.getLogger("firmware_sim")

SYNTHETIC_PREFIX = "SIM-"


def _encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Node:
    """One simulated sensor node: firmware core + MQTT link + store and forward.

    Parameters
    ----------
    station : floodwatch.settings.StationConfig
        Id, kind, sensor, mount height, mm per tip, publish interval.
    scenario : Scenario
        The truth the node measures; its faults for this station apply.
    broker_url : str
        ``mqtt://HOST:PORT``.
    clock : floodwatch.clock.Clock
        Scenario time is ``clock.now_s() - start_s``.
    seed : int
        Makes noise, clock drift, start phase and radio deterministic.
    start_s : float, optional
        Epoch second of scenario time 0 (default: the clock's
        ``sim_start_s``, else its current time).
    firmware : FirmwareConfig, optional
    publish_raw : bool
        Shorthand for ``FirmwareConfig(publish_raw=...)``: ``distance_m`` /
        ``rain_tips`` (True, as real nodes) or ``water_level_m`` / ``rain_mm``.
    truth_station_id : str, optional
        Whose truth to measure (synthetic nodes borrow a real station's).
    link : MqttLink, optional
        Share a connection; by default the node opens its own, with its
        last will on its status topic.
    topic_prefix : str
    reconnect_delay_s : (int, int)
        paho's reconnect back-off for the node's own link.
    window : int
        Unacknowledged QoS 1 publishes allowed on the node's own link.
    client_id : str, optional
        MQTT client id of the node's own link (default ``fw-node-{station}``).
    password : str, optional
        For a locked-down broker (``floodwatch mqtt-config``): the node logs
        in as its station id with this password.
    """

    def __init__(self, station, scenario: Scenario, broker_url: str, clock, seed: int = 0, *,
                 start_s: float | None = None, firmware: FirmwareConfig | None = None,
                 publish_raw: bool | None = None, truth_station_id: str | None = None,
                 link: MqttLink | None = None, topic_prefix: str = "floodwatch",
                 reconnect_delay_s: tuple[int, int] = (1, 4), window: int = 1000,
                 client_id: str | None = None, password: str | None = None) -> None:
        self.station = station
        self.station_id = station.id
        self.scenario = scenario
        self.clock = clock
        self.start_s = _origin(clock, start_s)
        config = firmware or FirmwareConfig()
        if publish_raw is not None and publish_raw != config.publish_raw:
            config = dataclasses.replace(config, publish_raw=publish_raw)
        self.truth_id = truth_station_id or station.id
        faults = scenario.faults_for(station.id)
        self.core = NodeCore(station=station, origin_s=self.start_s, faults=faults, config=config, seed=seed)
        self.telemetry_topic = contract_topic(topic_prefix, station.id, "telemetry")
        self.status_topic = contract_topic(topic_prefix, station.id, "status")
        self.owns_link = link is None
        self.link = link or MqttLink(
            broker_url, client_id=client_id or f"fw-node-{station.id}", status_topics=[self.status_topic],
            will_topic=self.status_topic, reconnect_delay_s=reconnect_delay_s, window=window,
            username=station.id if password is not None else None, password=password,
        )
        self.offline = False
        self.powered = True
        self.messages_sent = 0
        self.readings_sent = 0
        self.duplicates_sent = 0
        self.batches_sent = 0
        self._runner: _Runner | None = None
        self.pending: set | None = None  # the runner's set of nodes with a buffer to flush

    # ---------------------------------------------------------- standalone
    def start(self, connect_timeout_s: float = 10.0) -> "Node":
        """Connect and run this node alone on its own scheduler thread."""
        self._runner = _Runner([self], self.clock, self.start_s, self.scenario)
        if self.owns_link:
            self.link.start()
            self.link.wait_connected(connect_timeout_s)
        self._runner.start()
        return self

    def stop(self) -> None:
        """Stop waking, flush what the broker can take, publish ``offline``, disconnect."""
        if self._runner is not None:
            self._runner.stop()
        _resume_and_flush([self])
        if self.owns_link:
            self.link.stop()

    def power_cut(self) -> None:
        """The node loses power: no more wakes, no goodbye; the broker publishes its last will.

        Only for a node with its own link (a shared link carries other nodes).
        """
        if not self.owns_link:
            raise RuntimeError(f"{self.station_id} shares a connection; a power cut needs its own link")
        self.powered = False
        if self._runner is not None:
            self._runner.stop()
        self.link.cut()

    def stats(self) -> dict:
        """This node's counters: readings made and sent, messages, batches, buffer, boot and seq."""
        return {
            "station_id": self.station_id,
            "readings_made": self.core.readings_made,
            "readings_sent": self.readings_sent,
            "messages_sent": self.messages_sent,
            "batches_sent": self.batches_sent,
            "duplicates_sent": self.duplicates_sent,
            "buffered": len(self.core.buffer),
            "dropped": self.core.dropped,
            "boot": self.core.boot,
            "seq": self.core.seq,
        }

    # ------------------------------------------------------------- delivery
    def deliver(self, outcome: WakeOutcome) -> None:
        """Publish a wake's reading, or keep it; the buffer always goes out first, oldest first."""
        if outcome.offline != self.offline and self.owns_link:
            # A node with its own connection really drops it (the broker
            # publishes its will) and reconnects when the fault ends.
            if outcome.offline:
                self.link.suspend()
            else:
                self.link.resume()
        self.offline = outcome.offline
        reading = outcome.reading
        if reading is None:
            return
        if self.offline or self.core.buffer or not self.link.connected:
            self.core.keep(reading)
            if self.pending is not None:
                self.pending.add(self)
            if not self.offline:
                self.flush()
            return
        if self._send(reading):
            if outcome.duplicate and self.link.publish(self.telemetry_topic, _encode(reading)):
                self.duplicates_sent += 1
                self.messages_sent += 1
        else:
            self.core.keep(reading)
            if self.pending is not None:
                self.pending.add(self)

    def flush(self) -> int:
        """Send buffered readings as batched messages, oldest first; returns readings sent."""
        if self.offline:
            return 0
        sent = 0
        while self.core.buffer:
            batch = self.core.next_batch()
            ok = (self._send(batch[0]) if len(batch) == 1 else
                  self._send_batch(batch))
            if not ok:
                self.core.return_batch(batch)
                break
            sent += len(batch)
        return sent

    def _send(self, reading: dict) -> bool:
        if not self.link.publish(self.telemetry_topic, _encode(reading)):
            return False
        self.messages_sent += 1
        self.readings_sent += 1
        return True

    def _send_batch(self, batch: list[dict]) -> bool:
        if not self.link.publish(self.telemetry_topic, _encode({"readings": batch})):
            return False
        self.messages_sent += 1
        self.batches_sent += 1
        self.readings_sent += len(batch)
        return True


class _Runner:
    """The scheduler thread: wakes due nodes in scenario time, flushes buffers after reconnects."""

    def __init__(self, nodes: list[Node], clock, start_s: float, scenario: Scenario,
                 max_batch: int = 2000, idle_wait_s: float = 0.05, catch_up_s: float = 86400.0) -> None:
        self.nodes = nodes
        self.clock = clock
        self.start_s = start_s
        self.scenario = scenario
        self.max_batch = max_batch
        self.idle_wait_s = idle_wait_s
        # Started within this many scenario seconds of the origin, nodes begin
        # at the origin (a seeded run is then the same however slow the start
        # was); started later, they begin now rather than replay the past.
        self.catch_up_s = catch_up_s
        self.wakes = 0
        self.lag_s = 0.0  # scenario seconds the oldest due wake is behind
        self.reached_s = 0.0  # every wake due up to this scenario second (from the start) has run
        self._heap: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="firmware-sim-scheduler", daemon=True)
        self._pending: set[Node] = set()
        for node in nodes:
            node.pending = self._pending

    def start(self) -> None:
        now_rel_s = self.clock.now_s() - self.start_s
        t0 = 0.0 if now_rel_s <= self.catch_up_s else now_rel_s
        self._heap = [(node.core.first_wake_s(t0), i) for i, node in enumerate(self.nodes)]
        heapq.heapify(self._heap)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)

    def _loop(self) -> None:
        factor = float(getattr(self.clock, "factor", 1.0)) or 1.0
        while not self._stop.is_set():
            now_rel_s = self.clock.now_s() - self.start_s
            due: list[tuple[float, int]] = []
            while self._heap and self._heap[0][0] <= now_rel_s and len(due) < self.max_batch:
                due.append(heapq.heappop(self._heap))
            if due:
                self.lag_s = now_rel_s - due[0][0]
                try:
                    self._wake(due)
                except Exception:  # a bug in one wake must not silence the fleet
                    log.exception("event=wake_failed nodes=%d", len(due))
                self.reached_s = due[-1][0]
            self._flush_pending()
            if not due:
                wait_s = self.idle_wait_s
                if self._heap:
                    wait_s = min(wait_s, max(0.0, (self._heap[0][0] - now_rel_s) / factor))
                self._stop.wait(max(wait_s, 0.001))

    def _wake(self, due: list[tuple[float, int]]) -> None:
        nodes = [self.nodes[i] for _, i in due]
        t = np.array([w for w, _ in due])
        ids = np.array([n.truth_id for n in nodes], dtype=object)
        level_m = self.scenario.level_at(ids, t)
        rain_cum_mm = self.scenario.rain_cumulative_mm(ids, t)
        rain_rate = self.scenario.rain_rate_at(ids, t)
        for k, ((t_s, i), node) in enumerate(zip(due, nodes)):
            if not node.powered:
                continue  # a power cut: the node never wakes again
            outcome = node.core.wake(float(t_s), float(level_m[k]), float(rain_cum_mm[k]), float(rain_rate[k]))
            node.deliver(outcome)
            heapq.heappush(self._heap, (outcome.next_wake_s, i))
            self.wakes += 1

    def _flush_pending(self) -> None:
        for node in list(self._pending):
            if not node.core.buffer:
                self._pending.discard(node)
            elif not node.offline and node.link.connected:
                node.flush()


def _resume_and_flush(nodes: list[Node], timeout_s: float = 3.0) -> None:
    """At the end of a run, hand the broker what nodes still hold, if it will take it."""
    for node in nodes:
        node.offline = False
        if node.owns_link:
            node.link.resume()
    # A link that never got in (refused, no broker) will not in the next seconds either.
    holding = [n for n in nodes if n.core.buffer and n.link.connects > 0]
    deadline = time.monotonic() + timeout_s
    for node in holding:
        node.link.wait_connected(max(0.0, deadline - time.monotonic()))
        node.flush()


def _origin(clock, start_s: float | None) -> float:
    if start_s is not None:
        return float(start_s)
    return float(getattr(clock, "sim_start_s", clock.now_s()))


def synthetic_stations(settings, count: int) -> list:
    """``SIM-00001``... : copies of the registry's stations for load tests.

    Each copy keeps its template's kind, sensor and calibration (so
    ingestion can convert its raw fields if it registers them) and measures
    its template's truth. They are not in the registry: ingestion will
    reject them unless it is told about them.
    """
    templates = [s for s in settings.own_stations if not s.id.startswith(SYNTHETIC_PREFIX)]
    if count and not templates:
        raise ValueError("the registry has no stations to copy for synthetic nodes")
    out = []
    for i in range(count):
        template = templates[i % len(templates)]
        out.append(template.model_copy(update={"id": f"{SYNTHETIC_PREFIX}{i + 1:05d}", "rain_station": None}))
    return out


def with_synthetic_stations(settings, count: int):
    """A copy of ``settings`` whose registry also holds ``SIM-00001``... (for load-testing ingestion).

    Give this to ingestion (and the fleet) so the synthetic nodes' readings
    are converted and stored instead of refused as unknown stations.
    """
    return settings.model_copy(update={"stations": list(settings.stations) + synthetic_stations(settings, count)})


class Fleet:
    """Many nodes on few connections, following one clock.

    Parameters
    ----------
    settings : floodwatch.settings.Settings
    scenario : Scenario
    broker_url : str
    clock : floodwatch.clock.Clock (e.g. AcceleratedClock)
    seed : int
    stations : list of str or StationConfig, optional
        Registry stations to simulate (default all). Each gets its own
        connection and last will.
    extra_nodes : int
        Synthetic load-test nodes ``SIM-00001``... (see
        :func:`synthetic_stations`), multiplexed over
        ``ceil(extra_nodes / nodes_per_link)`` connections.
    start_s : float, optional
        Epoch second of scenario time 0 (default: the clock's start).
    firmware : FirmwareConfig, optional
    publish_raw : bool, optional
    nodes_per_link : int
    window : int
        Unacknowledged QoS 1 publishes per connection.
    credentials : mapping of station id to password, optional
        For a locked-down broker: each registry node logs in as its station
        id (the ``credentials`` file ``floodwatch mqtt-config`` writes).
        Synthetic nodes have no account and are for open test brokers.
    """

    def __init__(self, settings, scenario: Scenario, broker_url: str, clock, seed: int = 0,
                 stations=None, extra_nodes: int = 0, *, start_s: float | None = None,
                 firmware: FirmwareConfig | None = None, publish_raw: bool | None = None,
                 nodes_per_link: int = 2500, window: int = 2000, client_prefix: str = "fw-sim",
                 credentials: Mapping[str, str] | None = None) -> None:
        if extra_nodes < 0:
            raise ValueError(f"extra_nodes must be 0 or more, got {extra_nodes}")
        self.settings = settings
        self.scenario = scenario
        self.clock = clock
        self.start_s = _origin(clock, start_s)
        prefix = settings.mqtt.topic_prefix
        chosen = self._choose(settings, stations)
        self.nodes: list[Node] = []
        self.links: list[MqttLink] = []
        for i, station in enumerate(chosen):
            node = Node(station, scenario, broker_url, clock, seed=seed * 1_000_003 + i,
                        start_s=self.start_s, firmware=firmware, publish_raw=publish_raw,
                        topic_prefix=prefix, window=window, client_id=f"{client_prefix}-{station.id}",
                        password=(credentials or {}).get(station.id))
            self.nodes.append(node)
            self.links.append(node.link)
        extras = synthetic_stations(settings, extra_nodes)
        templates = {s.id: s for s in settings.own_stations if not s.id.startswith(SYNTHETIC_PREFIX)}
        n_links = -(-len(extras) // max(1, nodes_per_link))
        shared = [MqttLink(broker_url, client_id=f"{client_prefix}-load-{k}", window=window)
                  for k in range(n_links)]
        self.links.extend(shared)
        for j, station in enumerate(extras):
            link = shared[j % n_links]
            template = list(templates.values())[j % len(templates)]
            node = Node(station, scenario, broker_url, clock, seed=seed * 1_000_003 + len(chosen) + j,
                        start_s=self.start_s, firmware=firmware, publish_raw=publish_raw,
                        truth_station_id=template.id, link=link, topic_prefix=prefix)
            link.status_topics.append(node.status_topic)
            self.nodes.append(node)
        self._runner = _Runner(self.nodes, clock, self.start_s, scenario)
        self.started_real_s: float | None = None

    @staticmethod
    def _choose(settings, stations) -> list:
        if stations is None:
            # Synthetic stations added to the registry for ingestion come from extra_nodes; external
            # stations have no node of ours (their data arrive by a feed).
            return [s for s in settings.own_stations if not s.id.startswith(SYNTHETIC_PREFIX)]
        chosen = []
        for s in stations:
            chosen.append(settings.station(s) if isinstance(s, str) else s)
        return chosen

    def start(self, connect_timeout_s: float = 10.0) -> "Fleet":
        """Connect every link (in parallel), then start waking nodes in the background."""
        for link in self.links:
            link.start()
        deadline = time.monotonic() + connect_timeout_s
        down = [l for l in self.links if not l.wait_connected(max(0.0, deadline - time.monotonic()))]
        if down:
            log.warning("event=links_not_connected count=%d broker=%s:%s; nodes buffer until it answers",
                        len(down), down[0].host, down[0].port)
        self.started_real_s = time.monotonic()
        self._runner.start()
        log.info("event=fleet_started nodes=%d links=%d scenario=%s", len(self.nodes), len(self.links),
                 self.scenario.name)
        return self

    def stop(self) -> None:
        """Stop waking nodes, flush buffers the broker can take, publish ``offline``, disconnect."""
        self._runner.stop()
        _resume_and_flush(self.nodes)
        for link in self.links:
            link.stop()
        log.info("event=fleet_stopped %s", " ".join(f"{k}={v}" for k, v in self.stats().items()
                                                     if not isinstance(v, dict)))

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict:
        """Counters so far: readings made and sent, messages, buffered, dropped, per station."""
        per_station = Counter({n.station_id: n.readings_sent for n in self.nodes})
        return {
            "nodes": len(self.nodes),
            "connections": len(self.links),
            "connected": sum(l.connected for l in self.links),
            "readings_made": sum(n.core.readings_made for n in self.nodes),
            "published": sum(n.readings_sent for n in self.nodes),
            "messages_sent": sum(n.messages_sent for n in self.nodes),
            "acknowledged": sum(l.published for l in self.links),
            "batches_sent": sum(n.batches_sent for n in self.nodes),
            "duplicates_sent": sum(n.duplicates_sent for n in self.nodes),
            "buffered": sum(len(n.core.buffer) for n in self.nodes),
            "dropped": sum(n.core.dropped for n in self.nodes),
            "window_full": sum(l.window_full for l in self.links),
            "reboots": sum(n.core.boot - 1 for n in self.nodes),
            "scenario_s": self.clock.now_s() - self.start_s,
            "lag_s": self._runner.lag_s,
            "reached_s": self._runner.reached_s,
            "per_station": dict(per_station),
        }
