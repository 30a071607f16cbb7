"""``floodwatch line check`` and ``floodwatch line setup``: the LINE channel, checked and set up.

``floodwatch line check``: is the LINE channel set up right? Token, quota, a test message.

Runs the three checks a municipality needs before going live, each on one
line of output, and exits 0 when all pass, 1 otherwise:

1. the channel access token works (``GET /v2/bot/info``: the bot's name and
   basic id, and whether the account is in bot mode so the webhook is used);
2. the monthly message quota and how much of it is used;
3. a test message reaches an officer (``--to`` or the first of
   ``FLOODWATCH_ALERTS__OFFICERS``), pushed with a retry key like real alerts.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from floodwatch.errors import ConfigError, LineApiError
from floodwatch.settings import load_settings
from floodwatch.timefmt import english_datetime, thai_datetime

EXAMPLE = (
    "examples:\n"
    "  floodwatch line check                       # token, quota, test message to the first officer\n"
    "  floodwatch line check --to U0123...abcd     # test message to this LINE user id\n"
    "  floodwatch line check --no-message          # token and quota only\n"
    "  floodwatch line setup                       # the rich menu: draw, create, upload, set default\n"
    "  floodwatch line setup --dry-run --save-image menu.png   # draw it only, to look at\n"
    "\nreads FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN and FLOODWATCH_LINE__API_BASE_URL (see docs/line-setup.md)"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "line",
        help="check the LINE Messaging API channel (token, quota, test message)",
        description="Commands for the LINE Official Account floodwatch sends alerts through.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="line_command", metavar="SUBCOMMAND")
    check = sub.add_parser(
        "check",
        help="verify the token (GET /v2/bot/info), show the quota, send a test message to an officer",
        description=__doc__.split("\n\n", 1)[1],
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--to", metavar="USER_ID",
                       help="LINE user id to send the test message to (default: the first configured officer)")
    check.add_argument("--no-message", action="store_true", help="skip the test message (no quota used)")
    setup = sub.add_parser(
        "setup",
        help="create the rich menu (Thai, five buttons) and make it every resident's default; safe to re-run",
        description="Draw the rich menu image in Thai (fonts-thai-tlwg), create the menu through the "
        "Messaging API, upload its image to LINE's data API, and set it as the default menu. Re-running "
        "reuses an identical menu, replaces a changed one and removes floodwatch's older or half-made menus; "
        "menus floodwatch did not make are left alone.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup.add_argument("--save-image", type=Path, metavar="PATH", help="also write the menu image here")
    setup.add_argument("--dry-run", action="store_true", help="draw and check the image only; call no LINE API")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "line_command", None)
    if command == "setup":
        return setup(args)
    if command != "check":
        print("usage: floodwatch line check [--to USER_ID] [--no-message] | floodwatch line setup   "
              "(floodwatch line --help)")
        return 2
    return check(args)


def setup(args: argparse.Namespace) -> int:
    from floodwatch.alerts import richmenu
    from floodwatch.alerts.line_client import LineClient

    try:
        image = richmenu.draw_menu()
    except ConfigError as exc:
        print(f"FAIL image: {exc}")
        return 1
    kind = richmenu.image_type(image)
    print(f"ok   image: {richmenu.WIDTH_PX}x{richmenu.HEIGHT_PX} px {kind}, {len(image):,} bytes "
          f"(LINE allows at most {richmenu.MAX_IMAGE_BYTES:,}), {len(richmenu.BUTTONS)} buttons")
    if args.save_image is not None:
        args.save_image.write_bytes(image)
        print(f"ok   saved: {args.save_image}")
    if args.dry_run:
        print("skip LINE (--dry-run)")
        return 0
    try:
        settings = load_settings()
        token = settings.line.channel_access_token
        client = LineClient(settings.line.api_base_url, token.get_secret_value() if token else None,
                            settings.line.timeout_s, data_api_base_url=settings.line.data_base_url())
    except ConfigError as exc:
        print(f"FAIL config: {exc}")
        return 1
    print(f"LINE API: {settings.line.api_base_url} (data API: {settings.line.data_base_url()})")
    with client:
        try:
            result = richmenu.setup_rich_menu(client, image)
        except LineApiError as exc:
            hint = (" ; the channel access token is wrong or revoked (floodwatch line check)" if exc.status == 401
                    else "")
            print(f"FAIL rich menu: LINE answered {exc.status}: {exc.message}{hint}")
            return 1
    print(f"ok   rich menu: {result.rich_menu_id} "
          f"({'created and image uploaded' if result.created else 'unchanged, reused'})")
    print(f"ok   default: {'set for every resident' if result.default_was_set else 'already the default'}")
    if result.deleted:
        print(f"ok   removed floodwatch's older menus: {', '.join(result.deleted)}")
    print("all steps done")
    return 0


def check(args: argparse.Namespace) -> int:
    from floodwatch.alerts.line_client import LineClient

    try:
        settings = load_settings()
        token = settings.line.channel_access_token
        client = LineClient(settings.line.api_base_url, token.get_secret_value() if token else None,
                            settings.line.timeout_s)
    except ConfigError as exc:
        print(f"FAIL config: {exc}")
        return 1
    failures = 0
    print(f"LINE API: {settings.line.api_base_url}")
    with client:
        try:
            info = client.bot_info()
            mode = info.get("chatMode")
            print(f"ok   token: bot {info.get('displayName')!r} {info.get('basicId')} (chat mode: {mode})")
            if mode not in (None, "bot"):
                print("warn chat mode is not 'bot': turn on webhooks and off chat in LINE Official Account Manager"
                      " (docs/line-setup.md, step 5)")
        except LineApiError as exc:
            failures += 1
            if exc.status == 401:
                print(f"FAIL token: LINE answered 401: {exc.message}; the channel access token is wrong or revoked:"
                      " issue a new one in LINE Developers > Messaging API and set"
                      " FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN")
            else:
                print(f"FAIL token: {exc.message}" if not exc.status else
                      f"FAIL token: LINE answered {exc.status}: {exc.message}")
            return 1
        try:
            quota = client.quota()
            used = quota.get("totalUsage", 0)
            if quota.get("type") == "limited":
                limit = int(quota.get("value") or 0)
                left = limit - int(used)
                share = left / limit if limit else 0.0
                flag = "ok  " if share >= settings.line.quota_warn_fraction else "warn"
                print(f"{flag} quota: {used:,} of {limit:,} messages used this month, {left:,} left")
            else:
                print(f"ok   quota: no monthly limit set; {used:,} messages used this month")
        except LineApiError as exc:
            failures += 1
            print(f"FAIL quota: LINE answered {exc.status}: {exc.message}")
        if args.no_message:
            print("skip test message (--no-message)")
        else:
            to = args.to or (settings.alerts.officers[0] if settings.alerts.officers else None)
            if to is None:
                failures += 1
                print("FAIL test message: no recipient; pass --to USER_ID or set FLOODWATCH_ALERTS__OFFICERS"
                      " (an officer's LINE user id, shown in the webhook log when they follow the account)")
            else:
                from floodwatch.alerts.messages import bilingual, text_message

                now_s = time.time()
                text = bilingual([f"✅ ทดสอบระบบแจ้งเตือนน้ำท่วม {settings.site.name_th} {thai_datetime(now_s)}"],
                                 [f"✅ floodwatch test message, {settings.site.name_en}, {english_datetime(now_s)}"])
                outcome = client.push(to, [text_message(text)], str(uuid.uuid4()))
                if outcome.result == "delivered":
                    print(f"ok   test message: delivered to {to[:5]}… (request {outcome.request_id})")
                else:
                    failures += 1
                    print(f"FAIL test message: LINE answered {outcome.status}: {outcome.message}; the user must "
                          "have added the account as a friend, and the id must be a user id (U + 32 hex)")
    print("all checks passed" if failures == 0 else f"{failures} check(s) failed")
    return 0 if failures == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="floodwatch")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(["line", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
