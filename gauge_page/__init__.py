"""The live gauge page disaster officers work from.

    app = gauge_page.create_app(settings, store, clock, hub=hub,
                                alerts=alert_service, forecasts=forecaster, ingest=ingest_service)

``EventHub.publish(event_type, data)`` is how other stages push live updates
("readings", "status", "forecast", "alert") to every open page. Officers are
added with :func:`create_officer` (or listed in ``[page] officers`` as
hashes from :func:`hash_password`). See docs/page.md.
"""

from __future__ import annotations

from floodwatch.gauge_page._app import create_app
from floodwatch.gauge_page._hub import EventHub, to_jsonable
from floodwatch.gauge_page._state import PageState, hash_password, sqlite_path

__all__ = ["EventHub", "PageState", "create_app", "create_officer", "hash_password", "to_jsonable"]


def create_officer(settings, username: str, password: str, *, display_name: str | None = None,
                   now_s: float | None = None) -> None:  # noqa: ANN001 - floodwatch.settings.Settings
    """Add (or reset the password of) an officer in the page's SQLite state at ``settings.page.state_url``."""
    import time

    state = PageState(sqlite_path(settings.page.state_url))
    try:
        state.add_officer(username, password, display_name=display_name,
                          now_s=time.time() if now_s is None else now_s)
    finally:
        state.close()
