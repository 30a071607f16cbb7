"""Exactly once: LINE 5xx/429 storms, lost acknowledgements, timeouts and a killed delivery process.

Each test prints delivered / expected / duplicates for the record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from pydantic import SecretStr

from floodwatch.alerts import AlertService
from floodwatch import metrics
from floodwatch.settings import PROJECT_ROOT

from tests.alerts.conftest import TOKEN, T0_S, feed, wait_until

MULTICAST = "/v2/bot/message/multicast"


def _residents(n: int, zone_tag: str) -> list[str]:
    return [f"U{zone_tag}{i:031x}"[:33] for i in range(n)]


def _figures(standin, users: list[str], what: str) -> tuple[int, int, int]:
    warnings = Counter(d.user_id for d in standin.delivered_messages()
                       if "เตือนภัย" in d.message.get("text", ""))
    delivered = sum(1 for u in users if warnings[u] >= 1)
    duplicates = sum(warnings[u] - 1 for u in users if warnings[u] > 1)
    print(f"{what}: delivered {delivered} / expected {len(users)} / duplicates {duplicates}")
    return delivered, len(users), duplicates


def test_a_5xx_429_timeout_and_lost_ack_storm_still_delivers_each_message_once(make_settings, standin, clock):
    settings = make_settings(line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN),
                                   "retry_base_s": 0.02, "retry_max_s": 0.2, "timeout_s": 0.5})
    users = _residents(2_600, "a")  # 6 chunks of <= 500
    standin.fail_next(8, status=503, path=MULTICAST)
    standin.fail_next(6, status=429, path=MULTICAST)
    standin.fail_next(3, status=500, path=MULTICAST)
    standin.lose_ack_next(3, path=MULTICAST)                       # executed, then the answer is lost
    standin.delay_next(2, delay_s=2.0, path=MULTICAST, execute=True)  # executed, answer after our timeout
    with AlertService(settings, clock) as service:
        service.subscribe_many((u, "moo-1") for u in users)
        feed(service, clock, "LP-W02", [2.05, 2.06], step_s=3600)
        assert service.wait_delivered(30)
        entry = service.log()[0]
    delivered, expected, duplicates = _figures(standin, users, "5xx/429 storm")
    assert (delivered, duplicates) == (expected, 0)
    assert entry["state"] == "delivered" and entry["delivered"] == expected
    sent = standin.requests(MULTICAST)
    keys = Counter(r.headers.get("x-line-retry-key") for r in sent)
    assert len(keys) == 6 and None not in keys, "one retry key per chunk, on every attempt"
    assert any(r.status == 409 for r in sent), "a lost ack is settled by LINE's 409"
    assert max(len(r.body["to"]) for r in sent) <= 500


def test_other_4xx_is_never_retried(make_settings, standin, clock):
    settings = make_settings(line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN),
                                   "retry_base_s": 0.02})
    standin.fail_next(1, status=400, path=MULTICAST)
    with AlertService(settings, clock) as service:
        service.subscribe_many((u, "moo-6") for u in _residents(600, "b"))  # 2 chunks
        feed(service, clock, "LP-W06", [1.62, 1.63], step_s=3600)
        assert service.wait_delivered(10)
        time.sleep(0.3)  # a (wrong) retry would happen within this time
        entry = service.log()[0]
    assert len(standin.requests(MULTICAST)) == 2
    assert entry["state"] == "partial" and entry["failed"] in (100, 500) and entry["delivered"] + entry["failed"] == 600


_CHILD = textwrap.dedent("""
    import sys, time
    from floodwatch.alerts import AlertService
    from floodwatch.settings import load_settings
    from floodwatch.vocabulary import QcFlag, Reading

    class Clock:
        factor = 1.0
        def __init__(self, t): self.t = t
        def now_s(self): return self.t

    users = [l.strip() for l in open(sys.argv[1])]
    clock = Clock(float(sys.argv[2]))
    service = AlertService(load_settings(), clock)
    service.subscribe_many((u, "moo-4") for u in users)
    service.start()
    for level in (1.70, 1.72):  # LP-W03 warning 1.65 m
        clock.t += 3600
        service.on_readings([Reading("LP-W03", clock.t, water_level_m=level, qc_flag=QcFlag.PASS)])
    print("decided", flush=True)
    time.sleep(600)
""")


def test_a_delivery_process_killed_between_send_and_ack_sends_nothing_twice(tmp_path: Path, standin, clock):
    users = _residents(3_000, "c")  # 6 chunks
    (tmp_path / "users.txt").write_text("\n".join(users))
    state_url = f"sqlite:///{tmp_path}/alerts.db"
    env = {**os.environ, "FLOODWATCH_ALERTS__STATE_URL": state_url,
           "FLOODWATCH_LINE__API_BASE_URL": standin.base_url, "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN": TOKEN,
           "FLOODWATCH_LINE__TIMEOUT_S": "60", "FLOODWATCH_LINE__DELIVERY_THREADS": "2"}
    # LINE executes the first three multicasts but the answers never arrive before the kill
    standin.delay_next(3, delay_s=60.0, path=MULTICAST, execute=True)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "users.txt"), str(T0_S)],
                             cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len(standin.requests(MULTICAST)) >= 2 or child.poll() is not None, 30)
        time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    executed_before_kill = len({d.retry_key for d in standin.delivered_messages()})
    assert executed_before_kill >= 2, child.stderr.read()[-2000:] if child.stderr else ""
    standin.clear_faults()

    # the municipality restarts floodwatch on the same state file
    from floodwatch.settings import load_settings

    settings = load_settings()
    settings.alerts.state_url = state_url
    settings.line.api_base_url = standin.base_url
    settings.line.channel_access_token = SecretStr(TOKEN)
    with AlertService(settings, clock) as restarted:
        clock.t_s = T0_S + 2 * 3600
        assert restarted.wait_delivered(20)
        assert restarted.zone_levels()["moo-4"]["level"] == 2, "the restart remembers the warning"
        restarted.tick()
        entry = restarted.log()[0]
        resident_entries = [e for e in restarted.log() if e["audience"] == "residents"]
    delivered, expected, duplicates = _figures(standin, users, "killed mid-delivery")
    conflicts = [r for r in standin.requests(MULTICAST) if r.status == 409]
    print(f"killed mid-delivery: chunks executed before the kill {executed_before_kill}, "
          f"409 answers after the restart {len(conflicts)}")
    assert (delivered, duplicates) == (expected, 0)
    assert len(conflicts) >= 1
    assert entry["state"] == "delivered" and len(resident_entries) == 1


def test_delivery_counts_are_exported_as_metrics(make_settings, standin, clock):
    settings = make_settings(line={"api_base_url": standin.base_url, "channel_access_token": SecretStr(TOKEN)})
    before = metrics.value("floodwatch_line_deliveries_total", outcome="delivered")
    with AlertService(settings, clock) as service:
        service.subscribe("Umetric0000000000000000000000000", "moo-2")
        feed(service, clock, "LP-W05", [1.50, 1.51], step_s=3600)  # warning 1.45 m
        assert service.wait_delivered(10)
    assert metrics.value("floodwatch_line_deliveries_total", outcome="delivered") == before + 1
