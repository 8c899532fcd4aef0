"""Persistence: NetCDF with CF attributes and the CRS as grid_mapping, read back identical."""

from __future__ import annotations

import pandas as pd
import xarray as xr
from pyproj import CRS

from twin.district.dataset import grid_of, load_twin, save_twin


def test_netcdf_round_trip_is_identical(bund10, tmp_path):
    ds, buildings = bund10
    path = save_twin(tmp_path / "bund.nc", ds, buildings)
    back, b2 = load_twin(path)
    xr.testing.assert_identical(back.drop_attrs(deep=False), ds.drop_attrs(deep=False))
    assert {k: v for k, v in back.attrs.items() if k != "history"} == ds.attrs
    assert grid_of(back) == grid_of(ds)
    pd.testing.assert_frame_equal(b2.table.drop(columns="geometry"), buildings.table.drop(columns="geometry"))
    assert b2.table.geometry.geom_equals_exact(buildings.table.geometry, tolerance=0).all()
    pd.testing.assert_frame_equal(b2.cells, buildings.cells)
    assert len(b2.volumes) == len(buildings.volumes)


def test_netcdf_is_cf_and_names_its_crs(bund10, tmp_path):
    ds, _ = bund10
    path = save_twin(tmp_path / "bund.nc", ds)
    with xr.open_dataset(path) as f:  # plain xarray, no citytwin code
        assert f.attrs["Conventions"].startswith("CF-")
        assert CRS.from_cf(f["crs"].attrs) == CRS.from_epsg(4549)
        assert f["x"].attrs["standard_name"] == "projection_x_coordinate"
        for name, var in f.data_vars.items():
            if name != "crs":
                assert var.attrs["grid_mapping"] == "crs" and "units" in var.attrs and "long_name" in var.attrs
        assert float(f["y"][0]) > float(f["y"][-1]), "row 0 is north"
    _, b = load_twin(path)
    assert b is None, "no building table was written"
