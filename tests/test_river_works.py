"""The Huangpu's works on the grid (`twin.district.river`): the wall closes the river off (no 4-connected leak),
the sections and the land behind them, the outfalls' service areas, the datum, and the works in a flood model."""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from models.config import RiverConfig
from twin.district.dataset import empty_dataset, set_layer
from twin.district.grid import GridSpec
from twin.district.river import (
    DATUM_OFFSETS_M,
    RiverWorksError,
    datum_offset,
    grid_to_wusong,
    load_gauge,
    load_river_works,
    river_config,
    wall_faces,
    wusong_to_grid,
)

CRS = "EPSG:4549"
TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def _reached_from_river(works, building: np.ndarray) -> np.ndarray:
    """Cells a 4-connected flow reaches from the river across faces without a wall (buildings block)."""
    ny, nx = works.river.shape
    seen = works.river.copy()
    todo = deque(map(tuple, np.argwhere(works.river)))
    while todo:
        r, c = todo.popleft()
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            rr, cc = r + dr, c + dc
            if not (0 <= rr < ny and 0 <= cc < nx) or seen[rr, cc] or building[rr, cc]:
                continue
            crest = works.crest_x[r, max(c, cc)] if dr == 0 else works.crest_y[max(r, rr), c]
            if np.isnan(crest):
                seen[rr, cc] = True
                todo.append((rr, cc))
    return seen


@pytest.fixture(scope="module")
def bund_works(bund10):
    return load_river_works(bund10[0])


def test_the_bund_wall_leaves_no_gap_a_4_connected_flow_could_slip_through(bund10, bund_works):
    ds = bund10[0]
    building = ds["building_fraction"].values >= 0.5
    reached = _reached_from_river(bund_works, building)
    assert not (reached & ~bund_works.river).any()
    assert bund_works.leak_faces(building) == 0
    # the river is the Huangpu: most of the open water, and it reaches the grid's edge where the data stops
    water = ds["water_mask"].values.astype(bool)
    assert (water & bund_works.river).sum() > 0.95 * (water & ~bund_works.river).sum() * 10
    assert bund_works.river[0].any() and bund_works.river[-1].any() and bund_works.river[:, -1].any()
    assert not bund_works.river[building].any()


def test_bund_sections_their_crests_and_the_land_behind_them(bund10, bund_works):
    ds = bund10[0]
    nx = ds.sizes["x"]
    building = ds["building_fraction"].values >= 0.5
    crests = {s.id: s.crest_m for s in bund_works.sections}
    assert crests == {"south-bund": 6.9, "bund": 6.9, "suzhou-mouth-south": 5.6, "suzhou-gate": 6.9,
                      "suzhou-mouth-north": 5.6, "north-bund": 6.9, "lujiazui": 6.9}
    low, sections = bund_works.lowest_crest()
    assert low == 5.6 and [s.id for s in sections] == ["suzhou-mouth-south", "suzhou-mouth-north"]
    assert "The Bund (外滩)" in bund_works.section_names()
    for k, s in enumerate(bund_works.sections):
        assert s.source and s.n_faces > 5 and s.cells.size > 5, s.id
        r, c = np.divmod(s.cells, nx)
        assert not bund_works.river[r, c].any() and not building[r, c].any()
        # every cell behind a section has a face of that section towards a river cell
        for rr, cc in zip(r, c, strict=True):
            faces = [(bund_works.section_x[rr, cc], bund_works.river[rr, cc - 1] if cc else False),
                     (bund_works.section_x[rr, cc + 1], bund_works.river[rr, cc + 1] if cc + 1 < nx else False),
                     (bund_works.section_y[rr, cc], bund_works.river[rr - 1, cc] if rr else False),
                     (bund_works.section_y[rr + 1, cc], bund_works.river[rr + 1, cc] if rr + 1 < ds.sizes["y"]
                      else False)]
            assert any(sec == k and wet for sec, wet in faces), (s.id, rr, cc)
    finite = np.concatenate([bund_works.crest_x[np.isfinite(bund_works.crest_x)],
                             bund_works.crest_y[np.isfinite(bund_works.crest_y)]])
    assert set(np.round(finite, 6)) == {5.6, 6.9}
    by = bund_works.by_section(np.ones(ds["elevation"].shape))
    assert by["suzhou-mouth-south"] == bund_works.sections[2].cells.size


def test_outfalls_serve_the_nearest_cells_on_their_own_bank(bund10, bund_works):
    ds = bund10[0]
    w = bund_works
    assert w.outfall_ids == ["fuzhou-rd", "jinling-rd-e", "dongmen-rd", "dongdaming-rd", "north-bund-east",
                             "fenghe-rd", "dongchang-rd", "pudong-s-rd"]
    assert w.outfall_pumped.tolist() == [True, False, True, True, False, True, False, True]
    assert w.outfall_invert.tolist() == [1.5, 2.5, 1.5, 1.5, 2.5, 1.5, 2.5, 1.5]
    water = ds["water_mask"].values.astype(bool)
    service = w.outfall_service
    assert (service[w.river | water] == -1).all()
    land = ~w.river & ~water
    assert (service[land] >= 0).mean() > 0.99
    # each outfall serves its own cell, and a land cell drains to the nearest outfall among those on its bank
    nx = ds.sizes["x"]
    assert (service.ravel()[w.outfall_cells] == np.arange(len(w.outfall_ids))).all()
    orow, ocol = np.divmod(w.outfall_cells, nx)
    rng = np.random.default_rng(7)
    cells = rng.choice(np.flatnonzero((service >= 0).ravel()), 300, replace=False)
    r, c = np.divmod(cells, nx)
    served = service.ravel()[cells]
    d2 = (orow[None, :] - r[:, None]) ** 2 + (ocol[None, :] - c[:, None]) ** 2
    puxi = (0, 1, 2)  # the Bund side, south of Suzhou Creek: its cells drain to the nearest of its own outfalls
    for k, j in enumerate(served):
        if j in puxi:
            assert d2[k, j] == min(d2[k, i] for i in puxi)
    east = {5, 6, 7}
    assert not set(served[c < 60]) & east  # the western edge is Puxi


def test_datum_conversion():
    assert wusong_to_grid(4.8) == 4.8
    assert wusong_to_grid(4.8, 1.6) == pytest.approx(3.2)
    assert grid_to_wusong(wusong_to_grid(5.72, 1.6), 1.6) == pytest.approx(5.72)
    np.testing.assert_allclose(wusong_to_grid(np.array([4.8, 5.86]), 1.6), [3.2, 4.26])
    assert DATUM_OFFSETS_M["wusong"] == 0.0
    assert datum_offset(xr.Dataset(attrs={})) == 0.0
    assert datum_offset(xr.Dataset(attrs={"vertical_datum": "nhd1985"})) == 1.6
    assert datum_offset(xr.Dataset(attrs={"vertical_datum": "Wusong", "vertical_datum_offset_m": 0.25})) == 0.25
    with pytest.raises(RiverWorksError, match="vertical_datum 'egm96' is not one of"):
        datum_offset(xr.Dataset(attrs={"vertical_datum": "EGM96"}))


def test_the_gauge_file_has_sourced_levels():
    g = load_gauge()
    assert (g.id, g.name_zh) == ("huangpu-park", "黄浦公园")
    assert g.warning_m == 4.80
    assert g.level("design_high_water_m").value_m == 5.86 and g.level("record_m").value_m == 5.72
    assert all(lv.source.startswith("[") for lv in g.levels.values())
    with pytest.raises(KeyError, match="known: warning_m"):
        g.level("red")


# ------------------------------------------------------------------ a small synthetic grid
def _grid(ny=20, nx=20, dx=10.0) -> GridSpec:
    return GridSpec(CRS, 500000.0, 3460000.0, dx, ny, nx)


def _static(grid: GridSpec, water: np.ndarray, building: np.ndarray | None = None, z_land=4.0, z_water=2.0,
            **attrs) -> xr.Dataset:
    ds = empty_dataset(grid, **attrs)
    ds.attrs.pop("district", None)
    building = np.zeros(grid.shape) if building is None else building
    set_layer(ds, "water_mask", water.astype(np.int8))
    set_layer(ds, "building_fraction", building.astype(float))
    set_layer(ds, "elevation", np.where(water, z_water, np.where(building >= 0.5, z_land + 10, z_land)))
    set_layer(ds, "runoff_coefficient", np.full(grid.shape, 0.9))
    set_layer(ds, "drainage_capacity", np.zeros(grid.shape))
    return ds


def _lonlat(points):
    return [list(TO_LONLAT.transform(x, y)) for x, y in points]


def _write(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def _wall(id_, points, crest, kind="wall"):
    return {"type": "Feature", "properties": {"id": id_, "name": id_, "name_zh": "", "kind": kind, "crest_m": crest,
                                              "crest_source": "assumed: test"},
            "geometry": {"type": "LineString", "coordinates": _lonlat(points)}}


def _river_file(tmp_path, grid, x, y):
    lon, lat = TO_LONLAT.transform(x, y)
    path = tmp_path / "river.yaml"
    path.write_text(f"gauge: {{id: g, name: G, lon: {lon}, lat: {lat}}}\nriver_point: {{lon: {lon}, lat: {lat}}}\n"
                    "levels: {warning_m: {value: 4.8, source: '[mem] test'}}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("slope", [0.0, 0.37, 1.0, 2.9])
def test_a_slanted_wall_line_has_no_4_connected_gap(tmp_path, slope):
    """A wall line at any angle (through cell centres at slope 0 and 1) leaves no face a flow could pass."""
    grid = _grid(30, 30)
    x0, y0 = grid.x0, grid.y0
    # the wall: x = x0 + 100 + slope * (y0 - y) ... run from the top edge to the bottom edge
    pts = [(x0 + 105.0 + slope * 0.0, y0), (x0 + 105.0 + slope * 100.0, y0 - 300.0)] if slope < 2 else \
        [(x0 + 40.0, y0), (x0 + 140.0, y0 - 100.0), (x0 + 100.0, y0 - 300.0)]
    xs, ys = np.meshgrid(grid.x, grid.y)
    line_x = np.interp(-ys, [-p[1] for p in pts], [p[0] for p in pts])
    water = xs < line_x - 5.0  # the river west of the wall (a margin: a centre on the line is not water)
    ds = _static(grid, water)
    wall = _write(tmp_path / "wall.geojson", [_wall("w", pts, 6.0)])
    works = load_river_works(ds, wall, river_path=_river_file(tmp_path, grid, x0 + 5.0, y0 - 5.0))
    reached = _reached_from_river(works, np.zeros(grid.shape, bool))
    assert not (reached & ~works.river).any()
    assert works.leak_faces() == 0
    assert works.river.sum() >= water.sum()
    assert works.sections[0].cells.size >= 29  # one land cell behind the wall in every row at least


def test_wall_faces_of_a_line_along_cell_centres():
    grid = _grid(4, 4)
    # a horizontal line exactly along the centres of row 1: it touches the y faces above and below those centres
    y = grid.y[1]
    fx, fy = wall_faces(grid, [np.array([[grid.x0, y], [grid.x0 + 40.0, y]])])
    assert set(fy[0]) == {1 * 4 + c for c in range(4)} | {2 * 4 + c for c in range(4)}
    assert set(fx[0]) == {1 * 5 + j for j in range(1, 4)}


def _channel(tmp_path, low=5.0, high=6.0):
    """A 20 x 20 grid: river in the western 5 columns, a wall between columns 4 and 5, low in the northern half."""
    grid = _grid()
    water = np.zeros(grid.shape, bool)
    water[:, :5] = True
    ds = _static(grid, water)
    xw = grid.x0 + 50.0
    wall = _write(tmp_path / "wall.geojson", [_wall("north", [(xw, grid.y0), (xw, grid.y0 - 100.0)], low),
                                              _wall("south", [(xw, grid.y0 - 100.0), (xw, grid.y0 - 200.0)], high)])
    outfalls = _write(tmp_path / "outfalls.geojson", [
        {"type": "Feature", "properties": {"id": "p", "name": "P", "name_zh": "", "invert_m": 1.0, "pumped": True,
                                           "source": "assumed: test"},
         "geometry": {"type": "Point", "coordinates": TO_LONLAT.transform(grid.x0 + 65.0, grid.y0 - 35.0)}},
        {"type": "Feature", "properties": {"id": "g", "name": "G", "name_zh": "", "invert_m": 2.5, "pumped": False,
                                           "source": "assumed: test"},
         "geometry": {"type": "Point", "coordinates": TO_LONLAT.transform(grid.x0 + 65.0, grid.y0 - 165.0)}},
    ])
    river = _river_file(tmp_path, grid, grid.x0 + 15.0, grid.y0 - 95.0)
    return ds, wall, outfalls, river


def test_sections_faces_and_outfall_service_on_a_channel(tmp_path):
    ds, wall, outfalls, river = _channel(tmp_path)
    works = load_river_works(ds, wall, outfalls, river)
    assert works.river[:, :5].all() and not works.river[:, 5:].any()
    np.testing.assert_array_equal(works.crest_x[:10, 5], 5.0)
    np.testing.assert_array_equal(works.crest_x[10:, 5], 6.0)
    assert np.isnan(np.delete(works.crest_x, 5, axis=1)).all()
    assert np.isnan(works.crest_y).all()  # the line runs on the faces between columns 4 and 5
    north, south = works.sections
    assert sorted(north.cells.tolist()) == [r * 20 + 5 for r in range(10)]
    assert sorted(south.cells.tolist()) == [r * 20 + 5 for r in range(10, 20)]
    assert works.lowest_crest()[0] == 5.0
    # rows nearer the pumped outfall (row 3) drain there, the southern ones to the gravity outfall (row 16)
    assert (works.outfall_service[:, :5] == -1).all()
    assert (works.outfall_service[:9, 5:] == 0).all() and (works.outfall_service[11:, 5:] == 1).all()
    assert works.outfall_pumped.tolist() == [True, False] and works.outfall_invert.tolist() == [1.0, 2.5]


def test_a_grid_on_another_datum_gets_its_crests_converted(tmp_path):
    ds, wall, outfalls, river = _channel(tmp_path)
    ds.attrs["vertical_datum_offset_m"] = 1.6
    works = load_river_works(ds, wall, outfalls, river)
    assert works.crest_x[0, 5] == pytest.approx(3.4) and works.sections[0].crest_m == 5.0
    assert works.outfall_invert.tolist() == pytest.approx([-0.6, 0.9])
    assert works.level_function(4.8)(0.0) == pytest.approx(3.2)
    assert works.level_function(lambda t: 4.0 + t)(1.0) == pytest.approx(3.4)
    assert works.level_function(None) is None


def test_no_wall_file_means_no_barriers_and_the_water_is_the_river(tmp_path):
    grid = _grid()
    water = np.zeros(grid.shape, bool)
    water[:, :5] = True
    water[15:18, 12:15] = True  # a pond
    works = load_river_works(_static(grid, water))
    assert not works.has_wall and works.sections == [] and works.outfall_names == []
    assert works.river[:, :5].all() and not works.river[15:18, 12:15].any()
    assert (works.outfall_service == -1).all()


def test_bad_files_fail_with_one_line(tmp_path):
    ds, _wall_file, _outfalls, river = _channel(tmp_path)
    with pytest.raises(RiverWorksError, match="no wall file at"):
        load_river_works(ds, tmp_path / "missing.geojson")
    bad = _write(tmp_path / "bad.geojson", [{"type": "Feature", "properties": {"id": "x", "name": "x",
                                                                              "crest_m": 6.0},
                                             "geometry": {"type": "LineString",
                                                          "coordinates": [[121.0, 31.0], [121.1, 31.1]]}}])
    with pytest.raises(RiverWorksError, match="missing crest_source"):
        load_river_works(ds, bad)
    grid = _grid()
    open_wall = _write(tmp_path / "open.geojson", [_wall("w", [(grid.x0 + 50.0, grid.y0),
                                                               (grid.x0 + 50.0, grid.y0 - 60.0)], 6.0)])
    with pytest.raises(RiverWorksError, match="does not close the river off"):
        load_river_works(ds, open_wall, river_path=river)


def test_the_works_in_a_flood_model_overtop_only_the_low_section(tmp_path):
    """A river level between the two crests: water comes over the low northern section only; the pumped outfall
    drains and the gravity one is tide-locked."""
    from models.flood import FloodModel

    ds, wall, outfalls, river = _channel(tmp_path)
    works = load_river_works(ds, wall, outfalls, river)
    flood = FloodModel(ds)
    works.apply(flood, lambda t: 5.5)
    assert flood.river_level == pytest.approx(5.5)
    assert flood.outfalls_open.tolist() == [True, False]
    for _ in range(12):
        flood.run_one_step(10.0)
    fields = flood.fields()
    over = works.by_section(fields["wall_overtopping"].values)
    assert over["north"] > 0 and over["south"] == 0
    depth = fields["water_depth"].values
    assert depth[:10, 5].min() > depth[10:, 5].max()  # deepest behind the low section, spreading south from it


def test_river_config_takes_the_gauge_warning_level_and_the_lowest_crest(tmp_path, bund_works):
    assert river_config(bund_works).level_raise == (4.80, 5.10, 5.40, 5.60)
    ds, wall, outfalls, river = _channel(tmp_path, low=5.3, high=6.0)
    ds.attrs["vertical_datum_offset_m"] = 1.6  # a grid on the 1985 datum: every threshold 1.6 m lower
    cfg = river_config(load_river_works(ds, wall, outfalls, river), RiverConfig(clear_margin=0.05))
    assert cfg.level_raise == pytest.approx((3.2, 3.35, 3.5, 3.7)) and cfg.clear_margin == 0.05
    # a crest below the warning level: the colours are kept non-decreasing, all at the warning level
    ds, wall, outfalls, river = _channel(tmp_path, low=4.5, high=6.0)
    assert river_config(load_river_works(ds, wall, outfalls, river)).level_raise == (4.8, 4.8, 4.8, 4.8)


def test_a_wall_ending_near_the_grid_edge_is_run_on_to_it(tmp_path):
    """A line that stops 25 m short of the grid's edges (a grid of another cell size than the one it was drawn on)
    still closes the river off: its ends are run on to the edge (`EDGE_SNAP_M`)."""
    grid = _grid()
    water = np.zeros(grid.shape, bool)
    water[:, :5] = True
    xw = grid.x0 + 50.0
    wall = _write(tmp_path / "wall.geojson", [_wall("w", [(xw, grid.y0 - 25.0), (xw, grid.y0 - 175.0)], 6.0)])
    works = load_river_works(_static(grid, water), wall,
                             river_path=_river_file(tmp_path, grid, grid.x0 + 15.0, grid.y0 - 95.0))
    assert works.leak_faces() == 0 and works.river[:, :5].all() and not works.river[:, 5:].any()
    np.testing.assert_array_equal(works.crest_x[:, 5], 6.0)
