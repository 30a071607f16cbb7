"""The generated Mosquitto configuration, against a real Mosquitto with TLS.

A node may publish only as itself; an anonymous client or a wrong password
is refused; the ingest account reads everything.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floodwatch.cli.broker import find_mosquitto, free_port, wait_for_port
from floodwatch.cli.mqtt_config import INGEST_USER, hash_password, read_credentials, write_config


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "server.crt", tmp / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def locked_broker(tmp_path, make_settings):
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed; run scripts/setup --test")
    settings = make_settings()
    cert, key = _self_signed(tmp_path)
    port = free_port()
    out = tmp_path / "mqtt"
    write_config(settings, out, port=port, bind_address="127.0.0.1", certfile=cert, keyfile=key, run_as="root")
    proc = subprocess.Popen([find_mosquitto(), "-c", str(out / "mosquitto.conf")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port)
        yield port, cert, read_credentials(out / "credentials")
    finally:
        proc.terminate()
        proc.wait(5)


def _client(port: int, cert: Path, username: str | None, password: str | None, name: str):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(cert))
    if username is not None:
        client.username_pw_set(username, password)
    result: dict = {}
    connected = threading.Event()

    def on_connect(c, userdata, flags, reason_code, properties):
        result["reason"] = reason_code
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)
    return client, result.get("reason")


def test_password_hash_matches_mosquitto_format():
    h = hash_password("secret", salt=b"0123456789ab")
    assert h.startswith("$7$101$") and len(h.split("$")) == 5


def test_nodes_publish_only_as_themselves_and_strangers_are_refused(locked_broker):
    port, cert, creds = locked_broker
    received: list[str] = []
    ingest, reason = _client(port, cert, INGEST_USER, creds[INGEST_USER], "ingest")
    assert not reason.is_failure, f"ingest refused: {reason}"
    ingest.on_message = lambda c, u, m: received.append(m.topic)
    ingest.subscribe("floodwatch/#", qos=1)
    time.sleep(0.3)

    node, reason = _client(port, cert, "LP-W01", creds["LP-W01"], "node-LP-W01")
    assert not reason.is_failure
    own = node.publish("floodwatch/LP-W01/telemetry", b'{"ts": 1, "seq": 1, "water_level_m": 1.0}', qos=1)
    forged = node.publish("floodwatch/LP-W02/telemetry", b'{"ts": 1, "seq": 1, "water_level_m": 9.0}', qos=1)
    own.wait_for_publish(5)
    forged.wait_for_publish(5)
    time.sleep(0.5)

    anonymous, anon_reason = _client(port, cert, None, None, "anon")
    wrong, wrong_reason = _client(port, cert, "LP-W01", "not-the-password", "wrong")
    print(f"lockdown: received {received}; anonymous {anon_reason}; wrong password {wrong_reason}")
    assert received == ["floodwatch/LP-W01/telemetry"]
    assert anon_reason is not None and anon_reason.is_failure
    assert wrong_reason is not None and wrong_reason.is_failure
    for c in (ingest, node, anonymous, wrong):
        c.loop_stop()
        c.disconnect()


def test_rerunning_keeps_existing_passwords(tmp_path, make_settings):
    settings = make_settings()
    first = {c.username: c.password for c in write_config(settings, tmp_path / "m")}
    second = {c.username: c.password for c in write_config(settings, tmp_path / "m")}
    assert first == second
    assert oct((tmp_path / "m" / "credentials").stat().st_mode & 0o777) == "0o600"


def test_integration_accounts_are_written_and_kept(tmp_path, make_settings):
    from floodwatch.cli.mqtt_config import CONSUMER_USER, LORAWAN_USER, STATE_USER

    settings = make_settings()
    users = {c.username for c in write_config(settings, tmp_path / "m", consumers=["home-assistant", "node-red"])}
    assert {STATE_USER, LORAWAN_USER, "home-assistant", "node-red"} <= users and CONSUMER_USER not in users
    acl = (tmp_path / "m" / "acl").read_text()
    consumer = acl.split("user home-assistant\n")[1].split("\n\n")[0].splitlines()
    assert consumer == ["topic read floodwatch/lamphaya/state/#", "topic read homeassistant/+/floodwatch_lamphaya/#"]
    assert "topic read application/+/device/+/event/up" in acl.split(f"user {INGEST_USER}\n")[1].split("\n\n")[0]
