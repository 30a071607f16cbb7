"""The generated Mosquitto configuration, against a real Mosquitto with TLS.

A node may publish only as itself; an anonymous client or a wrong password
is refused; the ingest account reads everything; TLS is required (a
plaintext client, or one that trusts another CA, never gets a session); one
node's password does not open another's account; the consumer account reads
and cannot publish at all.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from floodwatch.cli.broker import find_mosquitto, free_port, wait_for_port
from floodwatch.cli.mqtt_config import CONSUMER_USER, INGEST_USER, hash_password, read_credentials, write_config


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
    client.reconnect_delay_set(5, 10)
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


def _listener(port: int, cert: Path, creds: dict[str, str]):
    """The ingest account subscribed to everything: what reaches it is what the broker let through."""
    received: list[tuple[str, bytes]] = []
    ingest, reason = _client(port, cert, INGEST_USER, creds[INGEST_USER], "ingest-listener")
    assert not reason.is_failure, f"ingest refused: {reason}"
    ingest.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    ingest.subscribe("floodwatch/#", qos=1)
    time.sleep(0.3)
    return ingest, received


def _mqtt_connect_packet(client_id: str) -> bytes:
    """A plain MQTT 3.1.1 CONNECT, as a client that ignores TLS would send it."""
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id.encode()
    return b"\x10" + bytes([len(body)]) + body


def test_a_plaintext_client_gets_no_session(locked_broker):
    port, _, _ = locked_broker
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(_mqtt_connect_packet("plaintext"))
        try:
            answer = conn.recv(64)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    print(f"plaintext CONNECT answered with {answer!r}")
    assert not answer.startswith(b"\x20"), "the broker answered a plaintext CONNECT with a CONNACK"


def test_a_client_trusting_another_ca_refuses_the_broker(locked_broker, tmp_path):
    port, _, creds = locked_broker
    other_dir = tmp_path / "other-ca"
    other_dir.mkdir()
    other_ca, _ = _self_signed(other_dir)  # an attacker's or a stale CA
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wrong-ca", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(other_ca))
    client.username_pw_set("LP-W01", creds["LP-W01"])
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("127.0.0.1", port)


def test_one_nodes_password_does_not_open_another_nodes_account(locked_broker):
    port, cert, creds = locked_broker
    as_b, reason = _client(port, cert, "LP-W02", creds["LP-W01"], "LP-W01-as-LP-W02")
    as_b.loop_stop()
    as_b.disconnect()
    print(f"LP-W01's password for LP-W02: {reason}")
    assert reason is not None and reason.is_failure


def test_the_consumer_reads_everything_and_cannot_publish_at_all(locked_broker):
    port, cert, creds = locked_broker
    ingest, received = _listener(port, cert, creds)
    consumer, reason = _client(port, cert, CONSUMER_USER, creds[CONSUMER_USER], "dashboard")
    assert not reason.is_failure, f"consumer refused: {reason}"
    seen: list[str] = []
    consumer.on_message = lambda c, u, m: seen.append(m.topic)
    consumer.subscribe("floodwatch/#", qos=1)
    time.sleep(0.3)
    node, _ = _client(port, cert, "LP-W03", creds["LP-W03"], "node-LP-W03")
    node.publish("floodwatch/LP-W03/telemetry", b'{"ts": 1, "seq": 1, "water_level_m": 1.0}', qos=1).wait_for_publish(5)
    attempts = [consumer.publish(topic, b'{"ts": 1, "seq": 9, "water_level_m": 9.0}', qos=1)
                for topic in ("floodwatch/LP-W03/telemetry", "floodwatch/LP-W03/status", "floodwatch/lamphaya/LP-W03/telemetry",
                              "floodwatch/consumer/anything", "elsewhere/entirely")]
    for info in attempts:
        info.wait_for_publish(5)
    as_ingest = ingest.publish("floodwatch/LP-W04/telemetry", b'{"ts": 1, "seq": 9, "water_level_m": 9.0}', qos=1)
    as_ingest.wait_for_publish(5)
    time.sleep(0.5)
    print(f"consumer saw {seen}; the listener received {[t for t, _ in received]}")
    assert seen == ["floodwatch/LP-W03/telemetry"], "the consumer reads the node's reading"
    assert [t for t, _ in received] == ["floodwatch/LP-W03/telemetry"], "only the node's own publish got through"
    for c in (ingest, consumer, node):
        c.loop_stop()
        c.disconnect()


def test_the_generated_acl_keeps_the_consumer_in_its_own_block(make_settings):
    from floodwatch.cli.mqtt_config import acl_file

    acl = acl_file(make_settings())
    block = acl[acl.index("# ---- consumer"):acl.index("# ---- end of consumer ----")]
    assert f"user {CONSUMER_USER}" in block and "topic read floodwatch/#" in block
    assert "write" not in block.replace("publishes nothing", "")
