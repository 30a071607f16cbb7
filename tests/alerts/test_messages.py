"""Every kind of message, in both languages, passes LINE's validation and names only its own level."""

from __future__ import annotations

import uuid

import pytest

from floodwatch.alerts.line_client import LineClient, classify
from floodwatch.alerts.messages import flex_gauge, low_water_text, officer_text, resident_alert_text, text_message
from floodwatch.alerts.rules import Action, RuleConfig, StationForecast
from floodwatch.settings import load_settings
from floodwatch.vocabulary import AlertLevel

from tests.alerts.conftest import TOKEN, T0_S

RESIDENT_KINDS = [("escalate", AlertLevel.WATCH), ("escalate", AlertLevel.WARNING), ("escalate", AlertLevel.EVACUATE),
                  ("forecast", AlertLevel.WARNING), ("rise", AlertLevel.WARNING), ("reminder", AlertLevel.EVACUATE),
                  ("deescalate", AlertLevel.WATCH), ("all_clear", AlertLevel.NORMAL)]


def _messages():
    settings = load_settings()
    station, zone = settings.station("LP-W01"), settings.zone("moo-5")
    fc = StationForecast(T0_S, AlertLevel.WARNING, 0.83, T0_S + 5400, 2.05, 9.0)
    out = []
    for kind, level in RESIDENT_KINDS:
        action = Action(kind, "residents", zone.id, station.id, level, T0_S, 1.93, 12.0, AlertLevel.NORMAL, fc)
        for lang in ("th", "en"):
            text = resident_alert_text(action, station, zone, RuleConfig(), lang)
            out.append((kind, level, lang, [flex_gauge(action, station, zone, text), text_message(text)]))
    for kind in ("low_water", "low_water_clear"):
        action = Action(kind, "low_water", zone.id, station.id, AlertLevel.WATCH, T0_S, -0.45)
        out.append((kind, None, "th", [text_message(low_water_text(action, station, zone))]))
    for kind in ("sensor_offline", "sensor_online", "qc"):
        action = Action(kind, "officers", zone.id, station.id, AlertLevel.WATCH, T0_S, detail="spike")
        out.append((kind, None, "en", [text_message(officer_text(action, station, "en"))]))
    return out


def test_every_message_passes_lines_validation(standin):
    with LineClient(standin.base_url, TOKEN) as client:
        for kind, _level, lang, messages in _messages():
            outcome = client.multicast(["U" + "4e" * 16], messages, str(uuid.uuid4()))
            assert outcome.result == "delivered", (kind, lang, outcome)


@pytest.mark.parametrize("kind,level", RESIDENT_KINDS)
def test_a_resident_text_names_only_its_own_level(kind, level):
    for k, lv, lang, messages in _messages():
        if (k, lv) != (kind, level):
            continue
        text = messages[-1]["text"]
        others = [other for other in AlertLevel if other not in (level, AlertLevel.NORMAL)]
        for other in others:
            assert other.name_th not in text, f"{kind} {level.name} mentions {other.name_th}"
        assert text.splitlines()[0].startswith(("🟡", "🟠", "🔴", "✅")) if lang == "th" else True


def test_retry_rule():
    assert [classify(s, m) for s, m in [(200, ""), (409, "The retry key is already accepted"), (None, "timeout"),
                                       (500, ""), (503, ""), (429, "The API rate limit has been exceeded."),
                                       (429, "You have reached your monthly limit."), (400, "bad"), (401, ""),
                                       (403, "")]] == [
        "delivered", "delivered", "retry", "retry", "retry", "retry", "quota", "failed", "failed", "failed"]
