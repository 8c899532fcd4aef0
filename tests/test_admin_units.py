"""The management tree (issue 18, `twin.district.admin`): districts, generated streets and grid units on the bundled
Bund, a real grid from a ``--units`` file, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from twin.alerting.units import OperationalUnits
from twin.district import geo
from twin.district.admin import AdminTree, grid_code, read_units_file
from twin.district.dataset import grid_of
from twin.district.grid import GridSpec
from twin.district.sources import data_dir

BUND = data_dir() / "bund"


@pytest.fixture(scope="module")
def grid(bund10):
    return grid_of(bund10[0])


@pytest.fixture(scope="module")
def tree(grid):
    return AdminTree.build(grid, BUND, district_name="bund")


def test_grid_codes_are_letters_west_to_east_and_numbers_north_to_south():
    assert [grid_code(0, 0), grid_code(3, 2), grid_code(0, 25), grid_code(9, 26), grid_code(0, 27)] == [
        "A1", "C4", "Z1", "AA10", "AB1"]


def test_the_bund_has_its_four_districts_and_every_cell_a_street_and_district(tree, grid):
    ids = [n.id for n in tree.nodes["district"]]
    assert ids == ["district:310101", "district:310109", "district:310110", "district:310115"]
    names = {n.id: (n.name, n.name_en) for n in tree.nodes["district"]}
    assert names["district:310101"] == ("黄浦区", "Huangpu") and names["district:310115"] == ("浦东新区",
                                                                                             "Pudong New Area")
    assert tree.nodes["city"][0].id == "city" and tree.nodes["city"][0].parent is None
    assert (tree.cell_street >= 0).all() and (tree.cell_district >= 0).all() and (tree.cell_unit >= 0).all()
    # the hierarchy is consistent cell by cell: a cell's unit is in its street, its street in its district
    assert (tree.unit_street[tree.cell_unit] == tree.cell_street).all()
    assert (tree.street_district[tree.cell_street] == tree.cell_district).all()
    for level, parent_level in (("district", "city"), ("street", "district"), ("unit", "street")):
        parents = {n.id for n in tree.nodes[parent_level]}
        assert all(n.parent in parents for n in tree.nodes[level])
    for u, node in enumerate(tree.nodes["unit"]):
        assert node.parent == tree.nodes["street"][tree.unit_street[u]].id
    # a district's cells are those whose centre its polygon holds (the river is split between the districts)
    x, y = np.meshgrid(grid.x, grid.y)
    huangpu = tree.nodes["district"][0].geometry
    inside = shapely.contains_xy(huangpu, x.ravel(), y.ravel())
    assert (tree.cell_district[inside] == 0).all() and inside.sum() == (tree.cell_district == 0).sum()


def test_streets_are_generated_from_the_places_in_each_district(tree, grid):
    streets = {n.id: n for n in tree.nodes["street"]}
    assert streets["street:310101-shiliupu"].name == "十六铺片区"
    assert streets["street:310101-shiliupu"].name_en == "Shiliupu area"
    assert streets["street:310115-lu-jia-du"].name == "陆家渡片区"
    assert streets["street:310110-rest"].name == "杨浦区（其余）" and streets["street:310110-rest"].parent == \
        "district:310110"
    # the Voronoi rule: a cell of Huangpu belongs to the nearest Huangpu place
    places = {"street:310101-shiliupu": (121.49620694, 31.227627),
              "street:310101-chenghuangmiao": (121.48823008, 31.22788287),
              "street:310101-lan-ni-du": (121.490871, 31.234153)}
    px, py = geo.to_projected(np.array([p[0] for p in places.values()]), np.array([p[1] for p in places.values()]),
                              grid.crs)
    x, y = np.meshgrid(grid.x, grid.y)
    cells = np.flatnonzero(tree.cell_district == 0)[::97]
    nearest = np.argmin((x.ravel()[cells, None] - px) ** 2 + (y.ravel()[cells, None] - py) ** 2, axis=1)
    ids = [tree.nodes["street"][s].id for s in tree.cell_street[cells]]
    assert ids == [list(places)[k] for k in nearest]


def test_grid_unit_codes_match_the_alerts_grid_units_cell_for_cell(tree, grid):
    alerting = OperationalUnits.build(grid)
    assert all(u.kind == "grid" for u in alerting.units)
    theirs = np.array([u.id for u in alerting.units])[alerting.owner]
    ours = np.array([n.code.split("-")[0] for n in tree.nodes["unit"]])[tree.cell_unit]
    assert (theirs == ours).all()
    # a square over two streets is split, largest piece first, one street each
    codes = [n.code for n in tree.nodes["unit"]]
    split = [c for c in codes if "-" in c]
    assert split and all(f"{c.split('-')[0]}-1" in codes for c in split) and not any(c.split("-")[0] in codes
                                                                                        for c in split)
    sizes = np.bincount(tree.cell_unit)
    for c in split:
        if c.endswith("-2"):
            assert sizes[codes.index(c)] <= sizes[codes.index(c[:-1] + "1")]
    whole = tree.node("unit:A1")
    assert (whole.name, whole.name_en) == ("网格A1", "Grid A1")


def test_feature_collections_are_lon_lat_of_one_level_or_all(tree, grid):
    units = tree.feature_collection("unit")
    assert {f["properties"]["level"] for f in units["features"]} == {"unit"}
    west, south, east, north = grid.bounds_lonlat
    for f in units["features"][:10]:
        xy = shapely.get_coordinates(shapely.geometry.shape(f["geometry"]))
        assert (xy[:, 0] >= west - 1e-4).all() and (xy[:, 0] <= east + 1e-4).all()
        assert (xy[:, 1] >= south - 1e-4).all() and (xy[:, 1] <= north + 1e-4).all()
        assert set(f["properties"]) == {"id", "level", "name", "name_en", "parent"}
    everything = tree.feature_collection()
    assert len(everything["features"]) == 1 + 4 + len(tree.nodes["street"]) + len(tree.nodes["unit"])
    with pytest.raises(ValueError, match="unknown level"):
        tree.feature_collection("province")


def _box(lon0, lat0, lon1, lat1):
    return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}


def _write(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def test_a_units_file_gives_the_grid_and_its_streets(grid, tmp_path):
    # two units on the Bund promenade (Huangpu), one naming its street, and one far away (ignored)
    path = _write(tmp_path / "units.geojson", [
        {"type": "Feature", "geometry": _box(121.4850, 31.2380, 121.4880, 31.2410),
         "properties": {"id": "HP-01", "name": "外滩一号网格", "name_en": "Bund grid 1", "street": "外滩街道",
                        "street_en": "Waitan Subdistrict"}},
        {"type": "Feature", "geometry": _box(121.4850, 31.2350, 121.4880, 31.2380),
         "properties": {"id": "HP-02"}},
        {"type": "Feature", "geometry": _box(121.60, 31.30, 121.61, 31.31), "properties": {"id": "far"}}])
    tree = AdminTree.build(grid, BUND, units_file=path)
    assert [n.id for n in tree.nodes["unit"]] == ["unit:HP-01", "unit:HP-02"]
    one, two = tree.nodes["unit"]
    assert (one.name, one.name_en, one.parent) == ("外滩一号网格", "Bund grid 1", "street:f-waitan-subdistrict")
    assert (two.name, two.name_en) == ("HP-02", "HP-02")
    waitan = tree.node("street:f-waitan-subdistrict")
    assert (waitan.name, waitan.name_en, waitan.parent) == ("外滩街道", "Waitan Subdistrict", "district:310101")
    assert two.parent.startswith("street:310101-")
    # a cell belongs to the unit holding its centre; cells outside keep their street and district by position
    x, y = np.meshgrid(grid.x, grid.y)
    lon, lat = geo.to_lonlat(x.ravel(), y.ravel(), grid.crs)
    in_one = (lon > 121.4850) & (lon < 121.4880) & (lat > 31.2380) & (lat < 31.2410)
    assert (tree.cell_unit[in_one] == 0).all() and (tree.cell_unit == 0).sum() == in_one.sum()
    assert (tree.cell_street[in_one] == tree.index["street:f-waitan-subdistrict"]).all()
    outside = tree.cell_unit < 0
    assert outside.sum() > 0.9 * grid.size and (tree.cell_street[outside] >= 0).all()
    assert (tree.street_district[tree.cell_street] == tree.cell_district).all()
    assert [f["properties"]["id"] for f in tree.feature_collection("unit")["features"]] == ["unit:HP-01",
                                                                                           "unit:HP-02"]


@pytest.mark.parametrize("features, message", [
    ([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [121.49, 31.24]}, "properties": {"id": "a"}}],
     "is a Point, not a Polygon"),
    ([{"type": "Feature", "geometry": _box(121.48, 31.23, 121.49, 31.24), "properties": {"id": "a"}},
      {"type": "Feature", "geometry": _box(121.49, 31.23, 121.50, 31.24), "properties": {"id": "a"}}],
     "duplicate id 'a'"),
    ([{"type": "Feature", "geometry": _box(121.48, 31.23, 121.49, 31.24), "properties": {"name": "x"}}],
     "feature 0 has no 'id'"),
    ([{"type": "Feature", "geometry": _box(121.60, 31.30, 121.61, 31.31), "properties": {"id": "far"}}],
     "no polygon overlaps the twin's grid"),
    ([], "no features"),
])
def test_bad_units_files_are_one_line_errors(grid, tmp_path, features, message):
    path = _write(tmp_path / "units.geojson", features)
    with pytest.raises(ValueError, match=message) as info:
        AdminTree.build(grid, BUND, units_file=path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_missing_or_unreadable_units_file_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_units_file(tmp_path / "nothing.geojson")
    (tmp_path / "bad.geojson").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a readable GeoJSON file"):
        read_units_file(tmp_path / "bad.geojson")
    (tmp_path / "list.geojson").write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match="not a GeoJSON FeatureCollection"):
        read_units_file(tmp_path / "list.geojson")


def test_a_twin_without_district_data_is_one_district_of_one_street(tmp_path):
    grid = GridSpec("EPSG:4549", 641000.0, 3459800.0, 100.0, 12, 15)  # 1.5 x 1.2 km: 3 x 3 squares of 500 m
    tree = AdminTree.build(grid, tmp_path, district_name="demo")
    assert [n.id for n in tree.nodes["district"]] == ["district:000000"]
    assert [(n.id, n.name) for n in tree.nodes["street"]] == [("street:000000-rest", "demo（其余）")]
    assert [n.code for n in tree.nodes["unit"]] == ["A1", "B1", "C1", "A2", "B2", "C2", "A3", "B3", "C3"]
    assert np.bincount(tree.cell_unit).tolist() == [25] * 6 + [10] * 3


def test_twin_run_takes_a_units_file_and_refuses_a_bad_one_before_starting(bund_file, tmp_path, capsys):
    from twin.cli.main import build_parser, main
    from twin.cli.run import service_config

    bad = _write(tmp_path / "bad.geojson", [{"type": "Feature", "geometry": {"type": "Point",
                                                                            "coordinates": [121.49, 31.24]},
                                             "properties": {"id": "a"}}])
    assert main(["run", "--units", str(bad), "--state", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "--units" in err and "not a Polygon" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--units", str(tmp_path / "none.geojson"), "--state", str(tmp_path / "state")]) == 2
    assert "no such file" in capsys.readouterr().err
    good = _write(tmp_path / "good.geojson", [{"type": "Feature", "geometry": _box(121.485, 31.238, 121.488, 31.241),
                                               "properties": {"id": "HP-01"}}])
    args = build_parser().parse_args(["run", "--units", str(good), "--grid", str(bund_file), "--state",
                                      str(tmp_path / "state")])
    assert service_config(args).core.units_file == str(good)
    assert service_config(build_parser().parse_args(["run", "--grid", str(bund_file), "--state",
                                                     str(tmp_path / "state")])).core.units_file is None
