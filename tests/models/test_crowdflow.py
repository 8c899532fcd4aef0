"""Science tests of the macroscopic crowd-flow model (docs/science/crowd.md 1.2 and "Validation tests we can run here
(crowd)"; issue 8 "How we will know it works": conservation, door capacity, closing an exit).

The crowd-flow kernels are compared with their numpy references in test_kernels_reference.py."""

import math

import numpy as np
import pytest
import xarray as xr

from models import CrowdFlow, CrowdFlowConfig
from models.kernels import crowdflow as ck
from models.reference import crowdflow as rc

V0, GAMMA, RHO_MAX = 1.34, 1.913, 5.4  # Weidmann (1993) [mem], docs/science/crowd.md 1.2
FD = np.array([V0, GAMMA, RHO_MAX, *ck.weidmann_capacity(V0, GAMMA, RHO_MAX)])


def dataset(area: np.ndarray, dx: float, width: np.ndarray | None = None, building=None) -> xr.Dataset:
    """A (y, x) dataset, row 0 north (as twin grids), with walkable area [m2] and optional passage width [m]."""
    ny, nx = area.shape
    layers = {"walkable_area": (("y", "x"), area, {"units": "m2"}),
              "building_fraction": (("y", "x"), np.zeros((ny, nx)) if building is None else building, {"units": "1"})}
    if width is not None:
        layers["passage_width"] = (("y", "x"), width, {"units": "m"})
    return xr.Dataset(layers, coords={"y": -np.arange(ny) * dx, "x": np.arange(nx) * dx})


def density(model: CrowdFlow) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(model.walkable, model.count / model.area, np.nan)


# ---------------------------------------------------------------- 1. Weidmann fundamental diagram
# docs/science/crowd.md 1.2 [run]: v(1) = 1.06, v(2) = 0.61, v(3) = 0.33, v(4) = 0.16, v(5) = 0.04 m/s (two decimals)
SCIENCE_1_2_SPEEDS = {1.0: 1.06, 2.0: 0.61, 3.0: 0.33, 4.0: 0.16, 5.0: 0.04}


def test_weidmann_speed_matches_published_values():
    """Weidmann (1993): v(0+) = v0 = 1.34 m/s, v(rho_max) = 0, and the docs/science/crowd.md 1.2 table."""
    assert ck.weidmann_v(1e-9, V0, GAMMA, RHO_MAX) == pytest.approx(1.34, abs=1e-12)
    assert ck.weidmann_v(0.0, V0, GAMMA, RHO_MAX) == 1.34
    assert ck.weidmann_v(RHO_MAX, V0, GAMMA, RHO_MAX) == 0.0
    assert ck.weidmann_v(7.0, V0, GAMMA, RHO_MAX) == 0.0  # above the jam density nobody walks
    for rho, v in SCIENCE_1_2_SPEEDS.items():
        got = ck.weidmann_v(rho, V0, GAMMA, RHO_MAX)
        assert got == pytest.approx(v, abs=0.005)
        assert got == pytest.approx(V0 * (1 - math.exp(-GAMMA * (1 / rho - 1 / RHO_MAX))), rel=1e-15)
    # the same law as the live twin's crowd kernel
    rho = np.linspace(0.0, 6.0, 61)
    v, q = np.empty_like(rho), np.empty_like(rho)
    ck.weidmann_speed(rho, V0, GAMMA, RHO_MAX, v, q)
    assert np.array_equal(v, [ck.weidmann_v(r, V0, GAMMA, RHO_MAX) for r in rho])


def test_weidmann_capacity_from_the_fundamental_diagram():
    """J_max = 1.225 +- 0.005 p/m/s at rho = 1.75 (docs/science/crowd.md 1.2 [run] and crowd validation test 2)."""
    rho_c, j_max = ck.weidmann_capacity(V0, GAMMA, RHO_MAX)
    assert j_max == pytest.approx(1.225, abs=0.005)
    assert rho_c == pytest.approx(1.75, abs=0.01)
    assert 1.7 < rho_c < 1.8 and 73.0 < 60 * j_max < 74.0  # 73.5 p/m/min
    # it is the maximum of rho v(rho) on a fine grid ...
    rho = np.linspace(1e-6, RHO_MAX, 2_000_001)
    q = rho * rc._speed(rho, V0, GAMMA, RHO_MAX)
    assert j_max >= q.max() - 1e-15 and abs(rho[q.argmax()] - rho_c) < 1e-5
    # ... and the closed form: dq/drho = 0 <=> u = gamma/rho_c = -W_{-1}(-exp(-1 - gamma/rho_max)) - 1
    special = pytest.importorskip("scipy.special")
    u = -special.lambertw(-math.exp(-1.0 - GAMMA / RHO_MAX), -1).real - 1.0
    assert rho_c == pytest.approx(GAMMA / u, rel=1e-12)
    for fn in (ck.weidmann_capacity.py_func, rc.weidmann_capacity):
        assert fn(V0, GAMMA, RHO_MAX) == pytest.approx((rho_c, j_max), rel=1e-12)


def test_model_uses_the_computed_capacity():
    m = CrowdFlow(dataset(np.full((3, 3), 25.0), 5.0))
    assert (m.rho_c, m.j_max) == ck.weidmann_capacity(V0, GAMMA, RHO_MAX)
    faster = CrowdFlow(dataset(np.full((3, 3), 25.0), 5.0), CrowdFlowConfig(v0=1.5))
    assert faster.j_max == pytest.approx(m.j_max * 1.5 / 1.34, rel=1e-12)  # q scales with v0, rho_c does not


# ---------------------------------------------------------------- 2. conservation
def _random_world(seed: int, ny: int = 30, nx: int = 40, dx: float = 5.0):
    rng = np.random.default_rng(seed)
    walk = rng.random((ny, nx)) > 0.2
    area = np.where(walk, dx * dx * rng.uniform(0.3, 1.0, (ny, nx)), 0.0)
    count = np.where(walk, rng.uniform(0.0, 3.0, (ny, nx)) * area, 0.0)
    sinks = walk & (rng.random((ny, nx)) < 0.01)
    attractors = walk & ~sinks & (rng.random((ny, nx)) < 0.01)
    sources = walk & (rng.random((ny, nx)) < 0.03)  # some on sinks: they enter, then leave
    closed = walk & (rng.random((ny, nx)) < 0.1)
    return rng, dataset(area, dx), walk, count, sinks, attractors, sources, closed


def _run_random(parallel: bool, routing: str, seed: int = 7, steps: int = 120):
    """Random world driven through closures, reopening and injections; yields the model after each step."""
    rng, ds, walk, count, sinks, attractors, sources, closed = _random_world(seed)
    m = CrowdFlow(ds, CrowdFlowConfig(routing=routing), parallel=parallel, count=count)
    m.set_destinations(sinks=sinks, attractors=attractors)
    rates = rng.uniform(0.0, 3.0, int(sources.sum()))
    m.add_arrivals(sources, rates)
    crowd = np.zeros(walk.shape, bool)
    crowd[np.unravel_index(rng.choice(np.flatnonzero(walk & ~sinks), 5, replace=False), walk.shape)] = True
    for step in range(steps):
        if step == 30:
            m.set_closed(closed)
        if step == 50:
            m.add_people(crowd, 400.0)  # more than a cell holds: the rest waits to enter
        if step == 80:
            m.set_closed(closed, closed=False)
        m.run_one_step(7.0)  # not a multiple of the sub-step
        yield m, walk, rates.sum() * 7.0 * (step + 1) + (400.0 * 5 if step >= 50 else 0.0)


@pytest.mark.parametrize(("parallel", "routing"), [(False, "density"), (True, "free")])
def test_people_are_conserved(parallel, routing):
    """stored = initial + in - out to 1e-9 relative (issue 8), no negative counts, no density above rho_max."""
    for m, walk, offered in _run_random(parallel, routing):
        assert abs(m.balance_error()) < 1e-9
        assert m.count.min() >= 0.0
        assert np.all(m.count[~walk] == 0.0)
        assert (m.count[walk] / m.area[walk]).max() <= RHO_MAX + 1e-12
        assert m.people_in + m.people_waiting == pytest.approx(offered, rel=1e-12)
    assert m.people_out > 100 and m.people_in > 1000
    assert m.count[m.attractors].sum() > 0  # people gathered at the attractors and stayed


# ---------------------------------------------------------------- 3. bottleneck capacity
def _room_and_door(door_width: float, use_width_layer: bool, dx: float = 5.0):
    """A 50 m x 50 m room at 3.5 p/m2 behind a wall with one door cell; open ground with exits beyond."""
    ny, nx = 11, 14
    area = np.full((ny, nx), dx * dx)
    area[:, 10] = 0.0  # the wall
    width = np.full((ny, nx), np.nan)
    door = (5, 10)
    area[door] = door_width * dx  # a door opening one cell deep
    if use_width_layer:
        area[door] = dx * dx  # e.g. a stair landing: the layer, not the area, sets the width
        width[door] = door_width
    room = np.zeros((ny, nx), bool)
    room[:, :10] = True
    m = CrowdFlow(dataset(area, dx, width), count=np.where(room, 3.5 * area, 0.0))
    sinks = np.zeros((ny, nx), bool)
    sinks[:, 12:] = True
    m.set_destinations(sinks=sinks)
    return m, door


@pytest.mark.parametrize("use_width_layer", [True, False], ids=["passage_width", "narrow_cell"])
def test_door_outflow_is_weidmann_capacity_times_width(use_width_layer):
    """Steady outflow through a door = J_max x W (Weidmann capacity; issue 8), linear in W.

    A 3.5 p/m2 crowd is congested (rho > rho_c = 1.75), so the door passes its capacity: 1.225 p/s
    per metre (docs/science/crowd.md 1.2; cf. IMO design flow 1.3 p/m/s for doors [src]).
    """
    rates = {}
    for w in (1.0, 2.0, 3.0) if use_width_layer else (1.0, 2.0):
        m, door = _room_and_door(w, use_width_layer)
        m.run_one_step(240.0)  # start-up: the door cell fills to the critical density
        out0 = m.people_out
        m.run_one_step(240.0)
        rates[w] = (m.people_out - out0) / 240.0
        assert rates[w] == pytest.approx(m.j_max * w, rel=0.02)
        fields = m.fields()
        assert float(fields.crowd_flow[door]) == pytest.approx(m.j_max, rel=0.02)  # p/m/s at the door
        rho_door = float(fields.crowd_density[door])  # free-flow side of the door, at (near) capacity
        assert rho_door <= m.rho_c + 1e-9
        assert rho_door * ck.weidmann_v(rho_door, V0, GAMMA, RHO_MAX) == pytest.approx(m.j_max, rel=0.03)
        # people x speed = flow x width x dx (the cell's people walk out through the door), ~0.70 m/s at rho_c
        held = rho_door * m.area[door]
        assert float(fields.crowd_speed[door]) * held == pytest.approx(float(fields.crowd_flow[door]) * w * m.dx,
                                                                      rel=0.05)
        assert abs(m.balance_error()) < 1e-12
    per_metre = np.array([r / w for w, r in rates.items()])
    assert per_metre.max() / per_metre.min() < 1.02


def test_plain_rho_v_flux_would_underestimate_the_door():
    """Why the flux uses the CTM demand q(min(rho, rho_c)): at 3.5 p/m2, rho v(rho) is only 0.82 p/m/s."""
    q_plain = 3.5 * ck.weidmann_v(3.5, V0, GAMMA, RHO_MAX)
    assert q_plain == pytest.approx(0.82, abs=0.01)
    assert q_plain < 0.7 * FD[4]


# ---------------------------------------------------------------- 4. closing an exit
def _two_areas(close_left_exit: bool, parallel: bool = False):
    """Two 60 m x 60 m areas split by a wall, each with an exit at its far side and arrivals near the wall."""
    ny, nx, dx = 12, 25, 5.0
    area = np.full((ny, nx), dx * dx)
    area[:, 12] = 0.0
    m = CrowdFlow(dataset(area, dx), parallel=parallel)
    sinks = np.zeros((ny, nx), bool)
    sinks[5:7, 0] = True
    sinks[5:7, 24] = True
    m.set_destinations(sinks=sinks)
    entrances = np.zeros((ny, nx), bool)
    entrances[:, 10] = True
    entrances[:, 14] = True
    m.add_arrivals(entrances, 0.5)
    if close_left_exit:
        exit_left = np.zeros((ny, nx), bool)
        exit_left[5:7, 0] = True
        m.set_closed(exit_left)
    for _ in range(20):
        m.run_one_step(30.0)
    return m


def test_closing_the_only_exit_raises_density_there_and_not_elsewhere():
    """Issue 8: closing the only exit of an area raises density there and not elsewhere."""
    base, closed = _two_areas(False), _two_areas(True)
    left, right = np.s_[:, :12], np.s_[:, 13:]
    assert closed.count[left].sum() > 2 * base.count[left].sum()
    # people walk to the closed exit and queue there: dense in front of it (Still's 4 p/m2 critical density)
    assert density(closed)[5:7, 1].min() > 4.0 > density(base)[5:7, 1].max()
    assert np.array_equal(closed.count[right], base.count[right])  # the other area is untouched, bit for bit
    assert closed.people_out < base.people_out
    assert abs(closed.balance_error()) < 1e-9


# ---------------------------------------------------------------- 5. potential and routing
def _open_moves(ny: int, nx: int) -> np.ndarray:
    m = np.zeros((ny, nx), np.int8)
    m[:, :-1] |= 1
    m[:, 1:] |= 2
    m[:-1, :] |= 4
    m[1:, :] |= 8
    return m


@pytest.mark.parametrize("target", [(0, 0), (17, 31)])
def test_fast_sweeping_matches_euclidean_distance(target):
    """Open rectangle, one destination cell: T v0 = Euclidean distance within half a cell, never below it."""
    ny, nx, dx = 50, 70, 2.0
    seed = np.zeros((ny, nx), bool)
    seed[target] = True
    T = np.empty((ny, nx))
    rounds = ck.fast_sweep(np.full((ny, nx), 1 / V0), _open_moves(ny, nx), seed, dx, 1e-9, 50, T)
    assert rounds <= 3  # constant speed on a convex domain: one round of four sweeps, plus a check
    ii, jj = np.mgrid[0:ny, 0:nx]
    exact = dx * np.hypot(ii - target[0], jj - target[1])
    err = T * V0 - exact
    assert err.min() > -1e-9
    assert err.max() < 0.5 * dx
    plane = np.zeros((ny, nx), bool)
    plane[:, 0] = True  # a straight exit line: exact
    ck.fast_sweep(np.full((ny, nx), 1 / V0), _open_moves(ny, nx), plane, dx, 1e-9, 50, T)
    assert np.allclose(T * V0, dx * jj, rtol=0, atol=1e-9)


def _l_corridor():
    """A 3-cell-wide L: west-east leg along rows 0-2, north-south leg down columns 17-19, exit at the bottom."""
    n, dx = 20, 1.0
    area = np.zeros((n, n))
    area[0:3, :] = 1.0
    area[:, 17:20] = 1.0
    sinks = np.zeros((n, n), bool)
    sinks[19, 17:20] = True
    return area, dx, sinks


def test_l_shaped_corridor_is_routed_round_the_corner():
    area, dx, sinks = _l_corridor()
    m = CrowdFlow(dataset(area, dx), CrowdFlowConfig(routing="free"))
    m.set_destinations(sinks=sinks)
    m.refresh_potential()
    far = (1, 0)
    walk = m.potential[far] * V0
    assert 32.0 < walk < 37.0  # about 17.5 m along + 17 m down, not the 25.5 m straight line through the wall
    assert m.ex[far] > 0.99 and m.ey[far] >= 0.0  # head east along the first leg (toward the inner corner)
    assert np.all(m.ey[8:18, 17:20] > 0.99)  # then south (row + 1) down the second
    # the potential falls monotonically toward the exit: every reachable cell has a lower allowed neighbour
    T, moves = m.potential, m.moves
    for i, j in zip(*np.nonzero(np.isfinite(T) & ~sinks), strict=True):
        lower = [T[i + di, j + dj] < T[i, j] for bit, di, dj in ((1, 0, 1), (2, 0, -1), (4, 1, 0), (8, -1, 0))
                 if moves[i, j] & bit]
        assert any(lower), (i, j)
    # and people placed at the far end all come out at the exit
    m.add_people((np.array([1]), np.array([0])), 50.0)
    m.run_one_step(300.0)
    assert m.people_out == pytest.approx(50.0, rel=1e-12)
    assert m.people_stored < 1e-9


def test_one_way_rule_blocks_the_short_way():
    """A one-way cell pointing away from the exit: people take the long way round, none walk against it."""
    area, dx, sinks = _l_corridor()
    area[:, 0:3] = 1.0  # a second way down the west side ...
    area[19, :] = 1.0  # ... and along the bottom to the exit
    m = CrowdFlow(dataset(area, dx), CrowdFlowConfig(routing="free"))
    m.set_destinations(sinks=sinks)
    m.refresh_potential()
    t_free = m.potential[1, 10]
    gate = np.zeros(area.shape, bool)
    gate[0:3, 14] = True
    m.set_one_way(gate, 270.0)  # westbound only
    m.add_people((np.array([1]), np.array([10])), 30.0)
    m.run_one_step(5.0)
    assert m.potential[1, 10] > t_free + 10.0  # routed west and down the other side
    assert m.ex[1, 10] < 0.0
    m.run_one_step(400.0)
    assert m.count[0:3, 15:].sum() == 0.0  # nobody passed the gate eastward
    assert m.people_out == pytest.approx(30.0, rel=1e-12)
    m.set_one_way(gate, None)
    m.refresh_potential()
    assert m.potential[1, 10] == pytest.approx(t_free, rel=1e-12)


# ---------------------------------------------------------------- 6. attractor
def test_attractor_fills_then_queue_grows_upstream_and_nobody_leaves():
    ny, nx, dx = 10, 30, 2.0
    m = CrowdFlow(dataset(np.full((ny, nx), dx * dx), dx))
    stage = np.zeros((ny, nx), bool)
    stage[3:7, 26:30] = True
    m.set_destinations(attractors=stage)
    entrance = np.zeros((ny, nx), bool)
    entrance[:, 0] = True
    m.add_arrivals(entrance, 0.5)
    upstream = np.s_[2:8, 20:26]
    inside_prev, history = 0.0, []
    for _ in range(60):
        m.run_one_step(10.0)
        inside = m.count[stage].sum()
        assert inside >= inside_prev - 1e-9  # nobody leaves the gathering
        inside_prev = inside
        history.append((density(m)[stage].mean(), density(m)[upstream].mean()))
    stage_rho, upstream_rho = np.array(history).T
    full = np.argmax(stage_rho > 0.95 * RHO_MAX)
    assert stage_rho[-1] > 0.99 * RHO_MAX  # filled up to near the jam density
    assert full > 0 and upstream_rho[-1] > 4.0 > upstream_rho[full]  # then the queue outside grew
    assert m.people_out == 0.0
    assert abs(m.balance_error()) < 1e-9


# ---------------------------------------------------------------- 7. determinism
def test_same_inputs_same_outputs_and_serial_equals_parallel():
    runs = [list(_final(parallel)) for parallel in (False, False, True)]
    for a, b in zip(runs[0], runs[1], strict=True):
        assert np.array_equal(a, b)  # bit-identical
    for a, b in zip(runs[0], runs[2], strict=True):
        assert np.array_equal(a, b)  # the *_par kernels are the same bodies: bit-identical too


def _final(parallel: bool):
    *_, (m, _walk, _offered) = _run_random(parallel, "density", seed=11, steps=40)
    f = m.fields()
    yield m.count
    yield np.nan_to_num(f.crowd_flow.values)
    yield np.array([m.people_out, m.people_in, m.people_waiting])


# ---------------------------------------------------------------- component contract
def test_update_takes_arrival_rates_from_the_dataset():
    ds = dataset(np.full((4, 5), 25.0), 5.0)
    m = CrowdFlow(ds)
    rate = np.zeros((4, 5))
    rate[1, 1] = 2.0
    ds["crowd_arrival_rate"] = (("y", "x"), rate, {"units": "person min-1"})
    out = m.update(ds, 30.0)
    assert m.people_in == pytest.approx(2.0 / 60 * 30.0, rel=1e-12)
    assert out.crowd_count.attrs["units"] == "person" and float(out.crowd_count.sum()) == pytest.approx(1.0)


def test_cells_by_mask_index_tuple_or_flat_index_and_velocity_outputs():
    ny, nx, dx = 3, 12, 2.0
    m = CrowdFlow(dataset(np.full((ny, nx), dx * dx), dx), CrowdFlowConfig(routing="free"))
    west, north = np.zeros((ny, nx), bool), np.zeros((ny, nx), bool)
    west[:, 0] = True
    m.set_destinations(sinks=west)
    mask = np.zeros((ny, nx), bool)
    mask[1, 8] = True
    m.add_people(mask, 2.0)
    m.add_people((np.array([1]), np.array([9])), 2.0)
    m.add_people(np.array([1 * nx + 10]), 2.0)
    assert m.people_in == 6.0 and m.count[1, 8:11].tolist() == [2.0, 2.0, 2.0]
    m.run_one_step(4.0)
    f = m.fields()
    moving = m.n_acc > 0  # cells that held people during the step
    assert np.all(f.crowd_velocity_x.values[moving] < 0)  # walking west
    assert np.allclose(f.crowd_velocity_y.values[moving], 0.0)
    assert np.allclose(f.crowd_speed.values, np.hypot(f.crowd_velocity_x.values, f.crowd_velocity_y.values))
    assert np.all(f.crowd_speed.values <= V0 + 1e-12)
    # north is row - 1 on a north-up grid: a sink on row 0 gives a positive y velocity
    m2 = CrowdFlow(dataset(np.full((ny, nx), dx * dx), dx), CrowdFlowConfig(routing="free"))
    north[0, :] = True
    m2.set_destinations(sinks=north)
    m2.add_people(np.array([2 * nx + 5]), 3.0)
    m2.run_one_step(2.0)
    assert m2.fields().crowd_velocity_y.values[2, 5] > 0
    with pytest.raises(ValueError, match="outside the grid"):
        m.add_people(np.array([ny * nx]), 1.0)


def test_walls_and_bad_inputs():
    area = np.full((4, 5), 25.0)
    area[0, 0] = 0.0
    building = np.zeros((4, 5))
    building[0, 1] = 0.6
    ds = dataset(area, 5.0, building=building)
    m = CrowdFlow(ds)
    assert not m.walkable[0, 0] and not m.walkable[0, 1]
    assert np.isnan(m.fields().crowd_density.values[0, :2]).all()
    wall = np.zeros((4, 5), bool)
    wall[0, 0] = True
    with pytest.raises(ValueError, match="sink cell"):
        m.set_destinations(sinks=wall)
    with pytest.raises(ValueError, match="both sink and attractor"):
        m.set_destinations(sinks=~wall, attractors=~wall)
    with pytest.raises(ValueError, match="walls"):
        m.add_arrivals(wall, 1.0)
    with pytest.raises(ValueError, match="people"):
        m.add_people(~wall, -1.0)
    with pytest.raises(ValueError, match="wall cell"):
        CrowdFlow(ds, count=np.ones((4, 5)))
    with pytest.raises(ValueError, match="routing"):
        CrowdFlow(ds, CrowdFlowConfig(routing="shortest"))
    with pytest.raises(ValueError, match="dt"):
        m.run_one_step(0.0)


# ---------------------------------------------------------------- 9. issue 21: slivers, stuck cells, exits last
def test_a_strip_narrower_than_one_person_is_a_wall():
    """0.6 m (Fruin's body ellipse is 0.61 m across the shoulders): a 0.3 m2 sliver of a 10 m cell is no passage."""
    area = np.full((1, 5), 100.0)
    area[0, 2] = 3.0  # 0.3 m of walking width
    m = CrowdFlow(dataset(area, 10.0))
    assert m.walkable.tolist() == [[True, True, False, True, True]]
    assert m.wx[0, 2] == 0.0 and m.wx[0, 3] == 0.0  # no face through it
    area[0, 2] = 7.0  # 0.7 m: a passage
    assert CrowdFlow(dataset(area, 10.0)).wx[0, 3] == pytest.approx(0.7)


def test_a_cell_lower_than_its_neighbours_but_no_destination_still_walks():
    """Density routing: c reaches the exit through a diagonal at its own slowness, its neighbours are jammed (slow),
    so c is lower than all of them; its people must still walk (toward the lowest), not stand for good."""
    ny, nx, dx = 3, 3, 10.0
    m = CrowdFlow(dataset(np.full((ny, nx), dx * dx), dx))
    sink = np.zeros((ny, nx), bool)
    sink[0, 2] = True
    m.set_destinations(sinks=sink)
    jam = np.zeros((ny, nx))
    jam[0, 1] = jam[1, 2] = 0.98 * RHO_MAX * dx * dx  # the two ways from the centre to the exit corner
    m.count[:] = jam
    m.count[1, 1] = 10.0
    m.refresh_potential()
    T = m.potential
    assert T[1, 1] < min(T[0, 1], T[1, 2], T[1, 0], T[2, 1])  # the centre is a false minimum
    assert abs(m.ex[1, 1]) + abs(m.ey[1, 1]) == pytest.approx(1.0)  # yet it has a direction ...
    step = (round(m.ey[1, 1]), round(m.ex[1, 1]))
    assert T[1 + step[0], 1 + step[1]] == min(T[0, 1], T[1, 2], T[1, 0], T[2, 1])  # ... toward the lowest one


@pytest.mark.parametrize("exits_last", [False, True])
def test_with_exits_last_people_head_for_the_place_and_nobody_leaves_on_the_way(exits_last):
    """An exit next to the entrance, a gathering place beyond it: by default the nearest destination (the exit)
    wins; with exits_last everybody walks past the exit (over it, even) to the place."""
    ny, nx, dx = 1, 12, 2.0
    m = CrowdFlow(dataset(np.full((ny, nx), dx * dx), dx), CrowdFlowConfig(exits_last=exits_last))
    exit_, place = np.zeros((ny, nx), bool), np.zeros((ny, nx), bool)
    exit_[0, 2], place[0, 8:] = True, True
    m.set_destinations(sinks=exit_, attractors=place)
    m.add_arrivals(np.array([0]), 0.5)
    m.run_one_step(120.0)
    if exits_last:
        assert m.people_out == 0.0 and m.count[place].sum() > 0.5 * m.people_in
    else:
        assert m.people_out > 0.9 * m.people_in and m.count[place].sum() == 0.0
    assert abs(m.balance_error()) < 1e-9
