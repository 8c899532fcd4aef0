"""A real DEM, when one is given: ESRI ASCII grids sampled at the twin's cell centres."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import CRS
from scipy import ndimage

from twin.district import geo
from twin.district.grid import GridSpec

log = logging.getLogger(__name__)

HEADER_KEYS = ("ncols", "nrows", "xllcorner", "yllcorner", "xllcenter", "yllcenter", "cellsize", "nodata_value")


class DemError(ValueError):
    """The DEM cannot be read or does not cover the grid."""


@dataclass(frozen=True)
class Dem:
    """A north-up raster of elevations [m]; ``x0, y0`` is the centre of the top-left cell."""

    z: np.ndarray
    x0: float
    y0: float
    cell: float
    crs: str

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear elevation at points in the DEM's CRS [m]; NaN outside or next to no-data."""
        fc = (np.asarray(x) - self.x0) / self.cell
        fr = (self.y0 - np.asarray(y)) / self.cell
        ny, nx = self.z.shape
        # the raster covers half a cell beyond its outer cell centres: clamp there
        inside = (fc >= -0.5) & (fc <= nx - 0.5) & (fr >= -0.5) & (fr <= ny - 0.5)
        fc, fr = np.clip(fc, 0, nx - 1), np.clip(fr, 0, ny - 1)
        c = np.clip(np.floor(fc), 0, max(nx - 2, 0)).astype(int)
        r = np.clip(np.floor(fr), 0, max(ny - 2, 0)).astype(int)
        tc, tr = fc - c, fr - r
        c1, r1 = np.minimum(c + 1, nx - 1), np.minimum(r + 1, ny - 1)
        z = self.z
        top = z[r, c] * (1 - tc) + z[r, c1] * tc
        bottom = z[r1, c] * (1 - tc) + z[r1, c1] * tc
        return np.where(inside, top * (1 - tr) + bottom * tr, np.nan)


def _header(lines: list[str]) -> tuple[dict[str, float], int]:
    head: dict[str, float] = {}
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) == 2 and parts[0].lower() in HEADER_KEYS:
            head[parts[0].lower()] = float(parts[1])
        else:
            return head, i
    return head, len(lines)


def read_ascii_grid(path: str | Path, crs: str | None = None) -> Dem:
    """Read an ESRI ASCII grid; its CRS comes from ``crs`` or a ``.prj`` file beside it."""
    path = Path(path)
    prj = path.with_suffix(".prj")
    try:
        if crs is None and prj.is_file():
            crs = CRS.from_wkt(prj.read_text()).to_string()
        elif crs is not None:
            crs = CRS.from_user_input(crs).to_string()
    except Exception as exc:  # pyproj's CRSError, or an unreadable .prj
        raise DemError(f"DEM {path}: unusable CRS ({exc})") from None
    if crs is None:
        raise DemError(f"DEM {path} has no CRS: put a .prj beside it or give its CRS (--dem-crs)")
    try:
        lines = path.read_text().splitlines()
        head, start = _header(lines)
        nx, ny, cell = int(head["ncols"]), int(head["nrows"]), head["cellsize"]
        z = np.array(" ".join(lines[start:]).split(), dtype=float).reshape(ny, nx)
        left = head["xllcenter"] if "xllcenter" in head else head["xllcorner"] + cell / 2
        bottom = head["yllcenter"] if "yllcenter" in head else head["yllcorner"] + cell / 2
    except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise DemError(f"cannot read DEM {path} as an ESRI ASCII grid: {exc!r}") from None
    if "nodata_value" in head:
        z[z == head["nodata_value"]] = np.nan
    return Dem(z, left, bottom + (ny - 1) * cell, cell, crs)


def sample_dem(path: str | Path, grid: GridSpec, crs: str | None = None) -> np.ndarray:
    """DEM elevation at every cell centre of the grid, shape (ny, nx). [m]"""
    dem = read_ascii_grid(path, crs)
    xx, yy = np.meshgrid(grid.x, grid.y)
    lon, lat = geo.to_lonlat(xx, yy, grid.crs)
    if CRS.from_user_input(dem.crs).is_geographic:
        x, y = lon, lat
    else:
        x, y = geo.to_projected(lon, lat, dem.crs)
    z = dem.sample(x, y)
    missing = np.isnan(z)
    if missing.all():
        raise DemError(f"DEM {path} does not cover the grid")
    if missing.any():
        log.warning("DEM %s leaves %.1f%% of the grid without data (outside it or no-data): filled from the "
                    "nearest cell with data", path, 100 * missing.mean())
        nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
        z = z[tuple(nearest)]
    return z
