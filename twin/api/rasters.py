"""Layer values for the API: ``bbox`` parsing, the window of cells it covers, and JSON values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.api.errors import ApiError
from twin.district import geo
from twin.district.grid import GridSpec


@dataclass(frozen=True)
class Window:
    """Rows ``row0:row1`` and columns ``col0:col1`` (half-open) of the grid; row 0 is the north edge."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the window."""
        return (max(0, self.row1 - self.row0), max(0, self.col1 - self.col0))

    @property
    def size(self) -> int:
        """Number of cells."""
        return self.shape[0] * self.shape[1]

    def bounds(self, grid: GridSpec) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the window's cells in the grid CRS. [m]"""
        s = grid.cell_size
        return (grid.x0 + self.col0 * s, grid.y0 - self.row1 * s, grid.x0 + self.col1 * s, grid.y0 - self.row0 * s)

    def take(self, values: np.ndarray) -> np.ndarray:
        """The window of a (ny, nx) array."""
        return values[self.row0:self.row1, self.col0:self.col1]

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"row0": self.row0, "row1": self.row1, "col0": self.col0, "col1": self.col1}


def full_window(grid: GridSpec) -> Window:
    """The whole grid."""
    return Window(0, grid.ny, 0, grid.nx)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``W,S,E,N`` in degrees (CGCS2000/WGS84 lon/lat) -> a tuple; `ApiError` 422 when malformed."""
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ApiError(422, "bad_bbox", f"bbox must be four numbers W,S,E,N in degrees, got {text!r}") from None
    if len(values) != 4 or not all(map(math.isfinite, values)):
        raise ApiError(422, "bad_bbox", f"bbox must be four finite numbers W,S,E,N in degrees, got {text!r}")
    west, south, east, north = values
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ApiError(422, "bad_bbox", f"bbox needs -180 <= W < E <= 180 and -90 <= S < N <= 90, got {text!r}")
    return west, south, east, north


def bbox_window(grid: GridSpec, bbox: tuple[float, float, float, float]) -> Window:
    """The cells that a lon/lat box touches (edges densified before projection); may be empty."""
    west, south, east, north = bbox
    t = np.linspace(0.0, 1.0, 17)
    lon = np.concatenate([west + (east - west) * t, np.full_like(t, east), west + (east - west) * t,
                          np.full_like(t, west)])
    lat = np.concatenate([np.full_like(t, south), south + (north - south) * t, np.full_like(t, north),
                          south + (north - south) * t])
    x, y = geo.to_projected(lon, lat, grid.crs)
    s = grid.cell_size
    col0 = int(np.clip(math.floor((np.min(x) - grid.x0) / s), 0, grid.nx))
    col1 = int(np.clip(math.ceil((np.max(x) - grid.x0) / s), 0, grid.nx))
    row0 = int(np.clip(math.floor((grid.y0 - np.max(y)) / s), 0, grid.ny))
    row1 = int(np.clip(math.ceil((grid.y0 - np.min(y)) / s), 0, grid.ny))
    return Window(row0, max(row0, row1), col0, max(col0, col1))


def window_for(grid: GridSpec, bbox: str | None, max_cells: int) -> Window:
    """The window of an optional ``bbox`` query; `ApiError` 413 if it holds more than ``max_cells``."""
    win = full_window(grid) if bbox is None else bbox_window(grid, parse_bbox(bbox))
    if win.size > max_cells:
        raise ApiError(413, "too_large", f"{win.size:,} cells asked for, at most {max_cells:,} per request; "
                       "ask for a smaller bbox")
    return win


def json_values(values: np.ndarray) -> list[list]:
    """Rows (north to south) of a 2-D array as JSON lists; NaN becomes null, integers stay integers."""
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.tolist()
    out = values.astype(object)
    out[~np.isfinite(values)] = None
    return out.tolist()
