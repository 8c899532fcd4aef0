"""A scenario on the Bund's 10 m grid: exact rain and arrival volumes, drainage interventions, masks in time."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest

from scenarios.feeds.sensors import storm_depth_mm
from scenarios.forcing import chicago_depth_mm, prepare
from scenarios.spec import ScenarioError, load_scenario, parse_scenario
from twin.district.dataset import grid_of
from twin.district.geo import to_projected
from twin.district.sources import data_dir

EXAMPLES = sorted((data_dir() / "scenarios").glob("*.yaml"))
CHEN_YI = (121.4855, 31.2405)
"""Near Chen Yi Square, at the mouth of East Nanjing Road on the Bund (lon, lat)."""
BOX = [[121.4880, 31.2370], [121.4905, 31.2370], [121.4905, 31.2385], [121.4880, 31.2385]]
"""A small box on the Bund (lon/lat ring), about 240 m x 170 m."""


@pytest.fixture(scope="module")
def static(bund10):
    return bund10[0]


def scenario(**sections):
    return parse_scenario({"duration": "2h", "start_time": "2014-12-31T22:30:00+08:00", **sections})


def uneven_steps(end: float, seed: int = 1) -> np.ndarray:
    """Times from 0 to ``end`` at random uneven steps (1-97 s)."""
    steps = np.random.default_rng(seed).uniform(1.0, 97.0, size=int(end) // 10)
    times = np.concatenate([[0.0], np.cumsum(steps)])
    return np.append(times[times < end], end)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_prepares_on_the_bund(path, static):
    spec = load_scenario(path)
    forcing = prepare(spec, static)
    assert forcing.grid == grid_of(static)
    assert forcing.exits.any() and forcing.gatherings and forcing.arrival_streams
    for stream in forcing.arrival_streams:
        assert stream.cells.size and stream.destination.any()
    events = forcing.timeline()
    assert events[0][0] == 0.0 and events[-1] == (spec.duration_s, "the scenario ends")
    assert [t for t, _ in events] == sorted(t for t, _ in events)


# ---------------------------------------------------------------- places on the grid
def test_chen_yi_square_covers_the_cells_near_it(static):
    spec = scenario(forcing={"crowd": {"gathering": {"at": "Chen Yi Square", "peak": 100, "peak_time": "23:35"}}})
    mask = prepare(spec, static).gatherings[0].mask
    grid = grid_of(static)
    row, col = grid.cell_of_lonlat(121.4860, 31.2405)
    assert mask[row, col]
    rows, cols = np.nonzero(mask)
    x0, y0 = to_projected(*CHEN_YI)
    dist = np.hypot(grid.x[cols] - x0, grid.y[rows] - y0)
    assert dist.min() < 40.0 and dist.max() < 120.0  # the square is ~50 m x 155 m, its west edge ~23 m east
    assert 60 <= mask.sum() <= 100


def test_a_place_outside_the_grid_names_its_field(static):
    spec = scenario(interventions={"close_exit": [{"at": "metro:Lujiazui exit 1"}, {"at": [120.0, 30.0]}]})
    with pytest.raises(ScenarioError) as err:
        prepare(spec, static)
    assert err.value.problems == ["interventions.close_exit[1].at: no cell of this grid"]


def test_the_grid_must_have_the_cell_size_asked_for(static):
    spec = parse_scenario({"duration": "1h", "grid": {"district": "bund", "cell": "5m"}})
    with pytest.raises(ScenarioError, match=r"grid\.cell: the scenario asks for 5 m cells, the twin has 10 m"):
        prepare(spec, static)


# ---------------------------------------------------------------- rain
def test_chicago_depth_is_the_feeds_storm_at_peak_ratio_0_4():
    for minutes in (0.0, 5.0, 23.9, 24.0, 24.1, 47.0, 60.0, 90.0):
        assert chicago_depth_mm(minutes, 5.0, 60.0, 0.4) == storm_depth_mm(minutes, 5.0, 60.0)
    assert chicago_depth_mm(120.0, 5.0, 60.0, 0.3) == pytest.approx(storm_depth_mm(60.0, 5.0, 60.0), rel=1e-12)


def test_the_design_storm_rains_exactly_its_depth_whatever_the_steps(static):
    """docs/science/flood.md 2.2: the 5-year, 60-minute Shanghai storm averages 58.1 mm/h."""
    spec = scenario(forcing={"rain": {"design_storm": {"return_period": 5, "duration": "60min", "start": "10min"}}})
    forcing = prepare(spec, static)
    total = storm_depth_mm(60.0, 5.0, 60.0)
    assert round(total, 1) == 58.1
    for times in (np.arange(0.0, 7201.0, 10.0), uneven_steps(7200.0)):
        depth = sum(forcing.rain_at(a, b)[0, 0] * (b - a) / 3600.0 for a, b in itertools.pairwise(times))
        assert depth == pytest.approx(total, rel=1e-9)
    storm = forcing.rain_at(600.0, 4200.0)
    assert np.all(storm == storm[0, 0]) and round(storm[0, 0], 1) == 58.1
    assert forcing.rain_at(0.0, 600.0).max() == 0.0 and forcing.rain_at(4200.0, 7200.0).max() == 0.0
    peak = 600.0 + 0.4 * 3600.0
    assert forcing.rain_at(peak - 30, peak + 30)[0, 0] > forcing.rain_at(peak + 600, peak + 660)[0, 0]


def test_rain_over_a_polygon_falls_on_the_share_of_each_cell(static):
    spec = scenario(forcing={"rain": [{"series": [[0, 40], ["30min", 0]], "area": {"polygon": BOX}},
                                      {"series": [["1h", 10]]}]})
    forcing = prepare(spec, static)
    first = forcing.rain_at(0.0, 1800.0)
    assert first.max() == 40.0 and 0.0 < (first > 0).mean() < 0.01
    assert set(np.unique(first)) - {0.0, 40.0}, "edge cells get part of the rain"
    assert np.all(forcing.rain_at(1800.0, 3600.0) == 0.0)
    assert np.all(forcing.rain_at(3600.0, 7200.0) == 10.0)
    assert forcing.rain_at(1200.0, 2400.0).max() == pytest.approx(20.0)


# ---------------------------------------------------------------- drainage
def test_drainage_changes_capacity_only_inside_its_polygon(static):
    before = static["drainage_capacity"].values.copy()
    attrs = dict(static["drainage_capacity"].attrs)
    spec = scenario(interventions={"drainage": [{"area": {"polygon": BOX}, "factor": 0}]})
    forcing = prepare(spec, static)
    share = spec.interventions.drainage[0].area.fraction(forcing.grid)
    after = forcing.static["drainage_capacity"].values
    assert np.all(after[share == 1.0] == 0.0) and (share == 1.0).sum() > 100
    assert np.array_equal(after[share == 0.0], before[share == 0.0])
    edge = (share > 0) & (share < 1)
    assert np.allclose(after[edge], before[edge] * (1 - share[edge]))
    comment = forcing.static["drainage_capacity"].attrs["comment"]
    assert "scenario: x0 in near Bund viewing platform north (a polygon)" in comment
    assert np.array_equal(static["drainage_capacity"].values, before), "the input twin is never modified"
    assert dict(static["drainage_capacity"].attrs) == attrs
    assert forcing.static["walkable_area"].values is not static["walkable_area"].values


def test_drainage_capacity_and_factors_apply_in_order(static):
    before = static["drainage_capacity"].values.copy()
    spec = scenario(interventions={"drainage": [
        {"area": {"polygon": BOX}, "capacity": 120},
        {"area": "Yan'an Rd E. Tunnel Puxi portal", "radius": "60m", "factor": 0.5}]})
    forcing = prepare(spec, static)
    box = spec.interventions.drainage[0].area.fraction(forcing.grid)
    portal = spec.interventions.drainage[1].area.fraction(forcing.grid)
    after = forcing.static["drainage_capacity"].values
    assert np.all(after[(box == 1) & (portal == 0)] == 120.0)
    assert np.all(after[(portal == 1) & (box == 0)] == before[(portal == 1) & (box == 0)] * 0.5)
    assert np.array_equal(after[(box == 0) & (portal == 0)], before[(box == 0) & (portal == 0)])
    assert np.array_equal(static["drainage_capacity"].values, before)


# ---------------------------------------------------------------- crowd
def test_arrivals_integrate_exactly_to_rate_times_duration(static):
    spec = scenario(forcing={"crowd": {"arrivals": [
        {"at": "road:East Nanjing Road", "radius": "15m", "rate": "750/min", "from": "100s", "until": "1000s",
         "to": "Chen Yi Square"},
        {"at": "metro:Lujiazui exit 1", "rate": [[0, 2], ["10min", 5], ["20min", 0]], "to": "poi:Binjiang Park"}]}})
    forcing = prepare(spec, static)
    times = uneven_steps(7200.0, seed=3)
    totals = [0.0, 0.0]
    for a, b in itertools.pairwise(times):
        for cells, people, destination in forcing.arrivals(a, b):
            k = 0 if destination is forcing.arrival_streams[0].destination else 1
            totals[k] += people
            assert cells.dtype.kind == "i" and destination.dtype == bool
    assert totals[0] == pytest.approx(12.5 * 900.0, rel=1e-12)
    assert totals[1] == pytest.approx(2 * 600.0 + 5 * 600.0, rel=1e-12)
    assert forcing.arrivals(0.0, 100.0)[0][1] == pytest.approx(1.0 * 2 * 100.0)
    walkable = static["walkable_area"].values.ravel()
    assert np.all(walkable[forcing.arrival_streams[0].cells] > 0)


def test_a_gathering_rises_to_its_peak_and_falls_back(static):
    spec = scenario(forcing={"crowd": {"gathering": {"at": "Chen Yi Square", "peak": 44000, "peak_time": "23:35",
                                                     "rise": "1h", "hold": "5min", "fall": "30min"}}})
    target = prepare(spec, static).gatherings[0].target_people
    t_peak = 3900.0
    assert target(t_peak - 3600.0 - 1) == 0.0 and target(t_peak - 1800.0) == pytest.approx(22000.0)
    assert target(t_peak) == 44000.0 and target(t_peak + 300.0) == 44000.0
    assert target(t_peak + 300.0 + 900.0) == pytest.approx(22000.0) and target(t_peak + 2100.0) == 0.0
    rising = [target(t) for t in np.linspace(t_peak - 3600.0, t_peak, 50)]
    assert rising == sorted(rising)
    filling = prepare(spec, static).gatherings[0].filling
    assert not filling(t_peak - 3601.0) and filling(t_peak - 3600.0) and filling(t_peak + 300.0)
    assert not filling(t_peak + 301.0), "while the target falls people leave"


def test_closed_exits_and_the_sinks(static):
    spec = scenario(interventions={"close_exit": {"at": "metro:Lujiazui exit 1", "from": "23:30"}})
    forcing = prepare(spec, static)
    closed = forcing.closed_cells
    assert closed.any() and np.all(forcing.exits[closed & forcing.exits])
    assert not forcing.closed_cells_at(3599.0).any() and np.array_equal(forcing.closed_cells_at(3600.0), closed)
    assert np.all(forcing.exits_at(3599.0) == forcing.exits)
    assert not (forcing.exits_at(3600.0) & closed).any()
    edge = forcing.exits.copy()
    edge[1:-1, 1:-1] = False
    walkable = static["walkable_area"].values > 0
    assert np.array_equal(edge, walkable & (static["water_mask"].values == 0) & _border(walkable.shape))


def _border(shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[[0, -1], :] = out[:, [0, -1]] = True
    return out


def test_one_way_bearing_turns_into_the_grid(static):
    spec = scenario(interventions={"one_way": {"area": "Chen Yi Square", "bearing": 90, "from": "1h"}})
    zone = prepare(spec, static).one_way[0]
    convergence = (zone.grid_bearing_deg - zone.bearing_deg + 180.0) % 360.0 - 180.0
    assert -1.5 < convergence < 0.0  # east of the 120 E central meridian true north leans west in the grid
    east, north = zone.direction
    assert east == pytest.approx(1.0, abs=1e-3) and abs(north) < 0.03
    assert zone.window.start_s == 3600.0


# ---------------------------------------------------------------- roads, traffic, tide
def test_road_closures_and_demand_changes_touch_only_their_road_cells(static):
    spec = scenario(forcing={"traffic": {"road": "Middle Sichuan Road", "factor": 1.5, "until": "1h"}},
                    interventions={"close_road": {"road": "East Zhongshan No. 1 Road", "from": "30min"}})
    forcing = prepare(spec, static)
    roads = static["road_class"].values > 0
    closed = forcing.road_closed(1800.0)
    assert closed.any() and np.all(roads[closed]) and not forcing.road_closed(1799.0).any()
    factor = forcing.demand_factor(0.0)
    assert set(np.unique(factor)) == {1.0, 1.5} and np.all(roads[factor != 1.0])
    assert np.all(forcing.demand_factor(3600.0) == 1.0)
    lon, _ = forcing.grid.cell_centres_lonlat()
    assert math.isclose(np.median(lon[closed]), 121.4865, abs_tol=0.002)  # along the Bund


def test_tide_locked_outfalls(static):
    spec = scenario(interventions={"tide_locked": [{"from": "23:00", "until": "23:45"}]})
    forcing = prepare(spec, static)
    assert forcing.outlets_open(1799.0) and not forcing.outlets_open(1800.0)
    assert not forcing.outlets_open(4499.0) and forcing.outlets_open(4500.0)
    whole = prepare(scenario(interventions={"tide_locked": True}), static)
    assert not any(whole.outlets_open(t) for t in (0.0, 3600.0, 7199.0))


def test_a_prepared_scenario_pickles_for_ensemble_workers(static):
    forcing = prepare(load_scenario(data_dir() / "scenarios" / "storm-5yr-pump-down.yaml"), static)
    copy = pickle.loads(pickle.dumps(forcing))
    assert np.array_equal(copy.rain_at(1800.0, 1860.0), forcing.rain_at(1800.0, 1860.0))
    # 5 people/s at 22:30 on East Nanjing Road (the NYE arrivals ramp up over the evening)
    assert copy.arrivals(0.0, 60.0)[0][1] == forcing.arrivals(0.0, 60.0)[0][1] == 300.0
