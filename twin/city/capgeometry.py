"""CAP areas to projected shapes and back, for merging alerts across district borders (docs/guides/city-tier.md).

The city merger compares alert areas in metres, in the grid's projected CRS (EPSG:4549, CGCS2000 / 3-degree
Gauss-Kruger CM 120E, by default):

- `cap_area` reads an info block's areas (OASIS CAP 1.2, section 3.2.4): each ``polygon`` is
  ``lat,lon`` pairs in WGS84 (= CGCS2000 at this scale), at least 4, and each ``circle`` a ``lat,lon`` centre and a
  radius in km (taken as at least 0.5 m, so that a point still has an area);
- `cap_outline` writes a projected area back as CAP polygons: one ring per connected part, holes left out (as the
  district profile does), simplified by `SIMPLIFY_M`.
"""

from __future__ import annotations

import math

import shapely

from twin.alerting import cap
from twin.city.boundaries import lonlat, projected
from twin.district.grid import DEFAULT_CRS

SIMPLIFY_M = 0.5
"""Tolerance of the union outline's simplification, below the 1 m of a 5-decimal CAP point. [m]"""


def _polygon(text: str) -> shapely.Geometry:
    pairs = [tuple(float(v) for v in p.split(",")) for p in str(text).split()]
    if len(pairs) < 4 or any(len(p) != 2 for p in pairs):
        raise ValueError("a polygon needs at least 4 lat,lon pairs")
    lonlat_xy = [(lon, lat) for lat, lon in pairs]
    if not all(math.isfinite(v) for xy in lonlat_xy for v in xy) or not all(
            -180 <= x <= 180 and -90 <= y <= 90 for x, y in lonlat_xy):
        raise ValueError("a point is not a WGS84 lat,lon pair")
    return shapely.make_valid(shapely.Polygon(lonlat_xy))


def _circle(text: str, crs: str) -> shapely.Geometry:
    centre, radius = str(text).split()
    lat, lon = (float(v) for v in centre.split(","))
    radius_m = float(radius) * 1000.0  # CAP circle radius [km]
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 <= radius_m < 1e6):
        raise ValueError("not a WGS84 lat,lon centre and a radius in km")
    return projected(shapely.Point(lon, lat), crs).buffer(max(radius_m, 0.5))


def cap_area(info: dict, crs: str = DEFAULT_CRS) -> shapely.Geometry:
    """The union of an info block's CAP polygons and circles, in ``crs`` [m]; ValueError for a bad one."""
    parts = []
    for area in info.get("area") or []:
        if not isinstance(area, dict):
            raise ValueError("an area is not an object")
        lonlat_parts = [_polygon(p) for p in area.get("polygon") or []]
        if lonlat_parts:
            parts.append(projected(shapely.union_all(lonlat_parts), crs))
        parts += [_circle(c, crs) for c in area.get("circle") or []]
    if not parts:
        return shapely.Polygon()
    return shapely.make_valid(shapely.union_all(parts))


def _polygons(geometry: shapely.Geometry) -> list[shapely.Polygon]:
    """The polygons of a (multi)polygon or collection, nested parts included."""
    if geometry.geom_type == "Polygon":
        return [] if geometry.is_empty else [geometry]
    if geometry.geom_type in ("MultiPolygon", "GeometryCollection"):
        return [p for part in shapely.get_parts(geometry) for p in _polygons(part)]
    return []


def cap_outline(area: shapely.Geometry, crs: str) -> list[str]:
    """CAP polygons (one per part, holes left out, as the district profile does) of a projected area [m]."""
    out = []
    for polygon in _polygons(shapely.simplify(area, SIMPLIFY_M, preserve_topology=True)):
        text = cap.polygon_text(list(lonlat(polygon.exterior, crs).coords))
        if len(text.split()) >= 4:
            out.append(text)
    return out
