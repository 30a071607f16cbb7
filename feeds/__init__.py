"""External stations' data into floodwatch: agency APIs, peer sites, drop folders, published tables.

A feed brings the readings of stations floodwatch reads but does not own
(``external = true`` in the registry, ``feed = "<id>"`` naming a ``[[feeds]]``
entry) through the same validation, QC and store path ingest uses, moves its
cursor only once the store has them, catches up after downtime (bounded by
``catch_up_h``) and keeps a health record the page shows instead of
"silent". Kinds (docs/feeds.md):

- ``thaiwater``: HII's ThaiWater public API, river levels and dam releases
  (:mod:`floodwatch.feeds.thaiwater`);
- ``floodwatch_mqtt``: another floodwatch site's gauges over MQTT, read-only
  (:mod:`floodwatch.feeds.peer`);
- ``drop_folder``: CSV exports officers drop in a folder, imported once
  (:mod:`floodwatch.feeds.dropfolder`);
- ``csv_url``: a CSV published at a URL, e.g. a release schedule
  (:mod:`floodwatch.feeds.csvurl`).

Predicted series (``series = "predicted"``: a tide table, an announced
release schedule) arrive by a drop folder or a URL; a new load replaces the
previous prediction over the times it covers.
"""

from floodwatch.feeds._health import Problem, RunReport, classify
from floodwatch.feeds._service import FeedService, configuration_problems, describe_feed, read_health
from floodwatch.feeds._state import FeedState, feed_state_path
from floodwatch.feeds._writer import FeedValue, FeedWriter

__all__ = [
    "FeedService",
    "FeedState",
    "FeedValue",
    "FeedWriter",
    "Problem",
    "RunReport",
    "classify",
    "configuration_problems",
    "describe_feed",
    "feed_state_path",
    "read_health",
]
