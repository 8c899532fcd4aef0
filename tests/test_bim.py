"""BIM entities: deduplication, building parts counted once, mapping to cells both ways, CityJSON."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from tests.conftest import DATA
from twin.district.bim import buildings_from_features, storeys_from_height
from twin.district.cityjson import CityJSONError, read_cityjson
from twin.district.grid import GridSpec

GRID = GridSpec("EPSG:4549", 642000.0, 3459000.0, 10.0, 30, 30)


def _features(rows):
    return gpd.GeoDataFrame([r[0] for r in rows], geometry=[r[1] for r in rows], crs=GRID.crs)


def _box(x, y, w, h):
    return shapely.box(GRID.x0 + x, GRID.y0 - y - h, GRID.x0 + x + w, GRID.y0 - y)


def test_a_part_on_its_building_is_not_double_counted():
    # a 40 x 25 m, 32 m (10-storey) building with a 10 x 10 m, 64 m (20-storey) tower on it
    rows = [({"id": 1, "kind": "building", "height": 32.0}, _box(50, 50, 40, 25)),
            ({"id": 2, "kind": "building_part", "root_id": 1, "height": 64.0}, _box(60, 55, 10, 10))]
    b = buildings_from_features(_features(rows), GRID)
    assert len(b.table) == 1
    row = b.table.iloc[0]
    assert storeys_from_height(32.0) == 10 and storeys_from_height(64.0) == 19  # 50/3.2 + 14/4.5
    assert row["footprint_area"] == pytest.approx(1000.0)
    assert row["floor_area"] == pytest.approx(900.0 * 10 + 100.0 * 19)  # not 1000*10 + 100*19
    assert row["height"] == 64.0 and row["floors"] == 19


def test_storeys_grow_smoothly_with_height_and_given_floors_win():
    n = storeys_from_height(np.arange(1.0, 700.0, 0.5))
    assert (np.diff(n) >= 0).all() and (np.diff(n) <= 1).all()
    rows = [({"id": 1, "kind": "building", "floors": 40}, _box(0, 0, 20, 20)),
            ({"id": 2, "kind": "building_part", "root_id": 1, "floors": 40}, _box(0, 0, 20, 20))]
    t = buildings_from_features(_features(rows), GRID).table
    assert t["floors"].iloc[0] == 40 and t["floor_area"].iloc[0] == pytest.approx(400.0 * 40)


def test_a_floating_part_adds_only_the_storeys_above_what_it_stands_on():
    # a 10 m (3-storey) building with a part spanning 90-100 m over half of it
    rows = [({"id": 1, "kind": "building", "height": 10.0}, _box(0, 0, 20, 20)),
            ({"id": 2, "kind": "building_part", "root_id": 1, "height": 100.0, "min_height": 90.0},
             _box(0, 0, 10, 20))]
    t = buildings_from_features(_features(rows), GRID).table
    above = storeys_from_height(100.0) - storeys_from_height(10.0)
    assert t["floor_area"].iloc[0] == pytest.approx(400.0 * 3 + 200.0 * above)


def test_pieces_of_one_building_clipped_at_tile_edges_are_merged():
    rows = [({"id": 7, "kind": "building", "height": 16.0, "_tile_index": 0}, _box(0, 0, 30, 20)),
            ({"id": 7, "kind": "building", "height": 16.0, "_tile_index": 1}, _box(30, 0, 20, 20))]
    b = buildings_from_features(_features(rows), GRID)
    assert len(b.table) == 1
    assert b.table["footprint_area"].iloc[0] == pytest.approx(1000.0)
    assert b.table["floor_area"].iloc[0] == pytest.approx(1000.0 * 5)


def test_same_id_pieces_standing_apart_are_separate_buildings():
    tiled = [({"id": 5, "_tile_index": 0}, _box(0, 0, 10, 10)), ({"id": 5, "_tile_index": 1}, _box(50, 50, 10, 10)),
             ({"id": 5, "_tile_index": 1}, _box(10, 0, 10, 10))]
    t = buildings_from_features(_features(tiled), GRID).table
    assert len(t) == 2 and t["id"].is_unique
    assert sorted(t["footprint_area"]) == pytest.approx([100.0, 200.0])
    # an untiled source whose features all share one id: every feature is a building
    plain = [({"id": 0, "Floor": 2}, _box(0, 0, 10, 10)), ({"id": 0, "Floor": 3}, _box(10, 0, 10, 10))]
    t = buildings_from_features(_features(plain), GRID).table
    assert len(t) == 2 and t["id"].is_unique and sorted(t["floors"]) == [2, 3]


def test_storeys_and_defaults():
    rows = [({"id": 1, "Floor": 6}, _box(0, 0, 10, 10)),
            ({"id": 2}, _box(20, 20, 10, 10)),
            ({"id": 3, "height": 300.0, "kind_detail": "communications_tower"}, _box(40, 40, 10, 10))]
    t = buildings_from_features(_features(rows), GRID).table.set_index("id")
    assert t.loc[1, "floors"] == 6 and t.loc[1, "height"] == pytest.approx(6 * 3.2)
    assert t.loc[2, "floors"] == 4
    assert t.loc[3, "floors"] == 10, "towers have at most 10 usable storeys"
    assert t.loc[3, "floor_area"] == pytest.approx(100.0 * 10)


def test_mapping_to_cells_both_ways():
    rows = [({"id": 1, "kind": "building", "height": 10.0}, _box(5, 5, 20, 10)),
            ({"id": 2, "kind": "building", "height": 10.0}, _box(25, 5, 10, 10))]
    b = buildings_from_features(_features(rows), GRID)
    cells = b.cells_of(1)
    assert cells["area"].sum() == pytest.approx(200.0)
    assert set(zip(cells["row"], cells["col"], strict=True)) == {(r, c) for r in (0, 1) for c in (0, 1, 2)}
    # cell (1, 2) holds the east half of building 1 and the west half of building 2
    assert set(b.buildings_in(1, 2)["id"]) == {1, 2}
    assert b.buildings_in(20, 20).empty
    for _, cell in b.cells.iterrows():
        assert cell["building_id"] in set(b.buildings_in(int(cell["row"]), int(cell["col"]))["id"])


def test_bund_table_is_deduplicated_and_complete(bund10, bund_sources):
    _, b = bund10
    src = bund_sources.buildings
    polys = src[src.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    roots = set(polys.loc[polys["kind"] == "building", "id"])
    orphan_parts = set(polys.loc[(polys["kind"] == "building_part") & ~polys["root_id"].isin(roots), "root_id"])
    assert b.table["id"].is_unique
    assert len(b.table) == len(roots | orphan_parts)
    assert (b.table["floor_area"] >= b.table["footprint_area"] - 1e-6).all()
    assert (b.table["occupancy"] >= 0).all()
    total = b.cells.groupby("building_id")["area"].sum()
    fp = b.table.set_index("id")["footprint_area"]
    inside = total.index
    np.testing.assert_allclose(total.to_numpy(), fp.loc[inside].to_numpy(), rtol=1e-6,
                               err_msg="buildings inside the grid are mapped to cells in full")


def test_cityjson_lod2_parts_load_with_heights():
    gdf = read_cityjson(DATA / "cityjson" / "zurich_subset_lod2.json")
    assert str(gdf.crs) == "EPSG:2056"
    assert len(gdf) == 161 and (gdf["kind"] == "building_part").all()
    assert (gdf["height"] > 0).all() and gdf["height"].max() > 20
    assert (gdf.area > 0).all() and gdf.area.sum() > 10_000
    grid = GridSpec.from_bounds(*gdf.total_bounds, 5.0, crs="EPSG:2056")
    b = buildings_from_features(gdf, grid)
    assert len(b.table) == gdf["root_id"].nunique(), "parts are grouped under their parent building"
    assert b.table["height"].max() == pytest.approx(gdf["height"].max())


def test_cityjson_solid_with_parts():
    gdf = read_cityjson(DATA / "cityjson" / "DH_01_subs.city.json", crs="EPSG:28992")
    assert set(gdf["kind"]) == {"building", "building_part"}
    assert gdf["height"].between(2.0, 15.0).all()


def test_cityjson_errors_are_clear(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"type": "FeatureCollection"}')
    with pytest.raises(CityJSONError, match="not a CityJSON"):
        read_cityjson(bad)
    with pytest.raises(CityJSONError, match="referenceSystem"):
        read_cityjson(DATA / "cityjson" / "DH_01_subs.city.json")
