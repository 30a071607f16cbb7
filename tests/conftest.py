"""Fixtures shared by every test folder: real brokers on free ports, settings in tmp dirs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from floodwatch.cli.broker import LocalBroker, find_mosquitto
from floodwatch.settings import DEFAULT_CONFIG_FILE, Settings, load_settings

# Tests never touch a real deployment: data (relative SQLite paths) go to a folder of this run,
# and settings come from the example site even on a machine with /etc/floodwatch/site.toml.
if not os.environ.get("FLOODWATCH_DATA_DIR"):
    _data_dir = tempfile.mkdtemp(prefix="floodwatch-test-data-")
    os.environ["FLOODWATCH_DATA_DIR"] = _data_dir
    atexit.register(shutil.rmtree, _data_dir, True)
os.environ.setdefault("FLOODWATCH_CONFIG", str(DEFAULT_CONFIG_FILE))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[LocalBroker]:
    """A real Mosquitto on a free loopback port, with persistence in tmp_path."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed; run scripts/setup --test (apt-get install mosquitto)")
    with LocalBroker(tmp_path / "mosquitto", prefer="mosquitto") as broker:
        yield broker


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Lam Phaya settings whose store, alert state and feeds live in tmp_path; keyword args update sections."""

    def make(**sections: dict) -> Settings:
        settings = load_settings()
        settings.store.url = f"sqlite:///{tmp_path}/floodwatch.db"
        settings.alerts.state_url = f"sqlite:///{tmp_path}/alerts.db"
        settings.page.state_url = f"sqlite:///{tmp_path}/page.db"
        settings.reports.photo_dir = tmp_path / "report-photos"
        settings.loudspeakers.audio_dir = tmp_path / "loudspeaker-audio"
        for feed in settings.feeds:
            # Tests reach nothing outside: feeds that fetch from the internet or another site stay off
            # unless a test points them at a stand-in; drop folders live in tmp_path.
            if feed.kind == "drop_folder":
                feed.folder = tmp_path / "feeds" / feed.id
            else:
                feed.enabled = False
        for section, values in sections.items():
            target = getattr(settings, section)
            for key, value in values.items():
                setattr(target, key, value)
        return settings

    return make


@pytest.fixture(scope="session")
def playwright():
    """One Playwright driver per test process: a second sync_playwright() while one is running
    fails ("Sync API inside the asyncio loop"), whichever order the tests run in."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p
