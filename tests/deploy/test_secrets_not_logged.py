"""A full demo run against a LINE API given by the environment never logs the token or the secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from floodwatch.cli.broker import free_port
from floodwatch.line_standin import LineStandIn

TOKEN = "tok-" + "9f3c1a7e5b2d4c6a8e0f1b3d5a7c9e2f"
SECRET = "sec-" + "c0ffee5eed1dea5b0a7f00d5ca1ab1e5"


@pytest.mark.slow
def test_full_run_logs_neither_token_nor_secret(tmp_path: Path):
    with LineStandIn(tokens={TOKEN}) as standin:
        env = dict(os.environ)
        env.update(
            FLOODWATCH_LINE__API_BASE_URL=standin.base_url,
            FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN=TOKEN,
            FLOODWATCH_LINE__CHANNEL_SECRET=SECRET,
        )
        summary_path = tmp_path / "summary.json"
        # --verbose: debug logs of every library too (urllib3, line-bot-sdk, paho) are the riskiest.
        run = subprocess.run(
            [sys.executable, "-m", "floodwatch.cli.main", "--verbose", "demo", "--duration", "25", "--no-browser",
             "--port", str(free_port()), "--summary-json", str(summary_path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
        )
        delivered = standin.delivered_messages()
    # The full log goes to a file; the terminal shows the banner and plain status lines (not a terminal here).
    log_file = (tmp_path / "var" / "demo" / "floodwatch.log").read_text()
    assert log_file.count("\n") > 100 and "level=debug" in log_file, "the debug-level log went to the file"
    assert "readings |" in run.stdout, "without a terminal, the status comes as plain periodic lines"
    logs = run.stdout + run.stderr + log_file
    (tmp_path / "run.log").write_text(logs)
    assert run.returncode == 0, logs[-3000:]
    summary = json.loads(summary_path.read_text())
    print(f"secrets: {len(logs.splitlines())} log lines, {len(delivered)} LINE messages delivered, "
          f"token found {logs.count(TOKEN)}x, secret found {logs.count(SECRET)}x")
    assert summary["line_messages_delivered"] >= 1 and delivered, "the run must really have talked to LINE"
    # The external stations came from the demo's local ThaiWater stand-in and drop folder, not the internet.
    assert summary["feed_readings_stored"] > 0
    assert TOKEN not in logs
    assert SECRET not in logs
