"""Building a twin from a district's sources: the grid, the CIM layers and the building table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from twin.district.bim import Buildings
from twin.district.cim import build_layers
from twin.district.dataset import make_dataset
from twin.district.grid import DEFAULT_CRS, GridSpec
from twin.district.sources import DistrictSources


def buildings_bbox(sources: DistrictSources) -> tuple[float, float, float, float]:
    """Lon/lat extent of the buildings layer: the default area of a twin."""
    b = sources.buildings.to_crs("EPSG:4326").total_bounds
    if not np.all(np.isfinite(b)):
        raise ValueError("the buildings layer has no usable geometry")
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def twin_from_sources(sources: DistrictSources, cell_size: float,
                      bbox: tuple[float, float, float, float] | None = None, crs: str = DEFAULT_CRS,
                      progress: Callable[[str], None] | None = None, name: str | None = None,
                      ) -> tuple[xr.Dataset, Buildings]:
    """Grid, layers and buildings of a district.

    Parameters
    ----------
    sources : DistrictSources
        The district's vector layers (`twin.district.sources.read_district`).
    cell_size : float
        Grid cell size. [m]
    bbox : (west, south, east, north), optional
        Extent in lon/lat degrees; default the buildings' extent.
    crs : str
        Projected CRS of the grid (default EPSG:4549).
    """
    grid = GridSpec.from_bbox(*(bbox or buildings_bbox(sources)), cell_size, crs)
    layers, buildings, notes = build_layers(sources, grid, progress)
    if buildings.table.empty:
        raise ValueError("no buildings inside the grid: check --bbox (W,S,E,N in degrees) against the data")
    credit = sources.credit()
    ds = make_dataset(grid, layers, notes, source=f"district folder {sources.folder.name}",
                      district=name or sources.folder.name,
                      **({"credit": credit} if credit else {}),
                      **({"license": "ODbL-1.0"} if "ODbL" in credit else {}))
    return ds, buildings
