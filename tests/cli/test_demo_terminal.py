"""The newcomer's terminal: scripts/demo shows the address, the login and one live status line, not the log."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from floodwatch.cli.broker import free_port
from floodwatch.cli.demo_status import DemoStatus, ZoneStatus, format_status

T_S = 1_796_000_000.0  # 2026-11-30 00:53 UTC, 07:53 in Bangkok


def _status(**changes) -> DemoStatus:
    base = dict(sim_time_s=T_S, readings_stored=12_345, stations_online=10, stations_total=11, alerts_raised=3,
                line_delivered=42, zones=(ZoneStatus("moo-1", 0, 1.234), ZoneStatus("moo-5", 3, 2.31),
                                          ZoneStatus("moo-6", 1, None)))
    base.update(changes)
    return DemoStatus(**base)


def test_the_status_line_says_what_a_newcomer_needs():
    line = format_status(_status())
    assert line == ("sim 30 Nov 07:53 | 12,345 readings | 10/11 online | 3 alerts | 42 LINE | "
                    "moo-1 1.23 m · moo-5 2.31 m EVACUATE · moo-6 – watch")
    assert "1 alert |" in format_status(_status(alerts_raised=1))


def test_the_status_line_fits_the_terminal():
    line = format_status(_status(), width=60)
    assert len(line) == 60 and line.endswith("…") and line.startswith("sim 30 Nov 07:53 | 12,345 readings")


@pytest.mark.slow
def test_the_demo_terminal_is_quiet_and_the_full_log_goes_to_a_file(tmp_path: Path):
    """On a terminal (a pty here) the status is redrawn in place; the log is in var/demo/floodwatch.log."""
    leader, follower = pty.openpty()
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "floodwatch.cli.main", "demo", "--duration", "20", "--no-browser",
         "--port", str(free_port()), "--summary-json", str(summary)],
        cwd=tmp_path, stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=False)
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the demo ended and closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        stderr = proc.communicate(timeout=180)[1].decode()
    finally:
        reader.join(10)
        os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, terminal[-2000:] + stderr[-2000:]

    banner = terminal.split("Ctrl-C stops everything.")[0]
    assert re.search(r"live page\s+http://127\.0\.0\.1:\d+", banner)
    assert re.search(r"officer login officer / \S+", banner)
    assert "full log      var/demo/floodwatch.log" in banner
    redraws = terminal.count("\r\x1b[K")
    assert redraws >= 10, f"the status line is redrawn in place about every second ({redraws} times)"
    status_lines = re.findall(r"\r\x1b\[K([^\r\n]*)", terminal)
    assert any(re.search(r"\d[\d,]* readings \| \d+/11 online \| \d+ alerts? \| \d+ LINE \| moo-1 ", s)
               for s in status_lines), status_lines[-3:]
    lines_printed = terminal.count("\n")
    assert lines_printed < 40, f"{lines_printed} lines: the terminal must not fill with the log"
    assert "level=info" not in terminal and "level=info" not in stderr

    log = (tmp_path / "var" / "demo" / "floodwatch.log").read_text()
    assert log.count("\n") > 50 and "event=line_delivered" in log and "level=info" in log
    assert json.loads(summary.read_text())["readings_stored"] > 0


@pytest.mark.slow
def test_verbose_brings_the_log_back_to_the_terminal(tmp_path: Path):
    run = subprocess.run(
        [sys.executable, "-m", "floodwatch.cli.main", "demo", "--duration", "8", "--no-browser", "--verbose",
         "--port", str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.count("level=info") > 10
    assert "run with --verbose" not in run.stdout and "readings |" not in run.stdout
    assert (tmp_path / "var" / "demo" / "floodwatch.log").read_text().count("level=info") > 10
