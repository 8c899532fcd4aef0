"""Alert regions: connected cells at a warning level, their outline and their Beidou codes."""

from __future__ import annotations

import numpy as np
import shapely
from scipy import ndimage

from twin.district import geo
from twin.district.grid import GridSpec

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
MERGE_CELLS = 2
"""Warning cells up to this many cells apart belong to one region (one alert), so a ramp or a
promenade drawn cell by cell does not raise a dozen alerts."""
MAX_GEOCODES = 32
"""Beidou codes listed per alert area: cell codes, merged into parent codes until at most this many."""


def label_regions(level: np.ndarray, merge_cells: int = MERGE_CELLS) -> tuple[np.ndarray, int]:
    """Regions of cells at level >= 1 (blue or above), joining cells up to ``merge_cells`` apart.

    Returns the label of every cell (0 outside regions; only warning cells carry a label) and
    the number of regions.
    """
    mask = np.asarray(level) >= 1
    grown = ndimage.binary_dilation(mask, EIGHT_CONNECTED, iterations=merge_cells) if merge_cells else mask
    labels, n = ndimage.label(grown, structure=EIGHT_CONNECTED)
    labels[~mask] = 0
    used = np.unique(labels[mask])
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[used] = np.arange(1, used.size + 1)
    return remap[labels], int(used.size)


def region_cells(labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Flat cell indices of each region 1..n, sorted."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(1, n + 2))
    return [np.sort(order[bounds[i]:bounds[i + 1]]) for i in range(n)]


def outline(grid: GridSpec, cells: np.ndarray) -> list[np.ndarray]:
    """Outer rings of the union of the cells, as lon/lat arrays (one per connected part).

    Holes are left out: an alert area includes any gap it surrounds.
    """
    if len(cells) == 0:
        return []
    union = grid.cells_union(cells)
    rings = []
    for part in shapely.get_parts(union):
        xy = np.asarray(shapely.simplify(part, 0.0).exterior.coords)
        lon, lat = geo.to_lonlat(xy[:, 0], xy[:, 1], grid.crs)
        rings.append(np.column_stack([lon, lat]))
    return rings


def geocodes(grid: GridSpec, cells: np.ndarray, limit: int = MAX_GEOCODES) -> list[str]:
    """Beidou grid codes covering the cells: the cells' own codes, coarsened until few enough."""
    row, col = np.divmod(np.asarray(cells), grid.nx)
    lon, lat = geo.to_lonlat(grid.x[col], grid.y[row], grid.crs)
    lon, lat = np.atleast_1d(lon), np.atleast_1d(lat)
    level = grid.beidou_level
    codes = sorted(set(geo.beidou_encode_many(lon, lat, level)))
    while len(codes) > limit and level > 1:  # the grid is nested: a point's coarser cell is its cell's parent
        level -= 1
        codes = sorted(set(geo.beidou_encode_many(lon, lat, level)))
    return codes


def overlap_counts(labels: np.ndarray, n: int, cells: np.ndarray) -> np.ndarray:
    """How many of the given cells fall in each region 1..n."""
    if n == 0 or len(cells) == 0:
        return np.zeros(n, dtype=np.int64)
    return np.bincount(labels.ravel()[cells], minlength=n + 1)[1:]
