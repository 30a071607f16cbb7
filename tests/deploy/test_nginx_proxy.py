"""The HTTPS set-up of docs/operations.md, as written, in front of `floodwatch serve`, used as officers and LINE do.

The nginx site block is taken from the docs page and only its addresses and
certificate paths are swapped for the test's (nothing here can bind 443 or
read /etc/letsencrypt). Debian's nginx runs it with a certificate from a CA
the test makes; headless Chromium trusts that CA through its NSS database
(no certificate errors ignored) and reaches the site by its name. Through
the proxy the officer logs in, a reading published over MQTT arrives on the
open page by the event stream, the alert it raises is acknowledged, and a
resident subscribes by a signed LINE webhook. /metrics and /docs stay inside.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import expect

from floodwatch.cli.broker import free_port, wait_for_port
from floodwatch.gauge_page.screenshots import CHROMIUM, CHROMIUM_ARGS
from floodwatch.line_standin import LineStandIn, follow_event, new_user_id, postback_event
from floodwatch.settings import DEFAULT_CONFIG_FILE, PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOST = "flood.example.go.th"  # the docs' server_name; the browser maps it to 127.0.0.1
TOKEN = "nginx-test-channel-token-0123456789"
SECRET = "nginx-test-channel-secret-0123456789"
PASSWORD = "correct horse battery"
MARKER = "tests/deploy/test_nginx_proxy.py runs the next block"


def nginx_block_from_the_docs() -> str:
    text = (PROJECT_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert MARKER in text, "docs/operations.md lost the marked nginx block"
    found = re.search(r"```nginx\n(.*?)```", text[text.index(MARKER):], re.S)
    assert found, "no ```nginx block after the marker"
    return found.group(1)


def adapt(block: str, *, https_port: int, http_port: int, page_port: int, cert: Path, key: Path) -> str:
    """Swap only what a test cannot use as written: the ports and the certificate files."""
    for old, new in (
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        (f"/etc/letsencrypt/live/{HOST}/fullchain.pem", str(cert)),
        (f"/etc/letsencrypt/live/{HOST}/privkey.pem", str(key)),
        ("http://127.0.0.1:8000", f"http://127.0.0.1:{page_port}"),
    ):
        assert old in block, f"the docs' block no longer has {old!r}: update this test with it"
        block = block.replace(old, new)
    return block


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kwargs)
    assert done.returncode == 0, f"{args[0]} failed: {done.stdout}{done.stderr}"
    return done


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for the docs' host name (and localhost)."""
    folder.mkdir()
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=floodwatch test CA",
         "-keyout", str(ca_key), "-out", str(ca), "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}", "-keyout", str(key),
         "-out", str(csr))
    ext = folder / "server.ext"
    ext.write_text(f"subjectAltName=DNS:{HOST},DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


def browser_home_trusting(ca: Path, home: Path) -> Path:
    """A HOME whose NSS database (what Chromium on Linux trusts) holds the test CA."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    _run("certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password")
    _run("certutil", "-A", "-d", f"sql:{nssdb}", "-n", "floodwatch test CA", "-t", "C,,", "-i", str(ca))
    return home


def https_request(port: int, ca: Path, method: str, path: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request to the proxy by its name, checking its certificate against the test CA."""
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    conn = http.client.HTTPSConnection(HOST, port, context=context, timeout=15)
    conn.sock = context.wrap_socket(raw, server_hostname=HOST)
    try:
        conn.request(method, path, body=body, headers={"Host": f"{HOST}:{port}", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return None


@pytest.fixture
def tools() -> None:
    missing = [tool for tool in ("nginx", "openssl", "certutil") if shutil.which(tool) is None
               and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}; run scripts/setup --test (Debian: nginx-light, openssl, "
                    "libnss3-tools)")


def test_the_documented_nginx_site_serves_officers_live_updates_and_line(tools, mosquitto, tmp_path, monkeypatch,
                                                                      playwright):
    ca, cert, key = make_certificates(tmp_path / "tls")
    page_port, https_port, http_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "FLOODWATCH_CONFIG": str(DEFAULT_CONFIG_FILE),
        "FLOODWATCH_DATA_DIR": str(tmp_path / "data"),
        "FLOODWATCH_MQTT__URL": mosquitto.url,
        "FLOODWATCH_PAGE__HOST": "127.0.0.1",
        "FLOODWATCH_PAGE__PORT": str(page_port),
        "FLOODWATCH_PAGE__SECURE_COOKIES": "true",
        "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN": TOKEN,
        "FLOODWATCH_LINE__CHANNEL_SECRET": SECRET,
    })
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    floodwatch = [sys.executable, "-m", "floodwatch.cli.main"]
    serve = nginx = None
    with LineStandIn(tokens={TOKEN}) as line:
        env["FLOODWATCH_LINE__API_BASE_URL"] = line.base_url
        added = subprocess.run([*floodwatch, "officer", "add", "somchai", "--display-name", "สมชาย ใจดี",
                                "--password-stdin"], input=PASSWORD + "\n", env=env, cwd=elsewhere,
                               capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stdout + added.stderr
        try:
            serve = subprocess.Popen([*floodwatch, "serve"], env=env, cwd=elsewhere, stdout=subprocess.PIPE,
                                     stderr=open(tmp_path / "serve.log", "w"), text=True)
            wait_for_port("127.0.0.1", page_port, timeout_s=60)

            conf_dir = tmp_path / "nginx"
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (conf_dir / sub).mkdir(parents=True)
            site = adapt(nginx_block_from_the_docs(), https_port=https_port, http_port=http_port,
                         page_port=page_port, cert=cert, key=key)
            temp_paths = "\n".join(f"    {kind}_temp_path {conf_dir / sub};" for kind, sub in (
                ("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"), ("uwsgi", "uwsgi"),
                ("scgi", "scgi")))
            (conf_dir / "nginx.conf").write_text(
                ("user root;\n" if os.geteuid() == 0 else "")  # workers must reach this test's temp folders
                + f"daemon off;\nworker_processes 1;\npid {conf_dir}/nginx.pid;\nerror_log {conf_dir}/error.log info;\n"
                "events { worker_connections 256; }\n"
                f"http {{\n    include /etc/nginx/mime.types;\n    access_log {conf_dir}/access.log;\n{temp_paths}\n"
                f"{site}\n}}\n")
            nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
            _run(nginx_bin, "-t", "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir), "-e",
                 str(conf_dir / "error.log"))
            nginx = subprocess.Popen([nginx_bin, "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir), "-e",
                                      str(conf_dir / "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait_for_port("127.0.0.1", https_port, timeout_s=20)

            # Inside only: monitoring and the API explorer answer on loopback, not through the proxy.
            for path in ("/metrics", "/docs", "/openapi.json"):
                assert https_request(https_port, ca, "GET", path)[0] == 404, path
            inside = http.client.HTTPConnection("127.0.0.1", page_port, timeout=10)
            inside.request("GET", "/metrics")
            assert inside.getresponse().status == 200, "Prometheus still scrapes the page on loopback"
            status, headers, _ = https_request(https_port, ca, "GET", "/api/health")
            assert status == 200 and "application/json" in headers["content-type"]
            plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
            plain.request("GET", "/", headers={"Host": HOST})
            redirect = plain.getresponse()
            assert redirect.status == 301 and redirect.getheader("Location") == f"https://{HOST}/"

            home = browser_home_trusting(ca, tmp_path / "home")
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, env={**os.environ, "HOME": str(home)},
                args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"])
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})  # HTTPS errors not ignored
                page = context.new_page()
                page.set_default_timeout(20_000)
                url = f"https://{HOST}:{https_port}"
                page.goto(url + "/")
                expect(page.locator("#site-name")).to_have_text("เทศบาลตำบลลำพญา")
                expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))  # the event stream is open

                page.click("#login-open")
                page.fill("#login-user", "somchai")
                page.fill("#login-password", PASSWORD)
                page.click("#login-submit")
                expect(page.locator("#officer-name")).to_have_text("สมชาย ใจดี")
                session = [c for c in context.cookies() if c["name"] == "fw_session"]
                assert session and session[0]["secure"] and session[0]["httpOnly"]

                # A resident adds the LINE account and picks Moo 4: signed webhooks through the proxy.
                resident = new_user_id()
                monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the stand-in posts like LINE, trusting our CA
                webhook = f"https://localhost:{https_port}/line/webhook"
                for event in (follow_event(resident), postback_event(resident, "action=add&zone=moo-4")):
                    assert line.send_webhook(webhook, SECRET, [event]).status == 200
                assert line.send_webhook(webhook, SECRET, [follow_event(new_user_id())],
                                         signature="forged").status in (400, 401, 403)

                # The canal by the school rises past evacuate; the readings arrive live on the open page.
                page.evaluate("window.__sameDocument = true")
                node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-LP-W03")
                node.connect("127.0.0.1", mosquitto.port)
                node.loop_start()
                now_s = time.time()
                levels = [round(1.40 + 0.025 * i, 3) for i in range(23)]  # to 1.95 m; evacuate is 1.90
                for i, level in enumerate(levels):
                    body = {"ts": now_s - (len(levels) - 1 - i) * 600, "seq": i + 1, "water_level_m": level}
                    node.publish("floodwatch/LP-W03/telemetry", json.dumps(body), qos=1).wait_for_publish(5)
                node.loop_stop()
                node.disconnect()
                expect(page.locator('#station-rows tr[data-station="LP-W03"] .level')).to_have_text("1.95")
                assert page.evaluate("window.__sameDocument") is True, "the update came without a reload"

                ack = page.locator("#alert-rows button.ack").first
                expect(ack).to_be_visible()
                ack.click()
                expect(page.locator("#alert-rows")).to_contain_text("รับทราบแล้ว: somchai")
            finally:
                browser.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and resident not in {d.user_id for d in line.delivered_messages()}:
                time.sleep(0.2)
            assert resident in {d.user_id for d in line.delivered_messages()}, \
                "the resident who subscribed through the proxy was warned on LINE"
            access = (conf_dir / "access.log").read_text()
            assert "POST /api/login" in access and "GET /api/events" in access and "POST /line/webhook" in access
            assert re.search(r'"POST /api/alerts/[^ ]+/acknowledge HTTP/[0-9.]+" 200', access), access[-2000:]
        finally:
            serve_status = _stop(serve)
            _stop(nginx, signal.SIGQUIT)
    log = (tmp_path / "serve.log").read_text()
    assert serve_status == 0, f"floodwatch serve did not stop cleanly on SIGTERM:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
