"""The scenario crowd behaves as crowds do (issue 21): arrivals enter as their entrance can receive them and walk at
Weidmann's free-branch density, a gathering holds its target density (Fruin), the JuPedSim bottleneck case of
tests/truth/crowd, and the bundled New Year's Eve scenario's first minutes (docs/science/crowd.md, "Validation of
the scenario crowd")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from models import CrowdFlow
from models.kernels import crowdflow as ck
from scenarios.forcing import prepare
from scenarios.runner import ScenarioModels
from scenarios.spec import load_scenario
from tests.truth.crowd.case import load_case
from twin.district.sources import data_dir

V0, GAMMA, RHO_MAX = 1.34, 1.913, 5.4  # Weidmann (1993), docs/science/crowd.md 1.2
RHO_C, Q_MAX = ck.weidmann_capacity(V0, GAMMA, RHO_MAX)
RED, ORANGE = 5.0, 4.0
"""Crowd raise thresholds of the district (models.config.CrowdConfig.density_raise). [person m-2]"""


def dataset(area: np.ndarray, dx: float) -> xr.Dataset:
    ny, nx = area.shape
    return xr.Dataset({"walkable_area": (("y", "x"), area, {"units": "m2"}),
                       "building_fraction": (("y", "x"), np.zeros((ny, nx)), {"units": "1"})},
                      coords={"y": -np.arange(ny) * dx, "x": np.arange(nx) * dx})


def free_branch_density(flow: float) -> float:
    """rho <= rho_c with rho v(rho) = flow [person m-1 s-1] (Weidmann's free branch), by bisection. [person m-2]"""
    lo, hi = 0.0, RHO_C
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mid * ck.weidmann_v(mid, V0, GAMMA, RHO_MAX) < flow else (lo, mid)
    return 0.5 * (lo + hi)


def corridor(rate: float, seconds: float, width: float = 2.0, n: int = 60) -> CrowdFlow:
    """A straight corridor of ``n`` cells ``width`` wide (dx = width), arrivals at ``rate`` [person s-1] at its west
    end, the exit at its east end."""
    m = CrowdFlow(dataset(np.full((1, n), width * width), width))
    sink = np.zeros((1, n), bool)
    sink[0, -1] = True
    m.set_destinations(sinks=sink)
    m.add_arrivals(np.array([0]), rate)
    m.run_one_step(seconds)
    return m


# ---------------------------------------------------------------- 1. Weidmann
@pytest.mark.parametrize("share", [0.3, 0.7])
def test_arrivals_below_capacity_walk_at_the_free_branch_density(share):
    w = 2.0
    rate = share * Q_MAX * w
    m = corridor(rate, 900.0, w)
    rho = m.count[0, :-1] / m.area[0, :-1]
    expected = free_branch_density(rate / w)
    assert expected < RHO_C
    assert rho == pytest.approx(np.full(rho.size, expected), rel=0.03)  # every cell, the entrance included
    assert rho.max() <= expected * 1.03
    assert m.people_waiting < 1e-9  # nobody waits outside


def test_arrivals_above_capacity_wait_outside_and_the_corridor_never_jams():
    w, seconds = 2.0, 900.0
    rate = 2.0 * Q_MAX * w  # twice what 2 m of width passes
    m = corridor(rate, seconds, w)
    rho = m.count[0, :-1] / m.area[0, :-1]
    assert rho.max() < RHO_MAX and rho.max() <= RHO_C * 1.03  # at capacity, far from the jam density
    assert m.people_waiting == pytest.approx(rate * seconds - m.people_in, rel=1e-9)
    assert m.people_in == pytest.approx(Q_MAX * w * seconds, rel=0.05)  # the entrance passes its capacity
    assert m.people_waiting > 0.45 * rate * seconds  # about half of them wait outside, counted


# ---------------------------------------------------------------- 2. Fruin
def test_a_gathering_holds_its_target_density_and_no_red_when_the_target_is_below():
    """2 person/m2: Fruin's (1971) queuing level of service D (1.54-3.57 person/m2, docs/science/crowd.md 1.1). The
    place is fed from one side: its first cells take their target, then the people still coming walk through them
    (the taken cells' standing crowd stays) to the empty cells behind, so it fills everywhere to its target, no cell
    above it, and no queue forms at its edge."""
    ny, nx, dx = 20, 30, 2.0
    m = CrowdFlow(dataset(np.full((ny, nx), dx * dx), dx))
    place = np.zeros((ny, nx), bool)
    place[5:15, 10:20] = True  # 400 m2
    exits = np.zeros((ny, nx), bool)
    exits[:, -1] = True  # beyond the place: people reach it first
    m.set_destinations(sinks=exits, attractors=place)
    target = 2.0 * m.area[place].sum()  # 800 people
    m.add_arrivals((np.arange(3, 17), np.zeros(14, np.int64)), 0.5)  # 7 person/s from the west
    peak_filling, peak_outside, peak_inside, full_at = 0.0, 0.0, 0.0, None
    for k in range(90):
        full = m.count[place].sum() >= 0.98 * target
        full_at = k * 10.0 if full and full_at is None else full_at
        m.set_hold(np.where(place, 2.0, np.nan), place if full else np.zeros_like(place))
        inside_before = m.count[place].sum()
        m.run_one_step(10.0)
        assert m.count[place].sum() >= inside_before - 1e-9  # nobody leaves the place
        rho = m.count / m.area
        peak_outside, peak_inside = max(peak_outside, rho[~place].max()), max(peak_inside, rho[place].max())
        peak_filling = peak_filling if full_at is not None else peak_outside
    assert m.count[place].sum() == pytest.approx(target, rel=0.02)
    assert peak_inside <= 2.0 + 1e-9  # never above the target, while filling as after
    held = m.count[place] / m.area[place]
    assert held.min() >= 0.98 * 2.0  # every cell of the place, the far side included, at its target
    assert full_at <= 200.0  # 800 people at 7 person/s is 114 s: filled without a jam at the door
    assert peak_filling < 3.0  # the approach while it fills: the free-flow queue of 7 person/s, no jam (was 5.4)
    assert peak_outside < RED  # the turn of the last comers toward the exits when it is full: never red
    assert (m.count[~place] / m.area[~place]).max() < 2.0  # once full, latecomers head for the exits: no queue
    assert m.people_out > 0
    assert abs(m.balance_error()) < 1e-9


# ---------------------------------------------------------------- 3. the JuPedSim case (tests/truth/crowd)
def jupedsim_case(stair_width: float = 1.2, dx: float = 2.0) -> dict[str, float]:
    """The truth case's geometry straightened on a 2 m grid: a 4 m deck 56 m long (two rows), a stair
    ``stair_width`` wide and 20 m long leaving its end at a right angle, the metro exit at its foot; arrivals
    30 m before the stair at 0.5 person/s for 1 min, 2.2 for 5 min, 0.5 for 2 min (779 people); 801 s.
    Returns each counter's peak density [person m-2], counted on the cells the counter lies in."""
    ny, nx = 13, 28
    area = np.zeros((ny, nx))
    area[0:2, :] = dx * 2.0
    area[2:12, nx - 1] = stair_width * dx
    area[12, nx - 1] = dx * dx
    m = CrowdFlow(dataset(area, dx))
    sink = np.zeros((ny, nx), bool)
    sink[12, nx - 1] = True
    m.set_destinations(sinks=sink)
    counters = {"truth-crowd-01": np.s_[0:2, 27], "truth-crowd-02": np.s_[0:2, 20:22],
                "truth-crowd-03": np.s_[6:8, 27], "truth-crowd-04": np.s_[0:2, 13:15]}
    peak = dict.fromkeys(counters, 0.0)
    for t in range(801):
        rate = 0.5 if t < 60 else 2.2 if t < 360 else 0.5 if t < 480 else 0.0
        m.add_arrivals((np.array([0, 1]), np.array([12, 12])), rate / 2)
        m.run_one_step(1.0)
        for k, s in counters.items():
            peak[k] = max(peak[k], m.count[s].sum() / m.area[s].sum())
    assert abs(m.balance_error()) < 1e-9
    return peak


def test_the_jupedsim_bottleneck_case():
    """Measured (docs/science/crowd.md): model 4.47 / 1.98 / 1.67 / 0.43 against JuPedSim 7.38 / 2.95 / 2.42 / 1.31
    person/m2. A macroscopic model with Weidmann's jam density 5.4 cannot reach JuPedSim's 7.4 at the stair head
    (its agents of radius 0.17 m pack to ~8 person/m2): the stair head is orange, not red. The far counters stay
    yellow or below, as in the truth."""
    truth = {d: s.peak for d, s in load_case().series.items()}
    peak = jupedsim_case()
    assert truth["truth-crowd-01"] == pytest.approx(7.38, abs=0.01)
    assert ORANGE <= peak["truth-crowd-01"] < RHO_MAX  # the queue at the stair head: orange
    assert peak["truth-crowd-01"] == pytest.approx(truth["truth-crowd-01"], rel=0.45)
    for far in ("truth-crowd-02", "truth-crowd-03", "truth-crowd-04"):
        assert peak[far] < ORANGE and truth[far] < ORANGE  # never orange, in the model as in the truth
        assert peak[far] == pytest.approx(truth[far], abs=1.0)
    assert peak["truth-crowd-01"] > peak["truth-crowd-02"] > peak["truth-crowd-04"]  # denser toward the stair


# ---------------------------------------------------------------- 4. the bundled scenario
@pytest.fixture(scope="module")
def nye(bund10):
    static, _ = bund10
    spec = load_scenario(data_dir() / "scenarios" / "bund-nye-2014.yaml")  # 2 h; the test runs its first 10 min
    return prepare(spec, static)


def test_the_new_years_eve_gatherings_that_ask_too_much_say_so(nye):
    warned = {w.split(":")[0] for w in nye.warnings if "Weidmann's jam density" in w}
    assert warned == {"forcing.crowd.gathering[0]", "forcing.crowd.gathering[1]"}  # Chen Yi Square and its stair
    chen_yi = next(w for w in nye.warnings if w.startswith("forcing.crowd.gathering[0]"))
    assert chen_yi.startswith("forcing.crowd.gathering[0]: Chen Yi Square is asked for 51,000 people")
    assert "(6.5 person/m²)" in chen_yi and "at 5.4 person/m²" in chen_yi


def test_the_new_years_eve_crowd_in_its_first_ten_minutes(nye):
    sm = ScenarioModels(nye, nye.spec.start_time, nye.spec.seed)
    steps = math.ceil(600.0 / nye.spec.step_s)  # the first 10 minutes
    peak = np.zeros(nye.grid.shape)
    for k in range(steps):
        sm.step(k * nye.spec.step_s, (k + 1) * nye.spec.step_s)
        peak = np.fmax(peak, sm.crowd.count / np.where(sm.crowd.area > 0, sm.crowd.area, np.inf))
    promenade = nye.gatherings[2].mask  # target 3.2 person/m2: never red
    assert peak[promenade].max() < RED
    assert peak.max() <= RHO_MAX + 1e-9
    assert abs(sm.crowd.balance_error()) < 1e-9
