"""Ingest against a real Mosquitto and real SQLite files: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

from floodwatch.clock import SystemClock
from floodwatch.settings import load_settings
from floodwatch.vocabulary import QcFlag
from floodwatch.ingest import IngestService
from floodwatch.store import open_store
from floodwatch.store.sqlite import path_from_url

from tests.ingest.helpers import Publisher, count_rows, make_settings, telemetry, wait_for


def start_ingest(settings, **callbacks):
    store = open_store(settings)
    service = IngestService(settings, store, SystemClock(), **callbacks)
    service.start()
    assert service.wait_connected(10), "ingest did not connect to the broker"
    return service, store


def test_readings_statuses_and_a_bad_payload_flow_through(settings, broker):
    stored, statuses = [], []
    service, store = start_ingest(settings, on_stored=stored.extend,
                                  on_status=lambda sid, status, ts_s: statuses.append((sid, status)))
    pub = Publisher(broker.port)
    try:
        now = time.time()
        pub.publish([("floodwatch/LP-W03/telemetry", b"{broken")])
        pub.publish([("floodwatch/LP-W03/telemetry",
                      json.dumps({"ts": now - 5, "seq": 1, "boot": 1, "distance_m": 2.0}).encode())])
        pub.client.publish("floodwatch/LP-W03/status", "online", qos=1, retain=True)
        wait_for(lambda: stored and statuses, 10, "the good reading and the status")
        [r] = stored
        assert r.station_id == "LP-W03" and abs(r.water_level_m - 1.6) < 1e-9 and r.qc_flag != QcFlag.FAIL
        assert statuses == [("LP-W03", "online")]
        [q] = store.quarantine(10)
        assert (q.reason, q.station_id, q.payload) == ("bad_json", "LP-W03", b"{broken")
        assert store.latest()["LP-W03"].seq == 1
    finally:
        pub.close()
        service.stop()
        store.close()


def test_corpus_of_bad_payloads_is_quarantined_and_good_readings_around_it_land(settings, broker):
    from tests.ingest.test_payload import bad_corpus  # the same corpus the pure tests check reason by reason

    now = time.time()
    BAD = bad_corpus(now)  # noqa: N806
    good = telemetry(len(BAD) * 3, now)
    msgs = []
    for i, (topic, body, _) in enumerate(BAD):
        msgs.extend(good[3 * i:3 * i + 3])
        msgs.append((topic, body))
    service, store = start_ingest(settings)
    pub = Publisher(broker.port)
    try:
        pub.publish(msgs)
        published = pub.wait_all_acked()
        db = path_from_url(settings.store.url)
        wait_for(lambda: count_rows(db)[0] >= len(good) and sum(store.quarantine_counts().values()) >= len(BAD),
                 10, "every message stored or quarantined")
        time.sleep(0.2)  # anything extra (a duplicate, a bad payload stored) would show now
        rows, distinct = count_rows(db)
        counts = store.quarantine_counts()
        quarantined = sum(counts.values())
        print(f"published {published} (good {len(good)}, bad {len(BAD)}), stored {rows}, "
              f"quarantined {quarantined}, duplicates {rows - distinct}")
        assert rows == distinct == len(good)
        assert quarantined == len(BAD)
        reasons = sorted(r for (r, _), n in counts.items() for _ in range(n))
        assert reasons == sorted(reason for _, _, reason in BAD)
        assert service.stats()["rejected"] == len(BAD)
    finally:
        pub.close()
        service.stop()
        store.close()


def test_broker_restarted_mid_stream_loses_nothing(tmp_path, broker):
    settings = make_settings(tmp_path, broker.url)
    service, store = start_ingest(settings)
    n = 3000
    msgs = telemetry(n, time.time())
    pub = Publisher(broker.port)
    # Nodes keep publishing through the outage: paho queues QoS 1 messages
    # while disconnected and resends them when the broker is back.
    sender = threading.Thread(target=pub.publish, args=(msgs,), kwargs={"pause_every": 100, "pause_s": 0.05})
    try:
        sender.start()
        wait_for(lambda: service.stats()["stored"] >= 300, 10, "ingest to be mid-stream")
        broker.stop()                      # graceful: Mosquitto saves sessions and queued messages
        stored_before = service.stats()["stored"]
        time.sleep(0.5)
        broker.start()                     # same port, same persistence folder
        sender.join(20)
        published = pub.wait_all_acked()
        db = path_from_url(settings.store.url)
        wait_for(lambda: count_rows(db)[0] >= n, 45, "all readings stored after the restart")
        time.sleep(0.3)
        rows, distinct = count_rows(db)
        stats = service.stats()
        print(f"published {published}, stored {rows}, duplicates {rows - distinct} "
              f"(stored before the restart {stored_before}, redeliveries dropped by the store {stats['duplicates']})")
        assert stored_before < n
        assert published == n and rows == distinct == n
    finally:
        pub.close()
        service.stop()
        store.close()


def test_store_locked_for_a_while_spools_and_replays_in_order(settings, broker):
    stored_order = []
    service, store = start_ingest(settings, on_stored=stored_order.extend)
    db = path_from_url(settings.store.url)
    n = 1200
    msgs = telemetry(n, time.time())
    pub = Publisher(broker.port)
    locker = sqlite3.connect(db, isolation_level=None)
    try:
        pub.publish(msgs[:400])
        wait_for(lambda: service.stats()["stored"] >= 400, 10, "first third stored")
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the file (a backup, a vacuum)
        pub.publish(msgs[400:800])
        wait_for(lambda: service.stats()["spooled_batches"] > 0 and service.stats()["readings_received"] >= 800,
                 10, "ingest to spool while the store is locked")
        spooled = service.stats()["spool_pending"]
        time.sleep(1.0)
        locker.execute("ROLLBACK")
        pub.publish(msgs[800:])
        published = pub.wait_all_acked()
        wait_for(lambda: service.stats()["stored"] >= n and service.stats()["spool_pending"] == 0, 15,
                 "spool replayed")
        rows, distinct = count_rows(db)
        print(f"published {published}, stored {rows}, duplicates {rows - distinct}, "
              f"batches spooled while locked {service.stats()['spooled_batches']} (pending at unlock {spooled})")
        assert rows == distinct == n
        # Replayed in arrival order: per station, stored readings keep their seq order.
        seqs = [r.seq for r in stored_order if r.station_id == "LP-W01"]
        assert seqs == sorted(seqs) and len(seqs) == n // 4
    finally:
        locker.close()
        pub.close()
        service.stop()
        store.close()


def test_two_workers_on_a_shared_subscription_store_each_reading_once(tmp_path, broker):
    s1 = make_settings(tmp_path, broker.url, shared_group="ingest")
    s2 = make_settings(tmp_path, broker.url, shared_group="ingest")
    s2 = s2.model_copy(update={"store": s2.store.model_copy(update={"spool_path": str(tmp_path / "spool2.db")})})
    w1, store1 = start_ingest(s1)
    w2, store2 = start_ingest(s2)
    n = 2000
    pub = Publisher(broker.port)
    try:
        pub.publish(telemetry(n, time.time()))
        published = pub.wait_all_acked()
        db = path_from_url(s1.store.url)
        wait_for(lambda: w1.stats()["stored"] + w2.stats()["stored"] >= n, 45, "both workers to finish")
        time.sleep(0.3)  # a copy delivered to both workers would arrive now
        rows, distinct = count_rows(db)
        one, two = w1.stats(), w2.stats()
        print(f"published {published}, stored {rows}; worker 1 received {one['telemetry_received']} stored "
              f"{one['stored']} duplicates {one['duplicates']}; worker 2 received {two['telemetry_received']} "
              f"stored {two['stored']} duplicates {two['duplicates']}")
        assert rows == distinct == n
        # the broker gave each message to one worker: received adds up, nobody dropped a copy
        assert one["telemetry_received"] + two["telemetry_received"] == published
        assert (one["duplicates"], two["duplicates"]) == (0, 0)
        assert one["stored"] + two["stored"] == n
        assert min(one["telemetry_received"], two["telemetry_received"]) > n // 4, \
            "the shared subscription should split the load"
    finally:
        pub.close()
        for w, s in ((w1, store1), (w2, store2)):
            w.stop()
            s.close()


def test_influxdb_answering_503_for_a_while_then_back(tmp_path, broker):
    from tests.store.influx_standin import InfluxStandIn

    with InfluxStandIn(token="tok", org="floodwatch", buckets={"floodwatch"}) as influx:
        settings = load_settings(
            mqtt={"url": broker.url, "client_id": "fw-test-influx"},
            store={"url": influx.url.replace("http://", "influxdb+http://"), "influx_token": "tok",
                   "spool_path": str(tmp_path / "spool.db")},
        )
        service, store = start_ingest(settings)
        n = 900
        msgs = telemetry(n, time.time())
        pub = Publisher(broker.port)
        try:
            pub.publish(msgs[:300])
            wait_for(lambda: service.stats()["stored"] >= 300, 10, "first third stored in InfluxDB")
            influx.fail_with(503)
            pub.publish(msgs[300:600])
            wait_for(lambda: service.stats()["readings_received"] >= 600 and service.stats()["spool_pending"] > 0,
                     10, "ingest to spool while InfluxDB answers 503")
            time.sleep(1.0)
            influx.fail_with(None)
            pub.publish(msgs[600:])
            published = pub.wait_all_acked()
            wait_for(lambda: service.stats()["stored"] >= n and service.stats()["spool_pending"] == 0, 15,
                     "the spool to replay into InfluxDB")
            # what InfluxDB itself accepted (204), counted from the write bodies, not ingest's own count
            accepted = influx.accepted_points("reading")
            distinct = len(set(accepted))
            refused = sum(1 for _, _, status in influx.requests if status == 503)
            print(f"published {published}, points accepted by InfluxDB {len(accepted)} ({distinct} distinct), "
                  f"requests answered 503: {refused}, batches spooled {service.stats()['spooled_batches']}")
            assert published == n and len(accepted) == distinct == n
            assert service.stats()["stored"] == n and service.stats()["duplicates"] == 0
            assert refused > 0
        finally:
            pub.close()
            service.stop()
            store.close()
        assert not influx.violations, influx.violations


def test_a_single_spike_is_stored_failed_and_kept_out_of_windows(settings, broker):
    import math

    stored = []
    service, store = start_ingest(settings, on_stored=stored.extend)
    pub = Publisher(broker.port)
    now = float(int(time.time()) // 600 * 600)
    t0 = now - 48 * 600
    levels = [1.0 + 0.5 * math.sin(2 * math.pi * i / 74.5) for i in range(48)]  # tide, 12.42 h period
    levels[30] += 1.2  # a bird under the radar
    try:
        pub.publish([("floodwatch/LP-W01/telemetry",
                      json.dumps({"ts": t0 + 600 * i, "seq": i, "boot": 1, "water_level_m": v}).encode())
                     for i, v in enumerate(levels)])
        wait_for(lambda: len(stored) >= 48, 10, "the series stored")
        flags = {r.seq: r.qc_flag for r in stored}
        print(f"published 48, stored {len(stored)}, failed {[s for s, f in flags.items() if f == QcFlag.FAIL]}")
        assert flags[30] == QcFlag.FAIL
        assert all(f in (QcFlag.PASS, QcFlag.NOT_EVALUATED) for s, f in flags.items() if s != 30)
        w = store.read_window(["LP-W01"], "water_level_m", t0, t0 + 48 * 600, 600)
        assert math.isnan(w.values[0, 30]) and max(w.values[0, :30]) < 1.6
    finally:
        pub.close()
        service.stop()
        store.close()


def test_rain_tips_keep_their_baseline_across_an_ingest_restart(settings, broker):
    def publish(pub, seq, tips):
        pub.publish([("floodwatch/LP-R01/telemetry",
                      json.dumps({"ts": t0 + 600 * seq, "seq": seq, "boot": 4, "rain_tips": tips}).encode())])

    t0 = time.time() - 7200
    pub = Publisher(broker.port)
    service, store = start_ingest(settings)
    try:
        publish(pub, 0, 0)
        publish(pub, 1, 10)
        wait_for(lambda: service.stats()["stored"] >= 2, 10, "two rain readings")
    finally:
        service.stop()
        store.close()
    service, store = start_ingest(settings)
    try:
        publish(pub, 2, 15)  # 5 tips since the last reading the previous process saw
        wait_for(lambda: service.stats()["stored"] >= 1, 10, "the reading after the restart")
        rain = [r.rain_mm for r in store.read_readings("LP-R01", t0 - 1, t0 + 7200)]
        print(f"rain per reading across the restart: {rain}")
        assert rain == [0.0, 2.0, 1.0]
    finally:
        pub.close()
        service.stop()
        store.close()


def test_store_refusing_writes_401_keeps_readings_in_the_spool_until_fixed(tmp_path, broker):
    from tests.store.influx_standin import InfluxStandIn

    with InfluxStandIn(token="tok", org="floodwatch", buckets={"floodwatch"}) as influx:
        settings = load_settings(
            mqtt={"url": broker.url, "client_id": "fw-test-influx-401"},
            store={"url": influx.url, "influx_token": "tok", "spool_path": str(tmp_path / "spool.db")},
        )
        service, store = start_ingest(settings)
        pub = Publisher(broker.port)
        try:
            influx.token = "rotated-by-the-admin"  # our token no longer works: 401, not an outage
            pub.publish(telemetry(200, time.time()))
            published = pub.wait_all_acked()
            wait_for(lambda: service.stats()["readings_received"] >= 200 and service.stats()["spool_pending"] > 0,
                     10, "ingest to keep refused batches in the spool")
            assert service.stats()["stored"] == 0
            influx.token = "tok"  # the admin restores it
            wait_for(lambda: service.stats()["stored"] >= 200 and service.stats()["spool_pending"] == 0, 10,
                     "the spool to replay")
            accepted = influx.accepted_points("reading")
            print(f"published {published}, points accepted by InfluxDB {len(accepted)} ({len(set(accepted))} distinct)")
            assert len(accepted) == len(set(accepted)) == 200
        finally:
            pub.close()
            service.stop()
            store.close()


def test_rain_tips_through_a_shared_subscription_are_counted_once(tmp_path, broker):
    s1 = make_settings(tmp_path, broker.url, shared_group="ingest")
    s2 = make_settings(tmp_path, broker.url, shared_group="ingest")
    s2 = s2.model_copy(update={"store": s2.store.model_copy(update={"spool_path": str(tmp_path / "spool2.db")})})
    w1, store1 = start_ingest(s1)
    w2, store2 = start_ingest(s2)
    pub = Publisher(broker.port)
    t0 = time.time() - 86_000
    tips, msgs = 0, []
    for i in range(300):
        tips += i % 4  # 0-3 tips per interval
        msgs.append(("floodwatch/LP-R01/telemetry",
                     json.dumps({"ts": t0 + 60 * i, "seq": i, "boot": 1, "rain_tips": tips}).encode()))
    try:
        pub.publish(msgs)
        published = pub.wait_all_acked()
        db = path_from_url(s1.store.url)
        wait_for(lambda: count_rows(db)[0] >= 300, 10, "all rain readings stored")
        time.sleep(0.3)
        rain = [r.rain_mm for r in store1.read_readings("LP-R01", t0 - 1, t0 + 60 * 300)]
        per_tip = s1.station("LP-R01").mm_per_tip
        print(f"published {published}, stored {len(rain)}, rain {sum(rain):.1f} mm, true {tips * per_tip:.1f} mm")
        assert len(rain) == 300 and None not in rain
        assert abs(sum(rain) - tips * per_tip) < 1e-6
    finally:
        pub.close()
        for w, s in ((w1, store1), (w2, store2)):
            w.stop()
            s.close()
