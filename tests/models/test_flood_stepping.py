"""The flood model's answer does not depend on the caller's step (issue 22; docs/science/flood.md 2.1, "Stepping")."""

import math

import numpy as np
import pytest

from models import FloodConfig
from models.flood import FloodModel, Hydrograph, Inflow
from tests.models.helpers import grid_dataset

N, DX, Q, T_END = 41, 10.0, 20.0, 300.0  # 410 m square, 20 m3/s into the centre cell for 5 minutes
C = N // 2


def _inflow_run(dt: float) -> FloodModel:
    model = FloodModel(grid_dataset(np.zeros((N, N)), DX))
    model.set_inflows([Inflow("main", [C * N + C], [1.0], Hydrograph.constant(Q))])
    while model.time < T_END - 1e-9:
        model.run_one_step(min(dt, T_END - model.time))
    return model


def test_depths_do_not_depend_on_the_callers_dt():
    """A flat 10 m grid, a sustained 20 m3/s point inflow, driven to 300 s by 1, 2, 4 and 10 s calls: the depth at
    the inflow cell, its four neighbours and 50 m away agree within 1 cm, and along a profile away from the source
    the depth never rises cell to cell (no grid-scale oscillation)."""
    points = [(C, C), (C, C - 1), (C, C + 1), (C - 1, C), (C + 1, C), (C, C + 5), (C + 5, C)]
    depths = {}
    for dt in (1.0, 2.0, 4.0, 10.0):
        model = _inflow_run(dt)
        assert model.time == pytest.approx(T_END, abs=1e-9)
        depths[dt] = np.array([model.h[p] for p in points])
        for profile in (model.h[C, C:], model.h[C, C::-1], model.h[C:, C], model.h[C + 3:, C + 3]):
            assert (np.diff(profile) <= 1e-9).all(), f"dt {dt}: the depth rises away from the source"
        assert abs(model.mass_balance_error()) < 1e-12
        assert model.inflow_volume == pytest.approx(Q * T_END, rel=1e-12)
    table = np.array(list(depths.values()))
    assert (table.max(axis=0) - table.min(axis=0)).max() < 0.01
    assert 0.3 < depths[1.0][0] < 0.5 and 0.1 < depths[1.0][5] < 0.2  # a real mound, not an empty grid


def _sub_steps(model: FloodModel) -> list[float]:
    steps: list[float] = []
    inner = model._substep

    def record(dt, t):
        steps.append(dt)
        inner(dt, t)

    model._substep = record
    return steps


def test_equal_sub_steps_and_no_short_tail():
    """n = ceil(dt / dt_cfl) equal sub-steps, each within the CFL step: 7.3 s over still 0.5 m water at dx = 2 m
    (dt_cfl = 0.7 * 2 / sqrt(g 0.5) = 0.632 s) is 12 steps of 0.6083 s, where the old loop took 11 CFL steps and a
    0.35 s tail."""
    model = FloodModel(grid_dataset(np.zeros((5, 5)), 2.0), depth=np.full((5, 5), 0.5))
    steps = _sub_steps(model)
    cfl = model.stable_dt()
    model.run_one_step(7.3)
    assert len(steps) == math.ceil(7.3 / cfl) == 12
    np.testing.assert_allclose(steps, 7.3 / 12, rtol=1e-12)
    assert max(steps) <= cfl and model.time == 7.3


def test_the_remaining_time_is_split_again_when_the_cfl_step_shrinks():
    """Rain deepens the water during the call: the CFL step shrinks, the rest is split again; every sub-step is
    within the CFL step at its start, consecutive sub-steps never differ by more than that shrink, no short tail."""
    model = FloodModel(grid_dataset(np.zeros((4, 4)), 5.0), depth=np.full((4, 4), 0.05))
    model.set_rain(3.6e6 * 0.02)  # 2 cm/s: the depth grows from 5 cm to 6 m in 300 s
    steps, cfls = [], []
    inner = model._substep

    def record(dt, t):
        steps.append(dt)
        cfls.append(model.stable_dt())
        inner(dt, t)

    model._substep = record
    model.run_one_step(300.0)
    assert sum(steps) == pytest.approx(300.0, rel=1e-12) and model.time == 300.0
    assert all(s <= c * (1 + 1e-12) for s, c in zip(steps, cfls, strict=True))
    assert min(steps) > 0.5 * model.stable_dt()  # no short tail
    assert abs(model.mass_balance_error()) < 1e-12


def test_theta_acts_per_unit_time():
    """theta_eff = 1 - (1 - theta) dt / dt_cfl: theta itself at the CFL step, 1 (no smoothing) as dt -> 0, and
    dt_max does not change it (it caps the step, not the smoothing)."""
    for dt_max in (10.0, 0.5):
        model = FloodModel(grid_dataset(np.zeros((3, 3)), 10.0), FloodConfig(theta=0.8, dt_max=dt_max),
                           depth=np.full((3, 3), 1.0))
        cfl = 0.7 * 10.0 / math.sqrt(9.80665)
        assert model.theta_eff(cfl) == pytest.approx(0.8)
        assert model.theta_eff(cfl / 4) == pytest.approx(0.95)
        assert model.theta_eff(10 * cfl) == pytest.approx(0.8)
    model = FloodModel(grid_dataset(np.zeros((3, 3)), 10.0), FloodConfig(theta=1.0))
    assert model.theta_eff(1.0) == 1.0


def test_a_steep_point_inflow_limits_the_step():
    """No inflow cell gets more than its depth (at least inflow_h_ref) in one sub-step: 20 m3/s onto a dry 100 m2
    cell starts with 0.05 * 100 / 20 = 0.25 s steps."""
    model = FloodModel(grid_dataset(np.zeros((5, 5)), 10.0))
    model.set_inflows([Inflow("p", [12], [1.0], Hydrograph.constant(20.0))])
    assert model.stable_dt() == pytest.approx(0.25)
    model.set_inflows([])
    assert model.stable_dt() == model.config.dt_max
