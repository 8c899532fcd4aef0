"""Alert regions: connected cells at a warning level, their outline and their Beidou codes."""

from __future__ import annotations

import numpy as np
import shapely
from scipy import ndimage

from twin import geo
from twin.grid import GridSpec

FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
MAX_GEOCODES = 32
"""Beidou codes listed per alert area: cell codes, merged into parent codes until at most this many."""


def label_regions(level: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of cells at level >= 1 (blue or above).

    4-connectivity keeps each region's outline one polygon (cells touching only at a corner
    are separate regions). Returns the label of every cell (0 outside regions) and the count.
    """
    labels, n = ndimage.label(np.asarray(level) >= 1, structure=FOUR_CONNECTED)
    return labels.astype(np.int32), int(n)


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
    codes = sorted(set(geo.beidou_encode_many(np.atleast_1d(lon), np.atleast_1d(lat), grid.beidou_level)))
    level = grid.beidou_level
    while len(codes) > limit and level > 1:
        level -= 1
        codes = sorted({geo.beidou_parent(c, level) for c in codes})
    return codes


def overlap_counts(labels: np.ndarray, n: int, cells: np.ndarray) -> np.ndarray:
    """How many of the given cells fall in each region 1..n."""
    if n == 0 or len(cells) == 0:
        return np.zeros(n, dtype=np.int64)
    return np.bincount(labels.ravel()[cells], minlength=n + 1)[1:]
