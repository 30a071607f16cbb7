"""Fixtures for the feeds: a real SQLite store, the ThaiWater stand-in on a real port, a fixed clock."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from floodwatch import store as store_pkg
from floodwatch.clock import FixedClock
from floodwatch.feeds import FeedService
from floodwatch.feeds.standin import Dam, Gauge, ThaiWaterStandIn
from floodwatch.settings import Settings

# 2026-11-29 14:00 Bangkok, on a 15-minute boundary.
NOW_S = 1_796_022_000.0
STEP_S = 900.0


def sam_chuk_m(t_s: Any) -> Any:
    """A slow river rise at Sam Chuk: 4.0 m MSL plus 1 cm per hour, with a small daily swing."""
    t = np.asarray(t_s, dtype=float)
    return 4.0 + (t - NOW_S) / 3600.0 * 0.01 + 0.05 * np.sin(2 * math.pi * t / 86_400.0)


def suphan_m(t_s: Any) -> Any:
    t = np.asarray(t_s, dtype=float)
    return 2.5 + 0.03 * np.cos(2 * math.pi * t / 43_200.0)


GAUGES = [
    Gauge(2391, "T.13", "แม่น้ำท่าจีน อ.สามชุก", "Tha Chin river, Sam Chuk", 14.75, 100.10, 6.0, -2.0,
          truth_id="TC-SAMCHUK"),
    Gauge(2405, "T.1", "แม่น้ำท่าจีน อ.เมืองสุพรรณบุรี", "Tha Chin river, Suphan Buri", 14.47, 100.12, 4.3, -2.5,
          truth_id="TC-SUPHAN"),
]
DAMS = [Dam(38, "RID-KSW", "เขื่อนกระเสียว", "Krasiao Dam", truth_id="KRASIAO-REL")]


def level_of(gauge: Gauge, t_s: Any) -> Any:
    return sam_chuk_m(t_s) if gauge.oldcode == "T.13" else suphan_m(t_s)


def release_of(dam: Dam, t_s: Any) -> Any:
    return 60.0 + 0.0 * np.asarray(t_s, dtype=float)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW_S)


@pytest.fixture
def thaiwater(clock: FixedClock) -> Iterator[ThaiWaterStandIn]:
    with ThaiWaterStandIn(GAUGES, DAMS, level_m=level_of, release_m3_s=release_of, now_s=clock.now_s,
                          step_s=STEP_S, hang_s=3.0, slow_s=0.6) as standin:
        yield standin


@pytest.fixture
def feed_settings(make_settings: Callable[..., Settings], thaiwater: ThaiWaterStandIn, tmp_path: Path) -> Settings:
    settings = make_settings()
    tw = settings.feed("thaiwater")
    tw.enabled, tw.url, tw.timeout_s = True, thaiwater.url, 1.5
    return settings


@pytest.fixture
def db(feed_settings: Settings) -> Iterator[Any]:
    store = store_pkg.open_store(feed_settings)
    yield store
    store.close()


@pytest.fixture
def service(feed_settings: Settings, db: Any, clock: FixedClock) -> Iterator[FeedService]:
    stored: list = []
    svc = FeedService(feed_settings, db, clock, on_stored=stored.extend)
    svc.stored = stored  # type: ignore[attr-defined]
    svc.start()
    yield svc
    svc.stop()


def rows(db: Any, station_id: str, start_s: float = 0.0, end_s: float = 4e9) -> list:
    return db.read_readings(station_id, start_s, end_s)
