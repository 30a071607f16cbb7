"""`floodwatch check` and `floodwatch feeds`: feed configuration mistakes said plainly, health from the state file."""

from __future__ import annotations

import json
import shutil

import pytest

from floodwatch.cli.main import main
from floodwatch.settings import DEFAULT_CONFIG_FILE


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Write a variant of Lam Phaya's file and point FLOODWATCH_CONFIG at it."""
    monkeypatch.setenv("FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN", "test-token")
    monkeypatch.setenv("FLOODWATCH_LINE__CHANNEL_SECRET", "test-secret")

    def write(edit) -> None:
        text = edit(DEFAULT_CONFIG_FILE.read_text())
        text = text.replace('url = "sqlite:///var/floodwatch.db"', f'url = "sqlite:///{tmp_path}/fw.db"')
        text = text.replace('folder = "var/feeds/inbox"', f'folder = "{tmp_path}/inbox"')
        path = tmp_path / "site.toml"
        path.write_text(text)
        # The site's map is named relative to its file: it goes beside the copy.
        shutil.copy(DEFAULT_CONFIG_FILE.with_name("lamphaya.geojson"), tmp_path)
        monkeypatch.setenv("FLOODWATCH_CONFIG", str(path))

    return write


def test_check_passes_lam_phayas_feeds(site, capsys):
    site(lambda text: text)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "external: 4 stations; feeds: thaiwater (thaiwater), officer-drop (drop_folder)" in out


def test_check_names_an_external_station_without_a_feed_and_a_feed_without_stations(site, capsys):
    def edit(text: str) -> str:
        text = text.replace('series = "predicted"\n# The Hydrographic Department\'s table, dropped by an officer as CSV'
                            ' (see docs/feeds.md).\nfeed = "officer-drop"', 'series = "predicted"')
        return text + '\n[[feeds]]\nid = "rid-schedule"\nkind = "csv_url"\nurl = "https://example.invalid/x.csv"\n'

    site(edit)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "problem: external station 'TC-MOUTH-TIDE' names no feed" in out and 'add feed = "<id>"' in out
    assert "problem: feed 'rid-schedule' has no stations" in out


def test_check_refuses_a_station_naming_an_unknown_feed(site, capsys):
    site(lambda text: text.replace('feed = "thaiwater"', 'feed = "thaiwatr"', 1))
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "names feed 'thaiwatr', which is not under [[feeds]]" in out and "Traceback" not in out


def test_feeds_status_reads_the_state_serve_keeps(site, capsys, tmp_path):
    site(lambda text: text)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "TC-MOUTH-TIDE_notes.xlsx").write_bytes(b"PK\x03\x04rest")
    import os
    import time

    past = time.time() - 30
    os.utime(inbox / "TC-MOUTH-TIDE_notes.xlsx", (past, past))
    assert main(["feeds", "fetch", "officer-drop", "--once"]) == 0
    out = capsys.readouterr().out
    assert "unknown_format" in out and "CSV UTF-8" in out
    assert main(["feeds", "status", "--json"]) == 0
    feeds = {f["id"]: f for f in json.loads(capsys.readouterr().out)["feeds"]}
    assert feeds["officer-drop"]["state"] == "ok" and feeds["officer-drop"]["problems"][0]["reason"] == "unknown_format"
    assert feeds["thaiwater"]["state"] == "never"
    assert main(["feeds", "fetch", "nowhere", "--once"]) == 1
    assert "feed 'nowhere' is not in" in capsys.readouterr().err
