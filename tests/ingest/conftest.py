"""Fixtures for ingest tests: a real Mosquitto on a free port, settings pointing at tmp files."""

from __future__ import annotations

from pathlib import Path

import pytest

from floodwatch.settings import Settings
from tests.ingest.helpers import Broker, make_settings


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def settings(tmp_path: Path, broker: Broker) -> Settings:
    return make_settings(tmp_path, broker.url)
