"""Discharge sources of the flood model: hydrographs and inflows, exact in volume (issue 22; docs/science/flood.md
2.1, "Discharge sources")."""

import itertools

import numpy as np
import pytest

from models.flood import FloodModel, Hydrograph, Inflow
from tests.models.helpers import grid_dataset

HYDRO = Hydrograph([30.0, 100.0, 250.0, 400.0], [0.5, 6.0, 2.0, 0.0])  # a burst main: rises, falls, stops


def test_hydrograph_is_piecewise_linear_with_end_values_held():
    assert HYDRO.at(0.0) == 0.5 and HYDRO.at(30.0) == 0.5
    assert HYDRO.at(65.0) == pytest.approx(3.25)
    assert HYDRO.at(1e6) == 0.0
    assert Hydrograph.constant(4.0).at(-5.0) == 4.0
    assert Hydrograph.constant(4.0).volume(-5.0, 10.0) == 60.0
    # whole: 0.5 * 30 + (0.5 + 6) / 2 * 70 + (6 + 2) / 2 * 150 + (2 + 0) / 2 * 150 = 15 + 227.5 + 600 + 150
    assert HYDRO.volume(0.0, 500.0) == pytest.approx(992.5, rel=1e-15)
    assert HYDRO.volume(40.0, 40.0) == 0.0
    assert HYDRO.volume(70.0, 80.0) == pytest.approx(10 * HYDRO.at(75.0), rel=1e-14)  # one trapezoid
    cuts = np.sort(np.random.default_rng(0).uniform(0, 500, 40))
    edges = np.concatenate([[0.0], cuts, [500.0]])
    assert sum(HYDRO.volume(a, b) for a, b in itertools.pairwise(edges)) == pytest.approx(992.5, rel=1e-13)


@pytest.mark.parametrize(("times", "flows", "match"), [([0, 1], [1.0], "same length"), ([1, 1], [1, 2], "increasing"),
                                                       ([0, 1], [1, -2], ">= 0"), ([0, np.nan], [1, 1], "finite"),
                                                       ([], [], "same length")])
def test_bad_hydrographs_are_clear_errors(times, flows, match):
    with pytest.raises(ValueError, match=match):
        Hydrograph(times, flows)


def test_bad_inflows_are_clear_errors():
    q = Hydrograph.constant(1.0)
    with pytest.raises(ValueError, match=r"'a'.*sum to 1"):
        Inflow("a", [1, 2], [0.5, 0.6], q)
    with pytest.raises(ValueError, match=r"'b'.*same length"):
        Inflow("b", [1, 2], [1.0], q)
    with pytest.raises(ValueError, match=r"'c'.*integer"):
        Inflow("c", [1.5], [1.0], q)
    walls = np.zeros((4, 5))
    walls[2, 3] = 1.0
    model = FloodModel(grid_dataset(np.zeros((4, 5)), 5.0, building_fraction=walls))
    with pytest.raises(ValueError, match="inflow 'pump 3' falls on wall"):
        model.set_inflows([Inflow("ok", [0], [1.0], q), Inflow("pump 3", [12, 13], [0.5, 0.5], q)])
    with pytest.raises(ValueError, match="'far' has cells off the grid"):
        model.set_inflows([Inflow("far", [20], [1.0], q)])
    with pytest.raises(ValueError, match="unique"):
        model.set_inflows([Inflow("x", [0], [1.0], q), Inflow("x", [1], [1.0], q)])


def test_point_and_line_inflows_add_exactly_their_hydrograph_volume():
    """Many calls with odd dt: the water added per inflow equals the hydrograph's integral to 1e-9 relative; the
    grid holds it all (closed box, no drainage) and the mass balance closes."""
    ny, nx, dx = 12, 15, 5.0
    rng = np.random.default_rng(7)
    model = FloodModel(grid_dataset(rng.uniform(0, 0.3, (ny, nx)), dx))
    line = np.arange(3 * nx + 2, 3 * nx + 11)  # nine cells along a row: a pump outfall's spill line
    weights = rng.uniform(0.5, 1.5, line.size)
    inflows = [Inflow("point", [7 * nx + 7], [1.0], HYDRO),
               Inflow("line", line, weights / weights.sum(), Hydrograph([0.0, 200.0], [3.0, 1.0]))]
    model.set_inflows(inflows)
    for dt in rng.uniform(0.3, 17.0, 60):  # 60 calls, about 520 s
        model.run_one_step(float(dt))
    t = model.time
    expect = {"point": HYDRO.volume(0.0, t), "line": inflows[1].hydrograph.volume(0.0, t)}
    assert model.inflow_volumes["point"] == pytest.approx(expect["point"], rel=1e-9)
    assert model.inflow_volumes["line"] == pytest.approx(expect["line"], rel=1e-9)
    assert model.inflow_volume == pytest.approx(sum(expect.values()), rel=1e-9)
    assert model.stored_volume == pytest.approx(sum(expect.values()), rel=1e-9)
    assert abs(model.mass_balance_error()) < 1e-9


def test_inflows_are_replaced_and_their_totals_kept_by_name():
    model = FloodModel(grid_dataset(np.zeros((5, 5)), 10.0))
    model.set_inflows([Inflow("a", [0], [1.0], Hydrograph.constant(2.0))])
    model.run_one_step(10.0)
    model.set_inflows([Inflow("b", [24], [1.0], Hydrograph.constant(1.0))])
    model.run_one_step(10.0)
    assert model.inflow_volumes == pytest.approx({"a": 20.0, "b": 10.0}, rel=1e-12)
    model.set_inflows([])
    model.run_one_step(10.0)
    assert model.inflow_volume == pytest.approx(30.0, rel=1e-12)
    assert model.stored_volume == pytest.approx(30.0, rel=1e-12)


def test_inflow_state_survives_a_snapshot_and_old_snapshots_restore():
    ds = grid_dataset(np.zeros((5, 5)), 10.0)
    model = FloodModel(ds)
    model.set_inflows([Inflow("a", [6], [1.0], Hydrograph.constant(2.0))])
    model.run_one_step(30.0)
    state = model.save_state()
    model.run_one_step(30.0)
    again = FloodModel(ds)
    again.restore_state(state)
    assert again.inflow_volumes == {"a": pytest.approx(60.0)}
    again.set_inflows([Inflow("a", [6], [1.0], Hydrograph.constant(2.0))])  # configuration: the provider sets it
    again.run_one_step(30.0)
    np.testing.assert_array_equal(again.h, model.h)
    assert again.inflow_volumes == model.inflow_volumes
    old = {k: v for k, v in state.items() if k not in FloodModel._new_state}  # written before issue 22
    older = FloodModel(ds)
    older.restore_state(old)
    assert older.inflow_volume == 0.0 and older.inflow_volumes == {} and older.overtopping_volume.sum() == 0.0
