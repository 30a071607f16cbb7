"""A feed crashing between fetch and store, or between store and cursor, resumes without loss or duplicates."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from floodwatch import store as store_pkg
from floodwatch.feeds import FeedService, feed_state_path
from floodwatch.settings import DEFAULT_CONFIG_FILE
from tests.feeds.conftest import NOW_S, rows

POINTS = int(72 * 3600 / 900)


def _lock(path: Path) -> sqlite3.Connection:
    """Another process's writer holding the SQLite file (a backup, a stuck job): BEGIN IMMEDIATE."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_a_store_that_fails_after_the_fetch_loses_nothing_and_counts_nothing_twice(feed_settings, clock):
    feed_settings.store.busy_timeout_s = 0.2
    db = store_pkg.open_store(feed_settings)
    stored: list = []
    service = FeedService(feed_settings, db, clock, on_stored=stored.extend).start()
    try:
        holder = _lock(db.path)
        report = service.run_once("thaiwater")
        assert not report.ok and report.error.reason == "store_unavailable"
        assert "nothing was lost" in report.error.detail
        holder.rollback()
        holder.close()
        assert rows(db, "TC-SAMCHUK") == [] and stored == []
        assert service.state.cursor("thaiwater") in (None, {})  # the cursor did not move
        clock.advance(900)
        again = service.run_once("thaiwater")
        assert again.ok
        samchuk = rows(db, "TC-SAMCHUK")
        assert len(samchuk) == POINTS and samchuk[-1].ts_s == NOW_S + 900
        assert len(stored) == len({(r.station_id, r.ts_s) for r in stored}) == again.stored
    finally:
        service.stop()
        db.close()


def _site_file(tmp_path: Path, thaiwater_url: str) -> Path:
    """Lam Phaya's file with the store, the feeds' state and the ThaiWater url pointed at this test."""
    text = DEFAULT_CONFIG_FILE.read_text()
    text = text.replace('url = "sqlite:///var/floodwatch.db"', f'url = "sqlite:///{tmp_path}/floodwatch.db"')
    text = text.replace('url = "https://api-v3.thaiwater.net/api/v1/thaiwater30"', f'url = "{thaiwater_url}"')
    text = text.replace('folder = "var/feeds/inbox"', f'folder = "{tmp_path}/inbox"')
    text += "\n[feed_state]\nbusy_timeout_s = 60.0\n"
    path = tmp_path / "lamphaya.toml"
    path.write_text(text)
    return path


def test_sigkill_between_store_and_cursor_then_resume_stores_each_reading_once(tmp_path, thaiwater):
    """The real command, killed at the worst moment: after the store committed, before the cursor moved."""
    thaiwater.now_s = time.time  # the command runs on the real clock
    site = _site_file(tmp_path, thaiwater.url)
    env = {**os.environ, "FLOODWATCH_CONFIG": str(site)}
    cmd = [sys.executable, "-m", "floodwatch.cli.main", "feeds", "fetch", "thaiwater", "--once"]
    from floodwatch.settings import load_settings

    settings = load_settings(config_file=site)
    state_path = feed_state_path(settings)
    # The state file exists (as after any earlier run); then a writer holds it, so the cursor cannot move.
    from floodwatch.feeds import FeedState

    FeedState(state_path).close()
    holder = _lock(state_path)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    db_path = tmp_path / "floodwatch.db"
    try:
        deadline = time.monotonic() + 60
        count = 0
        while time.monotonic() < deadline:
            if db_path.exists():
                with sqlite3.connect(db_path) as conn:
                    try:
                        count = conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
                    except sqlite3.OperationalError:
                        count = 0
            if count >= 2 * POINTS + 1 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[0].decode()
        assert count == 2 * POINTS + 1  # stored and synced; the cursor write is waiting on the lock
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        holder.rollback()
        holder.close()
    state = FeedState(state_path)
    assert state.cursor("thaiwater") is None  # the crash came before the cursor moved
    state.close()

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    print(resumed.stdout)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with sqlite3.connect(db_path) as conn:
        total, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT station || ':' || ts_s) FROM readings").fetchone()
        per_station = dict(conn.execute("SELECT station, COUNT(*) FROM readings GROUP BY station").fetchall())
    # The re-fetch found everything already stored: nothing new counted, nothing lost, nothing doubled.
    stored, duplicates = (int(x) for x in re.search(r"stored (\d+), duplicates (\d+)", resumed.stdout).groups())
    assert duplicates >= 2 * POINTS - 2 and stored <= 3  # at most a quarter hour that began meanwhile
    assert total == distinct
    assert per_station["TC-SAMCHUK"] in (POINTS, POINTS + 1) and per_station["KRASIAO-REL"] in (1, 2)
    state = FeedState(state_path)
    assert set(state.cursor("thaiwater")) == {"TC-SAMCHUK", "TC-SUPHAN", "KRASIAO-REL"}
    state.close()
