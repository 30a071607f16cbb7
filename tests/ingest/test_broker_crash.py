"""Crashes, not graceful stops: Mosquitto SIGKILLed on the configuration `floodwatch mqtt-config` writes.

Nodes are plain QoS 1 publishers that re-send until the broker acknowledges
(`crash_rig.ResendingNodes`); ingest is `python -m floodwatch.cli.ingest`
logging in with the generated credentials. "Published" is what the broker
acknowledged to the nodes: they forget a reading once it is acknowledged.
"""

from __future__ import annotations

from floodwatch.settings import load_settings

from tests.ingest import crash_rig as rig


def test_broker_sigkilled_mid_stream_loses_nothing(tmp_path):
    result = rig.broker_killed_mid_stream(tmp_path, load_settings(), n=2400, rate_per_s=400.0, kill_after_s=3.0)
    print(f"broker SIGKILLed mid-stream: {result}")
    assert result["acked_at_kill"] < result["published"], "the kill must land mid-stream"
    assert result["session_present_after_restart"] == [True], "ingest's session was not saved"
    assert result["published"] == 2400 and result["lost"] == 0


def test_broker_sigkilled_while_ingest_is_away_loses_nothing(tmp_path):
    result = rig.broker_killed_while_ingest_away(tmp_path, load_settings(), n=1000)
    print(f"broker SIGKILLed while ingest was away: {result}")
    assert result["acked_before_kill"] == 1000
    assert result["session_present_after_restart"] == [True]
    assert result["published"] == 1000 and result["lost"] == 0


def test_broker_and_ingest_sigkilled_together_lose_at_most_the_brokers_last_unsaved_moment(tmp_path):
    # Mosquitto acknowledges a PUBLISH before its loop saves the change (and cannot be told
    # otherwise): if ingest dies in the same instant, what the broker acknowledged in that last
    # iteration is gone. Bounded here; nodes that replay their last acknowledged readings
    # after a reconnect (the next test, docs/mqtt-contract.md) lose nothing.
    result = rig.broker_killed_mid_stream(tmp_path, load_settings(), n=2400, rate_per_s=400.0, kill_after_s=3.0,
                                          with_ingest=True)
    print(f"broker and ingest SIGKILLed together, plain publisher: {result}")
    assert result["acked_at_kill"] < result["published"]
    assert result["session_present_after_restart"] == [True]
    assert result["published"] == 2400 and result["lost"] <= 24, "more than the broker's last moment was lost"


def test_broker_and_ingest_sigkilled_together_lose_nothing_when_nodes_replay_their_last_readings(tmp_path):
    result = rig.broker_killed_mid_stream(tmp_path, load_settings(), n=2400, rate_per_s=400.0, kill_after_s=3.0,
                                          with_ingest=True, replay_acked_s=30.0)
    print(f"broker and ingest SIGKILLed together, nodes replaying 30 s: {result}")
    assert result["acked_at_kill"] < result["published"]
    assert result["published"] == 2400 and result["lost"] == 0
