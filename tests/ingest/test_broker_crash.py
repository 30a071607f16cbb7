"""Crashes, not graceful stops: Mosquitto SIGKILLed on the configuration `floodwatch mqtt-config` writes.

Nodes are QoS 1 publishers that re-send until the broker acknowledges
(`crash_rig.ResendingNodes`); ingest is `python -m floodwatch.cli.ingest`
logging in with the generated credentials. "Published" is what the broker
acknowledged to the nodes: a plain node forgets a reading once it is
acknowledged.

Mosquitto acknowledges a PUBLISH before it saves anything, and saves on a
schedule (every second on the generated configuration; ~2 s in practice): a
SIGKILL can take what it acknowledged since its last save and had not yet
handed to ingest (ingest backlogged, or killed in the same instant), never
ingest's session. Nodes that re-send their last 30 s of acknowledged readings
after a reconnect (docs/mqtt-contract.md) lose nothing. Both are asserted.
"""

from __future__ import annotations

from floodwatch.settings import load_settings

from tests.ingest import crash_rig as rig

N, RATE_PER_S, KILL_AFTER_S = 1200, 100.0, 5.0
LAST_SAVE_WINDOW = int(2.5 * RATE_PER_S)  # what the nodes sent since the broker's last save, at most


def _crash(tmp_path, **kwargs) -> dict:
    result = rig.broker_killed_mid_stream(tmp_path, load_settings(), n=N, rate_per_s=RATE_PER_S,
                                          kill_after_s=KILL_AFTER_S, **kwargs)
    print(f"{kwargs}: {result}")
    assert result["acked_at_kill"] < result["published"] == N, "the kill must land mid-stream"
    assert result["session_present_after_restart"] == [True], "ingest's session was not saved"
    return result


def test_broker_sigkilled_mid_stream_keeps_ingests_session_plain_nodes_lose_at_most_its_last_save(tmp_path):
    assert _crash(tmp_path)["lost"] <= LAST_SAVE_WINDOW


def test_broker_sigkilled_mid_stream_loses_nothing_when_nodes_replay_their_last_readings(tmp_path):
    assert _crash(tmp_path, replay_acked_s=30.0)["lost"] == 0


def test_broker_and_ingest_sigkilled_together_plain_nodes_lose_at_most_the_brokers_last_save(tmp_path):
    assert _crash(tmp_path, with_ingest=True)["lost"] <= LAST_SAVE_WINDOW


def test_broker_and_ingest_sigkilled_together_lose_nothing_when_nodes_replay_their_last_readings(tmp_path):
    assert _crash(tmp_path, with_ingest=True, replay_acked_s=30.0)["lost"] == 0


def test_broker_sigkilled_while_ingest_is_away_loses_nothing_when_nodes_replay_their_last_readings(tmp_path):
    # what was queued for ingest's session before the broker's last save survives in the file;
    # what came after it the nodes send again, and it waits in the restored session
    result = rig.broker_killed_while_ingest_away(tmp_path, load_settings(), n=1000, replay_acked_s=30.0)
    print(f"broker SIGKILLed while ingest was away: {result}")
    assert result["acked_before_kill"] == 1000
    assert result["session_present_after_restart"] == [True]
    assert result["published"] == 1000 and result["lost"] == 0
