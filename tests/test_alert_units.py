"""Operational units (issue 16): the partition, its names and precedence, the places of a level grid, the street
ponding rule, alerts carried by unit key across ticks, refresh, and snapshots of keyed places."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from twin.alerting.cap import info_block
from twin.alerting.compose import ComposeContext, issue
from twin.alerting.lifecycle import AlertBook
from twin.alerting.segments import Place
from twin.alerting.units import (
    Landmark,
    NamedArea,
    NamedPoint,
    OperationalUnits,
    UnitRules,
    grid_code,
    metro_exits,
    named_areas,
    named_points,
    read_features,
    road_landmarks,
    split_name,
)
from twin.district import geo
from twin.district.grid import GridSpec

X0, Y0 = 641000.0, 3459800.0
GRID = GridSpec("EPSG:4549", X0, Y0, 10.0, 100, 120)
"""1.2 km x 1 km of 10 m cells: 3 x 2 management grid units of 500 m (the east column 200 m wide)."""


def cell(row: int, col: int) -> int:
    return row * GRID.nx + col


def centre(row: int, col: int) -> tuple[float, float]:
    return X0 + (col + 0.5) * 10.0, Y0 - (row + 0.5) * 10.0


GAUGE = NamedPoint("water-03", "Yan'an Rd E. Tunnel Puxi portal", "延安东路隧道浦西口", *centre(20, 20), 30.0)
SQUARE = NamedArea("crowd-bund-05", "Chen Yi Square", "陈毅广场", shapely.box(X0 + 100, Y0 - 400, X0 + 300, Y0 - 100))
ROAD = Landmark("Middle Sichuan Road", "四川中路", shapely.LineString([(X0 + 600, Y0 - 10), (X0 + 600, Y0 - 490)]), 3.0)
PATH = Landmark("Riverside path", "滨江步道", shapely.LineString([(X0 + 510, Y0 - 250), (X0 + 990, Y0 - 250)]), 0.3)


@pytest.fixture(scope="module")
def units() -> OperationalUnits:
    return OperationalUnits.build(GRID, [GAUGE], [SQUARE], landmarks=[ROAD, PATH])


def test_units_partition_the_grid_with_points_over_areas_over_grid_units(units):
    owned = np.concatenate([u.cells for u in units.units])
    assert owned.size == GRID.size and np.array_equal(np.sort(owned), np.arange(GRID.size)), "each cell once"
    assert [u.kind for u in units.units[:2]] == ["point", "area"]
    assert sorted(u.id for u in units.units if u.kind == "grid") == ["A1", "A2", "B1", "B2", "C1", "C2"]
    gauge, square = units.unit("point", "water-03"), units.unit("area", "crowd-bund-05")
    assert gauge.cells.size == 29  # cell centres within 30 m: 1 + 4 + 4 + 4 + 8 + 8
    assert cell(20, 20) in gauge.cells and cell(20, 20) not in square.cells, "the point wins inside the area"
    assert square.cells.size == 20 * 30 - 29, "the cells of the square but the gauge's"
    assert units.unit_of_cell(cell(50, 5)).id == "A2" and units.unit_of_cell(cell(5, 5)).id == "A1"
    assert units.unit_of_cell(cell(99, 119)).id == "C2"


def test_grid_units_are_named_after_their_most_prominent_road(units):
    b1 = units.unit("grid", "B1")
    assert (b1.name_en, b1.name_zh) == ("Grid B1 (Middle Sichuan Road)", "网格B1（四川中路）")
    a2 = units.unit("grid", "A2")
    assert (a2.name_en, a2.name_zh) == ("Grid A2", "网格A2"), "nothing named inside: the code alone"
    assert grid_code(0, 0) == "A1" and grid_code(3, 27) == "AB4"
    gauge = units.unit("point", "water-03")
    assert gauge.key("flood") == "flood:point:water-03" and b1.key("crowd") == "crowd:grid:B1"


def test_places_are_one_per_unit_with_its_warning_cells_worst_level_and_names(units):
    level = np.zeros(GRID.shape, np.int8)
    level[20, 20], level[20, 21] = 2, 1           # the gauge
    level[15, 15], level[16, 16] = 1, 3           # the square
    level[10, 60:63] = 2                          # B1: 300 m2 of yellow water
    level[90, 90] = -1                            # no data: none
    depth = np.where(level > 0, 0.2, 0.0)
    places = units.places("flood", level, depth)
    assert [p.key for p in places] == ["flood:point:water-03", "flood:area:crowd-bund-05", "flood:grid:B1"]
    gauge, square, b1 = places
    assert gauge.cells.tolist() == [cell(20, 20), cell(20, 21)] and gauge.level == 2
    assert square.level == 3 and square.cells.tolist() == [cell(15, 15), cell(16, 16)]
    assert (gauge.name_en, gauge.name_zh) == ("Yan'an Rd E. Tunnel Puxi portal", "延安东路隧道浦西口")
    assert gauge.description == "Yan'an Rd E. Tunnel Puxi portal; 延安东路隧道浦西口"
    assert b1.name_en == "Grid B1 (Middle Sichuan Road)" and b1.links.size == 0 and b1.evidence == {}
    assert square.rings == [], "the CAP area is drawn from the alert's cells when a message is composed"
    (raised,) = issue(AlertBook("bund").tick(0.0, {}, {"flood": [square]}), ComposeContext(GRID, "t@c", "bund"))
    english = info_block(raised.message, "en-US")
    assert len(english["area"][0]["polygon"]) == 2, "two cells apart: two polygons"
    assert english["area"][0]["areaDesc"] == square.description


@pytest.mark.parametrize(("cells", "lvl", "depth", "min_area", "max_depth", "alerted"), [
    (1, 1, 0.06, 200.0, 0.15, False),   # 100 m2 of blue: street ponding
    (3, 1, 0.06, 200.0, 0.15, False),   # 300 m2, but under 15 cm (GB 51222): ponding
    (3, 1, 0.16, 200.0, 0.15, True),    # blue still held over 15 cm (the yellow raise delay)
    (3, 1, 0.06, 200.0, 0.0, True),     # the depth rule off: 300 m2 is alerted
    (2, 1, 0.06, 250.0, 0.0, False),    # 200 m2 under a minimum of 250 m2
    (1, 2, 0.16, 200.0, 0.15, True),    # yellow: always
])
def test_street_ponding_in_grid_units_is_not_alerted(units, cells, lvl, depth, min_area, max_depth, alerted):
    level = np.zeros(GRID.shape, np.int8)
    level[60, 60:60 + cells] = lvl
    metric = np.where(level > 0, depth, 0.0)
    rules = UnitRules(min_area_m2=min_area, max_depth_m=max_depth)
    assert bool(units.places("flood", level, metric, rules)) == alerted
    assert len(units.places("crowd", level, metric, rules)) == 1, "crowd: every unit with warning cells"


def test_known_points_and_areas_are_always_alerted(units):
    level = np.zeros(GRID.shape, np.int8)
    level[20, 20] = level[15, 15] = 1
    places = units.places("flood", level, np.where(level > 0, 0.051, 0.0))  # 100 m2 each, 5 cm
    assert [p.key for p in places] == ["flood:point:water-03", "flood:area:crowd-bund-05"]


def test_bad_inputs_are_clear_errors(units, tmp_path):
    with pytest.raises(ValueError, match="level grid of 4 cells"):
        units.places("flood", np.zeros(4, np.int8))
    with pytest.raises(ValueError, match="min_area_m2"):
        UnitRules(min_area_m2=-1.0)
    with pytest.raises(ValueError, match="grid_unit_m"):
        OperationalUnits.build(GRID, grid_unit_m=0.0)
    bad = tmp_path / "zones.geojson"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable GeoJSON"):
        read_features(bad)
    assert read_features(tmp_path / "missing.geojson") == []


def test_names_and_inputs_from_plain_values():
    assert split_name("外滩隧道南口 Bund Tunnel south portal") == ("Bund Tunnel south portal", "外滩隧道南口")
    assert split_name("Chen Yi Square") == ("Chen Yi Square", "Chen Yi Square")
    lon, lat = geo.to_lonlat(*centre(20, 20), GRID.crs)
    point = {"type": "Point", "coordinates": [lon, lat]}
    pts = named_points([("water-01", "外滩隧道南口 Bund Tunnel south portal", point), ("veh-1", "", None)],
                       GRID.crs, 60.0)
    assert len(pts) == 1 and pts[0].x == pytest.approx(centre(20, 20)[0], abs=0.01) and pts[0].radius_m == 60.0
    ring = [[lon, lat], [lon + 0.001, lat], [lon + 0.001, lat + 0.001], [lon, lat]]
    areas = named_areas([("crowd-1", "陈毅广场 Chen Yi Square", {"type": "Polygon", "coordinates": [ring]})], GRID.crs)
    assert (areas[0].name_en, areas[0].name_zh) == ("Chen Yi Square", "陈毅广场") and areas[0].polygon.area > 5000
    station = {"type": "Feature", "properties": {"kind": "station", "name": "陆家嘴", "name:en": "Lujiazui"},
               "geometry": {"type": "Point", "coordinates": [lon, lat]}}
    entrance = {"type": "Feature", "properties": {"kind": "subway_entrance", "ref": "1"},
                "geometry": {"type": "Point", "coordinates": [lon + 0.001, lat]}}
    (exit1,) = metro_exits([entrance], [station], GRID.crs)
    assert (exit1.id, exit1.name_en, exit1.name_zh) == ("metro-lujiazui-1", "Lujiazui exit 1", "陆家嘴1号口")
    road = {"type": "Feature", "properties": {"kind": "major_road", "kind_detail": "primary", "name": "四川中路",
                                              "name:en": "Middle Sichuan Road"},
            "geometry": {"type": "LineString", "coordinates": ring[:2]}}
    tunnel = {**road, "properties": {**road["properties"], "is_tunnel": True, "name": "隧道"}}
    (lm,) = road_landmarks([road, tunnel], GRID.crs)
    assert (lm.name_en, lm.name_zh, lm.weight) == ("Middle Sichuan Road", "四川中路", 4.0)


# ---------------------------------------------------------------- the book with keyed places
def keyed(units: OperationalUnits, hazard: str, cells: list[tuple[int, int]], lvl: int = 2) -> list[Place]:
    level = np.zeros(GRID.shape, np.int8)
    for r, c in cells:
        level[r, c] = lvl
    return units.places(hazard, level)


def test_an_alert_keeps_its_unit_by_key_across_ticks_even_without_shared_cells(units):
    book = AlertBook("bund")
    (raised,) = book.tick(0.0, {}, {"flood": keyed(units, "flood", [(10, 60)])})
    assert raised.kind == "raised" and raised.alert.place.key == "flood:grid:B1"
    assert raised.alert.place.name_zh == "网格B1（四川中路）"
    events = book.tick(60.0, {}, {"flood": keyed(units, "flood", [(40, 90), (41, 90)])})  # elsewhere in B1
    assert [(e.kind, e.alert.identifier) for e in events] == [("updated", raised.alert.identifier)]
    assert len(book.active) == 1
    events = book.tick(120.0, {}, {"flood": keyed(units, "flood", [(40, 90), (41, 90), (60, 60)])})  # and B2
    assert [(e.kind, e.alert.place.key) for e in events] == [("raised", "flood:grid:B2")]
    events = book.tick(180.0, {}, {"flood": []})
    assert sorted(e.kind for e in events) == ["cancelled", "cancelled"] and not book.active


def test_refresh_is_an_update_of_an_active_alert_and_nothing_else(units):
    book = AlertBook("bund")
    (raised,) = book.tick(0.0, {}, {"crowd": keyed(units, "crowd", [(15, 15)])})
    before = (raised.alert.level, raised.alert.cells.tolist(), list(raised.alert.messages))
    event = book.refresh(30.0, raised.alert.identifier, note="peakDensity 3.10 -> 4.60 person/m2")
    assert (event.kind, event.alert, event.t, event.note) == ("updated", raised.alert, 30.0,
                                                              "peakDensity 3.10 -> 4.60 person/m2")
    assert (raised.alert.level, raised.alert.cells.tolist(), list(raised.alert.messages)) == before
    assert book.refresh(30.0, "citytwin.bund.crowd.none") is None


def test_snapshots_keep_keys_and_names_and_old_places_restore(units):
    book = AlertBook("bund")
    (raised,) = book.tick(0.0, {}, {"flood": keyed(units, "flood", [(20, 20)], lvl=3)})
    copy = AlertBook("bund")
    copy.restore_state(book.save_state())
    place = copy.active[raised.alert.identifier].place
    assert (place.key, place.name_en, place.name_zh) == ("flood:point:water-03", GAUGE.name_en, GAUGE.name_zh)
    assert copy.tick(60.0, {}, {"flood": keyed(units, "flood", [(20, 20)], lvl=3)}) == [], "carried, unchanged"
    old = place.to_state()
    for name in ("key", "name_en", "name_zh"):
        del old[name]
    restored = Place.from_state(old)
    assert (restored.key, restored.name_en, restored.name_zh) == ("", "", "")
    assert restored.cells.tolist() == place.cells.tolist() and restored.description == place.description
