"""Discharges onto the ground in scenarios (``forcing.inflow``): checked input, cells and shares on the grid, and the
water a run adds is exactly the hydrograph's integral."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scenarios.forcing import line_cells, prepare
from scenarios.runner import ScenarioModels, run_models
from scenarios.spec import ScenarioError, parse_scenario
from scenarios.water_sections import Linear, parse_discharge
from twin.district.dataset import grid_of

START = "2024-09-17T22:30:00+08:00"
STREET = [121.4865, 31.2371]
"""A point on East Zhongshan No. 1 Road on the Bund (lon, lat): a road cell, not a building."""
RIVER = [121.4905, 31.2396]
"""A point in the Huangpu (open water; data/bund/river.yaml's river point)."""
PROMENADE = ((121.48653, 31.2380), (121.48653, 31.2372))
"""A north-south line of about 90 m on the Bund's open ground between the road and the river (lon, lat)."""


@pytest.fixture(scope="module")
def static(bund10):
    return bund10[0]


def spec(**forcing):
    return parse_scenario({"duration": "10min", "start_time": START, "forcing": forcing})


def problems(**forcing) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        spec(**forcing)
    return err.value.problems


def test_bad_inflows_are_one_line_errors_naming_their_field():
    found = problems(inflow=[
        {"name": "a", "at": STREET, "discharge": -1},
        {"name": "b", "at": STREET, "hydrograph": []},
        {"name": "c", "at": STREET, "discharge": "3 gal/s"},
        {"name": "d", "at": STREET, "hydrograph": [["22:40", 1.0], ["22:35", "200 L/s"]]},
        {"name": "e", "at": STREET, "line": [STREET, [121.489, 31.238]], "discharge": 1},
        {"name": "f", "at": STREET, "discharge": 1},
        {"name": "g", "line": [STREET], "discharge": 1}])
    assert found == [
        "forcing.inflow[0].discharge: must not be negative (got -1): a discharge goes onto the ground",
        "forcing.inflow[1].hydrograph: must be a non-empty list of [time, value] pairs (got [])",
        "forcing.inflow[2].discharge: unknown unit 'gal/s' in '3 gal/s'; use m3/s, m3/min, m3/h or L/s",
        "forcing.inflow[3].hydrograph[1][0]: times must not go back (+5min after +10min)",
        "forcing.inflow[4]: give one of 'at' (a place), 'polygon' or 'line' ([[lon, lat], ...])",
        "forcing.inflow[6].line: must be a list of at least 2 [lon, lat] points (got [[121.4865, 31.2371]])"]


def test_a_duplicate_name_is_an_error():
    found = problems(inflow=[{"name": "main", "at": STREET, "discharge": 1},
                             {"name": "main", "at": STREET, "discharge": 2}])
    assert found == ["forcing.inflow[1].name: 'main' is already the name of forcing.inflow[0]: give each inflow its "
                     "own name"]


def test_discharge_units():
    assert parse_discharge(2.5) == 2.5
    assert parse_discharge("2.5 m3/s") == 2.5
    assert parse_discharge("300 L/s") == pytest.approx(0.3)
    assert parse_discharge("9000 m3/h") == pytest.approx(2.5)
    assert parse_discharge("120 m³/min") == pytest.approx(2.0)


def test_a_square_discharge_and_a_hydrograph_integrate_exactly():
    s = spec(inflow=[{"name": "pump", "at": STREET, "discharge": "2.5 m3/s", "from": "22:32", "until": "22:37"},
                     {"name": "main", "at": STREET, "hydrograph": [["22:31", 0], ["22:33", 1.2], ["22:36", 0]]}])
    pump, main = s.forcing.inflow
    assert pump.hydrograph == Linear((120.0, 120.0, 420.0, 420.0), (0.0, 2.5, 2.5, 0.0))
    assert pump.hydrograph.at(119.9) == 0 and pump.hydrograph.at(120.0) == 2.5 and pump.hydrograph.at(420.0) == 0
    assert pump.hydrograph.integral(0, 600) == pytest.approx(2.5 * 300)
    assert main.hydrograph.integral(0, 600) == pytest.approx(0.5 * 1.2 * 300)
    cut = [0, 17, 100, 125, 190, 333, 600]
    assert sum(main.hydrograph.integral(a, b) for a, b in itertools.pairwise(cut)) == pytest.approx(180.0, abs=1e-12)


def test_a_place_on_no_usable_cell_is_an_error_naming_the_field(static):
    s = spec(inflow=[{"name": "in the river", "at": RIVER, "radius": "5m", "discharge": 1}])
    with pytest.raises(ScenarioError) as err:
        prepare(s, static)
    assert err.value.problems == ["forcing.inflow[0].at: no usable cell of this grid for the inflow 'in the river' "
                                  "(its cells are buildings, open water or off the grid)"]


def test_a_line_source_spreads_by_length_over_the_cells_it_crosses(static):
    grid = grid_of(static)
    line = PROMENADE
    cells, share = line_cells(grid, line)
    assert cells.size >= 8 and share.sum() == pytest.approx(89.0, rel=0.05)
    cols = np.unique(cells % grid.nx)
    assert cols.size <= 2, "a north-south line stays in one or two columns"
    s = spec(inflow=[{"name": "burst main", "line": [list(p) for p in line], "discharge": 0.5}])
    source = prepare(s, static).inflows[0]
    assert source.weights.sum() == pytest.approx(1.0)
    assert set(source.cells.tolist()) <= set(cells.tolist())
    walls = static["building_fraction"].values.ravel()[source.cells] >= 0.5
    assert not walls.any()


def test_the_water_a_run_adds_is_the_hydrographs_integral(static):
    """Steps of 30 s against hydrograph corners at 95 s, 400 s and 430 s: the volume is exact anyway."""
    s = parse_scenario({"duration": "8min", "step": "30s", "start_time": START, "forcing": {"inflow": [
        {"name": "pump outfall", "at": STREET, "radius": "0m", "hydrograph": [[0, 0], ["95s", 2.0], ["400s", 2.0],
                                                                               ["430s", 0]]},
        {"name": "burst main", "line": [list(p) for p in PROMENADE], "discharge": "300 L/s",
         "from": "22:31:10", "until": "22:35:50"}]}})
    forcing = prepare(s, static)
    assert forcing.inflows[0].cells.size == 1, "radius 0: the cell holding the point"
    models = ScenarioModels(forcing, s.start_time)
    result = run_models(models, duration_s=s.duration_s, step_s=s.step_s, every_s=60.0)
    expected = {"pump outfall": 0.5 * 2.0 * 95 + 2.0 * 305 + 0.5 * 2.0 * 30, "burst main": 0.3 * 280}
    flood = models.flood
    assert flood.inflow_volume == pytest.approx(sum(expected.values()), rel=1e-12)
    assert flood.inflow_volumes == pytest.approx(expected, rel=1e-12)
    assert abs(result.balance["water"]) < 1e-9
    assert flood.stored_volume + flood.drained_volume + flood.outlet_volume == pytest.approx(
        sum(expected.values()), rel=1e-9)
    assert result.wall is None and forcing.river is None, "no river: no wall, the river an outlet as before"
