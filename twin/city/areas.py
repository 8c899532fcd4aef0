"""The ground a district twin covers: its district's boundary cut to the extent of its source.

- ``osm:<folder>``: the extent of the bundled folder's buildings (the box `twin.district.build.buildings_bbox`
  gives the folder's own twin), or a ``bbox`` inside it;
- ``synthetic``: a square of ``size_m`` metres around ``centre`` (square in the grid CRS, EPSG:4549), or a
  ``bbox``.

All polygons here are in lon/lat (WGS84 = CGCS2000 at this scale).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely

from twin.city.boundaries import lonlat, projected
from twin.district.grid import DEFAULT_CRS


@lru_cache(maxsize=8)
def _folder_extent(path: str, mtime_ns: int) -> tuple[float, float, float, float]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    xy = np.concatenate([np.asarray(shapely.get_coordinates(shapely.from_geojson(json.dumps(feat["geometry"]))))
                         for feat in doc.get("features", []) if feat.get("geometry")] or [np.zeros((0, 2))])
    if not len(xy):
        raise ValueError(f"{path} holds no geometry")
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


def folder_extent(folder: Path) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a district folder's ``buildings.geojson`` [degree]: the box of its own twin
    (`twin.district.build.buildings_bbox`)."""
    path = Path(folder) / "buildings.geojson"
    return _folder_extent(str(path), path.stat().st_mtime_ns)


def bbox_polygon(bbox: tuple[float, float, float, float]) -> shapely.Polygon:
    """A lon/lat box (west, south, east, north) [degree] as a polygon."""
    return shapely.box(*bbox)


def square(centre: tuple[float, float], size_m: tuple[float, float], crs: str = DEFAULT_CRS) -> shapely.Polygon:
    """A ``size_m`` = (width, height) [m] rectangle of the projected CRS around ``centre`` (lon, lat), in lon/lat;
    its edges are densified every 100 m so the lon/lat outline follows the projected square."""
    x, y = projected(shapely.Point(centre), crs).coords[0]
    w, h = size_m
    box = shapely.segmentize(shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2), 100.0)
    return lonlat(box, crs)


def cut(boundary: shapely.Geometry, extent: shapely.Geometry) -> shapely.Geometry:
    """The part of a district inside an extent (both lon/lat), made valid; polygonal parts only."""
    part = shapely.make_valid(shapely.intersection(boundary, extent))
    polygons = [g for g in shapely.get_parts(part) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(polygons) if polygons else shapely.Polygon()
