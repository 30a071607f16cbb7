"""A new municipality's site: `floodwatch site init` writes one that passes `floodwatch check`, and a
broken one is refused, by check and by serve, with each problem's line and its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from floodwatch.cli.main import main
from floodwatch.sitefile import locate

CENTRES = (
    "id,name_th,name_en,lat,lon\n"
    "moo-1,หมู่ 1 ตลาด,Moo 1 market,13.8040,100.1870\n"
    "moo-2,หมู่ 2 ริมแม่น้ำ,Moo 2 riverside,13.8010,100.1930\n"
    ",,,13.7960,100.1850\n"
)


@pytest.fixture
def new_site(tmp_path, monkeypatch) -> Path:
    (tmp_path / "centres.csv").write_text(CENTRES, encoding="utf-8")
    out = tmp_path / "etc" / "site.toml"
    assert main(["site", "init", "--id", "nakhonchaisi", "--name-th", "เทศบาลตำบลนครชัยศรี",
                 "--name-en", "Nakhon Chai Si", "--from-centres", str(tmp_path / "centres.csv"),
                 "--out", str(out)]) == 0
    monkeypatch.setenv("FLOODWATCH_CONFIG", str(out))
    monkeypatch.setenv("FLOODWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN", "token-for-the-check")
    monkeypatch.setenv("FLOODWATCH_LINE__CHANNEL_SECRET", "secret-for-the-check")
    return out


def _check(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["check", *args])
    return status, capsys.readouterr().out


def _line(path: Path, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in {path}")


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def test_a_new_site_from_zone_centres_passes_check(new_site, capsys):
    status, out = _check(capsys)
    assert status == 0, out
    assert "problem:" not in out
    assert "stations: 3 water level, 1 rain; zones: 3" in out
    geojson = json.loads(new_site.with_suffix(".geojson").read_text(encoding="utf-8"))
    zones = [f for f in geojson["features"] if f["properties"]["kind"] == "zone"]
    assert [z["properties"]["id"] for z in zones] == ["moo-1", "moo-2", "moo-3"]
    assert any(f["properties"]["kind"] == "river" for f in geojson["features"])
    text = new_site.read_text(encoding="utf-8")
    assert "PLACEHOLDER" in text and text.count("[[stations]]") == 4 and "#" in text


def test_site_init_from_a_count_and_a_centre(tmp_path, capsys, monkeypatch):
    out = tmp_path / "grid.toml"
    assert main(["site", "init", "--id", "bangkrathuek", "--name-th", "บางกระทึก", "--name-en", "Bang Krathuek",
                 "--zones", "5", "--centre", "13.73,100.21", "--out", str(out)]) == 0
    monkeypatch.setenv("FLOODWATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FLOODWATCH_SITE_BANGKRATHUEK__LINE__CHANNEL_ACCESS_TOKEN", "t" * 20)
    monkeypatch.setenv("FLOODWATCH_SITE_BANGKRATHUEK__LINE__CHANNEL_SECRET", "s" * 20)
    status, text = _check(capsys, "--site", str(out))
    assert status == 0, text
    assert "zones: 5" in text
    assert main(["site", "init", "--id", "bangkrathuek", "--name-th", "x", "--name-en", "x", "--zones", "2",
                 "--centre", "13.73,100.21", "--out", str(out)]) == 1
    assert "already exist" in capsys.readouterr().out


BAD_INPUTS = {
    # name: (edit to the new site file, the text that marks the line, occurrence, what the message says)
    "duplicate station": (('id = "NA-W02"', 'id = "NA-W01"'), 'id = "NA-W01"', 2,
                          "station id 'NA-W01' is used twice (also stations[0]); give each gauge its own id"),
    "zone with no station": (('zone = "moo-3"\nlat', 'zone = "moo-2"\nlat'), 'id = "moo-3"', 1,
                             "zone 'moo-3' has no station of its own, so residents who pick it would never be warned"),
    "levels out of order": (("watch_m = 1.50\nwarning_m = 1.80", "watch_m = 1.95\nwarning_m = 1.80"),
                            "[stations.levels]", 1, "warning levels must rise: watch 1.95 < warning 1.8"),
    "unknown key (typo)": (("mount_height_m = 4.00", "mount_heigth_m = 4.00"), "mount_heigth_m", 1,
                           "unknown key 'mount_heigth_m'; did you mean 'mount_height_m'?"),
    "unknown rain station": (('rain_station = "NA-R01"', 'rain_station = "NA-R1"'), 'rain_station = "NA-R1"', 1,
                             "names rain_station 'NA-R1', which is not a station in the registry; "
                             "did you mean 'NA-R01'?"),
    "typo in a section": (("[site]", "[siet]"), "[siet]", 1, "unknown key 'siet'; did you mean 'site'?"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_check_names_each_problem_with_its_line(new_site, capsys, case):
    (old, new), marker, occurrence, message = BAD_INPUTS[case]
    _edit(new_site, old, new)
    status, out = _check(capsys)
    assert status == 1
    expected_line = _line(new_site, marker, occurrence)
    lines = [ln.strip() for ln in out.splitlines() if message in ln]
    assert lines, out
    assert lines[0].startswith(f"{new_site}:{expected_line}: "), out
    assert "Traceback" not in out


def test_every_problem_is_named_in_one_go(new_site, capsys):
    _edit(new_site, 'id = "NA-W02"', 'id = "NA-W01"')
    _edit(new_site, "mount_height_m = 4.00", "mount_heigth_m = 4.00")
    _edit(new_site, 'zone = "moo-3"\nlat', 'zone = "moo-2"\nlat')
    status, out = _check(capsys)
    assert status == 1
    assert "has 3 problems" in out
    assert "used twice" in out and "did you mean 'mount_height_m'" in out and "zone 'moo-3' has no station" in out


def test_a_value_from_the_environment_is_named_by_its_variable(new_site, capsys, monkeypatch):
    monkeypatch.setenv("FLOODWATCH_PAGE__PORT", "eighty")
    status, out = _check(capsys)
    assert status == 1 and "FLOODWATCH_PAGE__PORT (environment): page port:" in out


def test_broken_toml_names_its_line(new_site, capsys):
    _edit(new_site, 'name_en = "Nakhon Chai Si"', 'name_en = "Nakhon Chai Si')
    status, out = _check(capsys)
    assert status == 1 and "not valid TOML" in out
    broken_line = _line(new_site, 'name_en = "Nakhon Chai Si')
    assert f"at line {broken_line}" in out


@pytest.mark.parametrize(("breakage", "message"), [
    ("drop moo-2", "zone 'moo-2' has no polygon"),
    ("swap", "look like [latitude, longitude]: GeoJSON wants [longitude, latitude]"),
    ("no river", "there is no river line"),
    ("not json", "not valid JSON at line 1, column"),
    ("unknown zone", "there is no zone 'moo-9' in the site file"),
])
def test_check_validates_the_map(new_site, capsys, breakage, message):
    map_path = new_site.with_suffix(".geojson")
    geojson = json.loads(map_path.read_text(encoding="utf-8"))
    features = geojson["features"]
    if breakage == "drop moo-2":
        geojson["features"] = [f for f in features if f["properties"].get("id") != "moo-2"]
    elif breakage == "swap":
        ring = features[0]["geometry"]["coordinates"][0]
        features[0]["geometry"]["coordinates"][0] = [[lat, lon] for lon, lat in ring]
    elif breakage == "no river":
        geojson["features"] = [f for f in features if f["properties"]["kind"] != "river"]
    elif breakage == "unknown zone":
        features[1]["properties"]["id"] = "moo-9"
    map_path.write_text("{oops" if breakage == "not json" else json.dumps(geojson), encoding="utf-8")
    status, out = _check(capsys)
    assert status == 1
    assert any(ln.startswith(f"problem: {map_path}:") and message in ln for ln in out.splitlines()), out


def _serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "floodwatch.cli.main", "serve", "--port", "1"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_serve_refuses_an_invalid_site_with_the_same_messages(new_site, tmp_path, capsys):
    _edit(new_site, 'id = "NA-W02"', 'id = "NA-W01"')
    _edit(new_site, "watch_m = 1.50\nwarning_m = 1.80", "watch_m = 1.95\nwarning_m = 1.80")
    _, checked = _check(capsys)
    served = _serve(dict(os.environ), tmp_path)
    assert served.returncode == 1
    assert "Traceback" not in served.stdout + served.stderr
    problem_lines = [ln.strip() for ln in checked.splitlines() if ln.strip().startswith(str(new_site))]
    assert len(problem_lines) == 2
    for line in problem_lines:
        assert line in served.stdout, served.stdout


def test_locate_follows_tables_arrays_dotted_keys_and_multiline_values():
    text = (
        "[site]\nid = \"x\"\n"
        "[[stations]]\nid = \"A\"\nupstream = [\n  \"B\",\n  \"C\",\n]\nlevels = { watch_m = 1, warning_m = 2 }\n"
        "[[stations]]\nid = \"B\"\nnote = \"\"\"\n[[stations]]\nid = 'not a key'\n\"\"\"\nlevels.watch_m = 3\n"
        "[stations.levels]\nevacuate_m = 4\n"
    )
    lines = locate(text)
    assert lines[("site", "id")] == 2
    assert lines[("stations", 0)] == 3 and lines[("stations", 0, "upstream")] == 5
    assert lines[("stations", 0, "levels", "warning_m")] == 9
    assert lines[("stations", 1)] == 10 and ("stations", 2) not in lines
    assert lines[("stations", 1, "levels", "watch_m")] == 16
    assert lines[("stations", 1, "levels", "evacuate_m")] == 18
