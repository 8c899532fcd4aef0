"""The city page's map: the districts' boundaries and the ground each district twin covers, as one small GeoJSON.

`city_map` reads a `twin.city.city.City` (its manifest's boundaries and its district twins' areas; nothing needs to
be built) and gives a FeatureCollection in lon/lat (WGS84 = CGCS2000), served by the city API as
``GET /api/city/map`` (`twin.city.http`):

- one ``district`` Feature per district of the manifest: its whole boundary, simplified to about
  `BOUNDARY_TOLERANCE_DEG`, with ``code``, ``name``, ``name_en``, ``partitions`` (its twins: one, or its tiles) and
  ``label`` ([lon, lat], a point inside it where the page writes its name);
- one ``twin`` Feature per partition: the ground its twin covers (the district cut to its source's extent,
  `twin.city.manifest.DistrictSpec.area`), simplified to about `AREA_TOLERANCE_DEG`, with ``partition``, ``code``
  and ``label`` (a point inside it: the page fits its view to the twins' ground and writes each district's name
  on its first twin's).

Coordinates are rounded to `DIGITS` decimals (about 1 m): the map of Shanghai's 16 districts is about 200 kB (26 kB for
the four-district Bund city), read once by the page.
"""

from __future__ import annotations

import shapely
from shapely.geometry import mapping

BOUNDARY_TOLERANCE_DEG = 0.0001
"""Simplification of a district's boundary for the page [degree] (about 10 m: the page, fitted to the twins' ground, may
draw a district border at a few metres a pixel)."""
AREA_TOLERANCE_DEG = 0.00005
"""Simplification of a twin's ground [degree] (about 5 m, half a cell of a 10 m grid)."""
DIGITS = 5
"""Decimals of the coordinates [degree] (1e-5 degree is about 1 m)."""


def _geometry(geometry: shapely.Geometry, tolerance_deg: float) -> dict | None:
    """A lon/lat geometry simplified (topology kept) and rounded, as GeoJSON; None when empty."""
    if geometry is None or geometry.is_empty:
        return None
    simple = shapely.simplify(geometry, tolerance_deg, preserve_topology=True)
    rounded = shapely.set_precision(simple, 10.0 ** -DIGITS)
    return mapping(rounded if not rounded.is_empty else simple)


def _label(geometry: shapely.Geometry) -> list[float]:
    point = geometry.representative_point()
    return [round(point.x, DIGITS), round(point.y, DIGITS)]


def city_map(city) -> dict:
    """The map of a `twin.city.city.City` (module docstring)."""
    specs = list(city.manifest.districts)
    boundaries = city.boundaries
    features = []
    for code in dict.fromkeys(s.code for s in specs):
        parts = [s for s in specs if s.code == code]
        boundary = boundaries[code].geometry
        features.append({"type": "Feature", "id": f"district:{code}", "geometry": _geometry(boundary,
                                                                                            BOUNDARY_TOLERANCE_DEG),
                         "properties": {"kind": "district", "code": code, "name": parts[0].name,
                                        "name_en": parts[0].name_en, "partitions": [s.partition for s in parts],
                                        "label": _label(boundary)}})
    areas = city.areas
    for spec in specs:
        features.append({"type": "Feature", "id": f"twin:{spec.partition}",
                         "geometry": _geometry(areas[spec.partition], AREA_TOLERANCE_DEG),
                         "properties": {"kind": "twin", "partition": spec.partition, "code": spec.code,
                                        "label": None if areas[spec.partition].is_empty
                                        else _label(areas[spec.partition])}})
    return {"type": "FeatureCollection", "features": features}


__all__ = ["AREA_TOLERANCE_DEG", "BOUNDARY_TOLERANCE_DEG", "DIGITS", "city_map"]
