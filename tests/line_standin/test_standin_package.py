"""The package itself: the spec copy matches LINE's files, the public surface is pinned, the CLI runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from linebot.v3.messaging import ApiClient, Configuration, MessagingApi

from floodwatch import line_standin
from floodwatch.line_standin._spec import MESSAGING_SPEC_FILE, WEBHOOK_SPEC_FILE, messaging_spec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_SPECS = PROJECT_ROOT.parent / "shared" / "line-openapi"
EXPECTED_SHA256 = {
    "messaging-api.yml": "0227978ce1b3133e20da034fc33a9241000619ae4fea2fda7b61983abf79577a",
    "webhook.yml": "4ffdeb374d43acf7b59bf4f0191791ed421c8d366362d118784c036a3609ca88",
}


@pytest.mark.parametrize("path", [MESSAGING_SPEC_FILE, WEBHOOK_SPEC_FILE], ids=lambda p: p.name)
def test_shipped_spec_is_lines_file_unchanged(path):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == EXPECTED_SHA256[path.name], f"{path} was edited; copy it again from line/line-openapi"
    notice = (path.parent / "NOTICE").read_text(encoding="utf-8")
    assert "6e4c2a2a1b7b059ea3920456d4f88d03fd8ef0bb" in notice and "Apache License, Version 2.0" in notice
    assert digest in notice
    shared = SHARED_SPECS / path.name
    if shared.exists():
        assert hashlib.sha256(shared.read_bytes()).hexdigest() == digest, f"{path} differs from {shared}"


def test_every_discriminator_mapping_points_at_a_schema():
    schemas = messaging_spec().schemas
    mapped = [
        ref.rsplit("/", 1)[1]
        for schema in schemas.values()
        if isinstance(schema, dict) and "discriminator" in schema
        for ref in schema["discriminator"].get("mapping", {}).values()
    ]
    assert len(mapped) > 40 and all(name in schemas for name in mapped)


def test_public_surface_is_pinned():
    assert sorted(line_standin.__all__) == [
        "DEFAULT_BOT_USER_ID",
        "DeliveredMessage",
        "ErrorDetail",
        "LineStandIn",
        "RecordedRequest",
        "WebhookResult",
        "follow_event",
        "location_message_event",
        "media_message_event",
        "messaging_spec",
        "new_reply_token",
        "new_user_id",
        "new_webhook_event_id",
        "postback_event",
        "send_webhook",
        "sign",
        "text_message_event",
        "unfollow_event",
        "utf16_length",
        "webhook_body",
        "webhook_spec",
    ]
    assert all(hasattr(line_standin, name) for name in line_standin.__all__)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN", None)
    return env


def test_cli_serves_until_interrupted():
    process = subprocess.Popen(
        [sys.executable, "-m", "floodwatch.cli.line_standin", "--port", "0", "--token", "cli-token",
         "--multicast-rate", "50"],
        cwd=PROJECT_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: pytest-xdist's workers ignore SIGINT, and an ignored signal is
        # inherited across exec (Python then installs no KeyboardInterrupt handler).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("line-standin listening on http://127.0.0.1:"), line + process.stderr.read()
        base_url = line.rsplit(" ", 1)[1].strip()
        with ApiClient(Configuration(host=base_url, access_token="cli-token")) as client:
            assert MessagingApi(client).get_bot_info().chat_mode == "bot"
        with urllib.request.urlopen(base_url + "/_standin/received", timeout=5) as response:
            assert json.load(response)["requests"][0]["path"] == "/v2/bot/info"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_without_a_token_says_how_to_give_one():
    done = subprocess.run(
        [sys.executable, "-m", "floodwatch.cli.line_standin", "--port", "0"],
        cwd=PROJECT_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--token" in done.stderr and "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN" in done.stderr


def test_cli_registers_as_a_subcommand():
    import argparse

    from floodwatch.cli import line_standin as command

    parser = argparse.ArgumentParser(prog="floodwatch")
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["line-standin", "--token", "a", "--token", "b", "--multicast-rate", "20"])
    assert (args.token, args.multicast_rate, args.port, args.func) == (["a", "b"], 20.0, 8081, command.run)
