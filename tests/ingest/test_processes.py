"""`floodwatch ingest` as real processes: SIGKILLed mid-stream and restarted; two workers sharing the load."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.ingest.helpers import Publisher, count_rows, telemetry, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def start_ingest_process(tmp_path: Path, broker_url: str, db: Path, log: Path, *args: str,
                         client_id: str = "ingest-under-test", spool: str = "spool.db") -> subprocess.Popen:
    env = {
        **os.environ,
        "FLOODWATCH_MQTT__URL": broker_url,
        "FLOODWATCH_STORE__URL": f"sqlite:///{db}",
        "FLOODWATCH_STORE__SPOOL_PATH": str(tmp_path / spool),
        # The same client id after the restart: the broker keeps this worker's session under it.
        "FLOODWATCH_MQTT__CLIENT_ID": client_id,
    }
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "floodwatch.cli.ingest", "--stats-every", "0", *args],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )


def test_ingest_killed_mid_stream_and_restarted_loses_nothing(tmp_path, broker):
    db = tmp_path / "fw.db"
    log = tmp_path / "ingest.log"
    proc = start_ingest_process(tmp_path, broker.url, db, log)
    wait_for(lambda: b"event=mqtt_subscribed" in log.read_bytes(), 60, "the ingest process to subscribe")
    n = 4000
    pub = Publisher(broker.port)
    sender = threading.Thread(target=pub.publish, args=(telemetry(n, time.time()),),
                              kwargs={"pause_every": 100, "pause_s": 0.03})
    try:
        sender.start()
        wait_for(lambda: db.exists() and count_rows(db)[0] >= 800, 15, "ingest to be mid-stream")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        at_kill = count_rows(db)[0]
        time.sleep(0.5)  # the broker queues for the dead worker's session meanwhile
        proc = start_ingest_process(tmp_path, broker.url, db, log)
        sender.join(30)
        published = pub.wait_all_acked()
        wait_for(lambda: count_rows(db)[0] >= n, 60, "every reading stored after the restart")
        time.sleep(0.3)
        rows, distinct = count_rows(db)
        print(f"published {published}, stored {rows}, duplicates {rows - distinct} (stored when killed {at_kill})")
        assert at_kill < n
        assert published == n and rows == distinct == n
    finally:
        pub.close()
        proc.terminate()
        assert proc.wait(10) == 0, log.read_text()[-2000:]


def test_two_ingest_processes_on_a_shared_subscription_store_each_reading_once(tmp_path, broker):
    db = tmp_path / "fw.db"
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [
        start_ingest_process(tmp_path, broker.url, db, log, "--shared-group", "ingest",
                             client_id=f"ingest-{k}", spool=f"spool-{k}.db")
        for k, log in enumerate(logs, start=1)
    ]
    n = 3000
    pub = Publisher(broker.port)
    try:
        for log in logs:
            wait_for(lambda log=log: log.exists() and b"event=mqtt_subscribed" in log.read_bytes(), 60,
                     f"{log.name} to subscribe")
        pub.publish(telemetry(n, time.time()))
        published = pub.wait_all_acked()
        wait_for(lambda: db.exists() and count_rows(db)[0] >= n, 60, "both workers to store everything")
        time.sleep(0.3)
    finally:
        pub.close()
        for w in workers:
            w.terminate()  # SIGTERM: the worker stores what it has, logs its counters, exits 0
        codes = [w.wait(10) for w in workers]
    rows, distinct = count_rows(db)
    counters = [stop_counters(log) for log in logs]
    received = [c["telemetry_received"] for c in counters]
    print(f"published {published}, stored {rows}; worker 1 received {received[0]} stored {counters[0]['stored']} "
          f"duplicates {counters[0]['duplicates']}; worker 2 received {received[1]} stored {counters[1]['stored']} "
          f"duplicates {counters[1]['duplicates']}")
    assert codes == [0, 0]
    assert rows == distinct == n
    # Each message went to exactly one worker: what they received adds up to what was published
    # (a message delivered to both would make the sum exceed it and show up as a duplicate).
    assert sum(received) == published, f"received {received} for {published} published"
    assert [c["duplicates"] for c in counters] == [0, 0]
    assert sum(c["stored"] for c in counters) == n
    assert min(received) > n // 4, "the shared subscription should split the load"


def stop_counters(log: Path) -> dict[str, int]:
    """The counters a worker logs when it stops (``event=ingest_stop key=value ...``)."""
    line = re.search(rb"event=ingest_stop (.*)", log.read_bytes())
    assert line is not None, f"{log.name} has no ingest_stop line: {log.read_text()[-2000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line.group(1).decode())}
