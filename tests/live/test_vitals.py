"""The city's vital signs (issue 18, `twin.live.vitals`): the indicator maths hand-computed on a 3 x 3 grid, trends
and their memory, and the indicators of a live core on the Bund through the query interface."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest

from ingest.batch import Batch
from ingest.registry import load_registry
from twin.alerting.store import Store
from twin.district.grid import GridSpec
from twin.district.sources import data_dir
from twin.live.core import CoreConfig, TwinCore
from twin.live.query import LiveQuery
from twin.live.vitals import (
    FRAME_NAMES,
    INDICATORS,
    Grouping,
    TickInputs,
    Vitals,
    alert_parts,
    decode_frame,
    encode_frame,
    finish,
    grid_parts,
    lift,
    link_parts,
    parts_of,
    sensor_level,
    sensor_parts,
    tally,
    traffic_level,
    trend_of,
)

T0 = 1_735_689_600.0
KINDS = ("crowd", "rain", "water", "traffic")

# the 3 x 3 grid:  0 1 2 / 3 4 5 / 6 7 8; unit 0 = cells 0, 1, 3; unit 1 = cells 2, 5; cells 4, 6, 7, 8 in none
GROUP = np.array([0, 0, 1, 0, -1, 1, -1, -1, -1])
DENSITY = np.array([1.0, 2.0, np.nan, 0.5, 9.0, 3.0, np.nan, np.nan, np.nan])  # person/m2
WALKABLE = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 0.0, 0.0, 0.0])  # m2
LEVEL_CROWD = np.array([0, 2, -1, 1, 4, 3, -1, -1, -1])
LEVEL_FLOOD = np.array([1, 0, 2, 0, 0, 3, -1, -1, -1])
CELL_AREA = 100.0  # 10 m cells


def _grid(depth):
    return grid_parts(Grouping(GROUP, 2), DENSITY, WALKABLE, LEVEL_CROWD, np.asarray(depth).reshape(3, 3),
                      LEVEL_FLOOD, CELL_AREA, (3, 3))


def _unit(parts, **more):
    return finish(parts_of(2, len(KINDS), **parts, **more))


def test_people_and_water_per_unit_are_sums_and_maxima_of_their_cells():
    # two waterlogged patches (>= 0.15 m, 4-connected): cells {0, 3} in unit 0, cells {2, 5} in unit 1
    depth = [0.2, 0.0, 0.3, 0.16, 0.0, 0.4, 0.0, 0.0, 0.0]
    one, two = _unit(_grid(depth))
    # unit 0: 1 x 10 + 2 x 20 + 0.5 x 40 = 70 people on 3 cells with data; worst crowd level 2 (cell 4's 4 is in none)
    assert one["people"] == {"value": 70, "unit": "person", "level": 2, "detail": {"cells_with_data": 3}}
    # unit 1: cell 2 has no density, cell 5: 3 x 60 = 180
    assert two["people"] == {"value": 180, "unit": "person", "level": 3, "detail": {"cells_with_data": 1}}
    assert one["water"] == {"value": 0.2, "unit": "m", "level": 1,
                            "detail": {"waterlogged_points": 1, "waterlogged_m2": 200.0}}
    assert two["water"] == {"value": 0.4, "unit": "m", "level": 3,
                            "detail": {"waterlogged_points": 1, "waterlogged_m2": 200.0}}


def test_a_patch_over_two_units_is_a_point_of_each_and_one_point_of_their_street():
    depth = [0.2, 0.15, 0.3, 0.16, 0.0, 0.4, 0.0, 0.0, 0.0]  # cell 1 joins the two patches into one
    parts = parts_of(2, len(KINDS), **_grid(depth))
    one, two = finish(parts)
    assert (one["water"]["detail"], two["water"]["detail"]) == (
        {"waterlogged_points": 1, "waterlogged_m2": 300.0}, {"waterlogged_points": 1, "waterlogged_m2": 200.0})
    (street,) = finish(lift(parts, np.array([0, 0]), 1))
    assert street["people"]["value"] == 250 and street["people"]["detail"] == {"cells_with_data": 4}
    assert street["people"]["level"] == 3 and street["water"]["level"] == 3 and street["water"]["value"] == 0.4
    assert street["water"]["detail"] == {"waterlogged_points": 1, "waterlogged_m2": 500.0}
    # without any data a node has no value and level -1
    (nothing,) = finish(lift(parts, np.array([-1, -1]), 1))
    assert (nothing["people"]["value"], nothing["people"]["level"]) == (None, -1)
    assert (nothing["water"]["value"], nothing["water"]["level"]) == (None, -1)


def test_traffic_is_the_length_weighted_index_of_the_links_with_their_midpoint_inside():
    # links in unit 0 (TPI 3 over 100 m, TPI 7 over 300 m, GB/T level 3), unit 1 (no speed), outside (ignored)
    links = link_parts(np.array([0, 0, 1, -1]), 2, np.array([3.0, 7.0, np.nan, 9.0]),
                       np.array([100.0, 300.0, 50.0, 200.0]), np.array([1, 3, -1, 4]))
    one, two = _unit(links)
    # (3 x 100 + 7 x 300) / 400 = 6.0: DB11/T 785 band 6-8, moderate, level 3
    assert one["traffic"] == {"value": 6.0, "unit": "1", "level": 3, "detail": {"slow_roads": 1,
                                                                                "links_with_data": 2}}
    assert two["traffic"] == {"value": None, "unit": "1", "level": -1, "detail": {"slow_roads": 0,
                                                                                  "links_with_data": 0}}
    (no_links,) = finish(parts_of(1, len(KINDS)), has_links=False)
    assert (no_links["traffic"]["value"], no_links["traffic"]["level"]) == (None, -1)


@pytest.mark.parametrize("index, level", [(0.0, 0), (1.99, 0), (2.0, 1), (4.0, 2), (5.9, 2), (6.0, 3), (8.0, 4),
                                          (10.0, 4), (math.nan, -1)])
def test_traffic_levels_are_the_tpi_bands(index, level):
    assert traffic_level(np.array([index])).tolist() == [level]


@pytest.mark.parametrize("share, level", [(100.0, 0), (90.0, 0), (89.9, 1), (75.0, 1), (50.0, 2), (49.0, 3),
                                          (25.0, 3), (24.9, 4), (0.0, 4), (math.nan, -1)])
def test_sensor_levels_are_bands_of_the_share_reporting(share, level):
    assert sensor_level(np.array([share])).tolist() == [level]


def test_alerts_cases_sensors_and_units_are_counted_where_they_are():
    # alert 0 (orange) over both units, alert 1 (blue) in unit 1, alert 2 in no unit
    alerts = alert_parts([np.array([0, 0, 1]), np.array([1]), np.array([-1, -1])], [3, 1, 4])
    cases, overdue = tally(np.array([0, 0, 1, -1]), 2, np.array([True, False, False, True]))
    sensors = sensor_parts(np.array([0, 0, 1, 1, -1]), 2, np.array([0, 2, 0, 3, 1]),
                           np.array([True, False, True, True, False]), len(KINDS))
    units, busy = tally(np.array([0, 1, 1]), 2, np.array([True, False, True]))
    # a forecast alert (crowd_forecast, CAP certainty Likely) of level 4 in unit 1: in the detail only
    forecasts = alert_parts([np.array([1, 1])], [4])
    parts = parts_of(2, len(KINDS), alerts=alerts, forecasts=forecasts, cases=cases, overdue=overdue, units=units,
                     busy=busy, **sensors)
    one, two = finish(parts)
    none = {"1": 0, "2": 0, "3": 0, "4": 0}
    assert one["alerts"] == {"value": 1, "unit": "1", "level": 3,
                             "detail": {"by_level": {"1": 0, "2": 0, "3": 1, "4": 0}, "forecast": 0,
                                        "forecast_by_level": none}}
    assert two["alerts"] == {"value": 2, "unit": "1", "level": 3,
                             "detail": {"by_level": {"1": 1, "2": 0, "3": 1, "4": 0}, "forecast": 1,
                                        "forecast_by_level": {**none, "4": 1}}}
    assert one["cases"] == {"value": 2, "unit": "1", "level": 2, "detail": {"overdue": 1}}
    assert two["cases"] == {"value": 1, "unit": "1", "level": 0, "detail": {"overdue": 0}}
    assert one["sensors"] == {"value": 50.0, "unit": "%", "level": 2,
                              "detail": {"expected": 2, "reporting": 1, "stale_by_kind": {"water": 1}}}
    assert two["sensors"] == {"value": 100.0, "unit": "%", "level": 0,
                              "detail": {"expected": 2, "reporting": 2, "stale_by_kind": {}}}
    assert one["units"] == {"value": 1, "unit": "1", "level": 0, "detail": {"busy": 1, "free": 0}}
    assert two["units"] == {"value": 2, "unit": "1", "level": 0, "detail": {"busy": 1, "free": 1}}
    # the street of both units: alert 0 counted once; 1 of 4 sensors silent is 75 %, blue
    (street,) = finish(lift(parts, np.array([0, 0]), 1))
    assert street["alerts"]["value"] == 2 and street["alerts"]["detail"]["by_level"] == {"1": 1, "2": 0, "3": 1,
                                                                                         "4": 0}
    assert street["sensors"]["value"] == 75.0 and street["sensors"]["level"] == 1
    assert street["alerts"]["detail"]["forecast"] == 1 and street["alerts"]["level"] == 3
    assert street["cases"]["value"] == 3 and street["units"]["detail"] == {"busy": 2, "free": 1}
    (no_desk,) = finish(parts_of(1, len(KINDS)), has_cases=False)
    assert (no_desk["cases"]["value"], no_desk["cases"]["level"]) == (None, -1)
    assert list(one) == list(INDICATORS)


def test_an_indicator_without_data_has_no_value():
    # the flood levels are no data everywhere (rain gauges silent) though the flood model gives 0 m of water
    parts = grid_parts(Grouping(GROUP, 2), DENSITY, WALKABLE, np.full(9, -1), np.zeros((3, 3)), np.full(9, -1),
                       CELL_AREA, (3, 3))
    one, two = finish(parts_of(2, len(KINDS), **parts))
    assert (one["water"]["value"], one["water"]["level"]) == (None, -1)
    # the same rule for people: densities known (70 people in unit 0) but no crowd level
    assert (one["people"]["value"], one["people"]["level"]) == (None, -1)
    # with a level, the value stays (unit 1's 0.0 m at flood level 0)
    level_flood = np.array([-1, -1, 0, -1, -1, -1, -1, -1, -1])
    parts = grid_parts(Grouping(GROUP, 2), DENSITY, WALKABLE, LEVEL_CROWD, np.zeros((3, 3)), level_flood,
                       CELL_AREA, (3, 3))
    one, two = finish(parts_of(2, len(KINDS), **parts))
    assert (one["water"]["value"], two["water"]["value"], two["water"]["level"]) == (None, 0.0, 0)
    assert one["people"]["value"] == 70


def test_trends_and_their_arrows():
    assert trend_of("people", 1000, 500) == (500, "↑")
    assert trend_of("people", 1000, 1040) == (-40, "→")  # within 5 % of 1040
    assert trend_of("people", 5, 0) == (5, "→")  # under 10 people
    assert trend_of("water", 0.12, 0.30) == (-0.18, "↓")
    assert trend_of("alerts", 1, 0) == (1, "↑")
    assert trend_of("alerts", 0, 0) == (0, "→")
    assert trend_of("traffic", None, 3.0) == (None, "")


def test_frames_round_trip():
    level = np.array([[-1, 0, 1], [2, 3, 4]], np.int8)
    assert (decode_frame(encode_frame(level), (2, 3)) == level).all()
    with pytest.raises(ValueError, match="for a grid of 3 x 3"):
        decode_frame(encode_frame(level), (3, 3))


# ---------------------------------------------------------------- the stateful part on a small grid
GRID = GridSpec("EPSG:4549", 641000.0, 3459800.0, 100.0, 12, 15)  # 180 cells of 100 m, 9 generated units


def _inputs(t, density):
    n = GRID.size
    return TickInputs(t, np.full(n, density), np.full(n, 50.0), np.zeros(n, np.int8), np.zeros(n), np.zeros(n,
                      np.int8), frames={"level": np.zeros(GRID.shape, np.int8)})


class CountingStore:
    """The store, counting its prunes."""

    def __init__(self, store):
        self.store, self.prunes = store, []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def prune_vitals(self, now, *args):
        self.prunes.append(now)
        return self.store.prune_vitals(now, *args)


def test_the_trend_is_the_change_over_an_hour_and_survives_a_restart(tmp_path):
    store = CountingStore(Store.open(":memory:"))
    vitals = Vitals(GRID, store, tmp_path, district_name="demo")
    city = []
    for k in range(62):  # one tick a minute for 61 minutes: 0.1 person/m2 for half an hour, then 0.2
        t = T0 + 60 * k
        vitals.tick(_inputs(t, 0.1 if k < 30 else 0.2))
        city.append(vitals.nodes_at("city")["nodes"][0]["indicators"])
    # 180 cells x 50 m2: 900 people, then 1800
    assert [c["people"]["value"] for c in city[::30]] == [900, 1800, 1800]
    assert city[54]["people"]["trend"] is None and city[54]["people"]["trend_arrow"] == ""  # 54 min: no hour yet
    assert (city[55]["people"]["trend"], city[55]["people"]["trend_arrow"]) == (900, "↑")  # 55 min: 5 min off
    assert (city[60]["people"]["trend"], city[60]["people"]["trend_arrow"]) == (900, "↑")
    assert (city[60]["alerts"]["trend"], city[60]["alerts"]["trend_arrow"]) == (0, "→")
    assert city[60]["traffic"]["trend"] is None
    assert store.prunes == [T0 + 60 * k for k in range(62)], "a prune a minute of twin time, no more"
    # a restart: a new memory reads the minute rows back from the store
    again = Vitals(GRID, store, tmp_path, district_name="demo")
    again.tick(_inputs(T0 + 3720, 0.3))
    people = again.nodes_at("city")["nodes"][0]["indicators"]["people"]
    assert (people["value"], people["trend"], people["trend_arrow"]) == (2700, 1800, "↑")  # vs 900 at T0 + 120
    assert store.prunes[-1] == T0 + 3720, "a new memory prunes at its first tick"
    # two ticks within a minute: one prune, and one minute row (the first tick of the minute)
    vitals.tick(_inputs(T0 + 3781, 0.2))
    vitals.tick(_inputs(T0 + 3782, 0.2))
    assert store.prunes[-1] == T0 + 3781 and len(store.prunes) == 62 + 2
    assert [t for t, node, _ in store.indicator_samples(T0 + 3750, T0 + 3800) if node == "city"] == [T0 + 3781]
    # the second tick changed nothing: no tick row (a minute row at 3781 only)
    assert [t for t, _ in store.indicator_rows("city", T0 + 3750, T0 + 3800)] == [T0 + 3781]


def test_rows_and_frames_are_stored_when_they_change_and_every_minute(tmp_path):
    store = Store.open(":memory:")
    vitals = Vitals(GRID, store, tmp_path, district_name="demo")
    nodes = len(vitals.tree.nodes["city"]) + sum(len(vitals.tree.nodes[lv]) for lv in ("district", "street", "unit"))
    flood = np.zeros(GRID.shape, np.int8)
    for k in range(13):  # a tick every 10 s: 0.1 person/m2, 0.2 from 30 s, a flooded cell from 40 s to 50 s
        inputs = _inputs(T0 + 10 * k, 0.1 if k < 3 else 0.2)
        inputs.frames["level_flood"] = flood if k not in (4, 5) else np.pad(np.ones((1, 1), np.int8),
                                                                            ((0, 11), (0, 14)))
        vitals.tick(inputs)
    # every node at T0 and T0 + 60 (minute rows) and T0 + 120, and at T0 + 30 (the people changed everywhere)
    assert store.indicator_count("m") == 3 * nodes and store.indicator_count("t") == nodes
    assert [t for t, _ in store.indicator_rows("city", T0, T0 + 200)] == [T0, T0 + 30, T0 + 60, T0 + 120]
    # frames: "level" never changed (stored once), "level_flood" at T0, T0 + 40 and back at T0 + 60
    assert store.frame_times("level", T0) == [T0]
    assert store.frame_times("level_flood", T0) == [T0, T0 + 40, T0 + 60]
    assert vitals.frame("level_flood", T0 + 55)[1] == T0 + 40 and vitals.frame("level", T0 + 125)[1] == T0
    # the timeline lists every time something was stored
    assert vitals.frame_times(T0 + 120) == {"names": list(FRAME_NAMES),
                                            "times": [T0, T0 + 30, T0 + 40, T0 + 60, T0 + 120]}
    # as stored at T0 + 50: the rows of T0 + 30 (1800 people), at that time
    city = vitals.nodes_at("city", at=T0 + 50)
    assert city["t"] == T0 + 30 and city["nodes"][0]["indicators"]["people"]["value"] == 1800


class FailingStore(CountingStore):
    """The store, failing its writes while ``down``."""

    down = False

    def record_vitals(self, *args):
        if self.down:
            raise OSError("disk I/O error\nsecond line")
        return self.store.record_vitals(*args)


def test_a_store_outage_keeps_the_tiles_live_and_logs_a_line_a_minute(tmp_path, caplog):
    store = FailingStore(Store.open(":memory:"))
    vitals = Vitals(GRID, store, tmp_path, district_name="demo")
    wall = [1000.0]
    vitals.clock = lambda: wall[0]
    vitals.tick(_inputs(T0, 0.1))
    store.down = True
    caplog.set_level("WARNING", logger="twin.live.vitals")
    for k in range(1, 8):  # 7 ticks 10 s apart (twin and wall clock): failures at wall 1010 and 1070 logged
        wall[0] = 1000.0 + 10 * k
        vitals.tick(_inputs(T0 + 10 * k, 0.1 * (k + 1)))
        # the tiles (and /metrics) follow the twin
        assert vitals.last[0] == T0 + 10 * k
        assert vitals.nodes_at("city")["nodes"][0]["indicators"]["people"]["value"] == 900 * (k + 1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in line and "disk I/O error" in line for line in lines)
    assert "(1 ticks not stored)" in lines[0] and "(7 ticks not stored)" in lines[1]
    assert all(r.exc_info is None for r in caplog.records)
    caplog.clear()
    store.down = False
    wall[0] = 1080.0
    vitals.tick(_inputs(T0 + 80, 0.8))
    assert [r.getMessage() for r in caplog.records] == ["vital signs: the store works again (7 ticks were not "
                                                        "stored)"]
    # the minute row missed at T0 + 60 is written at the first tick that could (T0 + 80), with every node
    assert [t for t, _ in store.indicator_rows("city", T0, T0 + 100)] == [T0, T0 + 80]
    assert store.indicator_count("m") == 2 * len(vitals.node_ids)


# ---------------------------------------------------------------- a live core on the Bund
SQUARE = "crowd-bund-05"  # Chen Yi Square's counter
CHEN_YI_SQUARE = (121.4855, 31.2405)


@pytest.fixture(scope="module")
def registry():
    return load_registry(data_dir() / "bund" / "registry.geojson")


@pytest.fixture(scope="module")
def live(bund10, registry):
    """A core after 16 ticks 10 s apart: quiet counters, then 40000 people on Chen Yi Square (red), a police unit
    on the square."""
    ds, _ = bund10
    core = TwinCore(ds, registry, Store.open(":memory:"), CoreConfig(clear_s=20.0))
    core.ticks = []  # (t, the last bodies, the frames) of each tick
    ids = [d.id for d in registry.of_kind("crowd")]
    for k in range(16):
        t = T0 + 10 * k
        counts = np.array([40000.0 if (d == SQUARE and k >= 3) else 300.0 for d in ids])
        core.on_batch(Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity="count", value=counts))
        core.on_batch(Batch.build(1, device="unit-police-04", t=t, quantity="position", lon=CHEN_YI_SQUARE[0],
                                  lat=CHEN_YI_SQUARE[1], datum="CGCS2000", speed_kmh=4.0))
        core.on_tick(t)
        core.ticks.append((t, core.vitals.last[1], {n: core.models.layers[n].values.copy() for n in FRAME_NAMES}))
    query = LiveQuery(types.SimpleNamespace(core=core, static=ds))
    yield core, query
    core.store.close()


def test_the_city_indicators_of_a_live_core(live, registry):
    core, query = live
    body = query.indicators()
    assert body["t"] == T0 + 150 and body["level"] == "city" and [n["id"] for n in body["nodes"]] == ["city"]
    city = body["nodes"][0]["indicators"]
    assert list(city) == list(INDICATORS)
    layers = core.models.layers
    density, walkable = layers["crowd_density"].values, core.state.static["walkable_area"].values
    known = np.isfinite(density)
    assert city["people"]["value"] == round(float((density[known] * walkable[known]).sum()))
    assert city["people"]["detail"] == {"cells_with_data": int(known.sum())}
    assert city["people"]["level"] == int(layers["level_crowd"].values.max()) == 4
    # the alerts indicator counts the observed alerts; the crowd forecast (CAP certainty Likely) is in its detail
    active = core.active_alerts()
    observed = [a for a in active if a.hazard != "crowd_forecast"]
    forecast = [a for a in active if a.hazard == "crowd_forecast"]
    assert len(forecast) == 1 and len(observed) >= 1
    assert city["alerts"]["value"] == len(observed) and city["alerts"]["level"] == max(a.level for a in observed)
    assert city["alerts"]["detail"]["by_level"][str(forecast[0].level)] == sum(a.level == forecast[0].level
                                                                              for a in observed)
    assert city["alerts"]["detail"]["forecast"] == 1
    assert city["alerts"]["detail"]["forecast_by_level"] == {str(lv): int(lv == forecast[0].level)
                                                             for lv in range(1, 5)}
    assert city["cases"]["value"] == len(core.cases(open_only=True))
    # only the crowd counters report: 12 of 32 sensors, 37.5 %, orange
    assert city["sensors"] == {"value": 37.5, "unit": "%", "level": 3, "trend": None, "trend_arrow": "",
                               "detail": {"expected": 32, "reporting": 12,
                                          "stale_by_kind": {"rain": 6, "water": 6, "traffic": 8}}}
    # the rain and water gauges are silent: the flood levels are no data, so the water has no value (the model's
    # 0 m is not shown next to a grey "no data")
    assert int(layers["level_flood"].values.max()) == -1 and float(np.nanmax(layers["water_depth"].values)) == 0.0
    assert city["units"]["value"] == 1 and (city["water"]["value"], city["water"]["level"]) == (None, -1)


def test_the_unit_holding_the_square_has_its_people_alert_and_police(live):
    core, query = live
    tree = core.vitals.tree
    row, col = core.state.grid.cell_of_lonlat(*CHEN_YI_SQUARE)
    unit = tree.nodes["unit"][tree.cell_unit[int(row) * core.state.grid.nx + int(col)]]
    street = unit.parent
    units = query.indicators("unit", parent=street)
    assert {n["parent"] for n in units["nodes"]} == {street} and unit.id in [n["id"] for n in units["nodes"]]
    mine = next(n for n in units["nodes"] if n["id"] == unit.id)["indicators"]
    assert mine["units"]["value"] == 1 and mine["alerts"]["level"] == 4 and mine["people"]["level"] == 4
    district = query.indicators("district")
    assert [n["id"] for n in district["nodes"]] == ["district:310101", "district:310109", "district:310110",
                                                    "district:310115"]
    huangpu = district["nodes"][0]["indicators"]
    assert huangpu["units"]["value"] == 1 and huangpu["alerts"]["level"] == 4
    # every level adds up to the city
    city = query.indicators()["nodes"][0]["indicators"]
    for level in ("district", "street", "unit"):
        nodes = query.indicators(level)["nodes"]
        assert sum(n["indicators"]["people"]["value"] or 0 for n in nodes) == pytest.approx(
            city["people"]["value"], abs=len(nodes))
        assert sum(n["indicators"]["sensors"]["detail"]["expected"] for n in nodes) == 32
    with pytest.raises(ValueError, match="unknown level"):
        query.indicators("province")


def _stored(ticks):
    """What the storage rule keeps of the ticks (t, bodies, frames): {t: nodes with a row} (every node at the first
    tick of a minute, else the nodes whose value, level or detail differ from their last row) and the times at which
    a row or a frame (one differing from the last of its name) was stored."""
    rows, times, last, frames, minute = {}, [], {}, {}, None
    for t, bodies, grids in ticks:
        whole, minute = minute is None or t // 60 > minute, t // 60
        body = {n: {k: [v[0], v[1], v[4]] for k, v in json.loads(b).items()} for n, b in bodies.items()}
        rows[t] = [n for n in bodies if whole or body[n] != last.get(n)]
        last.update((n, body[n]) for n in rows[t])
        changed = [n for n, g in grids.items() if n not in frames or not np.array_equal(frames[n], g)]
        frames.update((n, grids[n]) for n in changed)
        if rows[t] or changed:
            times.append(t)
    return rows, times


def test_stored_indicators_history_and_frames(live):
    core, query = live
    rows, times = _stored(core.ticks)
    city_times = [t for t, nodes in rows.items() if "city" in nodes]
    # minute rows at T0, T0 + 60 and T0 + 120; between them the city's changes only (not every tick)
    assert {T0, T0 + 60, T0 + 120} <= set(city_times) and len(city_times) < 16
    assert sum(len(n) for n in rows.values()) < 16 * len(core.vitals.node_ids)
    assert core.store.indicator_count() == sum(len(n) for n in rows.values())
    earlier = query.indicators("city", at=T0 + 15)
    assert earlier["t"] == max(t for t in times if t <= T0 + 15)
    assert earlier["nodes"][0]["indicators"]["alerts"]["value"] == 0
    assert query.indicators("city", at=T0 - 1)["t"] is None
    # as stored at or before a time: the same as the live values of the tick then
    for k in (4, 9, 15):
        at = {n["id"]: n["indicators"] for n in query.indicators("unit", at=T0 + 10 * k + 5)["nodes"]}
        bodies = core.ticks[k][1]
        for node in list(at)[:20]:
            live_values = {name: v[:2] + v[4:] for name, v in json.loads(bodies[node]).items()}
            assert {name: [i["value"], i["level"], i["detail"]] for name, i in at[node].items()} == live_values
    history = query.indicator_history("city", "people")
    assert history["until"] == T0 + 150 and history["since"] == T0 + 150 - 3600
    points = history["series"]["people"]["points"]
    assert [p[0] for p in points] == city_times and history["series"]["people"]["unit"] == "person"
    assert points[-1][1:] == [query.indicators()["nodes"][0]["indicators"]["people"]["value"], 4]
    assert set(query.indicator_history("city")["series"]) == set(INDICATORS)
    assert query.indicator_history("city", since=T0 + 100, until=T0 + 120)["series"]["alerts"]["points"][-1][0] == \
        T0 + 120
    with pytest.raises(KeyError):
        query.indicator_history("unit:ZZ99")
    with pytest.raises(ValueError, match="unknown indicator"):
        query.indicator_history("city", "mood")
    # the timeline: every time a row or a frame was stored (something changed, or a minute began)
    frames = query.layer_frames()
    assert frames == {"names": list(FRAME_NAMES), "times": times}
    frame, t = query.layer_frame("level_crowd", T0 + 1000)
    crowd = [g["level_crowd"] for _, _, g in core.ticks]
    changed = [T0 + 10 * k for k in range(16) if k == 0 or not np.array_equal(crowd[k], crowd[k - 1])]
    assert len(changed) < 16 and t == changed[-1]
    assert frame.dtype == np.int8 and (frame == core.models.layers["level_crowd"].values).all()
    assert query.layer_frame("level", T0 - 1) is None
    with pytest.raises(ValueError, match="unknown frame"):
        query.layer_frame("rain", T0)
    units = query.admin_units("unit")
    assert len(units["features"]) == len(core.vitals.tree.nodes["unit"])
    assert query.admin_units()["features"][0]["properties"] == {"id": "city", "level": "city", "name": "全市",
                                                                "name_en": "City", "parent": None}


def test_a_core_with_a_units_file_reports_its_units_and_refuses_one_off_the_grid(bund10, registry, tmp_path):
    def units(path, lon0, lat0):
        ring = [[lon0, lat0], [lon0 + 0.003, lat0], [lon0 + 0.003, lat0 + 0.003], [lon0, lat0 + 0.003], [lon0, lat0]]
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
             "properties": {"id": "HP-01", "name": "外滩一号网格", "name_en": "Bund grid 1"}}]}), encoding="utf-8")
        return str(path)

    ds, _ = bund10
    store = Store.open(":memory:")
    with pytest.raises(ValueError, match="no polygon overlaps the twin's grid"):
        TwinCore(ds, registry, store, CoreConfig(units_file=units(tmp_path / "far.geojson", 121.60, 31.30)))
    core = TwinCore(ds, registry, store, CoreConfig(units_file=units(tmp_path / "bund.geojson", 121.485, 31.238)))
    core.on_batch(Batch.build(1, device="unit-police-04", t=T0, quantity="position", lon=121.4865, lat=31.2395,
                              datum="CGCS2000", speed_kmh=4.0))
    core.on_tick(T0)
    (node,) = core.indicators("unit")["nodes"]
    assert (node["id"], node["name"], node["name_en"]) == ("unit:HP-01", "外滩一号网格", "Bund grid 1")
    assert node["indicators"]["units"]["value"] == 1 and node["parent"].startswith("street:310101-")
    store.close()
