"""The public surface of store/ and ingest/ is small and pinned (a change here is a change for every stage)."""

from __future__ import annotations

from floodwatch import ingest
from floodwatch import store


def test_store_exports():
    assert sorted(store.__all__) == ["Field", "Rejection", "Store", "StoreStats", "Window", "WriteResult", "open_store"]
    for name in store.__all__:
        assert hasattr(store, name)


def test_ingest_exports():
    assert sorted(ingest.__all__) == ["IngestService", "ParsedMessage", "QcChecker", "TipCounters",
                                      "parse_message", "parse_payload"]
    for name in ingest.__all__:
        assert hasattr(ingest, name)


def test_both_stores_provide_what_ingest_and_the_page_call():
    from floodwatch.store.influx import InfluxStore
    from floodwatch.store.sqlite import SqliteStore

    needed = ["write_batch", "read_window", "read_readings", "latest", "close", "insert_new", "sync",
              "write_rejections", "quarantine", "quarantine_counts", "apply_retention", "stats"]
    for cls in (SqliteStore, InfluxStore):
        missing = [m for m in needed if not callable(getattr(cls, m, None))]
        assert not missing, f"{cls.__name__} lacks {missing}"
