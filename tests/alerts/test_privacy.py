"""``floodwatch privacy purge --user``: one resident's data erased, everyone else's kept, and said so."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from floodwatch.alerts import AlertService
from floodwatch.cli.main import main

from tests.alerts.conftest import feed
from tests.alerts.test_reports import INSIDE, Resident, photo_jpeg, photos_in, webhook_url  # noqa: F401


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def purge(monkeypatch, capsys):
    """The real command line, in this process (settings from the same FLOODWATCH_* variables an operator sets)."""

    def run(settings, *args: str) -> Ran:
        monkeypatch.setenv("FLOODWATCH_ALERTS__STATE_URL", settings.alerts.state_url)
        monkeypatch.setenv("FLOODWATCH_REPORTS__PHOTO_DIR", str(settings.reports.photo_dir))
        capsys.readouterr()
        code = main(["privacy", "purge", *args])
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def test_purge_removes_one_residents_reports_photos_subscriptions_and_outbox_entries(
        service: AlertService, standin, clock, webhook_url, purge):  # noqa: F811
    asker, neighbour = Resident(standin, webhook_url), Resident(standin, webhook_url)
    for person in (asker, neighbour):
        service.subscribe(person.user, "moo-5")
        person.postback("action=report")
        person.postback("action=report_consent&answer=yes")
        person.location(*INSIDE)
        person.photo(photo_jpeg())
        person.postback("action=report_depth&depth=knee")
    service.subscribe(asker.user, "moo-6")
    feed(service, clock, "LP-W01", [1.65, 1.66])  # a WATCH for moo-5: both are in its outbox chunk
    assert service.wait_delivered(10)
    assert len(service.reports(officer=True)) == 2 and len(photos_in(service)) == 2
    settings = service.settings

    counted = purge(settings, "--user", asker.user, "--dry-run")
    assert counted.returncode == 0 and "would remove" in counted.stdout
    assert len(service.reports(officer=True)) == 2

    done = purge(settings, "--user", asker.user)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split("  ")[-1].strip(): int(line.split()[0]) for line in done.stdout.splitlines()[1:-1]}
    assert lines["flood reports / รายงานน้ำท่วม"] == 1 and lines["photos / รูปถ่าย"] == 1
    assert lines["village subscriptions / การรับแจ้งเตือนรายหมู่บ้าน"] == 2
    assert lines["delivery records naming them / บันทึกการส่งข้อความที่มีชื่อผู้ใช้"] == 1
    assert lines["consent records / บันทึกความยินยอม"] == 1

    [left] = service.reports(officer=True)
    assert service.residents.book.get(left["id"])["user_id"] == neighbour.user
    assert len(photos_in(service)) == 1
    assert service.subscribers("moo-5") == [neighbour.user] and service.subscribers("moo-6") == []
    assert service.db.user(asker.user) is None and not service.residents.book.consented(asker.user)
    with service.db._lock:
        outbox = [r[0] for r in service.db._conn.execute("SELECT user_ids FROM outbox")]
    assert all(asker.user not in ids for ids in outbox) and any(neighbour.user in ids for ids in outbox)
    assert service.log()[0]["recipients"] >= 2, "the alert log keeps its counts"

    again = purge(settings, "--user", asker.user)
    assert again.returncode == 0 and "nothing was kept about this user" in again.stdout


def test_purge_refuses_what_is_not_a_line_user_id(service, purge):
    bad = purge(service.settings, "--user", "somchai")
    assert bad.returncode == 1 and "is not a LINE user id" in bad.stdout and "Traceback" not in bad.stderr
