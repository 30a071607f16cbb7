"""``floodwatch line check`` against the LINE stand-in, as a municipality would run it."""

from __future__ import annotations

import os
import subprocess
import sys

from floodwatch.settings import PROJECT_ROOT
from floodwatch.line_standin import LineStandIn

TOKEN = "cli-check-token"
OFFICER = "U" + "0f" * 16


def _run(standin: LineStandIn, *args: str, token: str = TOKEN, officers: str | None = None):
    env = {**os.environ, "FLOODWATCH_LINE__API_BASE_URL": standin.base_url,
           "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN": token}
    if officers is not None:
        env["FLOODWATCH_ALERTS__OFFICERS"] = officers
    return subprocess.run([sys.executable, "-m", "floodwatch.cli.line", "check", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_check_verifies_token_shows_quota_and_messages_an_officer():
    with LineStandIn(tokens={TOKEN}, monthly_quota=1000) as standin:
        result = _run(standin, officers=f'["{OFFICER}"]')
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ok   token: bot 'floodwatch (stand-in)'" in result.stdout
        assert "0 of 1,000 messages used this month, 1,000 left" in result.stdout
        sent = standin.messages_for(OFFICER)
        assert len(sent) == 1 and sent[0]["text"].startswith("✅ ทดสอบระบบแจ้งเตือนน้ำท่วม")
        push = standin.requests("/v2/bot/message/push")[0]
        assert push.headers.get("x-line-retry-key")


def test_check_fails_with_the_fix_on_a_wrong_token_or_no_recipient(monkeypatch, capsys):
    from floodwatch.cli.line import main

    def run(*args: str, token: str = TOKEN, officers: str = "[]") -> tuple[int, str]:
        monkeypatch.setenv("FLOODWATCH_LINE__API_BASE_URL", standin.base_url)
        monkeypatch.setenv("FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN", token)
        monkeypatch.setenv("FLOODWATCH_ALERTS__OFFICERS", officers)
        code = main(["check", *args])
        return code, capsys.readouterr().out

    with LineStandIn(tokens={TOKEN}) as standin:
        code, out = run(token="revoked-token")
        assert code == 1
        assert "FAIL token: LINE answered 401" in out and "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN" in out
        code, out = run()
        assert code == 1 and "FLOODWATCH_ALERTS__OFFICERS" in out
        code, out = run("--no-message")
        assert code == 0 and "no monthly limit" in out
        assert standin.requests("/v2/bot/message/push") == []
