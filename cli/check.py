"""``floodwatch check``: load a site and its settings, name every problem with its line and fix, exit 0 or 1."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from floodwatch import logs
from floodwatch.errors import ConfigError
from floodwatch.settings import LINE_PRODUCTION_API, Settings, is_example, load_settings, load_site_settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="validate a site file, its map and the settings; name each problem and its line",
        description="Load the site file (FLOODWATCH_CONFIG, else /etc/floodwatch/site.toml, else the embedded "
        "example) and FLOODWATCH_* variables, or each --site file with its FLOODWATCH_SITE_<ID>__* variables, "
        "as floodwatch serve would, and report every problem with the file's line and the fix: duplicate "
        "stations, zones without a station, warning levels out of order, unknown keys, links to unknown "
        "stations, a broken map, a data folder floodwatch cannot write, databases from a newer floodwatch, "
        "missing LINE secrets. Exit status 0 when the site can be served, 1 otherwise.\n\n"
        "examples:\n"
        "  floodwatch check\n"
        "  floodwatch check --site /etc/floodwatch/site.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--site", dest="sites", type=Path, action="append", default=None, metavar="TOML",
                   help="check this site file as `floodwatch serve --site` reads it; repeat for several")
    p.set_defaults(run=run)


def _writable_dir_problem(folder: Path) -> str | None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "cannot be written" if probe == folder else f"does not exist and {probe} cannot be written"
        return (f"data folder {folder} {what} by this user; create it for the service user "
                f"(sudo install -d -o floodwatch -g floodwatch {folder}) or set FLOODWATCH_DATA_DIR")
    return None


def site_map_problems(settings: Settings) -> list[str]:
    """What is wrong with the site's map (the page then draws the stations without zones or river)."""
    from floodwatch.sitemap import map_problems, read_map

    map_file = settings.map_file
    if map_file is None:
        return [f"{settings.config_file}: [site] names no map, so the page cannot draw the zones; add "
                "map = \"site.geojson\" (floodwatch site init draws a first one)"]
    geojson, unreadable = read_map(map_file)
    if unreadable:
        return [f"{map_file}: {unreadable}"]
    anchors = [(s.lon, s.lat) for s in settings.stations] + [
        (z.centre_lon, z.centre_lat) for z in settings.zones if z.centre_lon is not None and z.centre_lat is not None]
    return [f"{map_file}: {p}" for p in map_problems(geojson, [z.id for z in settings.zones], anchors)]


def site_problems(settings: Settings) -> tuple[list[str], list[str]]:
    """What stops this site from being served (problems), and what its operator should know (notes).

    Beyond the site file itself (checked when it loads): the data folder and
    the databases' schema versions. ``floodwatch serve`` refuses to start on
    any of these; the map is checked apart (:func:`site_map_problems`), since
    a wrong drawing must not keep residents from being warned.
    """
    from floodwatch import migrations
    from floodwatch.cli.backup import databases, known_versions

    problems: list[str] = []
    notes: list[str] = []
    folder = _writable_dir_problem(settings.data_dir)
    if folder:
        problems.append(folder)
    existing = {name: path for name, path in databases(settings).items() if path.exists()}
    known = known_versions() if existing else {}  # (imports every stage: only when there is something to compare)
    for name, path in existing.items():
        found = migrations.file_version(path)
        if found is None:
            continue
        if found > known[name]:
            problems.append(f"{path} has schema version {found}, newer than this floodwatch's {known[name]}: a newer "
                            "floodwatch wrote it; run that version, or restore a backup this one made")
        elif found < known[name]:
            notes.append(f"{path} will be upgraded from schema version {found} to {known[name]} when floodwatch "
                         "starts (take a backup first: floodwatch backup --out DIR)")
    return problems, notes


def _line_problems(settings: Settings, env_prefix: str) -> list[str]:
    problems = []
    if settings.line.api_base_url == LINE_PRODUCTION_API:
        token = settings.line.channel_access_token
        secret = settings.line.channel_secret
        if token is None or not token.get_secret_value().strip():
            problems.append(f"{env_prefix}LINE__CHANNEL_ACCESS_TOKEN is not set: residents cannot be warned on LINE")
        if secret is None or not secret.get_secret_value().strip():
            problems.append(f"{env_prefix}LINE__CHANNEL_SECRET is not set: the LINE webhook cannot verify requests")
    return problems


def check_one(settings: Settings, env_prefix: str) -> int:
    problems, notes = site_problems(settings)
    problems += site_map_problems(settings)
    problems += _line_problems(settings, env_prefix)
    from floodwatch.feeds import configuration_problems

    problems += configuration_problems(settings)
    print(f"config: {settings.config_file}")
    print(f"site: {settings.site.name_en} / {settings.site.name_th} ({settings.site.id})")
    own = settings.own_stations
    n_level = sum(1 for s in own if s.kind == "water_level")
    n_rain = sum(1 for s in own if s.kind == "rain")
    print(f"stations: {n_level} water level, {n_rain} rain; zones: {len(settings.zones)}; map: {settings.map_file}")
    if settings.external_stations or settings.feeds:
        print(f"external: {len(settings.external_stations)} stations; feeds: "
              + (", ".join(f"{f.id} ({f.kind}{'' if f.enabled else ', disabled'})" for f in settings.feeds) or "none"))
    print(f"data: {settings.data_dir}  store: {settings.store.url}")
    print(f"mqtt: {settings.mqtt.url}  line: {settings.line.api_base_url}  "
          f"page: http://{settings.page.host}:{settings.page.port}")
    if is_example(settings.config_file):
        notes.append(f"{settings.config_file} is an example shipped with floodwatch, not your municipality's: "
                     "write yours with floodwatch site init --out /etc/floodwatch/site.toml")
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"problem: {logs.scrub(problem)}")
    return 1 if problems else 0


def run(args: argparse.Namespace) -> int:
    from floodwatch.settings import site_env_prefix

    status = 0
    if not args.sites:
        try:
            settings = load_settings()
        except ConfigError as exc:
            print(f"error: {logs.scrub(str(exc))}")
            return 1
        return check_one(settings, "FLOODWATCH_")
    loaded = []
    for path in args.sites:
        try:
            settings = load_site_settings(path)
        except ConfigError as exc:
            print(f"error: {logs.scrub(str(exc))}")
            status = 1
            continue
        loaded.append(settings)
        status |= check_one(settings, site_env_prefix(settings.site.id))
    if len(loaded) > 1:
        from floodwatch.cli.serve import check_sites

        try:
            check_sites(loaded)
        except ConfigError as exc:
            print(f"problem: {logs.scrub(str(exc))}")
            status = 1
    return status
