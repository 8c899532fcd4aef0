"""``GET /api/buildings/{id}``: one building's BIM record and the live risk in its cells.

The record is the twin's building table (`twin.district.bim.Buildings`: name, use, height, storeys, gross floor
area and the occupancy estimate of the International Building Code's occupant-load factors, see that module), with
the Chinese and English names of the district's source ``buildings.geojson`` where it has them. The ids are those of
``/api/basemap/buildings``. The risk is the worst level of the last tick's level layers over the cells the
footprint covers (any part of a cell) and the cells around it within `RISK_RING_M`, with the highest crowd density
and the deepest water there: crowds and standing water are on the pavement and the street in front of a building,
not under its roof.
"""

from __future__ import annotations

import functools
import json

import numpy as np
from fastapi import APIRouter

from twin.api.errors import ApiError
from twin.api.labels import district_folder
from twin.api.schemas import BuildingRecord
from twin.api.state import ApiState
from twin.api.view import TwinView
from twin.district import geo
from twin.district.grid import GridSpec

RISK_RING_M = 30.0
"""The risk of a building is read over its cells and those whose centres lie within this of one of them. [m]
[design: the pavement and the street in front; the Bund's buildings stand 30-40 m from the river promenade across
中山东一路]"""


def ring_cells(grid: GridSpec, rows: np.ndarray, cols: np.ndarray, ring_m: float = RISK_RING_M
               ) -> tuple[np.ndarray, np.ndarray]:
    """The cells (rows, cols) plus every cell whose centre is within ``ring_m`` of one of theirs."""
    if rows.size == 0:
        return rows, cols
    k = int(ring_m // grid.cell_size)
    dr, dc = np.mgrid[-k:k + 1, -k:k + 1]
    near = (dr * dr + dc * dc) * grid.cell_size ** 2 <= ring_m ** 2 + 1e-9
    r = (rows[:, None] + dr[near][None, :]).ravel()
    c = (cols[:, None] + dc[near][None, :]).ravel()
    inside = (r >= 0) & (r < grid.ny) & (c >= 0) & (c < grid.nx)
    flat = np.unique(r[inside] * grid.nx + c[inside])
    return np.divmod(flat, grid.nx)


def source_names(static) -> dict[str, tuple[str | None, str | None]]:
    """Building id -> (name, English name) from the district folder's ``buildings.geojson`` (empty without it)."""
    folder = district_folder(static)
    path = folder / "buildings.geojson" if folder is not None else None
    if path is None or not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        features = json.load(f).get("features", [])
    out: dict[str, tuple[str | None, str | None]] = {}
    for feature in features:
        props = feature.get("properties") or {}
        zh, en = props.get("name") or props.get("name:zh"), props.get("name:en")
        if props.get("id") is not None and (zh or en):
            key = str(props["id"])
            old = out.get(key, (None, None))
            out[key] = (old[0] or zh or None, old[1] or en or None)
    return out


def _number(value, digits: int = 1) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return round(v, digits) if np.isfinite(v) else None


def _worst(values: np.ndarray | None) -> int:
    """The highest level of some cells, -1 if none has data (or the layer is missing)."""
    if values is None or values.size == 0:
        return -1
    v = np.nan_to_num(values.astype(float), nan=-1.0)
    return int(v.max()) if v.max() >= 0 else -1


def _max(values: np.ndarray | None, digits: int) -> float | None:
    if values is None:
        return None
    v = values.astype(float)
    v = v[np.isfinite(v)]
    return round(float(v.max()), digits) if v.size else None


def building_risk(view: TwinView, rows: np.ndarray, cols: np.ndarray) -> tuple[dict, float | None]:
    """The risk of the cells (rows, cols) from the last tick's live layers, and that tick's time (the cells as
    given: `ring_cells` widens a footprint's)."""
    live, t = view.live_layers()

    def take(name: str) -> np.ndarray | None:
        if name not in live.data_vars or live[name].dims != ("y", "x"):
            return None
        return np.asarray(live[name].values)[rows, cols]

    risk = {"level": _worst(take("level")),
            "crowd": {"level": _worst(take("level_crowd")), "density_max": _max(take("crowd_density"), 3)},
            "flood": {"level": _worst(take("level_flood")), "depth_max_m": _max(take("water_depth"), 3)},
            "traffic": {"level": _worst(take("level_traffic"))}, "ring_m": RISK_RING_M}
    return risk, t


def building_routes(state: ApiState) -> APIRouter:
    """The router of the building records."""
    view = state.view
    r = APIRouter(prefix="/api/buildings", tags=["base map"])
    names = functools.cache(lambda: source_names(view.static))

    @functools.cache
    def index() -> dict[str, int]:
        buildings = view.buildings()
        if buildings is None:
            return {}
        return {str(v): k for k, v in enumerate(buildings.table["id"].to_numpy())}

    @r.get("/{identifier}", response_model=BuildingRecord,
           responses={404: {"description": "unknown_building: no building with that id"}})
    def building(identifier: str) -> dict:
        """A building's record (ids of ``/api/basemap/buildings``): name and English name, use, floors, height
        [m], gross floor area [m2], occupancy estimate [person], the cells its footprint covers, its centroid
        (lon, lat) and the risk in those cells as of the last tick (worst level overall and by hazard, -1 no
        data; highest crowd density [person m-2]; deepest water [m]) over its cells and those within 30 m
        (``ring_m``)."""
        building_id = identifier
        k = index().get(building_id)
        buildings = view.buildings()
        if k is None or buildings is None:
            raise ApiError(404, "unknown_building", f"no building {building_id[:80]!r} in the twin's building table")
        row = buildings.table.iloc[k]
        cells = buildings.cells_of(row["id"])
        rows, cols = cells["row"].to_numpy(int), cells["col"].to_numpy(int)
        risk, t = building_risk(view, *ring_cells(view.grid, rows, cols))
        zh, en = names().get(building_id, (None, None))
        table_name = row["name"] if isinstance(row["name"], str) and row["name"] else None
        centre = row.geometry.centroid if row.geometry is not None and not row.geometry.is_empty else None
        lonlat = None
        if centre is not None:
            lon, lat = geo.to_lonlat(centre.x, centre.y, view.grid.crs)
            lonlat = (round(float(lon), 7), round(float(lat), 7))
        return {"id": building_id, "name": zh or table_name, "name_en": en,
                "use": row["use"] if isinstance(row["use"], str) else None, "floors": _number(row["floors"], 0),
                "height_m": _number(row["height"]), "floor_area_m2": _number(row["floor_area"], 0),
                "occupancy": _number(row["occupancy"], 0), "cells": len(cells), "centroid": lonlat,
                "risk": risk, "t": t}

    return r
