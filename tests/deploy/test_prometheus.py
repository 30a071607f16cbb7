"""The example Prometheus set-up in deploy/prometheus/ is valid, its rules fire, and its metrics exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from floodwatch import metrics
from floodwatch.settings import PROJECT_ROOT

HERE = PROJECT_ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing; run scripts/setup --test (Debian package prometheus)")
    return found


def _run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=HERE)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_scrape_config_and_rules_pass_promtool(promtool):
    assert "SUCCESS" in _run(promtool, "check", "config", HERE / "prometheus.yml")
    assert "SUCCESS" in _run(promtool, "check", "rules", HERE / "floodwatch-rules.yml")


def test_the_rules_fire_on_what_they_name(promtool):
    assert "SUCCESS" in _run(promtool, "test", "rules", HERE / "floodwatch-rules.test.yml")


def test_every_metric_the_rules_read_is_one_floodwatch_exports():
    # Importing the stages declares their metrics (as a running floodwatch serve does).
    import floodwatch.alerts.delivery  # noqa: F401
    import floodwatch.alerts.service  # noqa: F401
    import floodwatch.gauge_page  # noqa: F401
    import floodwatch.ingest.service  # noqa: F401
    import floodwatch.scheduler.forecast_job  # noqa: F401

    rules = (HERE / "floodwatch-rules.yml").read_text()
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"\bfloodwatch_[a-z0-9_]+", rules)}
    assert used, "no floodwatch metric in the rules?"
    unknown = sorted(used - set(metrics._described))
    assert not unknown, f"the rules read metrics floodwatch never exports: {unknown}"
    exported = metrics.render()
    for name in re.findall(r"\b(process_[a-z_]+)\{", rules):
        assert name in exported, name


def test_the_rules_file_is_what_the_docs_name():
    ops = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    assert "deploy/prometheus/floodwatch-rules.yml" in ops and "deploy/prometheus/prometheus.yml" in ops
