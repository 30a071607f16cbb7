"""``floodwatch check``: load the settings and registry, say what is wrong, exit 0 or 1."""

from __future__ import annotations

import argparse

from floodwatch.errors import ConfigError
from floodwatch.settings import LINE_PRODUCTION_API, load_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="validate settings and the station registry",
        description="Load config/lamphaya.toml (or FLOODWATCH_CONFIG) and FLOODWATCH_* variables and "
        "report problems. Exit status 0 when the configuration is usable, 1 otherwise.\n\n"
        "example: FLOODWATCH_CONFIG=config/lamphaya.toml floodwatch check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}")
        return 1
    problems = []
    if settings.line.api_base_url == LINE_PRODUCTION_API:
        token = settings.line.channel_access_token
        secret = settings.line.channel_secret
        if token is None or not token.get_secret_value().strip():
            problems.append("FLOODWATCH_LINE__CHANNEL_ACCESS_TOKEN is not set: residents cannot be warned on LINE")
        if secret is None or not secret.get_secret_value().strip():
            problems.append("FLOODWATCH_LINE__CHANNEL_SECRET is not set: the LINE webhook cannot verify requests")
    print(f"config: {settings.config_file}")
    print(f"site: {settings.site.name_en} ({settings.site.id})")
    print(f"stations: {len(settings.level_stations)} water level, {len(settings.rain_stations)} rain; zones: {len(settings.zones)}")
    print(f"mqtt: {settings.mqtt.url}  store: {settings.store.url}  line: {settings.line.api_base_url}")
    state = settings.mqtt_state
    print(f"integrations: LoRaWAN devices {len(settings.lorawan.devices)}; HTTP ingest "
          f"{'on' if settings.http_ingest.enabled else 'off'} ({len(settings.http_ingest.tokens)} node tokens); "
          f"retained MQTT state {'on, as ' + (state.username or 'anonymous') if state.enabled else 'off'}")
    for p in problems:
        print(f"problem: {p}")
    return 1 if problems else 0
