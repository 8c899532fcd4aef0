"""The city's district raster: which district twin a lon/lat position belongs to, in constant time per point.

`district_raster` builds an `ingest.districts.DistrictRaster` (docs/city-deployment.md section 5) over the extent of
the district boundaries, in lon/lat cells of about ``cell_m`` metres (100 m: about 1.8 million cells, 3.5 MB, for
Shanghai). A cell belongs to the district whose polygon holds the cell's **centre** (even-odd rule, holes and
islands included), so a position is routed exactly as a point-in-polygon test would route it except within one
cell of a border. A cell whose centre lies in no district (the sea, a sliver between two boundaries) is -1.

- From `twin.city.boundaries.Boundaries`: the codes are the adcodes of every district in the file.
- From a `twin.city.city.City`: the codes are its partition keys. A district without tiles gets all of its
  boundary (a position in Huangpu beyond the Bund goes to Huangpu's twin, which finds it outside its grid); a
  district with tiles gives each cell to the tile whose area holds its centre, else to the nearest tile. Districts
  of the boundaries file that the manifest does not list are -1 (no twin holds them).

Rasterising is a scanline fill on cell-centre rows (`scanline_mask`), vectorised over a polygon's edges: about
0.5 s for the 16 districts of Shanghai at 100 m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from ingest.districts import OUTSIDE, DistrictRaster
from twin.city.boundaries import Boundaries, projected

EARTH_RADIUS_M = 6371008.8
"""Mean Earth radius (IUGG), for the cell size in degrees. [m]"""
_UNRESOLVED = -2


@dataclass(frozen=True)
class RasterArrays:
    """The arguments of `ingest.districts.DistrictRaster`: codes, index (int16, row 0 south), west, south [degree],
    dlon, dlat [degree]."""

    codes: tuple[str, ...]
    index: np.ndarray
    west: float
    south: float
    dlon: float
    dlat: float

    def raster(self) -> DistrictRaster:
        return DistrictRaster(self.codes, self.index, self.west, self.south, self.dlon, self.dlat)


def cell_degrees(cell_m: float, lat: float) -> tuple[float, float]:
    """(dlon, dlat) of a cell of about ``cell_m`` metres on a side at latitude ``lat``. [degree]"""
    dlat = math.degrees(cell_m / EARTH_RADIUS_M)
    return dlat / math.cos(math.radians(lat)), dlat


def scanline_mask(geometry: shapely.Geometry, shape: tuple[int, int], west: float, south: float, dlon: float,
                  dlat: float) -> np.ndarray:
    """Cells (row 0 south) whose centre lies inside a lon/lat (Multi)Polygon, by the even-odd rule.

    Every edge crossing a row of cell centres (half-open in latitude, so a vertex on a row counts once) gives a
    crossing longitude; sorted along each row, crossings pair up into runs of inside cells.
    """
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    rings = shapely.get_rings(shapely.get_parts(geometry))
    if rings.size == 0:
        return mask
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    u = (xy[:, 0] - west) / dlon - 0.5  # cell-centre units: centre of column c at u = c
    v = (xy[:, 1] - south) / dlat - 0.5
    same = ring[1:] == ring[:-1]
    u1, v1, u2, v2 = u[:-1][same], v[:-1][same], u[1:][same], v[1:][same]
    r0 = np.clip(np.ceil(np.minimum(v1, v2)), 0, rows).astype(np.int64)
    r1 = np.clip(np.ceil(np.maximum(v1, v2)), 0, rows).astype(np.int64)
    n = r1 - r0
    edge = np.repeat(np.arange(n.size), n)
    if edge.size == 0:
        return mask
    r = r0[edge] + np.arange(edge.size) - np.repeat(np.cumsum(n) - n, n)
    uc = u1[edge] + (r - v1[edge]) * (u2[edge] - u1[edge]) / (v2[edge] - v1[edge])
    order = np.lexsort((uc, r))
    r, uc = r[order], uc[order]
    start, stop = np.clip(np.ceil(uc[0::2]), 0, cols).astype(np.int64), np.clip(np.ceil(uc[1::2]), 0, cols)
    diff = np.zeros((rows, cols + 1), dtype=np.int32)
    np.add.at(diff, (r[0::2], start), 1)
    np.add.at(diff, (r[1::2], stop.astype(np.int64)), -1)
    return np.cumsum(diff, axis=1)[:, :cols] > 0


def _frame(geometries: list[shapely.Geometry], cell_m: float) -> tuple[tuple[int, int], float, float, float, float]:
    """Shape, west, south, dlon, dlat of a raster covering the geometries with a one-cell margin."""
    w, s, e, n = shapely.total_bounds(np.asarray(geometries, dtype=object))
    dlon, dlat = cell_degrees(cell_m, (s + n) / 2)
    west, south = w - dlon, s - dlat
    return (math.ceil((n + dlat - south) / dlat), math.ceil((e + dlon - west) / dlon)), west, south, dlon, dlat


def boundary_arrays(boundaries: Boundaries, cell_m: float = 100.0) -> RasterArrays:
    """The raster of every district of a boundaries file, codes = adcodes."""
    geoms = [boundaries[c].geometry for c in boundaries.codes]
    shape, west, south, dlon, dlat = _frame(geoms, cell_m)
    index = np.full(shape, OUTSIDE, dtype=np.int16)
    for k, geometry in enumerate(geoms):
        index[scanline_mask(geometry, shape, west, south, dlon, dlat)] = k
    return RasterArrays(boundaries.codes, index, west, south, dlon, dlat)


def city_arrays(city, cell_m: float = 100.0) -> RasterArrays:
    """The raster of a `twin.city.city.City`, codes = its partition keys (module docstring)."""
    boundaries = city.boundaries
    geoms = [boundaries[c].geometry for c in boundaries.codes]
    shape, west, south, dlon, dlat = _frame(geoms, cell_m)
    index = np.full(shape, OUTSIDE, dtype=np.int16)
    codes = tuple(city.partitions)
    by_code: dict[str, list[int]] = {}
    for k, district in enumerate(city.districts):
        by_code.setdefault(district.code, []).append(k)
    for code, members in by_code.items():
        inside = scanline_mask(boundaries[code].geometry, shape, west, south, dlon, dlat)
        if len(members) == 1:
            index[inside] = members[0]
            continue
        index[inside] = _UNRESOLVED
        for k in members:
            index[inside & scanline_mask(city.districts[k].area, shape, west, south, dlon, dlat)] = k
        _nearest_tile(index, [(k, city.districts[k].area) for k in members], west, south, dlon, dlat)
    return RasterArrays(codes, index, west, south, dlon, dlat)


def _nearest_tile(index: np.ndarray, tiles: list[tuple[int, shapely.Geometry]], west: float, south: float,
                  dlon: float, dlat: float) -> None:
    """Give every unresolved cell to the tile whose area is nearest its centre (in metres)."""
    row, col = np.nonzero(index == _UNRESOLVED)
    if row.size == 0:
        return
    points = projected(shapely.multipoints(np.column_stack([west + (col + 0.5) * dlon, south + (row + 0.5) * dlat])))
    pts = shapely.get_parts(points)
    dist = np.stack([shapely.distance(pts, projected(area)) for _, area in tiles])
    index[row, col] = np.array([k for k, _ in tiles], dtype=np.int16)[np.argmin(dist, axis=0)]


def district_raster(city_or_boundaries, cell_m: float = 100.0) -> DistrictRaster:
    """The district raster of a `twin.city.city.City` (partition keys) or of `twin.city.boundaries.Boundaries`
    (adcodes), in cells of about ``cell_m`` metres."""
    if not (cell_m > 0 and math.isfinite(cell_m)):
        raise ValueError(f"cell_m must be a positive number of metres, got {cell_m!r}")
    if isinstance(city_or_boundaries, Boundaries):
        return boundary_arrays(city_or_boundaries, cell_m).raster()
    return city_arrays(city_or_boundaries, cell_m).raster()
