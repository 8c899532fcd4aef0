"""CIM layers of the real Bund district: values at known places, units, derived elevation, DEM."""

from __future__ import annotations

import json
import shutil

import geopandas as gpd
import numpy as np
import pytest
import shapely

from models.design_storm import shanghai_storm_intensity
from twin.district import cim
from twin.district.dataset import grid_of
from twin.district.layers import LAYERS, ROAD_CLASSES
from twin.district.sources import read_district

HUANGPU_RIVER = (121.4906, 31.2400)  # docs/science/spatial.md 6.3: a point on the river off the Bund


def _cell(ds, lon, lat):
    row, col = grid_of(ds).cell_of_lonlat(lon, lat)
    assert row >= 0, "point outside the grid"
    return int(row), int(col)


def _road_midpoints(sources, name_en):
    roads = sources.layer("roads")
    lines = roads[roads["name:en"] == name_en].geometry.to_crs("EPSG:4549")
    mid = lines.interpolate(0.5, normalized=True).to_crs("EPSG:4326")
    return [(p.x, p.y) for p in mid]


def test_every_layer_carries_registry_units_and_long_name(bund10):
    ds, _ = bund10
    for name, var in ds.data_vars.items():
        if name == "crs":
            assert var.attrs["grid_mapping_name"] == "transverse_mercator"
            continue
        assert var.attrs["units"] == LAYERS[name].units
        assert var.attrs["long_name"] == LAYERS[name].long_name
        assert var.attrs["grid_mapping"] == "crs"
        assert var.dtype == np.dtype(LAYERS[name].dtype)
    static = {n for n, spec in LAYERS.items() if spec.kind == "static"}
    assert static <= set(ds.data_vars)


def test_shanghai_tower_cell_has_its_height(bund10):
    ds, buildings = bund10
    tower = buildings.table[buildings.table["name"] == "Shanghai Tower"]
    assert len(tower) == 1 and tower["height"].iloc[0] == 632.0
    c = tower.geometry.iloc[0].centroid
    row, col = grid_of(ds).cell_of(c.x, c.y)
    assert float(ds["building_height"][int(row), int(col)]) == 632.0
    assert float(ds["building_fraction"][int(row), int(col)]) == pytest.approx(1.0)
    assert float(ds["walkable_area"][int(row), int(col)]) == pytest.approx(0.0, abs=1e-9)


def test_the_huangpu_is_water_and_the_outlet(bund10):
    ds, _ = bund10
    r, c = _cell(ds, *HUANGPU_RIVER)
    assert ds["water_mask"][r, c] == 1 and float(ds["water_fraction"][r, c]) == pytest.approx(1.0)
    assert float(ds["elevation"][r, c]) == cim.RIVER_M
    assert float(ds["runoff_coefficient"][r, c]) == pytest.approx(cim.RUNOFF_WATER)
    assert float(ds["vulnerability"][r, c]) == 0.0
    assert ds["water_mask"].values.mean() > 0.1, "the river is a large share of this district"


def test_zhongshan_east_road_is_an_arterial_below_the_kerb(bund10, bund_sources):
    ds, _ = bund10
    points = _road_midpoints(bund_sources, "East Zhongshan No. 1 Road")
    assert len(points) >= 5
    arterial = ROAD_CLASSES.index("arterial")
    classes = [int(ds["road_class"][_cell(ds, *p)]) for p in points]
    assert sum(c == arterial for c in classes) >= len(points) - 1
    r, c = _cell(ds, *points[0])
    assert float(ds["free_flow_speed"][r, c]) == cim.FREE_FLOW_KMH["arterial"]
    assert float(ds["road_fraction"][r, c]) > 0.5
    assert float(ds["elevation"][r, c]) < cim.GROUND_M


def test_yanan_elevated_road_is_an_expressway(bund10, bund_sources):
    ds, _ = bund10
    points = _road_midpoints(bund_sources, "Yan'an Elevated Road")
    expressway = ROAD_CLASSES.index("expressway")
    assert any(int(ds["road_class"][_cell(ds, *p)]) == expressway for p in points)


def test_tunnel_portals_are_lowered_vulnerable_underpasses(bund10):
    ds, _ = bund10
    under = ds["underpass"].values == 1
    assert under.sum() >= 10
    z = ds["elevation"].values
    assert z[under].max() < cim.GROUND_M - cim.KERB_M * 0.5
    assert z[under].min() >= cim.GROUND_M - cim.MAX_RAMP_DEPTH_M - cim.KERB_M - 1e-9
    assert (ds["vulnerability"].values[under] == 1.0).all()


def test_metro_entrances_are_vulnerable(bund10, bund_sources):
    ds, _ = bund10
    pois = bund_sources.layer("pois")
    entrances = pois[pois["kind"] == "subway_entrance"].geometry
    values = []
    for p in entrances:
        row, col = grid_of(ds).cell_of_lonlat(p.x, p.y)
        if row >= 0:
            values.append(float(ds["vulnerability"][int(row), int(col)]))
    assert len(values) >= 5 and min(values) >= cim.VULNERABILITY_OF["subway_entrance"]


def test_cell_budget_adds_up(bund10):
    ds, _ = bund10
    area = grid_of(ds).cell_area
    walk = ds["walkable_area"].values / area
    assert (walk >= 0).all() and (walk <= 1).all()
    # what is not walkable is at least the largest of buildings, roads and water
    blocked = np.maximum.reduce([ds["building_fraction"].values, ds["road_fraction"].values,
                                 ds["water_fraction"].values])
    assert (walk <= 1 - blocked + 1e-9).all()
    phi = ds["runoff_coefficient"].values
    assert phi.min() >= cim.RUNOFF_GREEN - 1e-12 and phi.max() <= cim.RUNOFF_WATER + 1e-12
    roofs = phi[ds["building_fraction"].values > 0.999]
    assert roofs.size > 100 and np.allclose(roofs, cim.RUNOFF_SEALED, atol=1e-3)


def test_derived_elevation_says_so(bund10):
    ds, _ = bund10
    assert "derived from features" in ds["elevation"].attrs["comment"]
    assert "36.5" in ds["drainage_capacity"].attrs["comment"]


def test_shanghai_design_storm_formula():
    # docs/science/flood.md 2.2 table [run]: P = 1, 5, 100 yr at 60 min; P = 3 yr at 5 min
    assert shanghai_storm_intensity(1, 60) == pytest.approx(36.5, abs=0.05)
    assert shanghai_storm_intensity(5, 60) == pytest.approx(58.1, abs=0.05)
    assert shanghai_storm_intensity(100, 60) == pytest.approx(98.3, abs=0.05)
    assert shanghai_storm_intensity(3, 5) == pytest.approx(158.4, abs=0.05)
    assert cim.DEFAULT_DRAINAGE_MM_H == 36.5


def test_drainage_polygons_override_area_weighted(tmp_path, bund_sources):
    from twin.district.build import twin_from_sources

    box = (121.4850, 31.2380, 121.4880, 31.2400)
    # a pump station doubles capacity in a box covering whole cells and part of others
    poly = shapely.box(*box)
    df = gpd.GeoDataFrame({"drainage_capacity": [100.0]}, geometry=[poly], crs="EPSG:4326")
    bund_sources.drainage = df
    try:
        ds, _ = twin_from_sources(bund_sources, 20.0, bbox=(121.4840, 31.2370, 121.4890, 31.2410))
    finally:
        bund_sources.drainage = None
    cap = ds["drainage_capacity"].values
    assert cap.max() == pytest.approx(100.0) and cap.min() == pytest.approx(36.5)
    partial = (cap > 36.5 + 1e-9) & (cap < 100.0 - 1e-9)
    assert partial.any(), "cells on the polygon's edge are area-weighted"
    grid = grid_of(ds)
    poly_m = gpd.GeoSeries([poly], crs="EPSG:4326").to_crs(grid.crs).iloc[0]
    share = (cap - 36.5) / (100.0 - 36.5)
    assert share.sum() * grid.cell_area == pytest.approx(poly_m.intersection(shapely.box(*grid.bounds)).area,
                                                         rel=1e-6)


def test_overlapping_drainage_polygons_do_not_add_up():
    from twin.district.grid import GridSpec

    grid = GridSpec("EPSG:4549", 642000.0, 3459000.0, 10.0, 4, 4)
    a = shapely.box(642000, 3458960, 642040, 3459000)
    b = shapely.box(642000, 3458980, 642040, 3459000)
    df = gpd.GeoDataFrame({"drainage_capacity": [100.0, 60.0]}, geometry=[a, b], crs=grid.crs)
    cap = cim.drainage_layer(grid, df)
    assert cap[0, 0] == pytest.approx(60.0) and cap[3, 0] == pytest.approx(100.0), "the later polygon wins"
    assert cap.max() <= 100.0


def test_dem_sampling_reaches_the_raster_edge_and_fills_gaps(tmp_path):
    from twin.district.dem import Dem

    dem = Dem(np.array([[1.0, 2.0], [3.0, 4.0]]), 0.0, 1.0, 1.0, "EPSG:4549")
    z = dem.sample(np.array([-0.4, 1.4, 0.5, -0.6]), np.array([1.4, -0.4, 0.5, 0.0]))
    np.testing.assert_allclose(z[:3], [1.0, 4.0, 2.5])
    assert np.isnan(z[3]), "beyond the outer half cell is outside"


def test_a_dem_replaces_the_derived_elevation(tmp_path, shared_dem):
    # a small synthetic district in Nederland, Colorado, where the SRTM tile lies
    bld = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": 1, "height": 9.0},
         "geometry": {"type": "Polygon", "coordinates": [[[-105.51, 40.12], [-105.509, 40.12],
                                                          [-105.509, 40.121], [-105.51, 40.121],
                                                          [-105.51, 40.12]]]}},
        {"type": "Feature", "properties": {"id": 2},
         "geometry": {"type": "Polygon", "coordinates": [[[-105.50, 40.13], [-105.4995, 40.13],
                                                          [-105.4995, 40.1305], [-105.50, 40.1305],
                                                          [-105.50, 40.13]]]}}]}
    (tmp_path / "buildings.geojson").write_text(json.dumps(bld))
    shutil.copy(shared_dem, tmp_path / "dem.asc")
    from twin.district.build import twin_from_sources

    sources = read_district(tmp_path, dem_crs="EPSG:4326")
    ds, _ = twin_from_sources(sources, 30.0, crs="EPSG:32613")
    z = ds["elevation"].values
    assert 2300 < np.median(z) < 2800, "SRTM elevations near Nederland, CO are about 2,500 m"
    assert "DEM dem.asc" in ds["elevation"].attrs["comment"]
