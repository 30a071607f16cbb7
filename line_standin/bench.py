"""How many multicast requests of 500 recipients a second the stand-in sustains.

floodwatch's fan-out benchmark sends 100,000 residents' alert as 200
multicasts at LINE's 200 requests/s, so the stand-in must answer comfortably
faster than that. This sends real multicasts with line-bot-sdk (one Thai text
message, 500 user ids, a fresh retry key each) from ``--clients`` threads and
prints what it measured as JSON::

    python -m floodwatch.line_standin.bench --json
    python -m floodwatch.line_standin.bench --server subprocess --requests 1000 --json
    python -m floodwatch.line_standin.bench --rate 200 --pace 200 --requests 200 --json

``--server subprocess`` runs the stand-in in its own process (``python -m
floodwatch.cli.line_standin``), so the client's work does not share its interpreter
lock; ``inprocess`` (default) is the tests' set-up. The stand-in's rate limit
is raised out of the way (``--rate``) to measure capacity, or set to 200 to
see the limit at work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from collections.abc import Iterator

from linebot.v3.messaging import ApiClient, Configuration, MessagingApi, MulticastRequest, TextMessage
from linebot.v3.messaging.exceptions import ApiException

from floodwatch.line_standin._webhook import new_user_id

TOKEN = "bench-token"
MESSAGE_TH = "⚠️ เตือนภัยน้ำท่วม หมู่ 3 ลำพญา: ระดับน้ำ 1.42 ม.รทก. สูงกว่าระดับเตือนภัย 0.12 ม."


@contextmanager
def _standin(mode: str, rate_per_s: float) -> Iterator[str]:
    if mode == "inprocess":
        from floodwatch.line_standin import LineStandIn

        with LineStandIn(tokens={TOKEN}, multicast_rate_per_s=rate_per_s) as standin:
            yield standin.base_url
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "floodwatch.cli.line_standin", "--port", "0", "--token", TOKEN,
         "--multicast-rate", str(rate_per_s)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the stand-in did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def measure(
    base_url: str, requests: int, clients: int, recipients: int, pace_per_s: float | None = None
) -> dict[str, float | int | None]:
    """Send ``requests`` multicasts from ``clients`` threads; optionally start one every 1/pace_per_s s."""
    user_ids = [new_user_id() for _ in range(recipients)]
    counter = iter(range(requests))
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    started = time.perf_counter()

    def worker() -> None:
        with ApiClient(Configuration(host=base_url, access_token=TOKEN)) as client:
            api = MessagingApi(client)
            body = MulticastRequest(to=user_ids, messages=[TextMessage(text=MESSAGE_TH)])
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                if pace_per_s:
                    # Request i may start at i / pace: the client-side pacing a LINE sender needs.
                    wait_s = started + index / pace_per_s - time.perf_counter()
                    if wait_s > 0:
                        time.sleep(wait_s)
                try:
                    status = api.multicast_with_http_info(body, x_line_retry_key=str(uuid.uuid4())).status_code
                except ApiException as exc:
                    status = exc.status
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ok = statuses.get(200, 0)
    return {
        "requests": requests,
        "recipients_per_request": recipients,
        "clients": clients,
        "client_pace_per_s": pace_per_s,
        "seconds": round(seconds, 3),
        "requests_per_s": round(requests / seconds, 1),
        "accepted": ok,
        "accepted_per_s": round(ok / seconds, 1),
        "rate_limited": statuses.get(429, 0),
        "other_status": sum(n for s, n in statuses.items() if s not in (200, 429)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m floodwatch.line_standin.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="multicasts to send (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default: %(default)s)")
    parser.add_argument("--recipients", type=int, default=500, help="user ids per multicast (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=1e6, help="stand-in multicast limit per s (default: none)")
    parser.add_argument("--pace", type=float, default=None, help="client sends at most this many per s")
    parser.add_argument("--server", choices=("inprocess", "subprocess"), default="inprocess")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with _standin(args.server, args.rate) as base_url:
        result = measure(base_url, args.requests, args.clients, args.recipients, args.pace)
    result["server"] = args.server
    result["rate_limit_per_s"] = args.rate
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
