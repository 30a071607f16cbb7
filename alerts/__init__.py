"""alerts: who must be warned, when, with what words, delivered through LINE exactly once.

- :mod:`alerts.rules`: pure rules (state, observation, forecast) -> (new state, actions)
- :mod:`alerts.messages`: the Thai-first / English words and LINE message objects
- :mod:`alerts.line_client`: the one seam to LINE (line-bot-sdk v3)
- :mod:`alerts.delivery`: outbox workers (retry keys, backoff, rate limit)
- :mod:`alerts.webhook`: POST /line/webhook, residents subscribing themselves
- :mod:`alerts.residents`, :mod:`alerts.reports`: the rich menu's answers, residents' flood reports
- :mod:`alerts.flex`, :mod:`alerts.richmenu`: Flex cards, the Thai rich menu (``floodwatch line setup``)
- :mod:`alerts.quota`: this month's LINE use, shortfalls told to officers before sending
- :mod:`alerts.loudspeaker`, :mod:`alerts.speech`: village loudspeaker commands over MQTT, spoken Thai
- :mod:`alerts.privacy`: erasing one resident's data (``floodwatch privacy purge``)
- :class:`AlertService`: the shell that wires them (see docs/alerts.md)
"""

from floodwatch.alerts.line_client import LineClient, SendOutcome
from floodwatch.alerts.rules import Action, RuleConfig, StationState, Thresholds, ZoneState
from floodwatch.alerts.service import AlertService

__all__ = [
    "Action",
    "AlertService",
    "LineClient",
    "RuleConfig",
    "SendOutcome",
    "StationState",
    "Thresholds",
    "ZoneState",
]
