"""The registry's links between stations: rain gauges, upstream gauges, predicted series."""

from __future__ import annotations

import pytest

from floodwatch.errors import ConfigError
from floodwatch.settings import DEFAULT_CONFIG_FILE, load_settings

SITE = DEFAULT_CONFIG_FILE.read_text()


def _site_with(tmp_path, extra: str):
    path = tmp_path / "site.toml"
    path.write_text(SITE + "\n" + extra)
    return path


UPSTREAM_GAUGE = '''
[[stations]]
id = "TC-BANGPLAMA"
name_th = "ท่าจีน บางปลาม้า"
name_en = "Tha Chin at Bang Pla Ma"
kind = "water_level"
sensor = "radar"
zone = "moo-1"
lat = 14.47
lon = 100.12
mount_height_m = 12.0
external = true
[stations.levels]
watch_m = 6.0
warning_m = 7.0
evacuate_m = 8.0
'''


def test_a_station_may_name_an_external_upstream_gauge(tmp_path):
    path = _site_with(tmp_path, UPSTREAM_GAUGE)
    # LP-W03 (the canal) is the first station using rain gauge LP-R03 and has no upstream yet.
    text = path.read_text().replace('rain_station = "LP-R03"',
                                    'rain_station = "LP-R03"\nupstream = ["TC-BANGPLAMA"]', 1)
    path.write_text(text)
    settings = load_settings(config_file=path)
    assert settings.station("LP-W03").upstream == ["TC-BANGPLAMA"]
    assert settings.station("TC-BANGPLAMA").external is True
    assert settings.station("LP-W04").upstream == [] and settings.station("LP-W04").external is False


@pytest.mark.parametrize(("links", "message"), [
    ('upstream = ["TC-NOWHERE"]', "upstream station 'TC-NOWHERE', which is not a station"),
    ('predicted = ["LP-W03"]', "lists itself in predicted"),
    # An observed gauge is not a prediction, and a tide table is not a gauge.
    ('predicted = ["TC-SUPHAN"]', "names 'TC-SUPHAN' in predicted, but 'TC-SUPHAN' is an observed series; list it"
                                  " under upstream"),
    ('upstream = ["TC-MOUTH-TIDE"]', "'TC-MOUTH-TIDE' is a predicted series; list it under predicted"),
])
def test_a_link_to_an_unknown_station_or_to_itself_is_refused(tmp_path, links, message):
    path = _site_with(tmp_path, "")
    path.write_text(path.read_text().replace('rain_station = "LP-R03"', f'rain_station = "LP-R03"\n{links}', 1))
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=path)


def test_a_site_in_the_system_folder_reads_its_env_file_and_its_data_dir(tmp_path, monkeypatch):
    """An administrator's `floodwatch check` or `officer add` sees the secrets and paths the service sees."""
    from floodwatch import settings as settings_module

    etc = tmp_path / "etc" / "floodwatch"
    etc.mkdir(parents=True)
    (etc / "site.toml").write_text(SITE)
    (etc / "floodwatch.env").write_text("FLOODWATCH_LINE__CHANNEL_SECRET=from-the-env-file-123\n")
    monkeypatch.setattr(settings_module, "SYSTEM_CONFIG_FILE", etc / "site.toml")
    monkeypatch.setattr(settings_module, "SYSTEM_ENV_FILE", etc / "floodwatch.env")
    monkeypatch.delenv("FLOODWATCH_CONFIG")
    monkeypatch.setenv("FLOODWATCH_DATA_DIR", str(tmp_path / "lib"))
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.config_file == etc / "site.toml"
    assert settings.line.channel_secret.get_secret_value() == "from-the-env-file-123"
    assert settings.page.state_url == f"sqlite:///{tmp_path}/lib/var/page.db"
    # A site file elsewhere (a test, a developer's copy) never reads the system's secrets.
    other = tmp_path / "copy.toml"
    other.write_text(SITE)
    assert load_settings(config_file=other).line.channel_secret is None
