"""CityJSON buildings (1.0 to 2.0): footprints and heights from LoD1/LoD2 geometry.

A building's footprint is the union of the horizontal projections of its surfaces
(vertical walls project to nothing); its height is ``measuredHeight`` when the file
gives it, otherwise the span of its vertices' z. ``BuildingPart`` objects keep their
parent as ``root_id`` so `twin.district.bim` counts their floor area once.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

BUILDING_TYPES = ("Building", "BuildingPart")
MIN_RING_AREA_M2 = 1e-6


class CityJSONError(ValueError):
    """The file is not CityJSON or holds no usable buildings."""


def _crs(doc: dict, crs: str | None) -> str:
    if crs:
        return crs
    ref = (doc.get("metadata") or {}).get("referenceSystem") or ""
    if "EPSG" in ref:
        return "EPSG:" + ref.rstrip("/").split("/")[-1].split(":")[-1]
    raise CityJSONError("the CityJSON file names no referenceSystem: give its CRS")


def _vertices(doc: dict) -> np.ndarray:
    v = np.asarray(doc.get("vertices", []), dtype=float).reshape(-1, 3)
    t = doc.get("transform")
    if t:
        v = v * np.asarray(t["scale"]) + np.asarray(t["translate"])
    return v


def _surfaces(boundaries, geom_type: str):
    """Yield each surface (a list of rings of vertex indices) of a geometry."""
    if geom_type in ("MultiSurface", "CompositeSurface"):
        yield from boundaries
    elif geom_type == "Solid":
        for shell in boundaries:
            yield from shell
    elif geom_type in ("MultiSolid", "CompositeSolid"):
        for solid in boundaries:
            for shell in solid:
                yield from shell


def _footprint(obj: dict, v: np.ndarray) -> tuple[shapely.Geometry | None, np.ndarray]:
    polys, used = [], []
    geoms = obj.get("geometry") or []
    best = max((float(g.get("lod", 0)) for g in geoms), default=None)
    for g in geoms:
        if float(g.get("lod", 0)) != best:
            continue
        for surface in _surfaces(g.get("boundaries", []), g.get("type", "")):
            rings = [v[np.asarray(r, dtype=int), :2] for r in surface if len(r) >= 3]
            if not rings:
                continue
            used.extend(np.asarray(r, dtype=int) for r in surface)
            poly = shapely.make_valid(shapely.Polygon(rings[0], rings[1:]))
            if poly.area > MIN_RING_AREA_M2:
                polys.append(poly)
    idx = np.concatenate(used) if used else np.zeros(0, dtype=int)
    return (shapely.union_all(polys) if polys else None), idx


def _absolute_heights(rows: list[dict]) -> None:
    """Heights above the building's ground: the lowest vertex of the building and all its parts.

    A part on a podium then starts at its ``min_height`` instead of counting from its own base.
    ``measuredHeight`` is used for a building without parts.
    """
    ground: dict[object, float] = {}
    for r in rows:
        group = r["root_id"] if r["kind"] == "building_part" else r["id"]
        ground[group] = min(ground.get(group, np.inf), r["zmin"])
    for r in rows:
        base = ground[r["root_id"] if r["kind"] == "building_part" else r["id"]]
        measured = r.pop("measured")
        r["ground_z"] = base
        r["min_height"] = r.pop("zmin") - base
        r["height"] = r.pop("zmax") - base
        if r["kind"] == "building" and isinstance(measured, int | float) and r["min_height"] == 0:
            r["height"] = float(measured)


def read_cityjson(path: str | Path, crs: str | None = None) -> gpd.GeoDataFrame:
    """Buildings of a CityJSON file as footprints with heights, in the file's CRS.

    Returns columns ``id`` (int, in file order), ``name`` (the CityJSON object id),
    ``kind`` (building / building_part), ``root_id``, ``height`` and ``min_height`` [m] above the
    building's ground (its lowest vertex, parts included), and ``ground_z`` [m].
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CityJSONError(f"cannot read {path}: {exc}") from None
    if doc.get("type") != "CityJSON":
        raise CityJSONError(f"{path} is not a CityJSON file")
    v = _vertices(doc)
    objects = {k: o for k, o in doc.get("CityObjects", {}).items() if o.get("type") in BUILDING_TYPES}
    index = {k: i for i, k in enumerate(objects)}
    rows, geoms = [], []
    for key, obj in objects.items():
        footprint, idx = _footprint(obj, v)
        if footprint is None or footprint.is_empty:
            continue
        z = v[idx, 2]
        parents = obj.get("parents") or []
        part = obj["type"] == "BuildingPart" and bool(parents) and parents[0] in index
        rows.append({"id": index[key], "name": key, "kind": "building_part" if part else "building",
                     "root_id": index[parents[0]] if part else np.nan, "zmin": float(z.min()),
                     "zmax": float(z.max()), "measured": (obj.get("attributes") or {}).get("measuredHeight")})
        geoms.append(footprint)
    if not rows:
        raise CityJSONError(f"{path} holds no Building or BuildingPart with geometry")
    _absolute_heights(rows)
    return gpd.GeoDataFrame(rows, geometry=geoms, crs=_crs(doc, crs))
