"""firmware_sim: simulated Lam Phaya sensor nodes, scenarios with ground truth, fleets.

Scenarios are data (``firmware_sim/scenarios/*.toml``) with a pure,
vectorised ground truth; nodes behave like the real firmware (burst median
sampling, adaptive publish interval, seq and boot counters, clock drift,
store-and-forward, faults) and publish the MQTT contract in
``docs/mqtt-contract.md``; a fleet runs 10 to 10,000 of them over a handful
of MQTT connections, following a ``floodwatch.clock`` clock. A simulated
loudspeaker controller (``LoudspeakerController``) plays back and
acknowledges floodwatch's loudspeaker commands.
"""

from floodwatch.firmware_sim._controller import LoudspeakerController, Played
from floodwatch.firmware_sim._fleet import Fleet, Node, synthetic_stations, with_synthetic_stations
from floodwatch.firmware_sim._firmware import FirmwareConfig, NodeCore, WakeOutcome
from floodwatch.firmware_sim._history import history
from floodwatch.firmware_sim._link import MqttLink, parse_broker_url
from floodwatch.firmware_sim._scenario import (
    Crossing,
    Fault,
    Hydrograph,
    RainEvent,
    Scenario,
    list_scenarios,
    load_scenario,
)

__all__ = [
    "Crossing",
    "Fault",
    "FirmwareConfig",
    "Fleet",
    "Hydrograph",
    "LoudspeakerController",
    "MqttLink",
    "Node",
    "NodeCore",
    "Played",
    "RainEvent",
    "Scenario",
    "WakeOutcome",
    "history",
    "list_scenarios",
    "load_scenario",
    "parse_broker_url",
    "synthetic_stations",
    "with_synthetic_stations",
]
