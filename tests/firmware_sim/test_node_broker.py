"""A node against a real Mosquitto: store and forward across a broker restart, reboots, status and will."""

from __future__ import annotations

import time
from datetime import datetime
from itertools import pairwise

import pytest
from floodwatch.firmware_sim import Node, load_scenario

from floodwatch.clock import AcceleratedClock

from .conftest import Recorder

pytestmark = pytest.mark.timeout(60)


def first_occurrences(seqs: list[int]) -> list[int]:
    """Drop re-deliveries (QoS 1 is at least once): keep each seq where it first arrived."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def test_node_buffers_while_the_broker_is_down_and_delivers_in_order_after_restart(persistent_broker, settings):
    # A persistent session keeps the recorder's subscription across the restart,
    # so what the node flushes is queued for it even if the node reconnects first.
    recorder = Recorder(persistent_broker.port, client_id="fw-test-recorder", clean_session=False)
    clock = AcceleratedClock(sim_start_s=time.time(), factor=6000.0)  # a reading every 0.1 s real
    node = Node(settings.station("LP-W01"), load_scenario("tidal_normal"), persistent_broker.url, clock,
                seed=11, reconnect_delay_s=(1, 1)).start()
    try:
        assert recorder.wait_for(lambda: len(recorder.readings("LP-W01")) >= 5)
        persistent_broker.stop()
        assert recorder.wait_for(lambda: len(node.core.buffer) >= 15, timeout_s=15), "the node did not buffer"
        assert not node.link.connected
        persistent_broker.start()
        assert recorder.wait_for(lambda: node.link.connected and not node.core.buffer, timeout_s=15)
        sent_before_live = node.readings_sent
        assert recorder.wait_for(lambda: node.readings_sent >= sent_before_live + 3)
    finally:
        node.stop()
    made = node.core.readings_made
    assert recorder.wait_for(lambda: len(set(r["seq"] for r in recorder.readings("LP-W01"))) >= made)
    recorder.close()
    seqs = [r["seq"] for r in recorder.readings("LP-W01")]
    assert first_occurrences(seqs) == list(range(made)), "a reading was lost or arrived out of order"
    stats = node.stats()
    assert stats["batches_sent"] >= 1 and stats["dropped"] == 0 and stats["buffered"] == 0
    assert node.link.disconnects >= 1 and node.link.connects >= 2


def test_offline_fault_flushes_the_hour_in_batches_oldest_first(broker, settings):
    recorder = Recorder(broker.port)
    scenario = load_scenario("fault_offline_flush")
    clock = AcceleratedClock(sim_start_s=time.time(), factor=14_400.0)  # 8 scenario hours in 2 s
    node = Node(settings.station("LP-W01"), scenario, broker.url, clock, seed=2).start()
    try:
        assert recorder.wait_for(lambda: node.core.last_wake_s is not None and node.core.last_wake_s > 4 * 3600,
                                 timeout_s=20)
    finally:
        node.stop()
    made = node.core.readings_made
    assert recorder.wait_for(lambda: len(recorder.readings("LP-W01")) >= made)
    recorder.close()
    readings = recorder.readings("LP-W01")
    assert first_occurrences([r["seq"] for r in readings]) == list(range(made))
    start_epoch = node.start_s
    batches = [b["readings"] for t, b in recorder.telemetry_messages() if "readings" in b]
    assert batches, "the offline hour should come back as batched messages"
    flushed = [r for batch in batches for r in batch]
    hours = [(datetime.fromisoformat(r["ts"]).timestamp() - start_epoch) / 3600 for r in flushed]
    # The flush holds the offline hour (and whatever was made while reconnecting), in order.
    assert min(hours) >= 1.99 and hours == sorted(hours)
    offline_seqs = {r["seq"] for r in readings
                    if 2.0 <= (datetime.fromisoformat(r["ts"]).timestamp() - start_epoch) / 3600 < 2.99}
    assert len(offline_seqs) >= 5 and offline_seqs <= {r["seq"] for r in flushed}
    # The node really dropped its connection: the broker published its will, then it came back.
    assert recorder.statuses("LP-W01") == ["online", "offline", "online", "offline"]


def test_reboot_in_the_rain_neither_creates_nor_loses_rain(broker, settings):
    recorder = Recorder(broker.port)
    scenario = load_scenario("fault_reboot")
    station = settings.station("LP-R01")
    clock = AcceleratedClock(sim_start_s=time.time(), factor=20_000.0)
    node = Node(station, scenario, broker.url, clock, seed=4).start()
    try:
        assert recorder.wait_for(lambda: node.core.last_wake_s is not None and
                                 node.core.last_wake_s > scenario.duration_s - 600, timeout_s=20)
    finally:
        node.stop()
    assert recorder.wait_for(lambda: len(recorder.readings("LP-R01")) >= node.core.readings_made)
    recorder.close()
    readings = sorted({r["seq"] + 10_000 * r["boot"]: r for r in recorder.readings("LP-R01")}.values(),
                      key=lambda r: datetime.fromisoformat(r["ts"]))
    assert {r["boot"] for r in readings} == {1, 2}
    # Ingestion's conversion: tips since the previous reading of the same boot; a new boot counts from 0.
    rain_mm = 0.0
    for prev, cur in pairwise(readings):
        tips = cur["rain_tips"] if cur["boot"] != prev["boot"] else cur["rain_tips"] - prev["rain_tips"]
        assert tips >= 0
        rain_mm += tips * station.mm_per_tip
    t0 = datetime.fromisoformat(readings[0]["ts"]).timestamp() - node.start_s
    t1 = datetime.fromisoformat(readings[-1]["ts"]).timestamp() - node.start_s
    truth_mm = scenario.truth_rain_mm(["LP-R01"], t0, t1)[0]
    assert truth_mm == pytest.approx(40.0, abs=0.01)
    assert abs(rain_mm - truth_mm) < station.mm_per_tip + 0.01


def test_status_is_retained_online_then_offline_and_the_will_fires_on_a_power_cut(broker, settings):
    scenario = load_scenario("tidal_normal")
    clock = AcceleratedClock(sim_start_s=time.time(), factor=600.0)
    clean = Node(settings.station("LP-W02"), scenario, broker.url, clock, seed=1).start()
    cut = Node(settings.station("LP-W03"), scenario, broker.url, clock, seed=2).start()
    late = Recorder(broker.port)  # subscribes after the nodes: sees the retained status
    assert late.wait_for(lambda: late.statuses("LP-W02") == ["online"] and late.statuses("LP-W03") == ["online"])
    clean.stop()
    cut.power_cut()
    assert late.wait_for(lambda: late.statuses("LP-W02")[-1:] == ["offline"])
    assert late.wait_for(lambda: late.statuses("LP-W03")[-1:] == ["offline"]), "the broker did not publish the will"
    late.close()
    after = Recorder(broker.port)
    assert after.wait_for(lambda: after.statuses("LP-W02") == ["offline"] and after.statuses("LP-W03") == ["offline"])
    after.close()


def test_a_stalled_broker_fills_the_window_and_the_node_buffers_instead_of_queueing(broker, settings):
    """Back-pressure: with PUBACKs stopped, at most `window` publishes are in flight; the rest wait in order."""
    import os
    import signal

    recorder = Recorder(broker.port)
    clock = AcceleratedClock(sim_start_s=time.time(), factor=6000.0)
    node = Node(settings.station("LP-W04"), load_scenario("tidal_normal"), broker.url, clock, seed=8, window=3).start()
    try:
        assert recorder.wait_for(lambda: len(recorder.readings("LP-W04")) >= 3)
        os.kill(broker.proc.pid, signal.SIGSTOP)  # the broker freezes: TCP stays up, no PUBACKs
        try:
            assert recorder.wait_for(lambda: len(node.core.buffer) >= 10, timeout_s=15)
            assert node.link.in_flight == 3 and node.link.window_full >= 1 and node.link.connected
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        assert recorder.wait_for(lambda: not node.core.buffer, timeout_s=15)
    finally:
        node.stop()
    made = node.core.readings_made
    assert recorder.wait_for(lambda: len(recorder.readings("LP-W04")) >= made)
    recorder.close()
    assert first_occurrences([r["seq"] for r in recorder.readings("LP-W04")]) == list(range(made))


def test_nodes_log_in_to_a_locked_down_broker_with_their_station_credentials(tmp_path, settings):
    """Against the configuration `floodwatch mqtt-config` writes: own account, own topics only."""
    from floodwatch.cli.mqtt_config import INGEST_USER, write_config

    from .conftest import MosquittoProcess

    locked = MosquittoProcess(tmp_path / "locked")
    credentials = {c.username: c.password for c in
                   write_config(settings, tmp_path / "locked", port=locked.port, bind_address="127.0.0.1",
                                run_as="root")}
    locked.conf = tmp_path / "locked" / "mosquitto.conf"
    locked.start()
    try:
        recorder = Recorder(locked.port, username=INGEST_USER, password=credentials[INGEST_USER])
        clock = AcceleratedClock(sim_start_s=time.time(), factor=6000.0)
        scenario = load_scenario("tidal_normal")
        with_account = Node(settings.station("LP-W01"), scenario, locked.url, clock, seed=1,
                            password=credentials["LP-W01"]).start()
        anonymous = Node(settings.station("LP-W02"), scenario, locked.url, clock, seed=2).start(connect_timeout_s=1)
        assert recorder.wait_for(lambda: len(recorder.readings("LP-W01")) >= 3)
        with_account.stop()
        anonymous.stop()
        assert recorder.statuses("LP-W01")[0] == "online"
        assert recorder.readings("LP-W02") == [] and not anonymous.link.connects
        assert anonymous.core.buffer, "a node the broker refuses keeps its readings"
        recorder.close()
    finally:
        locked.stop()
