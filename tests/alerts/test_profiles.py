"""Per-station warning profiles: in the registry, validated, and used by the rules and the alert service."""

from __future__ import annotations

import math

import numpy as np
import pytest

from floodwatch.alerts import AlertService
from floodwatch.alerts.rules import RuleConfig
from floodwatch.errors import ConfigError
from floodwatch.settings import DEFAULT_CONFIG_FILE, load_settings
from tests.alerts.test_service import _issued

SITE = DEFAULT_CONFIG_FILE.read_text()


def _site(tmp_path, *, station: str, profile_line: str, extra: str = ""):
    """The Lam Phaya registry with ``profile_line`` added to ``station``'s entry, and ``extra`` tables."""
    anchor = f'id = "{station}"\n'
    assert anchor in SITE
    path = tmp_path / "site.toml"
    path.write_text(SITE.replace(anchor, anchor + profile_line + "\n", 1) + "\n" + extra)
    return path


def test_a_station_picks_a_built_in_or_site_profile_and_the_rules_use_it(tmp_path):
    extra = """
[alerts.profiles.road]
exceed_probability = 0.95
lead_h = 1.5
confirm_readings = 3
"""
    path = _site(tmp_path, station="LP-W06", profile_line='warning_profile = "early"', extra=extra)
    path.write_text(path.read_text().replace('id = "LP-W07"\n', 'id = "LP-W07"\nwarning_profile = "road"\n', 1))
    settings = load_settings(config_file=path)
    site = RuleConfig.from_settings(settings)
    street = RuleConfig.from_settings(settings, settings.station("LP-W06"))
    road = RuleConfig.from_settings(settings, settings.station("LP-W07"))
    plain = RuleConfig.from_settings(settings, settings.station("LP-W03"))
    assert plain == site
    assert (street.exceed_probability, street.lead_s, street.confirm_readings) == (0.5, 6 * 3600.0,
                                                                                   site.confirm_readings)
    assert (road.exceed_probability, road.lead_s, road.confirm_readings) == (0.95, 1.5 * 3600.0, 3)
    # Zone timers stay the site's.
    assert road.clear_after_s == site.clear_after_s and road.hysteresis_m == site.hysteresis_m
    tidal = site.with_profile(settings.warning_profile("tidal"))
    assert math.isinf(tidal.rise_rate_cm_per_h) and tidal.use_forecast
    # Lam Phaya's river gauges ride a tide that rises faster than the fast-rise rule's rate.
    assert RuleConfig.from_settings(settings, settings.station("LP-W01")) == tidal
    assert not site.with_profile(settings.warning_profile("observed_only")).use_forecast


@pytest.mark.parametrize(("profile_line", "extra", "message"), [
    ('warning_profile = "eager"', "", "names warning_profile 'eager', which is neither built in nor under"),
    ('warning_profile = "far"', "[alerts.profiles.far]\nlead_h = 48.0\n[forecast]\nhorizon_h = 24.0\n",
     "beyond forecast.horizon_h"),
    ('warning_profile = "odd"', "[alerts.profiles.odd]\nexceed_probability = 1.5\n", "exceed_probability"),
])
def test_a_bad_profile_is_refused_with_the_fix(tmp_path, profile_line, extra, message):
    path = _site(tmp_path, station="LP-W06", profile_line=profile_line, extra=extra)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=path)


def test_a_rain_gauge_takes_no_warning_profile(tmp_path):
    path = _site(tmp_path, station="LP-R01", profile_line='warning_profile = "early"')
    with pytest.raises(ConfigError, match="rain gauge; warning_profile is for level stations"):
        load_settings(config_file=path)


def test_the_alert_service_honours_each_stations_profile(alert_settings, standin, clock):
    # A 60 % chance of warning within the hour at three canals: LP-W03 (moo-4) is "early" (warns from 50 %),
    # LP-W05 (moo-2) keeps the site's 80 %, LP-W04 (moo-3) is observed-only (a 90 % chance tells nobody).
    profiles = {"LP-W03": "early", "LP-W04": "observed_only"}
    alert_settings.stations = [s.model_copy(update={"warning_profile": profiles[s.id]}) if s.id in profiles else s
                               for s in alert_settings.stations]
    service = AlertService(alert_settings, clock)
    service.start()
    try:
        for user, zone in (("Ucanal", "moo-4"), ("Usluice", "moo-3"), ("Usump", "moo-2")):
            service.subscribe(user, zone)
        issued = _issued(service, clock, station="LP-W03", level_index=1, prob=0.6, at_h=1.0)
        rows, exceed = issued.station_ids, issued.forecast.exceed_prob
        exceed[rows.index("LP-W05")] = exceed[rows.index("LP-W03")]
        exceed[rows.index("LP-W04")] = np.where(exceed[rows.index("LP-W03")] > 0, 0.9, 0.0)
        service.on_forecast(issued)
        assert service.wait_delivered(10)
        got = {d.user_id for d in standin.delivered_messages()}
        assert got == {"Ucanal"}, "only the early profile warns on 60 %; the observed-only station never on forecasts"
        levels = service.station_levels()
        assert levels["LP-W03"]["reason"] == "forecast"
        assert levels["LP-W04"]["level"] == 0 and levels["LP-W05"]["level"] == 0
    finally:
        service.close()
