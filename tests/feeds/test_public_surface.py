"""The feeds package's public surface is small and pinned; the stages it may import come before the store."""

from __future__ import annotations

import ast
from pathlib import Path

import floodwatch.feeds as feeds
from floodwatch.settings import PROJECT_ROOT


def test_public_names_are_pinned():
    assert sorted(feeds.__all__) == sorted([
        "FeedService", "FeedState", "FeedValue", "FeedWriter", "Problem", "RunReport", "classify",
        "configuration_problems", "describe_feed", "feed_state_path", "read_health",
    ])
    assert all(hasattr(feeds, name) for name in feeds.__all__)


def test_feeds_import_nothing_after_the_store():
    later = ("floodwatch.models", "floodwatch.alerts", "floodwatch.gauge_page", "floodwatch.scheduler",
             "floodwatch.cli", "floodwatch.firmware_sim")
    for path in Path(PROJECT_ROOT / "feeds").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not [n for n in names if n.startswith(later)], f"{path.name} imports {names}"


def test_a_zone_worker_runs_only_the_feeds_of_its_own_zones_stations(tmp_path):
    from floodwatch import store as store_pkg
    from floodwatch.clock import FixedClock
    from floodwatch.feeds import FeedService
    from floodwatch.settings import load_settings

    running = {}
    for zones in (["moo-1", "moo-2"], ["moo-5"]):
        settings = load_settings(worker={"zones": zones}, store={"url": f"sqlite:///{tmp_path}/{zones[0]}.db"})
        for feed in settings.feeds:
            feed.folder = tmp_path / "inbox" if feed.folder else None
        db = store_pkg.open_store(settings)
        service = FeedService(settings, db, FixedClock(1_796_022_000.0)).start()
        running[zones[0]] = sorted(service.feeds)
        service.stop()
        db.close()
    assert running == {"moo-1": [], "moo-5": ["officer-drop", "thaiwater"]}
