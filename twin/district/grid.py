"""The regular grid every layer of the twin lives on.

`GridSpec` is the single source of truth for geometry: a projected metric CRS, the
top-left corner of the grid, a square cell size and a shape. Row 0 is the northern
edge and rows run south; column 0 is the western edge (the raster convention, so an
array prints the way the map looks). Cell ``(r, c)`` covers
``x0 + c*s <= x < x0 + (c+1)*s`` and ``y0 - (r+1)*s < y <= y0 - r*s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from pyproj import CRS, Proj
from pyproj.exceptions import CRSError

from twin.district import geo
from twin.district.geo import DEFAULT_CRS

__all__ = ["DEFAULT_CRS", "GridError", "GridSpec"]


class GridError(ValueError):
    """A grid cannot be built from what was given."""


def _check_projected(crs: str) -> str:
    """Return the CRS as ``AUTH:CODE`` text, refusing anything that is not projected in metres."""
    try:
        parsed = CRS.from_user_input(crs)
    except CRSError as exc:  # pyproj.exceptions.CRSError (a RuntimeError via ProjError)
        raise GridError(f"unknown CRS {crs!r}: {exc}") from None
    if not parsed.is_projected:
        raise GridError(
            f"CRS {crs!r} is {'geographic' if parsed.is_geographic else 'not projected'}: the grid needs a "
            "projected CRS in metres (for Shanghai EPSG:4549, or UTM 51N EPSG:32651)"
        )
    unit = parsed.axis_info[0].unit_name if parsed.axis_info else ""
    if unit not in ("metre", "meter"):
        raise GridError(f"CRS {crs!r} has axis unit {unit!r}; the grid needs metres")
    auth = parsed.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else parsed.to_wkt()


MAX_AREA_DISTORTION = 0.01
"""Largest areal scale error of the CRS at the grid's centre that a grid accepts (1 %)."""
MAX_CELLS = 50_000_000
"""Largest grid built on one machine (a 50 m grid of all Shanghai is about 2.5 M cells)."""


def check_crs_fits(crs: str, lon: float, lat: float) -> None:
    """Refuse a CRS that distorts areas by more than 1 % at (lon, lat) [degree], e.g. Web
    Mercator at 31 N (+37 %) or a Gauss-Kruger zone far from its central meridian."""
    factors = Proj(crs).get_factors(lon, lat)
    error = abs(factors.areal_scale - 1.0)
    if not math.isfinite(error) or error > MAX_AREA_DISTORTION:
        raise GridError(f"CRS {crs} distorts areas by {error:.1%} at {lon:.4f} E {lat:.4f} N (limit "
                        f"{MAX_AREA_DISTORTION:.0%}); use a projected CRS made for this place (a local "
                        "Gauss-Kruger or UTM zone)")


@dataclass(frozen=True)
class GridSpec:
    """A north-up regular grid in a projected metric CRS.

    Parameters
    ----------
    crs : str
        Projected CRS, e.g. ``"EPSG:4549"``. A geographic CRS is refused.
    x0 : float
        Easting of the grid's western edge. [m]
    y0 : float
        Northing of the grid's northern edge. [m]
    cell_size : float
        Side of a square cell. [m]
    ny, nx : int
        Number of rows (north to south) and columns (west to east).
    """

    crs: str
    x0: float
    y0: float
    cell_size: float
    ny: int
    nx: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "crs", _check_projected(self.crs))
        if not (self.cell_size > 0 and math.isfinite(self.cell_size)):
            raise GridError(f"cell_size must be a positive number of metres, got {self.cell_size!r}")
        if not (math.isfinite(self.x0) and math.isfinite(self.y0)):
            raise GridError(f"grid origin must be finite, got ({self.x0!r}, {self.y0!r})")
        if int(self.ny) != self.ny or int(self.nx) != self.nx or self.ny < 1 or self.nx < 1:
            raise GridError(f"shape must be positive integers, got ({self.ny!r}, {self.nx!r})")
        if self.ny * self.nx > MAX_CELLS:
            raise GridError(f"a grid of {self.ny:,} x {self.nx:,} = {self.ny * self.nx:,} cells is too large "
                            f"(limit {MAX_CELLS:,}); use a larger cell or a smaller area")
        object.__setattr__(self, "ny", int(self.ny))
        object.__setattr__(self, "nx", int(self.nx))

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_bbox(
        cls, west: float, south: float, east: float, north: float, cell_size: float, crs: str = DEFAULT_CRS
    ) -> GridSpec:
        """Grid covering a lon/lat bounding box (degrees, WGS84 = CGCS2000 here).

        The box's edges are densified before projection so the grid covers the whole box
        even where a meridian projects as a curve. The origin is snapped to a multiple of
        ``cell_size`` so grids built from nearby boxes line up cell for cell.
        """
        if not (west < east and south < north):
            raise GridError(f"bbox must be west < east and south < north, got {west},{south},{east},{north}")
        if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
            raise GridError(f"bbox is not in lon/lat degrees: {west},{south},{east},{north}")
        _check_projected(crs)
        check_crs_fits(crs, (west + east) / 2, (south + north) / 2)
        t = np.linspace(0.0, 1.0, 33)
        lon = np.concatenate([west + (east - west) * t, np.full_like(t, east),
                              east - (east - west) * t, np.full_like(t, west)])
        lat = np.concatenate([np.full_like(t, south), south + (north - south) * t,
                              np.full_like(t, north), north - (north - south) * t])
        x, y = geo.to_projected(lon, lat, crs)
        return cls.from_bounds(float(x.min()), float(y.min()), float(x.max()), float(y.max()), cell_size, crs)

    @classmethod
    def from_bounds(
        cls, xmin: float, ymin: float, xmax: float, ymax: float, cell_size: float, crs: str = DEFAULT_CRS
    ) -> GridSpec:
        """Grid covering projected bounds [m], origin snapped to a multiple of ``cell_size``."""
        if not (cell_size > 0 and math.isfinite(cell_size)):
            raise GridError(f"cell_size must be a positive number of metres, got {cell_size!r}")
        if not all(map(math.isfinite, (xmin, ymin, xmax, ymax))):
            raise GridError(f"bounds must be finite, got {(xmin, ymin, xmax, ymax)}")
        nx_, ny_ = (xmax - xmin) / cell_size, (ymax - ymin) / cell_size
        if nx_ * ny_ > MAX_CELLS:
            raise GridError(f"about {nx_ * ny_:,.0f} cells of {cell_size:g} m is too large (limit {MAX_CELLS:,}); "
                            "use a larger cell or a smaller area")
        x0 = math.floor(xmin / cell_size) * cell_size
        y0 = math.ceil(ymax / cell_size) * cell_size
        nx = max(1, math.ceil((xmax - x0) / cell_size))
        ny = max(1, math.ceil((y0 - ymin) / cell_size))
        return cls(crs, float(x0), float(y0), float(cell_size), ny, nx)

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return (self.ny, self.nx)

    @property
    def size(self) -> int:
        """Number of cells."""
        return self.ny * self.nx

    @property
    def cell_area(self) -> float:
        """Area of one cell. [m2]"""
        return self.cell_size * self.cell_size

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the grid CRS. [m]"""
        return (self.x0, self.y0 - self.ny * self.cell_size, self.x0 + self.nx * self.cell_size, self.y0)

    @property
    def bounds_lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the grid's projected bounds, in degrees."""
        xmin, ymin, xmax, ymax = self.bounds
        lon, lat = geo.to_lonlat(np.array([xmin, xmax, xmin, xmax]), np.array([ymin, ymin, ymax, ymax]),
                                 self.crs)
        return (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))

    @property
    def x(self) -> np.ndarray:
        """Eastings of the cell centres, west to east. [m]"""
        return self.x0 + (np.arange(self.nx) + 0.5) * self.cell_size

    @property
    def y(self) -> np.ndarray:
        """Northings of the cell centres, north to south. [m]"""
        return self.y0 - (np.arange(self.ny) + 0.5) * self.cell_size

    # ------------------------------------------------------------------ lookups
    def cell_of(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of projected points; (-1, -1) for points outside the grid or NaN.

        Parameters
        ----------
        x, y : array_like
            Easting and northing in the grid CRS. [m]
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        s = self.cell_size
        with np.errstate(invalid="ignore"):
            col = np.floor((x - self.x0) / s)
            row = np.floor((self.y0 - y) / s)
            # agree with the cell edges as `cell_polygons` computes them (x0 + c*s, y0 - r*s)
            col += (self.x0 + (col + 1) * s <= x).astype(float) - (self.x0 + col * s > x).astype(float)
            row += (self.y0 - (row + 1) * s >= y).astype(float) - (self.y0 - row * s < y).astype(float)
            inside = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        row = np.where(inside, row, -1).astype(np.int64)
        col = np.where(inside, col, -1).astype(np.int64)
        return row, col

    def cell_of_lonlat(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of lon/lat points (degrees, CGCS2000/WGS84); -1 outside the grid."""
        x, y = geo.to_projected(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64),
                                self.crs)
        return self.cell_of(x, y)

    def flat_index(self, row, col) -> np.ndarray:
        """Flat (row-major) index of cells; -1 where row or col is -1."""
        row = np.asarray(row)
        col = np.asarray(col)
        return np.where((row >= 0) & (col >= 0), row * self.nx + col, -1)

    # ------------------------------------------------------------------ geometry
    def cell_polygons(self) -> np.ndarray:
        """Shapely box of every cell, flat row-major, shape (ny*nx,)."""
        col = np.tile(np.arange(self.nx), self.ny)
        row = np.repeat(np.arange(self.ny), self.nx)
        return self._boxes(row, col)

    def _boxes(self, row, col) -> np.ndarray:
        """Cell squares; neighbours share edge coordinates exactly (x0 + c*s, y0 - r*s)."""
        s = self.cell_size
        return shapely.box(self.x0 + col * s, self.y0 - (row + 1) * s, self.x0 + (col + 1) * s, self.y0 - row * s)

    def cell_polygon(self, row: int, col: int) -> shapely.Polygon:
        """Shapely box of one cell in the grid CRS."""
        if not (0 <= row < self.ny and 0 <= col < self.nx):
            raise IndexError(f"cell ({row}, {col}) is outside a grid of shape {self.shape}")
        return self._boxes(row, col)

    def cells_union(self, cells) -> shapely.Geometry:
        """The union of the squares of the given flat cell indices, in the grid CRS."""
        row, col = np.divmod(np.asarray(cells, dtype=np.int64), self.nx)
        return shapely.union_all(self._boxes(row, col))

    def cell_centres_lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude of every cell centre, each shape (ny, nx), read-only. [degree]

        Computed once per grid (about 13 ms on the Bund at 10 m; the API and the case loop ask often)."""
        return self._cell_centres_lonlat

    @cached_property
    def _cell_centres_lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        xx, yy = np.meshgrid(self.x, self.y)
        lon, lat = geo.to_lonlat(xx, yy, self.crs)
        lon, lat = np.asarray(lon), np.asarray(lat)
        lon.flags.writeable = False
        lat.flags.writeable = False
        return lon, lat

    # ------------------------------------------------------------------ Beidou codes
    @cached_property
    def beidou_level(self) -> int:
        """Level of the Beidou grid codes of this grid's cells.

        The coarsest GB/T 39409-2020 level whose code cell is no larger than a grid cell
        on either side (measured at the grid's centre latitude): the largest code cell
        that fits in a grid cell, so a grid cell's code names a place inside it.
        """
        _, lat = self.cell_centres_lonlat()
        lat_c = float(np.mean(lat))
        for level in range(1, 11):
            dlon, dlat = geo.beidou_cell_size(level)
            ew = math.radians(dlon) * 6371008.8 * math.cos(math.radians(lat_c))
            ns = math.radians(dlat) * 6371008.8
            if max(ew, ns) <= self.cell_size:
                return level
        return 10

    def beidou_codes(self) -> np.ndarray:
        """Beidou grid location code of every cell centre at `beidou_level`, shape (ny, nx)."""
        lon, lat = self.cell_centres_lonlat()
        codes = geo.beidou_encode_many(lon.ravel(), lat.ravel(), self.beidou_level)
        return np.asarray(codes).reshape(self.shape)

    # ------------------------------------------------------------------ (de)serialisation
    def to_attrs(self) -> dict[str, object]:
        """Attributes that describe the grid, for a dataset's global attrs."""
        return {"grid_crs": self.crs, "grid_x0": self.x0, "grid_y0": self.y0,
                "grid_cell_size": self.cell_size, "grid_ny": self.ny, "grid_nx": self.nx}

    @classmethod
    def from_attrs(cls, attrs: dict) -> GridSpec:
        """Inverse of `to_attrs`."""
        try:
            return cls(str(attrs["grid_crs"]), float(attrs["grid_x0"]), float(attrs["grid_y0"]),
                       float(attrs["grid_cell_size"]), int(attrs["grid_ny"]), int(attrs["grid_nx"]))
        except KeyError as exc:
            raise GridError(f"dataset has no grid description (missing attribute {exc.args[0]})") from None
