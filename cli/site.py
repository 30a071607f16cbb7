"""``floodwatch site init``: a new municipality's site file and map, ready for ``floodwatch check``.

The site file is written with comments that say what each value means and
which ones are placeholders to replace with the survey's figures; the map
(GeoJSON beside it) has one polygon per zone, drawn as the area nearer that
zone's centre than any other, and a straight placeholder for the river.
Both pass ``floodwatch check`` as written, so a municipality starts from a
site that runs and improves it step by step.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from floodwatch.sitemap import first_map

CENTRES_EXAMPLE = (
    "id,name_th,name_en,lat,lon\n"
    "moo-1,หมู่ 1 ตลาด,Moo 1 market,13.8040,100.1870\n"
    "moo-2,หมู่ 2 ริมแม่น้ำ,Moo 2 riverside,13.8010,100.1930\n"
)


class CentresError(ValueError):
    """The zone-centres file cannot be used; the message names the line and the fix."""


@dataclass(frozen=True)
class Zone:
    id: str
    name_th: str
    name_en: str
    lat: float
    lon: float


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    site = subparsers.add_parser(
        "site",
        help="start a new municipality's site file and map (site init)",
        description="Work with site files: the registry of a municipality's zones, gauges and warning levels.",
    )
    sub = site.add_subparsers(dest="site_command", metavar="SUBCOMMAND", required=True)
    init = sub.add_parser(
        "init",
        help="write a new site's TOML file (zones, stations, levels, with comments) and its map",
        description="Write a new municipality's site file with one zone per centre, a water-level gauge per zone "
        "and a rain gauge, all marked as placeholders to replace with the survey's figures, and its map "
        "(GeoJSON beside it: a polygon per zone and a placeholder river). The result passes floodwatch check; "
        "refine it from there.\n\n"
        "The centres file is CSV with a header line: id,name_th,name_en,lat,lon (id may be empty: moo-1, moo-2...)\n"
        f"{CENTRES_EXAMPLE}\n"
        "examples:\n"
        "  floodwatch site init --id nakhonchaisi --name-th \"เทศบาลตำบลนครชัยศรี\" \\\n"
        "      --name-en \"Nakhon Chai Si Subdistrict Municipality\" --from-centres centres.csv \\\n"
        "      --out /etc/floodwatch/site.toml\n"
        "  floodwatch site init --id bangkrathuek --name-th \"เทศบาลตำบลบางกระทึก\" --name-en \"Bang Krathuek\" \\\n"
        "      --zones 4 --centre 13.73,100.21 --out /etc/floodwatch/site.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--id", dest="site_id", required=True,
                      help="short lowercase name of the site (letters, digits, '-'), used in MQTT topics")
    init.add_argument("--name-th", required=True, help="the municipality's name in Thai")
    init.add_argument("--name-en", required=True, help="the municipality's name in English")
    where = init.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-centres", type=Path, metavar="CSV",
                       help="zone centres, one per line: id,name_th,name_en,lat,lon (with that header)")
    where.add_argument("--zones", type=int, metavar="N", help="N zones laid out in a grid around --centre")
    init.add_argument("--centre", metavar="LAT,LON", help="with --zones: the middle of the municipality")
    init.add_argument("--spacing-km", type=float, default=0.8,
                      help="with --zones: distance between neighbouring zone centres (default 0.8 km)")
    init.add_argument("--station-prefix", default=None,
                      help="start of the gauges' ids, e.g. NC for NC-W01 (default: from --id)")
    init.add_argument("--out", type=Path, default=Path("/etc/floodwatch/site.toml"),
                      help="the site file to write (default /etc/floodwatch/site.toml); the map goes beside it "
                      "with the same name and .geojson")
    init.add_argument("--force", action="store_true", help="overwrite an existing site file and map")
    init.set_defaults(run=run_init)


def read_centres(path: Path) -> list[Zone]:
    """Zones from a CSV of centres; :class:`CentresError` names the line and the fix."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CentresError(f"{path} cannot be read ({exc.strerror}); give a CSV of zone centres") from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise CentresError(f"{path} is empty; write a header line and one line per zone:\n{CENTRES_EXAMPLE}")
    header = [h.strip().lower() for h in rows[0]]
    missing = [h for h in ("lat", "lon") if h not in header]
    if missing:
        raise CentresError(f"{path}:1: the header needs columns {', '.join(missing)} (found {', '.join(header)}); "
                           f"start the file with:\n{CENTRES_EXAMPLE.splitlines()[0]}")
    zones: list[Zone] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        try:
            lat, lon = float(cells.get("lat", "")), float(cells.get("lon", ""))
        except ValueError as exc:
            raise CentresError(f"{path}:{number}: lat and lon must be decimal degrees, e.g. 13.8040,100.1870 "
                               f"(got lat {cells.get('lat')!r}, lon {cells.get('lon')!r})") from exc
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise CentresError(f"{path}:{number}: lat {lat} / lon {lon} is not on Earth; lat comes first, then lon")
        k = len(zones) + 1
        zone_id = cells.get("id") or f"moo-{k}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", zone_id):
            raise CentresError(f"{path}:{number}: zone id {zone_id!r} should be letters, digits, '-', '_' or '.'")
        if any(z.id == zone_id for z in zones):
            raise CentresError(f"{path}:{number}: zone id {zone_id!r} is used twice; give each zone its own id")
        zones.append(Zone(zone_id, cells.get("name_th") or f"หมู่ {k}", cells.get("name_en") or f"Moo {k}", lat, lon))
    if not zones:
        raise CentresError(f"{path} has a header but no zone; add one line per zone:\n{CENTRES_EXAMPLE}")
    return zones


def grid_zones(count: int, centre: tuple[float, float], spacing_km: float) -> list[Zone]:
    """``count`` zones on a grid of ``spacing_km`` around ``centre`` (lat, lon)."""
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    dlat = spacing_km / 111.2
    dlon = spacing_km / (111.2 * math.cos(math.radians(centre[0])))
    zones = []
    for k in range(count):
        r, c = divmod(k, columns)
        lat = centre[0] + (rows - 1 - 2 * r) * dlat / 2
        lon = centre[1] + (2 * c - (columns - 1)) * dlon / 2
        zones.append(Zone(f"moo-{k + 1}", f"หมู่ {k + 1}", f"Moo {k + 1}", round(lat, 5), round(lon, 5)))
    return zones


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; Thai stays readable)."""
    return json.dumps(text, ensure_ascii=False)


def site_toml(site_id: str, name_th: str, name_en: str, zones: list[Zone], prefix: str, map_name: str) -> str:
    """The text of a new site file: every zone, a level gauge per zone, one rain gauge, with comments."""
    rain_id = f"{prefix}-R01"
    out = [
        f"# {name_en} ({name_th}): floodwatch site file,",
        f"# written by `floodwatch site init` on {time.strftime('%Y-%m-%d')}.",
        "#",
        "# Everything floodwatch knows about this municipality: its zones (the villages residents pick",
        "# on LINE) and its gauges with their warning levels. Any value can be overridden by a",
        "# FLOODWATCH_* environment variable. Secrets (the LINE channel access token and secret) never",
        "# go here: put them in /etc/floodwatch/floodwatch.env (docs/operations.md).",
        "#",
        "# PLACEHOLDERS: each gauge sits at its zone's centre, with made-up mount heights and warning",
        "# levels. Before residents rely on them, replace every value marked PLACEHOLDER with the",
        "# survey's figures (metres above mean sea level, MSL), then set location_approximate and",
        "# datum_approximate to false. Check the file after every edit:",
        "#     floodwatch check",
        "",
        "[site]",
        f"id = {_q(site_id)}                 # in MQTT topics: floodwatch/{site_id}/<station>/telemetry",
        f"name_th = {_q(name_th)}",
        f"name_en = {_q(name_en)}",
        'timezone = "Asia/Bangkok"',
        "# The page's map: a polygon per zone and the river, GeoJSON beside this file. The zones were",
        "# drawn as the area nearer each centre than any other and the river is a straight placeholder:",
        "# redraw both along the real boundaries and banks (QGIS, or geojson.io), keeping each zone's",
        "# properties.id. floodwatch check validates the map.",
        f"map = {_q(map_name)}",
        "",
        "# Databases live in the data folder (FLOODWATCH_DATA_DIR, default /var/lib/floodwatch); the",
        "# broker, LINE and the page's address come from /etc/floodwatch/floodwatch.env.",
        "",
        "# ----------------------------------------------------------------------------- zones",
        "# Zones are the villages (หมู่) residents pick when they subscribe on LINE. Every zone needs",
        "# at least one gauge, or its residents would never be warned.",
    ]
    for z in zones:
        out += ["", "[[zones]]", f"id = {_q(z.id)}", f"name_th = {_q(z.name_th)}", f"name_en = {_q(z.name_en)}",
                f"centre_lat = {z.lat:.5f}", f"centre_lon = {z.lon:.5f}"]
    out += [
        "",
        "# ----------------------------------------------------------------------- water level",
        "# level_m (MSL) = mount_height_m - distance_m for ultrasonic and radar sensors. Warning levels",
        "# must rise: watch_m < warning_m < evacuate_m.",
    ]
    for k, z in enumerate(zones, start=1):
        out += [
            "",
            "[[stations]]",
            f'id = "{prefix}-W{k:02d}"',
            f"name_th = {_q('จุดวัดระดับน้ำ ' + z.name_th)}",
            f"name_en = {_q('Water level, ' + z.name_en)}",
            'kind = "water_level"',
            'sensor = "ultrasonic"          # ultrasonic, radar or pressure',
            f"zone = {_q(z.id)}",
            f"lat = {z.lat:.5f}                  # PLACEHOLDER: the zone's centre; put the gauge's own position",
            f"lon = {z.lon:.5f}",
            "location_approximate = true",
            "mount_height_m = 4.00           # PLACEHOLDER: the sensor face's height above MSL, from the survey",
            "datum_approximate = true",
            "min_level_m = -1.0              # what the sensor and the site can physically read, m MSL",
            "max_level_m = 3.8",
            f"rain_station = {_q(rain_id)}      # the rain gauge whose rain drives this gauge's forecast",
            "publish_interval_s = 600",
            "[stations.levels]               # PLACEHOLDER levels, m MSL: the survey's bank and street heights",
            "watch_m = 1.50",
            "warning_m = 1.80",
            "evacuate_m = 2.10",
        ]
    first = zones[0]
    out += [
        "",
        "# ------------------------------------------------------------------------------ rain",
        "",
        "[[stations]]",
        f"id = {_q(rain_id)}",
        f"name_th = {_q('มาตรวัดฝน ' + first.name_th)}",
        f"name_en = {_q('Rain gauge, ' + first.name_en)}",
        'kind = "rain"',
        'sensor = "tipping_bucket"',
        f"zone = {_q(first.id)}",
        f"lat = {first.lat:.5f}                  # PLACEHOLDER: the gauge's own position",
        f"lon = {first.lon:.5f}",
        "location_approximate = true",
        "mm_per_tip = 0.2                # from the gauge's data sheet",
        "publish_interval_s = 600",
        "",
    ]
    return "\n".join(out)


def _prefix_from(site_id: str) -> str:
    letters = re.sub(r"[^A-Za-z]", "", site_id).upper()
    return (letters[:2] or "FW").ljust(2, "X")


def run_init(args: argparse.Namespace) -> int:
    site_id = args.site_id
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", site_id):
        print(f"error: --id {site_id!r} should be lowercase letters, digits, '-' or '_' (e.g. nakhonchaisi)")
        return 2
    prefix = (args.station_prefix or _prefix_from(site_id)).upper()
    if not re.fullmatch(r"[A-Z0-9]+", prefix):
        print(f"error: --station-prefix {prefix!r} should be letters or digits (e.g. NC)")
        return 2
    try:
        if args.from_centres is not None:
            zones = read_centres(args.from_centres)
        else:
            if args.zones < 1 or args.centre is None:
                print("error: --zones needs a count of at least 1 and --centre LAT,LON (e.g. --centre 13.80,100.19)")
                return 2
            try:
                lat, lon = (float(v) for v in args.centre.split(","))
            except ValueError:
                print(f"error: --centre {args.centre!r} should be LAT,LON in decimal degrees, e.g. 13.80,100.19")
                return 2
            zones = grid_zones(args.zones, (lat, lon), args.spacing_km)
    except CentresError as exc:
        print(f"error: {exc}")
        return 1
    out: Path = args.out
    map_path = out.with_suffix(".geojson")
    existing = [str(p) for p in (out, map_path) if p.exists()]
    if existing and not args.force:
        print(f"error: {', '.join(existing)} already exist; choose another --out or add --force to replace them")
        return 1
    note = (f"SCHEMATIC, written by floodwatch site init for {args.name_en}: zone shapes are the areas nearest each "
            "zone centre, inside a box around them; the river is a straight placeholder. Redraw both along the "
            "municipality's real boundaries and river banks.")
    geojson = first_map([{"id": z.id, "name_th": z.name_th, "name_en": z.name_en, "centre_lat": z.lat,
                          "centre_lon": z.lon} for z in zones], note)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(site_toml(site_id, args.name_th, args.name_en, zones, prefix, map_path.name), encoding="utf-8")
        map_path.write_text(json.dumps(geojson, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {exc.filename}: {exc.strerror}; choose another --out, or run with sudo for /etc")
        return 1
    print(f"wrote {out}: {len(zones)} zones, {len(zones)} water-level gauges and a rain gauge (placeholders)")
    print(f"wrote {map_path}: a polygon per zone and a placeholder river")
    print("next: replace the PLACEHOLDER values with the survey's figures, redraw the map, then run")
    print(f"  FLOODWATCH_CONFIG={out} floodwatch check")
    return 0
