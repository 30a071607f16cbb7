"""Secret scrubbing, provoked: every secret is made to reach a log line or an error body, and none may get out.

A real process configures floodwatch's logging at DEBUG with the libraries'
own debug logging on (urllib3, httpx, paho, influxdb_client, linebot,
uvicorn), then:

- talks to LINE with a token LINE does not know (the stand-in answers 401),
  and to a "LINE" and an "InfluxDB" behind a misbehaving proxy that echoes
  every request header (Authorization included) into its 401 body, so the
  exceptions floodwatch logs carry the token;
- starts ingest with the MQTT password written into the broker URL (and a
  malformed URL that is quoted in an error);
- logs in to the page with the officer's password under a wrong name and
  with an over-long password (FastAPI would echo it in its 422 body), logs
  in for real and sends the session cookie to failing routes;
- posts LINE webhooks with a bad signature and a bad body.

Then no secret (LINE token and channel secret, MQTT password, InfluxDB
token, officer password, session cookie) may appear in any output line or in
any HTTP error body, while the provocations demonstrably happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from floodwatch.line_standin import LineStandIn
from floodwatch.settings import PROJECT_ROOT

LINE_TOKEN = "lt-" + "5e2b7c9d1a3f4e6b8c0d2e4f6a8b0c1d"
CHANNEL_SECRET = "cs-" + "a7c3e9f1b5d7093e1f3a5c7e9b1d3f50"
MQTT_PASSWORD = "mq-" + "Qw3rTy7uI9oP1aS3dF5gH7jK"
INFLUX_TOKEN = "ix-" + "Zx8Cv6Bn4Mm2Ll0Kk9Jj7Hh5Gg3"
OFFICER_PASSWORD = "op-" + "river rising at the temple 2569"

_CHILD = textwrap.dedent('''
    import json, logging, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from floodwatch import gauge_page, logs
    from floodwatch.settings import load_settings

    logs.configure(logging.DEBUG)
    for name in ("urllib3", "httpx", "httpcore", "paho", "influxdb_client", "linebot", "uvicorn", "uvicorn.error",
                 "uvicorn.access", "floodwatch"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    log = logging.getLogger("provoke")
    out_path, standin_url, officer_password = sys.argv[1], sys.argv[2], sys.argv[3]
    bodies = []


    class EchoingProxy(BaseHTTPRequestHandler):
        """Answers 401 with every request header in the body, as some misconfigured proxies do."""

        def _answer(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            body = json.dumps({"message": "unauthorized", "code": "unauthorized",
                               "request_headers": dict(self.headers.items())}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, *args):
            pass


    proxy = ThreadingHTTPServer(("127.0.0.1", 0), EchoingProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"


    def provoke(what, fn):
        try:
            fn()
        except Exception:  # what a careless caller does: log the whole exception, headers and all
            log.exception("provoked %s", what)


    # 0. careless code: the configured secrets written straight into log lines and exception texts
    s0 = load_settings()
    log.debug("line token %s secret %s influx token %s", s0.line.channel_access_token.get_secret_value(),
              s0.line.channel_secret.get_secret_value(), s0.store.influx_token.get_secret_value())

    def carrying_headers():
        raise RuntimeError(f"request failed; sent headers {{'X-Api-Key': "
                           f"'{s0.line.channel_access_token.get_secret_value()}'}}")
    provoke("exception with headers", carrying_headers)

    # 1. LINE: a token LINE does not know (401 from the stand-in), then the echoing proxy
    from floodwatch.alerts import AlertService, LineClient
    from floodwatch.clock import SystemClock
    from floodwatch.vocabulary import QcFlag, Reading

    for base in (standin_url, proxy_url):
        settings = load_settings(line={**load_settings().line.model_dump(), "api_base_url": base})
        service = AlertService(settings, SystemClock())
        service.subscribe("Uprovoke000000000000000000000001", "moo-1")
        service.start()
        service.check_quota()
        now = time.time()
        service.on_readings([Reading("LP-W02", now - 600, water_level_m=2.05, qc_flag=QcFlag.PASS),
                             Reading("LP-W02", now - 300, water_level_m=2.06, qc_flag=QcFlag.PASS)])
        service.wait_delivered(5)
        client = LineClient(base, settings.line.channel_access_token.get_secret_value(), 5)
        provoke("line quota", client.quota)
        provoke("line reply", lambda: client.reply("replytoken", [{"type": "text", "text": "x"}]))
        log.info("multicast outcome %r", client.multicast(["Uprovoke000000000000000000000001"],
                                                           [{"type": "text", "text": "x"}], "retry-key-1"))
        service.close()

    # 2. InfluxDB behind the echoing proxy: the token travels in Authorization
    from floodwatch import store as store_pkg

    def influx():
        st = store_pkg.open_store(load_settings(store={**load_settings().store.model_dump(),
                                                        "url": proxy_url.replace("http://", "influxdb+http://")}))
        st.insert_new([Reading("LP-W01", time.time() - 60, seq=1, boot=1, water_level_m=1.0)])
    provoke("influx write", influx)

    # 3. MQTT: the password written into the broker URL (nothing listens there), and a malformed URL
    from floodwatch.ingest import IngestService
    from floodwatch.ingest.service import _parse_mqtt_url

    settings = load_settings()
    log.info("mqtt url configured: %s", settings.mqtt.url)
    mem = store_pkg.open_store(load_settings(store={"url": "sqlite:///" + out_path + ".db"}))
    ingest = IngestService(settings, mem, SystemClock())
    ingest.start()
    time.sleep(2.5)
    ingest.stop()
    provoke("mqtt url", lambda: _parse_mqtt_url(settings.mqtt.url.replace("mqtt://", "mqtts+ws://")))

    # 4. The page and the webhook, over HTTP
    from floodwatch.clock import SystemClock
    from floodwatch.gauge_page import EventHub, create_app
    from floodwatch.gauge_page._serve import BackgroundServer
    from floodwatch.line_standin import sign, webhook_body, postback_event, new_user_id

    page_settings = load_settings()
    gauge_page.create_officer(page_settings, "duty", officer_password)
    hub = EventHub()
    app = create_app(page_settings, mem, SystemClock(), hub=hub)
    webhook_service = AlertService(page_settings, SystemClock())
    app.include_router(webhook_service.webhook_router())
    secret = page_settings.line.channel_secret.get_secret_value()
    with BackgroundServer(app, hub) as server, httpx.Client(base_url=server.url) as http:
        def keep(r):
            if r.status_code >= 400:
                bodies.append({"path": str(r.request.url), "status": r.status_code, "body": r.text})
            return r
        keep(http.post("/api/login", json={"username": "not-duty", "password": officer_password}))
        keep(http.post("/api/login", json={"username": "duty", "password": officer_password + "x" * 300}))
        keep(http.post("/api/login", json={"username": "duty" * 40, "password": officer_password}))
        keep(http.post("/api/login", json={"username": ["duty"], "password": officer_password}))
        ok = http.post("/api/login", json={"username": "duty", "password": officer_password})
        cookie = ok.cookies.get("fw_session")
        keep(http.post("/api/logout"))  # no CSRF token
        keep(http.get("/api/stations/NOPE", headers={"Cookie": f"fw_session={cookie}"}))
        keep(http.post("/api/messages/preview", json={"zones": ["nowhere"], "text_th": "x"},
                       headers={"X-CSRF-Token": "wrong"}))
        body = webhook_body([postback_event(new_user_id(), "action=add&zone=moo-1")])
        keep(http.post("/line/webhook", content=body, headers={"x-line-signature": sign("not-the-secret", body),
                                                               "Content-Type": "application/json"}))
        keep(http.post("/line/webhook", content=b"{not json", headers={"x-line-signature": sign(secret, b"{not json"),
                                                                       "Content-Type": "application/json"}))
    webhook_service.close()
    app.state.page.state.close()
    mem.close()
    json.dump({"bodies": bodies, "cookie": cookie, "login_ok": ok.status_code}, open(out_path, "w"))
    print("provocations done", flush=True)
''')


def test_every_secret_is_provoked_into_logs_and_error_bodies_and_none_gets_out(tmp_path: Path):
    with LineStandIn(tokens={"a-token-line-knows-0123456789abcdef"}) as standin:
        env = {**os.environ,
               "FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN": LINE_TOKEN,
               "FLOODWATCH_LINE__CHANNEL_SECRET": CHANNEL_SECRET,
               "FLOODWATCH_LINE__TIMEOUT_S": "5", "FLOODWATCH_LINE__RETRY_BASE_S": "5",
               "FLOODWATCH_MQTT__URL": f"mqtt://floodwatch-ingest:{MQTT_PASSWORD}@127.0.0.1:9",
               "FLOODWATCH_STORE__INFLUX_TOKEN": INFLUX_TOKEN,
               "FLOODWATCH_STORE__URL": f"sqlite:///{tmp_path}/fw.db",
               "FLOODWATCH_ALERTS__STATE_URL": f"sqlite:///{tmp_path}/alerts.db",
               "FLOODWATCH_PAGE__STATE_URL": f"sqlite:///{tmp_path}/page.db"}
        out = tmp_path / "provoked.json"
        run = subprocess.run([sys.executable, "-c", _CHILD, str(out), standin.base_url, OFFICER_PASSWORD],
                             cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240)
        refused = [r for r in standin.requests() if r.status == 401]
    logs = run.stdout + run.stderr
    (tmp_path / "provoked.log").write_text(logs)
    assert "provocations done" in run.stdout, logs[-4000:]
    result = json.loads(out.read_text())
    bodies = "\n".join(json.dumps(b, ensure_ascii=False) for b in result["bodies"])
    secrets = {"LINE token": LINE_TOKEN, "channel secret": CHANNEL_SECRET, "MQTT password": MQTT_PASSWORD,
               "InfluxDB token": INFLUX_TOKEN, "officer password": OFFICER_PASSWORD,
               "session cookie": result["cookie"]}
    found = {name: (logs.count(value), bodies.count(value)) for name, value in secrets.items()}
    print(f"provoked: {len(logs.splitlines())} log lines, {len(result['bodies'])} error bodies, "
          f"{logs.count('[REDACTED]')} redactions, LINE 401s {len(refused)}; found (log, body) {found}")
    # the provocations happened
    assert result["login_ok"] == 200 and result["cookie"]
    assert len(refused) >= 2, "LINE never answered 401"
    assert "request_headers" in logs, "the echoing proxy's bodies never reached a log line"
    assert logs.count("[REDACTED]") >= 3, "nothing needed scrubbing: the provocations missed"
    assert {b["status"] for b in result["bodies"]} >= {400, 401, 403, 404, 422}
    # and nothing got out
    leaks = [line[:300] for line in (logs + "\n" + bodies).splitlines()
             if any(value and value in line for value in secrets.values())]
    assert all(n == (0, 0) for n in found.values()), (found, leaks)
