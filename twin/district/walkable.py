"""Walkable-area overrides: polygons that say how much of the ground people can stand on.

The CIM builder derives the ``walkable_area`` layer from buildings and water (`twin.district.cim`). It
knows nothing of railings, flood walls, fenced works or the temporary barriers of an event. An override
file fixes that for a place, and the live twin (`twin.live.models.LiveConfig.walkable_override`) and the
scenarios (``grid.walkable`` in a scenario file, `scenarios.forcing.prepare`) apply the same file to the
same layer, so a counter's count is divided by the same walkable area in both (docs/science/crowd.md 1.4).

File format: a GeoJSON FeatureCollection in CGCS2000 (= WGS84 here) lon/lat. Each feature is a Polygon or
MultiPolygon with the property ``walkable_fraction``, a number in [0, 1]: the share of the ground inside
the polygon people can stand on (0: a flood wall, a fenced site, nobody stands there; 1: all of it);
``name`` is optional. Example::

    {"type": "FeatureCollection", "features": [
      {"type": "Feature", "properties": {"name": "flood wall", "walkable_fraction": 0},
       "geometry": {"type": "Polygon", "coordinates": [[[121.4900, 31.2400], [121.4901, 31.2400],
                                                         [121.4901, 31.2410], [121.4900, 31.2410],
                                                         [121.4900, 31.2400]]]}}]}

How it is applied (`apply_walkable_overrides`): polygons in file order, a later one winning where they
overlap. Cell c of ground area A_c [m2] with walkable area a_c [m2] and share s_ic [1] of its ground inside
polygon i (with the parts under later polygons removed, so the shares do not overlap) gets

    a_c' = a_c * (1 - sum_i s_ic) + A_c * sum_i f_i * s_ic        [m2]

with f_i the polygon's ``walkable_fraction``: the ground outside the polygons keeps its share of the old
walkable area (taken as spread evenly over the cell, the layer's resolution), the ground inside takes the
polygon's fraction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import xarray as xr
from shapely.geometry import shape

from twin.district.coverage import overlap_areas
from twin.district.dataset import grid_of
from twin.district.geo import to_projected
from twin.district.grid import GridSpec

WALKABLE_FRACTION = "walkable_fraction"
"""The feature property holding the walkable share of the ground inside the polygon. [1]"""


class WalkableOverrideError(ValueError):
    """The override file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str], source: str = "walkable override") -> None:
        super().__init__(f"{source}: {len(problems)} problem(s): " + "; ".join(problems[:20]))
        self.problems = problems


@dataclass(frozen=True)
class WalkableOverride:
    """One polygon of an override file: lon/lat geometry and the walkable share of its ground [1]."""

    geometry: shapely.Geometry
    fraction: float
    name: str = ""


def _override(i: int, feature: Any, problems: list[str]) -> WalkableOverride | None:
    where = f"feature {i}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.append(f"{where}: not a GeoJSON Feature")
        return None
    props = feature.get("properties") or {}
    where = f"{where} ({props['name']})" if props.get("name") else where
    fraction = props.get(WALKABLE_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
        problems.append(f"{where}: {WALKABLE_FRACTION} must be a number in [0, 1] (got {fraction!r})")
        return None
    geom = polygon_of(where, feature, problems)
    if geom is None:
        return None
    return WalkableOverride(geom, float(fraction), str(props.get("name", "")))


def polygon_of(where: str, feature: dict, problems: list[str]) -> shapely.Geometry | None:
    """The lon/lat Polygon or MultiPolygon of a GeoJSON feature, made valid; None (and a line in ``problems`` naming
    ``where``) for another type, a broken geometry, coordinates that are not degrees, or no area."""
    geometry = feature.get("geometry") or {}
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        problems.append(f"{where}: geometry must be a Polygon or MultiPolygon (got {kind!r})")
        return None
    try:
        geom = shapely.make_valid(shape(geometry))
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException) as exc:
        problems.append(f"{where}: bad geometry: {exc}")
        return None
    lon, lat = shapely.get_coordinates(geom).T
    if lon.size == 0 or not ((np.abs(lon) <= 180).all() and (np.abs(lat) <= 90).all()):
        problems.append(f"{where}: coordinates must be lon/lat in degrees")
        return None
    if not geom.area > 0:
        problems.append(f"{where}: the polygon has no area")
        return None
    return geom


def walkable_overrides_from_geojson(doc: Any, source: str = "walkable override") -> list[WalkableOverride]:
    """The overrides of a parsed GeoJSON FeatureCollection, in file order; raises `WalkableOverrideError`."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise WalkableOverrideError(["not a GeoJSON FeatureCollection"], source)
    problems: list[str] = []
    out = [_override(i, f, problems) for i, f in enumerate(doc.get("features") or [])]
    if problems:
        raise WalkableOverrideError(problems, source)
    return [o for o in out if o is not None]


def read_geojson(path: str | os.PathLike, error: Callable[[list[str], str], Exception]) -> Any:
    """The parsed JSON of a polygon file; a file that is not JSON raises ``error([problem], path)``, an unreadable
    one ``OSError``."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as exc:
            raise error([f"invalid JSON: {exc}"], str(path)) from exc


def load_walkable_overrides(path: str | os.PathLike) -> list[WalkableOverride]:
    """Read and check an override file; raises `WalkableOverrideError` or ``OSError``."""
    return walkable_overrides_from_geojson(read_geojson(path, WalkableOverrideError), str(path))


def projected_polygons(grid: GridSpec, overrides: list) -> np.ndarray:
    """The lon/lat ``geometry`` of each item (an override, a banded place) in the grid's projected CRS [m]."""

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_projected(xy[:, 0], xy[:, 1], grid.crs))

    return np.array([shapely.transform(o.geometry, project) for o in overrides], dtype=object)


def exclusive_shares(grid: GridSpec, overrides: list[WalkableOverride]) -> np.ndarray:
    """Share of each cell's ground inside each override polygon, minus what later polygons cover.

    Returns an array of shape (n_overrides, ny * nx) [1]; the shares of one cell sum to at most 1.
    """
    polys = projected_polygons(grid, overrides)
    later = shapely.Polygon()
    exclusive = np.empty(polys.size, dtype=object)
    for i in range(polys.size - 1, -1, -1):
        exclusive[i] = shapely.difference(polys[i], later)
        later = shapely.union(later, polys[i])
    shares = np.zeros((polys.size, grid.size))
    if polys.size:
        feature, cell, area = overlap_areas(grid, exclusive)
        np.add.at(shares, (feature, cell), area / grid.cell_area)
    return shares


def overridden_walkable_area(grid: GridSpec, walkable: np.ndarray, overrides: list[WalkableOverride]) -> np.ndarray:
    """The walkable area with the overrides applied (module docstring formula), same shape. [m2]"""
    if not overrides:
        return np.asarray(walkable, dtype=float).copy()
    shares = exclusive_shares(grid, overrides)
    fraction = np.array([o.fraction for o in overrides])
    inside = np.clip(shares.sum(axis=0), 0.0, 1.0).reshape(grid.shape)
    set_area = (fraction @ shares).reshape(grid.shape) * grid.cell_area
    out = np.asarray(walkable, dtype=float) * (1.0 - inside) + set_area
    return np.clip(out, 0.0, grid.cell_area)


def apply_walkable_overrides(static: xr.Dataset, overrides: list[WalkableOverride], label: str = "") -> xr.Dataset:
    """A copy of the twin whose ``walkable_area`` has the overrides applied; ``static`` is not modified.

    ``label`` (e.g. the file name) is noted in the layer's ``comment``.
    """
    out = static.copy()
    if not overrides:
        return out
    var = static["walkable_area"]
    values = overridden_walkable_area(grid_of(static), var.values, overrides)
    note = f"walkable override: {len(overrides)} polygon(s){' from ' + label if label else ''}"
    comment = "; ".join([var.attrs.get("comment", ""), note]).lstrip("; ")
    out["walkable_area"] = var.copy(data=values.astype(var.dtype)).assign_attrs(comment=comment)
    return out


def with_walkable_file(static: xr.Dataset, path: str | os.PathLike | None) -> xr.Dataset:
    """The twin with the override file at ``path`` applied (`apply_walkable_overrides`); ``static`` itself
    when ``path`` is None."""
    if path is None:
        return static
    return apply_walkable_overrides(static, load_walkable_overrides(path), Path(path).name)
