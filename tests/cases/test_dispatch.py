"""Dispatch suggestions: nearest free unit of the duty first, busy units never, road travel time when given."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from tests.cases import BUND
from twin.cases.dispatch import ACCESS_SPEED_KMH, DETOUR_FACTOR, UnitView, road_travel, straight_eta_s, suggest
from twin.district.geo import to_lonlat, to_projected
from twin.district.roads import RoadNetwork

X0, Y0 = to_projected(BUND.lon, BUND.lat)


def _at(east_m, north_m):
    lon, lat = to_lonlat(X0 + east_m, Y0 + north_m)
    return float(lon), float(lat)


def _unit(uid, unit_type, east_m, north_m=0.0, busy=False):
    return UnitView(uid, unit_type, *_at(east_m, north_m), busy)


UNITS = [_unit("police-near", "police", 200.0), _unit("police-busy", "police", 50.0, busy=True),
         _unit("fire-1", "fire", 100.0), _unit("police-far", "police", 0.0, 1000.0),
         UnitView("police-lost", "police", float("nan"), float("nan"))]


def test_the_nearest_free_unit_of_the_duty_comes_first_by_straight_line():
    got = suggest(BUND, ("police",), UNITS)
    assert [(s.unit, s.by) for s in got] == [("police-near", "straight"), ("police-far", "straight")]
    assert got[0].distance_m == pytest.approx(200.0, abs=0.01)
    assert got[0].eta_s == pytest.approx(DETOUR_FACTOR * 200.0 / (20.0 / 3.6), rel=1e-6)  # 46.8 s at 20 km/h
    assert got[1].eta_s == pytest.approx(1.3 * 1000.0 / (20.0 / 3.6), rel=1e-4)


def test_several_duties_rank_by_eta_and_limit_cuts():
    got = suggest(BUND, ("police", "fire"), UNITS, limit=2)
    assert [s.unit for s in got] == ["fire-1", "police-near"]  # 100 m at 30 km/h before 200 m at 20 km/h
    assert got[0].eta_s == pytest.approx(straight_eta_s(100.0, "fire"), rel=1e-4)
    assert straight_eta_s(100.0, "boat") == pytest.approx(1.3 * 100.0 / (15.0 / 3.6))
    assert suggest(BUND, ("medical",), UNITS) == [] and suggest(BUND, ("police",), UNITS, limit=0) == []


def test_busy_units_are_never_suggested():
    everyone_busy = [UnitView(u.id, u.unit_type, u.lon, u.lat, True) for u in UNITS]
    assert suggest(BUND, ("police", "fire"), everyone_busy) == []


def test_road_travel_is_used_when_it_finds_a_path_else_straight_line():
    def travel(lon0, lat0, lon1, lat1):
        return 10.0 if (lon0, lat0) == _at(0.0, 1000.0) else None

    got = suggest(BUND, ("police",), UNITS, travel=travel)
    assert [(s.unit, s.by, round(s.eta_s, 1)) for s in got] == [("police-far", "road", 10.0),
                                                                ("police-near", "straight", 46.8)]
    assert got[0].as_dict()["by"] == "road"


def _network() -> RoadNetwork:
    """Four corners of a 1 km square around the case place (node 0), one-way links, and a node far off:
    2 -> 1 -> 0 at 36 km/h (200 s), 2 -> 3 -> 0 at 72 km/h (100 s)."""
    xy = [(0, 0), (1000, 0), (1000, 1000), (0, 1000), (5000, 0)]
    nodes = gpd.GeoDataFrame({"node_id": np.arange(5)}, geometry=[shapely.Point(X0 + x, Y0 + y) for x, y in xy],
                             crs="EPSG:4549")
    ends = [(1, 0, 36.0), (2, 1, 36.0), (2, 3, 72.0), (3, 0, 72.0)]
    links = gpd.GeoDataFrame({
        "link_id": np.arange(len(ends)), "u": [u for u, _, _ in ends], "v": [v for _, v, _ in ends],
        "length_m": [1000.0] * len(ends), "free_flow_kmh": [s for _, _, s in ends]},
        geometry=[shapely.LineString([nodes.geometry[u], nodes.geometry[v]]) for u, v, _ in ends], crs="EPSG:4549")
    return RoadNetwork(links, nodes, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def test_road_travel_takes_the_fastest_path_over_the_links():
    travel = road_travel(_network())
    assert travel(*_at(1000, 1000), BUND.lon, BUND.lat) == pytest.approx(100.0, abs=0.01)  # via node 3
    assert travel(*_at(1000, 0), BUND.lon, BUND.lat) == pytest.approx(100.0, abs=0.01)
    assert travel(*_at(1000, 1000), *_at(1000, 1000)) == pytest.approx(0.0, abs=0.01)
    off = travel(*_at(1000, 1100), BUND.lon, BUND.lat)  # 100 m from node 2, walked at the access speed
    assert off == pytest.approx(100.0 + 100.0 / (ACCESS_SPEED_KMH / 3.6), abs=0.01)


def test_road_travel_is_none_without_a_path_or_off_the_network():
    travel = road_travel(_network())
    assert travel(BUND.lon, BUND.lat, *_at(1000, 1000)) is None  # one-way links lead only into node 0
    assert travel(*_at(5000, 0), BUND.lon, BUND.lat) is None  # an island node
    assert travel(*_at(2500, 2500), BUND.lon, BUND.lat) is None  # more than 500 m from every node


def test_suggestions_by_road_over_a_network():
    units = [_unit("police-2", "police", 1000.0, 1000.0), _unit("police-1", "police", 1000.0, 0.0),
             _unit("police-x", "police", 2500.0, 2500.0)]
    got = suggest(BUND, ("police",), units, travel=road_travel(_network()))
    assert [(s.unit, s.by) for s in got] == [("police-1", "road"), ("police-2", "road"), ("police-x", "straight")]
    assert got[0].eta_s == pytest.approx(100.0, abs=0.01) and got[0].distance_m == pytest.approx(1000.0, abs=0.1)
