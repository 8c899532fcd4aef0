"""The twin dataset: layers on the grid as a CF-conventions xarray Dataset, and its files.

A saved twin is a NetCDF file (``bund.nc``: every layer with ``units`` and ``long_name``,
the CRS as a CF ``grid_mapping`` variable, the grid in global attributes) plus the
building tables beside it as GeoParquet (``bund.buildings.parquet``,
``bund.volumes.parquet``) and its road network (``bund.links.parquet``, ``bund.nodes.parquet``,
``bund.link_cells.parquet``: `twin.district.roads`). Loading gives back the same twin, attribute for attribute.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import xarray as xr
from pyproj import CRS

from twin import __version__
from twin.district.bim import Buildings, _cell_mapping
from twin.district.grid import GridSpec
from twin.district.layers import layer
from twin.district.roads import remove_road_network

GRID_MAPPING = "crs"


def _crs_variable(grid: GridSpec) -> xr.DataArray:
    attrs = CRS.from_user_input(grid.crs).to_cf()
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return xr.DataArray(np.int32(0), attrs=attrs)


def empty_dataset(grid: GridSpec, **global_attrs) -> xr.Dataset:
    """A dataset with the grid's coordinates and CRS variable and no layers."""
    ds = xr.Dataset(coords={
        "y": ("y", grid.y, {"units": "m", "standard_name": "projection_y_coordinate",
                             "long_name": "northing of cell centre", "axis": "Y"}),
        "x": ("x", grid.x, {"units": "m", "standard_name": "projection_x_coordinate",
                             "long_name": "easting of cell centre", "axis": "X"}),
    })
    ds[GRID_MAPPING] = _crs_variable(grid)
    ds.attrs.update({"Conventions": "CF-1.8", "title": "citytwin grid twin",
                     "institution": "citytwin", "citytwin_version": __version__, **grid.to_attrs()})
    ds.attrs.update(global_attrs)
    return ds


def layer_variable(name: str, values: np.ndarray, note: str | None = None) -> xr.Variable:
    """A registry layer as a variable on (y, x) with its registry dtype, units and long name."""
    spec = layer(name)
    attrs = {**spec.attrs(), "grid_mapping": GRID_MAPPING}
    if note:
        attrs["comment"] = note
    return xr.Variable(("y", "x"), np.asarray(values).astype(spec.dtype), attrs)


def set_layer(ds: xr.Dataset, name: str, values: np.ndarray, note: str | None = None) -> None:
    """Put a registry layer into the dataset with its registry dtype, units and long name."""
    ds[name] = layer_variable(name, values, note)


def make_dataset(grid: GridSpec, layers: dict[str, np.ndarray], notes: dict[str, str] | None = None,
                 **global_attrs) -> xr.Dataset:
    """The twin dataset from layer arrays (names from `twin.district.layers`)."""
    ds = empty_dataset(grid, **global_attrs)
    for name, values in layers.items():
        set_layer(ds, name, values, (notes or {}).get(name))
    return ds


def grid_of(ds: xr.Dataset) -> GridSpec:
    """The grid a twin dataset lives on."""
    return GridSpec.from_attrs(ds.attrs)


def _sidecars(path: Path) -> tuple[Path, Path]:
    stem = path.with_suffix("")
    return stem.with_name(stem.name + ".buildings.parquet"), stem.with_name(stem.name + ".volumes.parquet")


NETCDF_LOCK = threading.Lock()
"""Held while a twin file is written or read: the netCDF4/HDF5 C library is not thread-safe, and two live twins of
one process (tests, a host of district twins) snapshotting at once crashed the process in ``to_netcdf``."""


def save_twin(path: str | Path, ds: xr.Dataset, buildings: Buildings | None = None) -> Path:
    """Write the dataset to NetCDF (and the building tables beside it). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    ds.attrs.setdefault("history", f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} written by citytwin")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with NETCDF_LOCK:
            ds.to_netcdf(tmp, engine="netcdf4")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    btab, vtab = _sidecars(path)
    for old in (btab, vtab):
        old.unlink(missing_ok=True)  # never pair a new grid with an older building table
    remove_road_network(path)  # nor with an older road network (`twin.district.roads.road_network_for`)
    if buildings is not None:
        buildings.table.to_parquet(btab)
        buildings.volumes.to_parquet(vtab)
    return path


def load_twin(path: str | Path) -> tuple[xr.Dataset, Buildings | None]:
    """Read a twin written by `save_twin` (the building tables too when they are there)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no twin file at {path}")
    with NETCDF_LOCK, xr.open_dataset(path, engine="netcdf4") as f:
        ds = f.load()
    btab, vtab = _sidecars(path)
    if not btab.is_file():
        return ds, None
    table = gpd.read_parquet(btab)
    volumes = gpd.read_parquet(vtab) if vtab.is_file() else gpd.GeoDataFrame(
        {"building_id": [], "height": []}, geometry=[], crs=table.crs)
    return ds, Buildings(table, volumes, _cell_mapping(table, grid_of(ds)))
