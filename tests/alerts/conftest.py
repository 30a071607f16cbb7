"""Fixtures for the alert tests: a real LINE stand-in, settings in tmp_path, a hand-driven clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from floodwatch.alerts import AlertService
from floodwatch.settings import Settings
from floodwatch.vocabulary import QcFlag, Reading, StationId
from floodwatch.line_standin import LineStandIn

TOKEN = "alerts-test-token"
SECRET = "alerts-test-secret"
# 2026-11-29 12:00 Bangkok
T0_S = 1_795_930_800.0


@dataclass
class ManualClock:
    """Simulated time the test moves by hand."""

    t_s: float = T0_S
    factor: float = 1.0

    def now_s(self) -> float:
        return self.t_s

    def advance(self, dt_s: float) -> float:
        self.t_s += dt_s
        return self.t_s


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def standin() -> Iterator[LineStandIn]:
    with LineStandIn(tokens={TOKEN}) as running:
        yield running


@pytest.fixture
def alert_settings(make_settings: Callable[..., Settings], standin: LineStandIn) -> Settings:
    return make_settings(
        line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN),
              "channel_secret": SecretStr(SECRET), "retry_base_s": 0.02, "retry_max_s": 0.2, "timeout_s": 2.0},
    )


@pytest.fixture
def service(alert_settings: Settings, clock: ManualClock) -> Iterator[AlertService]:
    svc = AlertService(alert_settings, clock)
    svc.start()
    try:
        yield svc
    finally:
        svc.close()


def reading(station_id: str, ts_s: float, level_m: float, qc: QcFlag = QcFlag.PASS) -> Reading:
    return Reading(StationId(station_id), ts_s, water_level_m=level_m, qc_flag=qc, received_s=ts_s)


def feed(service: AlertService, clock: ManualClock, station_id: str, levels_m: list[float],
         step_s: float = 600.0) -> None:
    """One reading every ``step_s`` seconds, the clock following along."""
    for level in levels_m:
        clock.advance(step_s)
        service.on_readings([reading(station_id, clock.now_s(), level)])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
