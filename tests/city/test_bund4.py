"""The Bund split by the real district boundaries into four district twins (data/city/bund4.yaml).

Compared with the Bund's own 10 m twin (``bund10``): each district grid lies on the Bund grid's lattice, its
district cells are Bund cells, no Bund cell is in two districts, and away from the border a district cell holds
what the Bund cell holds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from twin.city.boundaries import projected
from twin.district.dataset import grid_of
from twin.district.sources import data_dir

pytestmark = pytest.mark.slow  # the four district twins at 10 m: about 8 s (once per session), plus bund10

AREA_TOLERANCE = 0.5
"""The district's cells (centre rule) may differ from the true area by at most half the border band: a cell cut
by a straight border has at most half its area on the other side of its centre's, and a border of length P cuts
at most about sqrt(2) P / s cells of side s, so |error| <= sqrt(2)/2 P s. The cut cells' errors have either
sign, so half of that bound, 0.5 P s, is already loose (measured: 2-4.4 % of it). [1, times P s]"""
CORE_CELLS = 3
"""Cells at least this many cells (30 m) from the district's edge hold exactly what the Bund's cells hold: a feature
cut at the border changes the coverage only within half a carriageway (at most 12.5 m) of it. Coverages agree to
1e-3 of a cell (0.1 m2 at 10 m): a cut adds vertices, and GEOS's overlays of the cut polygons (the river's
overlapping water features) come out millimetres apart (measured: at most 2.3e-4)."""


def _bund_cells(district_ds, bund_grid) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns in the Bund grid of a district grid's district cells."""
    g = grid_of(district_ds)
    dc, dr = (g.x0 - bund_grid.x0) / g.cell_size, (bund_grid.y0 - g.y0) / g.cell_size
    assert dc == round(dc) and dr == round(dr), "the district grid is off the Bund grid's lattice"
    rows, cols = np.nonzero(district_ds["in_district"].values == 1)
    return rows + round(dr), cols + round(dc)


def test_every_bund_cell_is_in_at_most_one_district(bund4_built, bund10):
    city, _ = bund4_built
    bund = grid_of(bund10[0])
    owner = np.full(bund.shape, -1)
    for k, district in enumerate(city.districts):
        ds, _ = district.twin()
        rows, cols = _bund_cells(ds, bund)
        assert rows.min() >= 0 and cols.min() >= 0 and rows.max() < bund.ny and cols.max() < bund.nx
        assert (owner[rows, cols] == -1).all(), f"{district.partition} shares cells with another district"
        owner[rows, cols] = k
    lon, lat = bund.cell_centres_lonlat()
    in_extent = shapely.contains_xy(shapely.union_all(list(city.areas.values())), lon, lat)
    assert np.array_equal(owner >= 0, in_extent)  # and every Bund cell of the four districts' ground is in one


def test_district_areas_match_the_boundaries_cut_to_the_bund(bund4_built):
    city, report = bund4_built
    for r in report.districts:
        area = projected(city.district(r.partition).area)
        cells_km2 = r.cells * r.cell_m ** 2 / 1e6
        bound = AREA_TOLERANCE * area.length * r.cell_m / 1e6
        assert math.isclose(r.area_km2, area.area / 1e6)
        assert abs(cells_km2 - r.area_km2) <= bound, (r.partition, cells_km2, r.area_km2, bound)
    assert {r.partition: round(r.area_km2, 2) for r in report.districts} == {
        "310101": 2.5, "310109": 1.34, "310110": 0.18, "310115": 6.51}


def test_district_cells_hold_what_the_bund_cells_hold(bund4_built, bund10):
    city, _ = bund4_built
    bund_ds = bund10[0]
    bund = grid_of(bund_ds)
    for district in city.districts:
        ds, _ = district.twin()
        inside = ds["in_district"].values == 1
        core = inside.copy()  # cells CORE_CELLS from any cell outside: no cut feature reaches them
        for dr in range(-CORE_CELLS, CORE_CELLS + 1):
            for dc in range(-CORE_CELLS, CORE_CELLS + 1):
                core &= np.roll(np.roll(inside, dr, 0), dc, 1)
        core[:CORE_CELLS, :] = core[-CORE_CELLS:, :] = core[:, :CORE_CELLS] = core[:, -CORE_CELLS:] = False
        rows, cols = np.nonzero(core)
        g = grid_of(ds)
        br = rows + round((bund.y0 - g.y0) / g.cell_size)
        bc = cols + round((g.x0 - bund.x0) / g.cell_size)
        for name in ("building_fraction", "road_fraction", "water_fraction", "walkable_area"):
            scale = g.cell_area if name == "walkable_area" else 1.0
            np.testing.assert_allclose(ds[name].values[rows, cols] / scale, bund_ds[name].values[br, bc] / scale,
                                       atol=1e-3, rtol=0, err_msg=f"{district.partition} {name}")
        outside = ~inside
        for name in ("walkable_area", "runoff_coefficient", "vulnerability"):
            assert (ds[name].values[outside] == 0).all(), (district.partition, name)
        assert ds.attrs["district_code"] == district.code and ds.attrs["partition"] == district.partition


def test_each_sensor_is_in_exactly_one_district_and_every_mover_in_all(bund4_built):
    city, report = bund4_built
    bundled = json.loads((data_dir() / "bund" / "registry.geojson").read_text(encoding="utf-8"))["features"]
    sensors = {f["properties"]["id"]: f for f in bundled if f["properties"]["kind"] not in ("vehicle", "unit")}
    movers = {f["properties"]["id"] for f in bundled} - set(sensors)
    held: dict[str, list[str]] = {}
    for district in city.districts:
        registry = district.registry()
        assert movers <= set(registry.ids)
        for dev in set(registry.ids) - movers:
            held.setdefault(dev, []).append(district.partition)
            assert projected(city.district(district.partition).area).buffer(50.0).intersects(
                projected(shape(sensors[dev]["geometry"]))), dev
    assert {dev: len(p) for dev, p in held.items()} == dict.fromkeys(sensors, 1)
    assert report.assignment.unplaced == {}
    home = {dev: p[0] for dev, p in held.items()}
    assert (home["crowd-bund-01"], home["rain-03"], home["rain-04"], home["rain-05"]) == (
        "310101", "310101", "310109", "310115")  # Waibaidu Bridge south end, Yuyuan, North Bund, Lujiazui
    units = {f["properties"]["id"]: f["properties"]["district"]
             for f in json.loads((city.cache / "registry.geojson").read_text(encoding="utf-8"))["features"]
             if f["properties"]["kind"] == "unit"}
    assert len(units) == 10 and set(units.values()) <= set(city.partitions)
    assert sum(sum(c.values()) for c in report.devices.values()) == len(sensors) + len(units)


def test_a_second_build_comes_from_the_cache(bund4_built):
    city, first = bund4_built
    again = city.build(network=False)
    assert all(r.cached for r in again.districts)
    assert [(r.cells, r.buildings, r.roads_km) for r in again.districts] == [
        (r.cells, r.buildings, r.roads_km) for r in first.districts]
    assert all(r.roads_km > 0 for r in first.districts)
    assert {r.partition for r in first.districts if r.buildings == 0} == {"310110"}  # no building mapped there
