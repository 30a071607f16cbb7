"""The systemd units in deploy/systemd/ pass `systemd-analyze verify`: no unknown key, no missing
command or unit, as written (only the install prefix /opt/floodwatch/.venv points at this checkout's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from floodwatch.settings import PROJECT_ROOT

UNITS = PROJECT_ROOT / "deploy" / "systemd"
INSTALLED_VENV = "/opt/floodwatch/.venv"


def _verify(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", *map(str, paths)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def systemd_analyze(tmp_path_factory) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing; run scripts/setup --test (Debian package systemd)")
    probe = tmp_path_factory.mktemp("probe") / "probe.service"
    probe.write_text("[Unit]\nDescription=probe\n[Service]\nType=oneshot\nExecStart=/bin/true\n")
    done = _verify(probe)
    if done.returncode != 0 or done.stdout.strip() or done.stderr.strip():
        # Some containers cannot load units at all (no /usr/lib/systemd, no unit search path).
        pytest.skip(f"systemd-analyze cannot verify even a trivial unit in this container: {done.stderr.strip()}")


def test_the_units_verify_clean(systemd_analyze, tmp_path):
    venv = Path(sys.executable).parent.parent
    assert (venv / "bin" / "floodwatch").exists(), "the floodwatch command is installed in this venv"
    copies = []
    for unit in sorted(UNITS.iterdir()):
        text = unit.read_text()
        assert INSTALLED_VENV in text or unit.suffix == ".timer", unit
        copy = tmp_path / unit.name
        copy.write_text(text.replace(INSTALLED_VENV, str(venv)))
        copies.append(copy)
    assert {c.name for c in copies} == {"floodwatch.service", "floodwatch-backup.service", "floodwatch-backup.timer"}
    done = _verify(*copies)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_a_typo_in_a_unit_is_caught(systemd_analyze, tmp_path):
    broken = tmp_path / "floodwatch.service"
    venv = str(Path(sys.executable).parent.parent)
    text = (UNITS / "floodwatch.service").read_text().replace(INSTALLED_VENV, venv)
    broken.write_text(text.replace("TimeoutStopSec", "TimeoutStpSec"))
    done = _verify(broken)
    assert "Unknown key" in done.stdout + done.stderr


def test_the_service_checks_the_site_before_it_starts():
    text = (UNITS / "floodwatch.service").read_text()
    assert "ExecStartPre=/opt/floodwatch/.venv/bin/floodwatch check" in text
    assert "Environment=FLOODWATCH_DATA_DIR=/var/lib/floodwatch" in text and "--log-json serve" in text
    assert "--keep-days" in (UNITS / "floodwatch-backup.service").read_text()
