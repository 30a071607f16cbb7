"""A site's map: zone polygons and the river line in GeoJSON, drawn first, then checked.

The page draws each site's own map (``[site] map = "site.geojson"``, beside
the site file): one Polygon feature per zone (``properties.kind = "zone"``,
``properties.id`` = the zone's id), at least one river line
(``properties.kind = "river"``, a LineString), optionally canals and roads.
Coordinates are ``[longitude, latitude]`` as GeoJSON (RFC 7946) wants.

:func:`map_problems` says what is wrong with one (each sentence names the
feature and the fix); :func:`zone_polygons` and :func:`river_placeholder`
draw a first map from the zones' centres for ``floodwatch site init``.
Pure functions over plain data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# A zone polygon or river further than this from every station and zone centre is not this site's
# (a typo in a coordinate, or [lat, lon] swapped).
MAX_DISTANCE_KM = 25.0
ZONE_KINDS = ("Polygon", "MultiPolygon")
LINE_KINDS = ("LineString", "MultiLineString")


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance in km between two (lon, lat) points (equirectangular: fine at a town's scale)."""
    mean_lat = math.radians((a[1] + b[1]) / 2)
    dx = math.radians(b[0] - a[0]) * math.cos(mean_lat)
    dy = math.radians(b[1] - a[1])
    return 6371.0 * math.hypot(dx, dy)


def _positions(geometry: dict[str, Any]) -> list[Any]:
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Point":
        return [coords]
    if kind in ("LineString",):
        return list(coords or [])
    if kind in ("Polygon", "MultiLineString"):
        return [p for ring in coords or [] for p in ring]
    if kind == "MultiPolygon":
        return [p for poly in coords or [] for ring in poly for p in ring]
    return []


def _rings(geometry: dict[str, Any]) -> list[Any]:
    if geometry.get("type") == "Polygon":
        return list(geometry.get("coordinates") or [])
    if geometry.get("type") == "MultiPolygon":
        return [ring for poly in geometry.get("coordinates") or [] for ring in poly]
    return []


def map_problems(geojson: Any, zone_ids: Sequence[str], anchors: Sequence[tuple[float, float]]) -> list[str]:
    """What is wrong with a site map, one sentence each (empty when the page can draw it).

    ``zone_ids``: the zones of the site file; ``anchors``: (lon, lat) of its
    stations and zone centres, which the map's shapes must lie near.
    """
    if not isinstance(geojson, dict) or geojson.get("type") != "FeatureCollection":
        return ['it is not a GeoJSON FeatureCollection ({"type": "FeatureCollection", "features": [...]})']
    features = geojson.get("features")
    if not isinstance(features, list):
        return ['its "features" is not a list of features']
    problems: list[str] = []
    zones_drawn: dict[str, int] = {}
    rivers = 0
    for index, feature in enumerate(features):
        props = feature.get("properties") if isinstance(feature, dict) else None
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(props, dict) or not isinstance(geometry, dict):
            problems.append(f"feature {index} needs \"properties\" and \"geometry\" objects")
            continue
        kind = props.get("kind")
        name = f"feature {index} ({kind} {props.get('id') or props.get('name_en') or ''})".replace(" )", ")")
        positions = _positions(geometry)
        bad = [p for p in positions if not (isinstance(p, list | tuple) and len(p) >= 2
                                             and all(isinstance(v, int | float) for v in p[:2]))]
        if bad or not positions:
            problems.append(f"{name}: its coordinates are not a list of [longitude, latitude] numbers")
            continue
        swapped_fits = bool(anchors) and max(min(_km((p[1], p[0]), a) for a in anchors) for p in positions) \
            <= MAX_DISTANCE_KM
        swap_hint = "the coordinates look like [latitude, longitude]: GeoJSON wants [longitude, latitude]"
        if any(not (-180 <= p[0] <= 180 and -90 <= p[1] <= 90) for p in positions):
            problems.append(f"{name}: a coordinate is outside longitude -180..180 / latitude -90..90; "
                            + (swap_hint if swapped_fits else "check the coordinates"))
            continue
        if anchors:
            far = max(min(_km((p[0], p[1]), a) for a in anchors) for p in positions)
            if far > MAX_DISTANCE_KM:
                problems.append(f"{name}: a point lies {far:.0f} km from every station and zone centre; "
                                + (swap_hint if swapped_fits else "check the coordinates"))
                continue
        if kind == "zone":
            zone_id = props.get("id")
            if geometry.get("type") not in ZONE_KINDS:
                problems.append(f"{name}: a zone must be a Polygon or MultiPolygon, not {geometry.get('type')}")
                continue
            for ring in _rings(geometry):
                if len(ring) < 4 or list(ring[0][:2]) != list(ring[-1][:2]):
                    problems.append(f"{name}: each polygon ring needs at least 4 positions and must end where it "
                                    "starts (repeat the first point last)")
                    break
            if zone_id not in zone_ids:
                problems.append(f"{name}: there is no zone {zone_id!r} in the site file; fix properties.id or add "
                                "the zone under [[zones]]")
            elif zone_id in zones_drawn:
                problems.append(f"{name}: zone {zone_id!r} is drawn twice (also feature {zones_drawn[zone_id]}); "
                                "join the shapes into one MultiPolygon")
            else:
                zones_drawn[zone_id] = index
        elif kind in ("river", "canal", "road"):
            if geometry.get("type") not in LINE_KINDS:
                problems.append(f"{name}: a {kind} must be a LineString or MultiLineString")
                continue
            rivers += kind == "river"
        else:
            problems.append(f"{name}: properties.kind should be \"zone\", \"river\", \"canal\" or \"road\"")
    for zone_id in zone_ids:
        if zone_id not in zones_drawn:
            problems.append(f"zone {zone_id!r} has no polygon; add a feature with properties "
                            f"{{\"kind\": \"zone\", \"id\": \"{zone_id}\"}} and a Polygon geometry")
    if rivers == 0:
        problems.append('there is no river line; add a LineString feature with properties {"kind": "river"}')
    return problems


def read_map(path: Path) -> tuple[Any, str | None]:
    """(the parsed GeoJSON, None), or (None, why it cannot be read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, "the file does not exist; write it (floodwatch site init draws a first one) or fix [site] map"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read: {exc}"


# ------------------------------------------------------------------ drawing a first map
def _clip(polygon: list[tuple[float, float]], a: float, b: float, c: float) -> list[tuple[float, float]]:
    """The part of a convex polygon where a*x + b*y <= c (Sutherland-Hodgman against one half-plane)."""
    out: list[tuple[float, float]] = []
    for i, p in enumerate(polygon):
        q = polygon[(i + 1) % len(polygon)]
        p_in, q_in = a * p[0] + b * p[1] <= c, a * q[0] + b * q[1] <= c
        if p_in:
            out.append(p)
        if p_in != q_in:
            t = (c - a * p[0] - b * p[1]) / (a * (q[0] - p[0]) + b * (q[1] - p[1]))
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def bounding_box(centres: Sequence[tuple[float, float]], margin_km: float) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) around the centres, ``margin_km`` wider on every side."""
    lat0 = sum(c[1] for c in centres) / len(centres)
    dlat = margin_km / 111.2
    dlon = margin_km / (111.2 * math.cos(math.radians(lat0)))
    return (min(c[0] for c in centres) - dlon, min(c[1] for c in centres) - dlat,
            max(c[0] for c in centres) + dlon, max(c[1] for c in centres) + dlat)


def zone_polygons(centres: Sequence[tuple[float, float]], margin_km: float = 0.6) -> list[list[list[float]]]:
    """One closed ring per centre: the points nearer that centre than any other, inside a box around them all.

    ``centres``: (lon, lat) of each zone's centre. Returns GeoJSON rings
    ([[lon, lat], ...], first point repeated last), a Voronoi partition that
    a municipality then redraws along its real boundaries.
    """
    if not centres:
        return []
    lat0 = math.radians(sum(c[1] for c in centres) / len(centres))
    kx = math.cos(lat0)  # work in a local plane where one unit east is as long as one unit north
    pts = [(c[0] * kx, c[1]) for c in centres]
    lon_min, lat_min, lon_max, lat_max = bounding_box(centres, margin_km)
    box = [(lon_min * kx, lat_min), (lon_max * kx, lat_min), (lon_max * kx, lat_max), (lon_min * kx, lat_max)]
    rings = []
    for i, p in enumerate(pts):
        cell = list(box)
        for j, q in enumerate(pts):
            if i == j or p == q:
                continue
            # nearer p than q: (q - p) . x <= (|q|^2 - |p|^2) / 2
            a, b = q[0] - p[0], q[1] - p[1]
            cell = _clip(cell, a, b, (q[0] ** 2 + q[1] ** 2 - p[0] ** 2 - p[1] ** 2) / 2)
            if not cell:
                break
        ring = [[round(x / kx, 6), round(y, 6)] for x, y in cell]
        rings.append(ring + [ring[0]] if ring else [])
    return rings


def river_placeholder(centres: Sequence[tuple[float, float]], margin_km: float = 0.6) -> list[list[float]]:
    """A straight line across the zones' box along its longer side: a river to be traced properly later."""
    lon_min, lat_min, lon_max, lat_max = bounding_box(centres, margin_km)
    mid_lon, mid_lat = (lon_min + lon_max) / 2, (lat_min + lat_max) / 2
    wide = (lon_max - lon_min) * math.cos(math.radians(mid_lat)) >= (lat_max - lat_min)
    if wide:
        return [[round(lon_min, 6), round(mid_lat, 6)], [round(lon_max, 6), round(mid_lat, 6)]]
    return [[round(mid_lon, 6), round(lat_min, 6)], [round(mid_lon, 6), round(lat_max, 6)]]


def first_map(zones: Sequence[dict[str, Any]], note: str, margin_km: float = 0.6) -> dict[str, Any]:
    """A FeatureCollection with a polygon per zone (``id``, ``name_th``, ``name_en``, ``centre_lon/lat``)
    and a placeholder river."""
    centres = [(float(z["centre_lon"]), float(z["centre_lat"])) for z in zones]
    features: list[dict[str, Any]] = []
    for zone, ring in zip(zones, zone_polygons(centres, margin_km), strict=True):
        features.append({"type": "Feature",
                         "properties": {"kind": "zone", "id": zone["id"], "name_th": zone["name_th"],
                                        "name_en": zone["name_en"]},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    features.append({"type": "Feature",
                     "properties": {"kind": "river", "name_th": "แม่น้ำ (วาดใหม่ตามจริง)",
                                    "name_en": "river (placeholder: trace the real one)"},
                     "geometry": {"type": "LineString", "coordinates": river_placeholder(centres, margin_km)}})
    return {"type": "FeatureCollection", "properties": {"note": note}, "features": features}
