"""The MQTT contract at the boundary: conversion with the registry's calibration, and refusals with reasons."""

from __future__ import annotations

import json
from datetime import datetime, UTC

import pytest

from floodwatch.errors import PayloadError
from floodwatch.settings import load_settings
from floodwatch.ingest import TipCounters, parse_message, parse_payload

NOW_S = 1_795_000_000.0


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def payload(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_distance_is_converted_with_the_mount_height(settings):
    mount_m = settings.station("LP-W03").mount_height_m
    [r] = parse_payload("floodwatch/LP-W03/telemetry", payload(ts=NOW_S - 60, seq=7, boot=2, distance_m=2.41),
                        settings, NOW_S)
    assert r.water_level_m == pytest.approx(mount_m - 2.41)
    assert (r.seq, r.boot, r.ts_s, r.received_s) == (7, 2, NOW_S - 60, NOW_S)


def test_iso_time_with_bangkok_offset(settings):
    now_s = datetime(2026, 11, 18, 1, 0, tzinfo=UTC).timestamp()
    [r] = parse_payload("floodwatch/LP-W01/telemetry",
                        payload(ts="2026-11-18T07:00:00+07:00", seq=1, water_level_m=1.2), settings, now_s)
    assert r.ts_s == now_s - 3600  # 07:00 Bangkok is 00:00 UTC


def test_rain_tips_become_millimetres_across_messages_and_reboots(settings):
    tips = TipCounters()
    per_tip = settings.station("LP-R01").mm_per_tip
    topic = "floodwatch/LP-R01/telemetry"
    sent = [(0, 1, 0), (600, 1, 5), (1200, 1, 12), (1800, 2, 3), (2400, 2, 3)]  # boot 2 = node rebooted
    got = []
    for dt, boot, count in sent:
        [r] = parse_payload(topic, payload(ts=NOW_S - 3000 + dt, boot=boot, seq=dt, rain_tips=count),
                            settings, NOW_S, tips)
        got.append(r.rain_mm)
    assert got == pytest.approx([0.0, 5 * per_tip, 7 * per_tip, 3 * per_tip, 0.0])
    # A redelivered old message must not move the baseline (no double counting).
    [old] = parse_payload(topic, payload(ts=NOW_S - 3000 + 600, boot=1, seq=600, rain_tips=5), settings, NOW_S, tips)
    assert old.rain_mm is None
    [nxt] = parse_payload(topic, payload(ts=NOW_S - 3000 + 3000, boot=2, seq=3000, rain_tips=4), settings, NOW_S, tips)
    assert nxt.rain_mm == pytest.approx(1 * per_tip)


def test_batched_buffer_keeps_good_readings_around_a_bad_one(settings):
    body = {"readings": [
        {"ts": NOW_S - 1200, "seq": 1, "water_level_m": 1.0},
        {"ts": NOW_S - 600, "seq": 2, "water_level_m": "high"},
        {"ts": NOW_S - 0, "seq": 3, "water_level_m": 1.1},
    ]}
    parsed = parse_message("floodwatch/LP-W01/telemetry", json.dumps(body).encode(), settings, NOW_S)
    assert [r.seq for r in parsed.readings] == [1, 3]
    assert [e.reason for e in parsed.errors] == ["invalid_field"]
    assert "reading 1" in parsed.errors[0].detail


def bad_corpus(now_s: float) -> list[tuple[str, bytes, str]]:
    """Payloads that break the contract, each with the reason ingest must give (times relative to now_s)."""
    NOW_S = now_s  # noqa: N806
    return [
        ("floodwatch/LP-XX/telemetry", payload(ts=NOW_S, water_level_m=1.0), "unknown_station"),
        ("floodwatch/LP-W01/telemetry", b"{not json", "bad_json"),
        ("floodwatch/LP-W01/telemetry", b"\xff\xfe\x00garbage", "not_utf8"),
        ("floodwatch/LP-W01/telemetry", b'{"ts": %d, "water_level_m": NaN}' % NOW_S, "non_finite"),
        ("floodwatch/LP-W01/telemetry", b'{"ts": %d, "water_level_m": Infinity}' % NOW_S, "non_finite"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S, water_level_m="1.2"), "invalid_field"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S, seq=1.5, water_level_m=1.2), "invalid_field"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S, water_level_m=250.0), "out_of_physics"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S, distance_m=-1.0), "out_of_physics"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S + 86400, water_level_m=1.2), "future_ts"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S - 500 * 86400, water_level_m=1.2), "too_old"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S * 1000, water_level_m=1.2), "bad_ts"),
        ("floodwatch/LP-W01/telemetry", payload(ts="2026-11-29 14:00", water_level_m=1.2), "bad_ts"),
        ("floodwatch/LP-W01/telemetry", payload(water_level_m=1.2), "missing_ts"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S, seq=1), "no_measurement"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S, rain_mm=1.0), "wrong_sensor"),
        ("floodwatch/LP-R01/telemetry", payload(ts=NOW_S, water_level_m=1.0), "wrong_sensor"),
        ("floodwatch/LP-W01/telemetry", b"[1, 2, 3]", "bad_json"),
        ("floodwatch/LP-W01/telemetry", b'{"ts": %d, "water_level_m": 1.0}' % NOW_S + b" " * 70_000, "oversized"),
        ("floodwatch//telemetry", payload(ts=NOW_S, water_level_m=1.0), "bad_topic"),
        ("floodwatch/LP-W01/telemetry", payload(ts=NOW_S, station_id="LP-W02", water_level_m=1.0), "station_mismatch"),
    ]


BAD = bad_corpus(NOW_S)


@pytest.mark.parametrize("topic,body,reason", BAD, ids=[b[2] + str(i) for i, b in enumerate(BAD)])
def test_bad_payloads_are_refused_with_a_reason(settings, topic, body, reason):
    with pytest.raises(PayloadError) as info:
        parse_payload(topic, body, settings, NOW_S)
    assert info.value.reason == reason
    assert info.value.detail


def test_rain_tips_after_a_reboot_count_even_if_the_clock_went_back(settings):
    tips = TipCounters()
    topic = "floodwatch/LP-R02/telemetry"
    per_tip = settings.station("LP-R02").mm_per_tip
    parse_payload(topic, payload(ts=NOW_S - 1000, boot=1, seq=9, rain_tips=40), settings, NOW_S, tips)
    # rebooted; the RTC came back 5 minutes behind until NTP corrected it
    [r] = parse_payload(topic, payload(ts=NOW_S - 1300, boot=2, seq=0, rain_tips=2), settings, NOW_S, tips)
    assert r.rain_mm == pytest.approx(2 * per_tip)
    [late] = parse_payload(topic, payload(ts=NOW_S - 900, boot=1, seq=10, rain_tips=41), settings, NOW_S, tips)
    assert late.rain_mm is None  # a buffered reading from before the reboot: rain unknown, never double
