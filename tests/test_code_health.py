"""ruff and mypy are clean: the suite (and so CI's ``scripts/test``) fails on what they find.

Both run through ``scripts/lint``, the command a contributor runs by hand, with the
interpreter this test runs in; their configuration is in pyproject.toml. A finding fails
this test with ruff's or mypy's own report, file and line first.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from floodwatch.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)  # a cold mypy cache on a loaded machine takes minutes
def test_ruff_and_mypy_find_nothing() -> None:
    try:
        import mypy  # noqa: F401
        import ruff  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"{exc.name} is not installed; scripts/setup --test installs the [dev] extra with it")
    done = subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "lint")],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, (
        "scripts/lint found problems; fix them (configuration: pyproject.toml [tool.ruff], [tool.mypy]):\n"
        + done.stdout
        + done.stderr
    )
