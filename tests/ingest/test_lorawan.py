"""LoRaWAN network servers' uplinks (recorded shapes) through the same checks as our own nodes'."""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, UTC
from pathlib import Path

import pytest

from floodwatch.ingest import TipCounters
from floodwatch.ingest.lorawan import (
    CHIRPSTACK,
    TTS,
    FrameCounters,
    decode_reference_payload,
    parse_uplink,
    server_of,
)
from floodwatch.settings import load_settings
from floodwatch.errors import PayloadError

FIXTURES = Path(__file__).with_name("lorawan_fixtures")
NOW_S = 1_795_000_000.0
CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/70b3d57ed0001a03/event/up"
TTS_TOPIC = "v3/lamphaya-floodwatch@ttn/devices/lp-r04-health-centre/up"


def rfc3339(ts_s: float, nanos: str = "") -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + nanos + "+00:00"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def chirpstack(time_s: float = NOW_S - 30, **changes) -> bytes:
    body = fixture("chirpstack_v4_up.json")
    body["time"] = rfc3339(time_s, ".775023242")
    body.update(changes)
    return json.dumps(body).encode()


def tts(received_s: float = NOW_S - 30, **changes) -> bytes:
    body = fixture("tts_v3_up.json")
    body["received_at"] = body["uplink_message"]["received_at"] = rfc3339(received_s, ".859413205").replace(
        "+00:00", "Z")
    body["uplink_message"].update(changes)
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def settings():
    return load_settings(lorawan={"devices": {"70B3D57ED0001A03": "LP-W03", "lp-r04-health-centre": "LP-R04"}})


def test_topics_are_recognised_only_when_devices_are_configured(settings):
    assert server_of(CS_TOPIC, settings) == CHIRPSTACK
    assert server_of(TTS_TOPIC, settings) == TTS
    assert server_of("v3/app/devices/dev/up", settings) == TTS  # open-source edition: no tenant
    assert server_of("application/x/device/y/event/join", settings) is None
    assert server_of("floodwatch/LP-W03/telemetry", settings) is None
    assert server_of(CS_TOPIC, load_settings()) is None


def test_chirpstack_uplink_with_codec_output_becomes_a_calibrated_reading(settings):
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(), settings, NOW_S, FrameCounters())
    assert parsed.errors == []
    [r] = parsed.readings
    mount_m = settings.station("LP-W03").mount_height_m
    assert r.station_id == "LP-W03"
    assert r.water_level_m == pytest.approx(mount_m - 2.781)
    assert r.battery_v == 3.18
    assert r.rssi_dbm == -97  # the best of the two gateways
    assert r.seq == 812 and r.boot is None  # f_cnt for the record; the store keys LoRaWAN readings by time
    assert r.ts_s == pytest.approx(NOW_S - 30 + 0.775, abs=1e-3)  # ChirpStack's time (nanoseconds cut to ms)


def test_chirpstack_uplink_without_a_codec_is_decoded_from_the_reference_layout(settings):
    body = fixture("chirpstack_v4_up_no_codec.json")
    body["time"] = rfc3339(NOW_S - 30)
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, json.dumps(body).encode(), settings, NOW_S)
    [r] = parsed.readings
    assert r.water_level_m == pytest.approx(settings.station("LP-W03").mount_height_m - 2.781)
    assert r.seq == 813


def test_tts_uplink_rain_gauge_age_and_tips(settings):
    tips = TipCounters()
    parsed = parse_uplink(TTS, TTS_TOPIC, tts(), settings, NOW_S, FrameCounters(), tips)
    assert parsed.errors == []
    [r] = parsed.readings
    assert r.station_id == "LP-R04"
    # Received at NOW-30 (+0.859 s), measured 600 s before it was sent.
    assert r.ts_s == pytest.approx(NOW_S - 30 + 0.859 - 600, abs=1e-3)
    assert r.rain_mm is None  # first counter seen since boot > 0: the rain before it is unknown, not invented
    assert r.seq == 1834 and r.rssi_dbm == -91
    nxt = parse_uplink(TTS, TTS_TOPIC, tts(NOW_S, f_cnt=1835, decoded_payload={"boot": 1, "rain_tips": 40,
                                                                               "battery_v": 3.2}),
                       settings, NOW_S + 1, FrameCounters(), tips)
    assert nxt.readings[0].rain_mm == pytest.approx(15 * settings.station("LP-R04").mm_per_tip)


def test_tts_leaves_frame_zero_out_and_that_is_counter_zero(settings):
    body = json.loads(tts())
    del body["uplink_message"]["f_cnt"]
    parsed = parse_uplink(TTS, TTS_TOPIC, json.dumps(body).encode(), settings, NOW_S)
    assert parsed.readings[0].seq == 0


def test_unknown_device_is_refused_with_the_fix(settings):
    topic = "application/x/device/0000000000000bad/event/up"
    body = json.loads(chirpstack())
    body["deviceInfo"]["devEui"] = "0000000000000bad"
    parsed = parse_uplink(CHIRPSTACK, topic, json.dumps(body).encode(), settings, NOW_S)
    [err] = parsed.errors
    assert err.reason == "unknown_device" and parsed.station_id is None
    assert "[lorawan] devices" in err.detail and "0000000000000bad" in err.detail


def test_replayed_frame_counter_is_refused_and_a_redelivery_is_not(settings):
    counters = FrameCounters()
    first = chirpstack(NOW_S - 600, fCnt=40)
    assert parse_uplink(CHIRPSTACK, CS_TOPIC, first, settings, NOW_S, counters).readings
    # A QoS 1 redelivery is the same frame at the same time: passed on, the store drops the copy.
    assert parse_uplink(CHIRPSTACK, CS_TOPIC, first, settings, NOW_S, counters).readings
    assert parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(NOW_S - 300, fCnt=41), settings, NOW_S, counters).readings
    for replay in (chirpstack(NOW_S - 60, fCnt=40), chirpstack(NOW_S - 60, fCnt=12)):
        parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, replay, settings, NOW_S, counters)
        [err] = parsed.errors
        assert err.reason == "replayed_fcnt" and err.station_id == "LP-W03", err
    # A new join (new devAddr) starts the counter again; the old session is then closed for good.
    assert parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(NOW_S - 50, fCnt=0, devAddr="0016ffff"), settings,
                        NOW_S, counters).readings
    old = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(NOW_S - 40, fCnt=99), settings, NOW_S, counters)
    assert [e.reason for e in old.errors] == ["replayed_fcnt"]


def test_boot_counter_lets_a_rebooted_abp_node_restart_its_counter(settings):
    counters = FrameCounters()
    obj = {"boot": 3, "distance_m": 2.5}
    assert parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(NOW_S - 600, fCnt=500, object=obj), settings, NOW_S,
                        counters).readings
    rebooted = chirpstack(NOW_S - 300, fCnt=1, object={"boot": 4, "distance_m": 2.5})
    assert parse_uplink(CHIRPSTACK, CS_TOPIC, rebooted, settings, NOW_S, counters).readings
    older_boot = chirpstack(NOW_S - 200, fCnt=501, object=obj)
    assert [e.reason for e in parse_uplink(CHIRPSTACK, CS_TOPIC, older_boot, settings, NOW_S,
                                           counters).errors] == ["replayed_fcnt"]


def test_frame_counters_survive_a_restart(settings):
    counters = FrameCounters()
    parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(NOW_S - 600, fCnt=40), settings, NOW_S, counters)
    saved = {d: counters.dump(d) for d in counters.changed}
    fresh = FrameCounters()
    for device, text in saved.items():
        fresh.load(device, text)
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(NOW_S - 60, fCnt=40), settings, NOW_S, fresh)
    assert [e.reason for e in parsed.errors] == ["replayed_fcnt"]


@pytest.mark.parametrize("data, why", [
    (b"", "no payload"),
    (bytes([2, 9, 0, 3, 10, 221, 12, 108]), "layout version 2"),
    (bytes([1, 9, 0, 3, 10, 221]), "flags say 8"),
    (bytes([1, 0x29, 0, 3, 10, 221, 12, 108]), "reserved flag bits"),
])
def test_undecodable_payload_without_codec_output_is_refused(settings, data, why):
    body = json.loads(chirpstack())
    del body["object"]
    body["data"] = base64.b64encode(data).decode()
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, json.dumps(body).encode(), settings, NOW_S)
    [err] = parsed.errors
    assert err.reason == "undecodable" and why in err.detail and err.station_id == "LP-W03"


def test_codec_output_missing_the_main_field_is_refused(settings):
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(object={"temperature": 31.5, "battery_v": 3.6}),
                          settings, NOW_S)
    [err] = parsed.errors
    assert err.reason == "codec_missing_field"
    assert "water_level_m or distance_m" in err.detail and "temperature" in err.detail


def test_codec_output_goes_through_the_contract_checks(settings):
    bad = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(object={"distance_m": -4.0}), settings, NOW_S)
    assert [e.reason for e in bad.errors] == ["out_of_physics"]
    text = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(object={"distance_m": "2.5"}), settings, NOW_S)
    assert [e.reason for e in text.errors] == ["invalid_field"]
    wrong = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(object={"rain_tips": 4, "distance_m": 2.0}), settings,
                         NOW_S)
    assert [e.reason for e in wrong.errors] == ["wrong_sensor"]


def test_a_vendor_codec_in_contract_names_works_as_it_is(settings):
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(object={"water_level_m": 1.234, "battery_v": 12.6}),
                          settings, NOW_S)
    assert parsed.readings[0].water_level_m == 1.234 and parsed.readings[0].battery_v == 12.6


def test_protobuf_marshaler_is_refused_with_the_setting_to_change(settings):
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, b"\n$3ac7e3c4\x12\x0c\x08\xc4", settings, NOW_S)
    [err] = parsed.errors
    assert err.reason in ("bad_json", "not_utf8")


def test_topic_and_body_must_name_the_same_device(settings):
    body = json.loads(chirpstack())
    body["deviceInfo"]["devEui"] = "70b3d57ed0001a99"
    parsed = parse_uplink(CHIRPSTACK, CS_TOPIC, json.dumps(body).encode(), settings, NOW_S)
    assert [e.reason for e in parsed.errors] == ["invalid_field"]


def test_decoder_examples_from_the_layout_document():
    assert decode_reference_payload(bytes.fromhex("01090003 0ADD 0C6C")) == {
        "boot": 3, "distance_m": 2.781, "battery_v": 3.18}
    assert decode_reference_payload(bytes.fromhex("011C0001 000019 0C71 0258")) == {
        "boot": 1, "rain_tips": 25, "battery_v": 3.185, "age_s": 600}
    with pytest.raises(PayloadError):
        decode_reference_payload(None)


def test_fixtures_are_untouched_by_the_parser(settings):
    body = fixture("chirpstack_v4_up.json")
    before = copy.deepcopy(body)
    parse_uplink(CHIRPSTACK, CS_TOPIC, json.dumps(body).encode(), settings, NOW_S)
    assert body == before


def test_a_worker_owning_some_zones_takes_only_its_devices():
    from floodwatch.clock import SystemClock
    from floodwatch.ingest import IngestService

    worker = load_settings(lorawan={"devices": {"70b3d57ed0001a03": "LP-W03", "lp-r04-health-centre": "LP-R04"}},
                           worker={"zones": ["moo-4"]})  # LP-W03's zone; LP-R04 is another worker's
    uplinks = [t for t in IngestService(worker, None, SystemClock())._topics() if t.endswith("/up")]
    assert uplinks == ["application/+/device/70b3d57ed0001a03/event/up", "v3/+/devices/70b3d57ed0001a03/up",
                       "v3/+/devices/eui-70b3d57ed0001a03/up"]
    assert parse_uplink(CHIRPSTACK, CS_TOPIC, chirpstack(), worker, NOW_S).readings
    other = parse_uplink(TTS, TTS_TOPIC, tts(), worker, NOW_S)
    assert (other.readings, other.errors) == ([], [])  # not refused: it is simply not this worker's
