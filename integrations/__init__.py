"""integrations: floodwatch speaking the tools municipalities already run.

- :mod:`integrations.state`: pure: each station's and zone's state and whether it changed enough to publish
- :mod:`integrations.homeassistant`: pure: Home Assistant MQTT discovery messages
- :class:`StatePublisher`: retained state on the broker for Node-RED, Home Assistant, village controllers
- :class:`StoreKeeper`: issued forecasts and alert decisions kept in the store (exports, Grafana)
"""

from floodwatch.integrations.keeper import StoreKeeper
from floodwatch.integrations.publisher import StatePublisher

__all__ = ["StatePublisher", "StoreKeeper"]
