"""`pip install` of the built wheel into a fresh venv outside the checkout works as a municipality uses it.

The wheel is built from a clean copy of the checkout and installed with
``--no-index`` from var/wheelhouse (the dependencies' wheels at the pinned
versions, which ``scripts/setup --test`` collects), so no network is needed
and nothing of the checkout leaks in. From another folder: ``floodwatch
check`` finds the embedded example site, ``site init`` writes a new one,
and ``floodwatch serve`` answers /api/health with the site's own map, then
stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from floodwatch.cli.broker import free_port, wait_for_port
from floodwatch.line_standin import LineStandIn
from floodwatch.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

WHEELHOUSE = PROJECT_ROOT / "var" / "wheelhouse"
TOKEN = "wheel-test-token-0123456789"
# Stage folders that must never land at the top of site-packages (issue 14).
GENERIC = ("cli", "models", "store", "alerts", "scheduler", "ingest", "firmware_sim", "gauge_page", "line_standin",
           "config", "sites")
NOT_IN_PRODUCTION = ("pytest", "hypothesis", "playwright", "amqtt", "openapi_core", "yaml", "jsonschema")
SKIP_WHEN_COPYING = {".git", ".venv", "var", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}


def _run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a shell on a server: no FLOODWATCH_* of the test run, no checkout on the path,
    no pip configuration of this machine (so only var/wheelhouse is used)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLOODWATCH_", "PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", **extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv, outside the checkout, with the wheel built from it and nothing else of it."""
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"{WHEELHOUSE} holds no wheels; run scripts/setup --test (it collects the dependencies' wheels)")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(PROJECT_ROOT, source, ignore=lambda folder, names: [
        n for n in names if n in SKIP_WHEN_COPYING or n.endswith(".egg-info")])
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist",
          source], env=_clean_env())
    wheel = next((work / "dist").glob("floodwatch-*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv], env=_clean_env())
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "--no-index", "--find-links",
          WHEELHOUSE, wheel], env=_clean_env(), cwd=work)
    return venv


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_the_wheel_installs_under_the_floodwatch_namespace_with_its_data(installed):
    site = _site_packages(installed)
    assert not [name for name in GENERIC if (site / name).exists()], "a stage landed at the top of site-packages"
    for data in ("sites/lamphaya.toml", "sites/lamphaya.geojson", "sites/nakhonchaisi.geojson",
                 "gauge_page/static/app.js", "line_standin/spec", "firmware_sim/scenarios/monsoon_flood.toml"):
        assert (site / "floodwatch" / data).exists(), data
    probe = ("import importlib.util, json\n"
             f"print(json.dumps([m for m in {NOT_IN_PRODUCTION!r} if importlib.util.find_spec(m)]))")
    found = _run([installed / "bin" / "python", "-c", probe], env=_clean_env())
    assert json.loads(found.stdout) == [], "the production install carries a test or demo dependency"


def test_check_and_site_init_from_another_folder(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(FLOODWATCH_DATA_DIR=str(tmp_path / "data"), FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN=TOKEN,
                     FLOODWATCH_LINE__CHANNEL_SECRET=TOKEN)
    floodwatch = installed / "bin" / "floodwatch"
    checked = _run([floodwatch, "check"], env=env, cwd=elsewhere)
    config_line = next(line for line in checked.stdout.splitlines() if line.startswith("config: "))
    assert config_line.endswith("site-packages/floodwatch/sites/lamphaya.toml"), config_line
    assert "is an example shipped with floodwatch" in checked.stdout and "problem:" not in checked.stdout

    _run([floodwatch, "site", "init", "--id", "bangkrathuek", "--name-th", "บางกระทึก", "--name-en", "Bang Krathuek",
          "--zones", "3", "--centre", "13.73,100.21", "--out", "etc/site.toml"], env=env, cwd=elsewhere)
    own = _run([floodwatch, "check"], env=dict(env, FLOODWATCH_CONFIG="etc/site.toml"), cwd=elsewhere)
    assert "site: Bang Krathuek" in own.stdout and "problem:" not in own.stdout

    demo = subprocess.run([floodwatch, "demo", "--duration", "1", "--no-browser", "--port", str(free_port())],
                          env=env, cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert demo.returncode == 1 and "pip install 'floodwatch[demo]'" in demo.stdout, demo.stdout + demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr


def test_serve_from_another_folder_answers_and_stops_cleanly(installed, tmp_path, mosquitto):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    with LineStandIn(tokens={TOKEN}) as line:
        env = _clean_env(FLOODWATCH_DATA_DIR=str(tmp_path / "data"), FLOODWATCH_MQTT__URL=mosquitto.url,
                         FLOODWATCH_PAGE__PORT=str(port), FLOODWATCH_LINE__API_BASE_URL=line.base_url,
                         FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN=TOKEN, FLOODWATCH_LINE__CHANNEL_SECRET=TOKEN)
        serve = subprocess.Popen([installed / "bin" / "floodwatch", "serve"], env=env, cwd=elsewhere,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_port("127.0.0.1", port, timeout_s=90)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = json.load(urllib.request.urlopen(base + "/api/health", timeout=10))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert health["ok"] is True and health["ingest"]["running"] is True
            site = json.load(urllib.request.urlopen(base + "/api/site", timeout=10))
            assert site["name_en"] == "Lam Phaya Subdistrict Municipality" and site["map_url"] == "/api/site/map"
            geojson = json.load(urllib.request.urlopen(base + "/api/site/map", timeout=10))
            assert {f["properties"].get("id") for f in geojson["features"]} >= {"moo-1", "moo-6"}
            assert b"app.js" in urllib.request.urlopen(base + "/", timeout=10).read()
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                out, err = serve.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                out, err = serve.communicate()
    assert serve.returncode == 0, out[-2000:] + err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    assert (tmp_path / "data" / "var" / "page.db").exists() and not (elsewhere / "var").exists(), \
        "databases live in the data folder, not where the command ran"
