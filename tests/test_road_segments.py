"""Road-segment alert places (twin.alerting.segments) on a small synthetic network."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from twin.alerting.segments import RoadSegments
from twin.district.geo import to_lonlat
from twin.district.grid import GridSpec
from twin.district.roads import build_road_network, ways_from_features

CRS = "EPSG:4549"
X0, Y0 = 642000.0, 3458000.0
GRID = GridSpec(CRS, X0 - 300, Y0 + 1000, 10.0, 120, 120)  # x -300 .. 900, y -200 .. 1000 (relative)

JIA = {"kind_detail": "secondary", "name": "甲路", "name:en": "Jia Road"}
CROSS = [([(-150, 0), (0, 0), (150, 0)], {"kind_detail": "secondary", "id": 4, "name": "丁路", "name:en": "Ding Road"}),
         ([(-150, 200), (0, 200), (150, 200)], {"kind_detail": "secondary", "id": 2, "name": "乙路",
                                                "name:en": "Yi Road"}),
         ([(-150, 400), (0, 400), (150, 400)], {"kind_detail": "tertiary", "id": 3, "name": "丙路",
                                                "name:en": "Bing Road"}),
         ([(0, 100), (80, 100)], {"kind_detail": "residential", "id": 5})]  # an unnamed alley: a node, no name
WU = {"kind_detail": "primary", "oneway": "yes", "name": "戊路", "name:en": "Wu Road", "lanes": "3"}
DIVIDED = [([(0, 800), (300, 800), (400, 810)], {**WU, "id": 10}),  # eastbound carriageway
           ([(400, 810), (300, 820), (0, 820)], {**WU, "id": 11}),  # westbound, from the same end node: a U-turn
           ([(400, 810), (600, 810)], {"kind_detail": "secondary", "id": 12, "name": "己路", "name:en": "Ji Road"}),
           ([(0, 750), (0, 800), (0, 820), (0, 900)], {"kind_detail": "secondary", "id": 13, "name": "庚路",
                                                       "name:en": "Geng Road"})]


def _network(main_drawn_northwards: bool = True):
    """Jia Road (two-way, north-south, x = 0, y 0 .. 600) crossed by Ding (y 0), Yi (y 200) and Bing Road (y 400),
    an alley at y 100; Wu Road, divided, east-west at y 800 / 820 with a U-turn at its east end."""
    main = [(0, 0), (0, 100), (0, 200), (0, 400), (0, 600)]
    rows = [(main if main_drawn_northwards else main[::-1], {**JIA, "id": 1}), *CROSS, *DIVIDED]
    geoms = [shapely.LineString(np.asarray(c, dtype=float) + np.array([X0, Y0])) for c, _ in rows]
    props = [{"kind": "major_road", "name": "", "name:en": "", **p} for _, p in rows]
    net = build_road_network(ways_from_features(gpd.GeoDataFrame(props, geometry=geoms, crs=CRS), CRS), GRID)
    return net, RoadSegments(net, GRID)


@pytest.fixture(scope="module")
def network():
    return _network()


def link(net, a, b) -> int:
    """The id of the link from (relative) point ``a`` to ``b``."""
    for r in net.links.itertuples():
        xy = shapely.get_coordinates(r.geometry) - [X0, Y0]
        if np.allclose(xy[0], a) and np.allclose(xy[-1], b):
            return int(r.link_id)
    raise KeyError((a, b))


def warning(net, hot: dict[tuple, int]) -> np.ndarray:
    w = np.zeros(len(net.links), np.int8)
    for (a, b), level in hot.items():
        w[link(net, a, b)] = level
    return w


NORTH = [((0, 0), (0, 100)), ((0, 100), (0, 200)), ((0, 200), (0, 400)), ((0, 400), (0, 600))]
SOUTH = [(b, a) for a, b in NORTH]


def test_the_synthetic_network(network):
    net, _ = network
    jia = net.links[net.links["name_en"] == "Jia Road"]
    assert len(jia) == 8 and sorted(jia["length_m"].round(6).tolist()) == [100.0] * 4 + [200.0] * 4
    wu = net.links[net.links["name_en"] == "Wu Road"]
    assert len(wu) == 2 and wu["v"].iloc[0] == wu["u"].iloc[1]  # two one-way carriageways meeting head to tail


def test_consecutive_hot_links_of_one_road_and_direction_are_one_place(network):
    net, seg = network
    w = warning(net, {NORTH[1]: 2, NORTH[2]: 3, NORTH[3]: 2})
    places = seg.places(w)
    assert len(places) == 1
    p = places[0]
    assert p.links.tolist() == sorted(link(net, *x) for x in NORTH[1:])
    assert p.level == 3
    assert p.evidence["links"] == 3 and p.evidence["lengthM"] == "500" and p.evidence["roadName"] == "Jia Road"
    np.testing.assert_array_equal(p.cells, seg.cells(p.links))
    assert p.cells.size >= 50  # 500 m of road on 10 m cells


def test_two_directions_are_two_places_sharing_cells_not_links(network):
    net, seg = network
    w = warning(net, {NORTH[2]: 2, NORTH[3]: 2, SOUTH[2]: 3, SOUTH[3]: 3})
    places = seg.places(w)
    assert len(places) == 2
    north, south = sorted(places, key=lambda p: "northbound" not in p.description)
    assert "northbound" in north.description and "southbound" in south.description
    assert (north.level, south.level) == (2, 3)
    assert np.intersect1d(north.links, south.links).size == 0
    assert np.intersect1d(north.cells, south.cells).size > 0


def test_links_of_another_road_are_not_joined(network):
    net, seg = network
    w = warning(net, {NORTH[2]: 2, ((0, 400), (150, 400)): 2, ((-150, 400), (0, 400)): 2})
    places = seg.places(w)  # Jia Road northbound into Bing Road eastbound, straight on through Bing Road
    assert sorted((p.evidence["roadName"], p.links.size) for p in places) == [("Bing Road", 2), ("Jia Road", 1)]


def test_a_u_turn_between_the_carriageways_of_a_divided_road_is_two_places(network):
    net, seg = network
    east, west = link(net, (0, 800), (400, 810)), link(net, (400, 810), (0, 820))
    assert net.links.loc[east, "v"] == net.links.loc[west, "u"]  # head to tail, same name: only the turn parts them
    assert seg._turn(east, west) > 120.0
    w = np.zeros(len(net.links), np.int8)
    w[[east, west]] = 3
    places = seg.places(w)
    assert [p.links.tolist() for p in places] == [[east], [west]]
    assert "eastbound" in places[0].description and "westbound" in places[1].description


def test_a_no_data_link_between_two_hot_links_is_bridged(network):
    net, seg = network
    w = warning(net, {NORTH[1]: 2, NORTH[2]: -1, NORTH[3]: 2})
    places = seg.places(w)
    assert len(places) == 1
    assert places[0].links.tolist() == sorted(link(net, *x) for x in NORTH[1:])
    # bridged links do not count towards the length: 300 m at yellow, 500 m with the bridge
    assert seg.places(w, min_length_m=300.0) and not seg.places(w, min_length_m=350.0)


def test_a_no_data_link_is_bridged_only_between_hot_links_of_its_road(network):
    net, seg = network
    one_side = warning(net, {NORTH[1]: 2, NORTH[2]: -1})  # nothing hot after it
    assert [p.links.tolist() for p in seg.places(one_side)] == [[link(net, *NORTH[1])]]
    assert seg.bridged(np.flatnonzero(one_side >= 2), one_side).size == 0
    blue_after = warning(net, {NORTH[1]: 2, NORTH[2]: -1, NORTH[3]: 1})  # blue is not hot at min_level 2
    assert [p.links.tolist() for p in seg.places(blue_after)] == [[link(net, *NORTH[1])]]
    reverse = warning(net, {NORTH[2]: -1, SOUTH[3]: 2, SOUTH[1]: 2})  # hot links of the other direction
    assert link(net, *NORTH[2]) not in np.concatenate([p.links for p in seg.places(reverse)])
    nothing_hot = np.full(len(net.links), -1, np.int8)
    assert seg.places(nothing_hot) == []


def test_min_level_and_min_length(network):
    net, seg = network
    blue = warning(net, {x: 1 for x in NORTH})
    assert seg.places(blue) == []  # blue links make no place by default (alerts from yellow up)
    assert len(seg.places(blue, min_level=1)) == 1
    short = warning(net, {NORTH[0]: 3})  # 100 m
    assert len(seg.places(short)) == 1 and seg.places(short, min_length_m=100.01) == []


def test_description_names_road_direction_and_cross_streets(network):
    net, seg = network
    (north,) = seg.places(warning(net, {NORTH[2]: 2}))
    assert north.description == "Jia Road (甲路) northbound, Yi Road to Bing Road; 甲路北向（乙路至丙路）"
    # the short names for headlines (issue 16): no key, a road segment is carried by its links
    assert (north.key, north.name_en, north.name_zh) == ("", "Jia Road northbound, Yi Road to Bing Road",
                                                         "甲路北向（乙路至丙路）")
    (south,) = seg.places(warning(net, {SOUTH[2]: 2, SOUTH[1]: 2}))
    # southbound from Bing Road; its end at the alley (no name) is described by the next cross street along
    assert south.description == "Jia Road (甲路) southbound, Bing Road to Ding Road; 甲路南向（丙路至丁路）"
    (east,) = seg.places(warning(net, {((0, 800), (400, 810)): 2}))
    assert east.description == "Wu Road (戊路) eastbound, Geng Road to Ji Road; 戊路东向（庚路至己路）"
    (west,) = seg.places(warning(net, {((400, 810), (0, 820)): 2}))
    assert west.description == "Wu Road (戊路) westbound, Ji Road to Geng Road; 戊路西向（己路至庚路）"


@pytest.mark.parametrize("drawn_northwards", [
    True,
    False,
])
def test_a_start_without_a_cross_street_is_named_by_the_one_behind(drawn_northwards):
    net, seg = _network(drawn_northwards)
    (p,) = seg.places(warning(net, {NORTH[1]: 2, NORTH[2]: 2}))  # starts at the alley (y 100), south of Yi Road
    assert p.description == "Jia Road (甲路) northbound, Ding Road to Bing Road; 甲路北向（丁路至丙路）"


def test_rings_are_lonlat_polygons_over_the_right_hand_carriageway(network):
    net, seg = network
    for hot, side in ((NORTH[2:], 1.0), (SOUTH[2:], -1.0)):  # China drives on the right: east of a northbound
        (p,) = seg.places(warning(net, dict.fromkeys(hot, 2)))
        assert p.rings
        polys = [shapely.Polygon(r) for r in p.rings]
        assert all(poly.is_valid and poly.area > 0 for poly in polys)
        lon, lat = np.concatenate(p.rings).T
        west, south, east, north = GRID.bounds_lonlat  # degrees, inside the grid, not metres
        assert ((lon > west) & (lon < east) & (lat > south) & (lat < north)).all()
        area = shapely.union_all(polys)
        for k in p.links:
            mid = net.links.geometry.iloc[k].interpolate(0.5, normalized=True)
            assert area.contains(shapely.Point(*to_lonlat(mid.x, mid.y, CRS)))
            beside = to_lonlat(mid.x + side * 3.0, mid.y, CRS)  # in the lanes of this direction
            across = to_lonlat(mid.x - side * 3.0, mid.y, CRS)  # in the lanes of the other
            assert area.contains(shapely.Point(*beside)) and not area.contains(shapely.Point(*across))


def test_a_one_way_carriageway_ring_covers_both_sides_of_its_line(network):
    net, seg = network
    east = link(net, (0, 800), (400, 810))
    (p,) = seg.places(warning(net, {((0, 800), (400, 810)): 3}))
    area = shapely.union_all([shapely.Polygon(r) for r in p.rings])
    for dy in (-4.0, 0.0, 4.0):  # 3 lanes x 3.5 m = 10.5 m wide, centred on the line
        assert area.contains(shapely.Point(*to_lonlat(X0 + 150.0, Y0 + 800.0 + dy, CRS)))
    assert not area.contains(shapely.Point(*to_lonlat(X0 + 150.0, Y0 + 800.0 + 9.0, CRS)))
    assert p.links.tolist() == [east]


def test_evidence_segment_speed_is_length_over_travel_time(network):
    net, seg = network
    ids = [link(net, *x) for x in NORTH[1:]]  # 100, 200, 200 m
    w = warning(net, {NORTH[1]: 2, NORTH[2]: -1, NORTH[3]: 3})
    speed = np.full(len(net.links), 50.0)
    speed[ids] = [10.0, np.nan, 20.0]  # the bridged link has no speed
    samples = np.zeros(len(net.links))
    samples[ids] = [4.0, np.nan, 6.0]
    vehicles = np.zeros(len(net.links))
    vehicles[ids] = [2.0, np.nan, 3.0]
    (p,) = seg.places(w, speed, samples, vehicles)
    ev = p.evidence
    assert ev["segmentSpeed"] == f"{300.0 / (100 / 10 + 200 / 20):.1f} km/h" == "15.0 km/h"  # not the mean, 15
    assert ev["minSpeed"] == "10.00 km/h"
    assert (ev["samples"], ev["vehicles"], ev["links"], ev["lengthM"]) == (10, 3, 3, "500")
    assert ev["freeFlowSpeed"] == "40.0 km/h"
    ids2 = [link(net, *x) for x in NORTH[2:]]  # 200 + 200 m at 10 and 40 km/h: 16, not the mean 25
    speed[ids2] = [10.0, 40.0]
    (q,) = seg.places(warning(net, dict.fromkeys(NORTH[2:], 2)), speed)
    assert q.evidence["segmentSpeed"] == "16.0 km/h"
    assert "samples" not in q.evidence and "vehicles" not in q.evidence
