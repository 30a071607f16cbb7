"""`floodwatch ingest` as a real process, SIGKILLed mid-stream and restarted: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.ingest.helpers import Publisher, count_rows, telemetry, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def start_ingest_process(tmp_path: Path, broker_url: str, db: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "FLOODWATCH_MQTT__URL": broker_url,
        "FLOODWATCH_STORE__URL": f"sqlite:///{db}",
        "FLOODWATCH_STORE__SPOOL_PATH": str(tmp_path / "spool.db"),
        # The same client id after the restart: the broker keeps this worker's session under it.
        "FLOODWATCH_MQTT__CLIENT_ID": "ingest-under-test",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli.ingest", "--stats-every", "0"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"),
    )


def test_ingest_killed_mid_stream_and_restarted_loses_nothing(tmp_path, broker):
    db = tmp_path / "fw.db"
    log = tmp_path / "ingest.log"
    proc = start_ingest_process(tmp_path, broker.url, db, log)
    wait_for(lambda: b"event=mqtt_subscribed" in log.read_bytes(), 15, "the ingest process to subscribe")
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
        wait_for(lambda: count_rows(db)[0] >= n, 15, "every reading stored after the restart")
        time.sleep(0.3)
        rows, distinct = count_rows(db)
        print(f"published {published}, stored {rows}, duplicates {rows - distinct} (stored when killed {at_kill})")
        assert at_kill < n
        assert published == n and rows == distinct == n
    finally:
        pub.close()
        proc.terminate()
        assert proc.wait(10) == 0, log.read_text()[-2000:]
