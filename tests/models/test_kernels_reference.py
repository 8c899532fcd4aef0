"""Every kernel equals its plain numpy reference on random inputs, compiled and through py_func.

The guard at the end discovers every public numba dispatcher in ``models/kernels/`` and holds that each
has a numpy twin of the same name in ``models/reference/`` (a ``*_par`` variant: its serial twin) and a
value test in this file, and that each ``*_par`` variant equals its serial variant bit for bit.
"""

import importlib
import pkgutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba.core.dispatcher import Dispatcher

import models.kernels
from models.kernels import bands as kb
from models.kernels import crowd as kc
from models.kernels import crowdflow as kcf
from models.kernels import flood as kf
from models.kernels import mapmatch as kmm
from models.kernels import rain as kr
from models.kernels import risk as kk
from models.kernels import traffic as kt
from models.reference import bands as rb
from models.reference import crowd as rc
from models.reference import crowdflow as rcf
from models.reference import flood as rf
from models.reference import mapmatch as rmm
from models.reference import rain as rr
from models.reference import risk as rk
from models.reference import traffic as rt

SET = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)
TESTED: set[str] = set()  # "module.kernel" of every kernel a value test below compares with its reference


def _key(fn) -> str:
    """``module.name`` of a kernel or its py_func, e.g. ``flood.inertial_flux_par``."""
    f = getattr(fn, "py_func", fn)
    return f"{f.__module__.rsplit('.', 1)[-1]}.{f.__name__}"


def _id(fn) -> str:
    return _key(fn) + ("" if isinstance(fn, Dispatcher) else ".py_func")


def both(*kernels):
    """Each kernel compiled and its pure-Python path; records the kernels as value-tested."""
    TESTED.update(_key(k) for k in kernels)
    return [f for k in kernels for f in (k, k.py_func)]


def names(module, *kernel_names):
    """Kernel names of ``module`` that a name-parametrized test runs through :func:`both`; records them."""
    TESTED.update(f"{module.__name__.rsplit('.', 1)[-1]}.{n}" for n in kernel_names)
    return list(kernel_names)


def with_nans(rng, x, frac=0.1):
    x = x.copy()
    x[rng.random(x.shape) < frac] = np.nan
    return x


def run(fn, args, outs):
    """Call ``fn(*args, *outs)`` on copies; return the outputs and mutated inputs."""
    a = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    o = [x.copy() for x in outs]
    ret = fn(*a, *o)
    return a, o, ret


def assert_same(res_k, res_r, rtol=1e-12, atol=1e-14):
    for x, y in zip(res_k, res_r, strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
        elif isinstance(x, float):
            np.testing.assert_allclose(x, y, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("kernel", both(kb.classify_bands))
@given(seed=seeds, inclusive=st.sampled_from([0, 1]))
@SET
def test_classify_bands(kernel, seed, inclusive):
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.choice([0.31, 0.43, 0.72, 1.08, 2.17, 0.5, 3.0], 4, replace=False))
    x = with_nans(rng, np.concatenate([rng.uniform(0, 4, 30), edges]))
    outs = [np.zeros(x.size, np.int8)]
    assert_same(run(kernel, (x, edges, inclusive), outs)[1], run(rb.classify_bands, (x, edges, inclusive), outs)[1])


@pytest.mark.parametrize("kernel", both(kc.fuse_density))
@given(seed=seeds)
@SET
def test_fuse_density(kernel, seed):
    rng = np.random.default_rng(seed)
    ns, nc, n_pieces, k = rng.integers(1, 6), rng.integers(1, 20), rng.integers(1, 30), rng.integers(0, 40)
    area = rng.uniform(0, 500, nc) * (rng.random(nc) > 0.1)
    sensor_area = np.where(rng.random(ns) < 0.3, rng.uniform(10, 2000, ns), np.nan)
    pairs = np.unique(np.column_stack([rng.integers(0, n_pieces, k), rng.integers(0, ns, k)]), axis=0)
    pairs = pairs[rng.permutation(len(pairs))]  # a sensor covers a piece once, in any order
    args = (rng.integers(0, nc, n_pieces), rng.uniform(0, 1, n_pieces) * (rng.random(n_pieces) > 0.1),
            pairs[:, 0].copy(), pairs[:, 1].copy(), with_nans(rng, rng.uniform(0, 200, ns)),
            rng.uniform(0, 0.3, ns), sensor_area, area)
    outs = [np.zeros(nc), np.zeros(nc)]
    assert_same(run(kernel, args, outs)[1], run(rc.fuse_density, args, outs)[1], rtol=1e-10)


@pytest.mark.parametrize("kernel", both(kc.count_variance))
@given(count=st.floats(0, 1e6), rel_error=st.floats(0, 1))
@SET
def test_count_variance(kernel, count, rel_error):
    assert kernel(count, rel_error) == pytest.approx(float(rc.count_variance(count, rel_error)), rel=1e-12)


@pytest.mark.parametrize("kernel", both(kk.projected))
@given(rho=st.floats(0, 7), rate=st.floats(-0.05, 0.05), horizon=st.floats(0, 600))
@SET
def test_projected(kernel, rho, rate, horizon):
    assert kernel(rho, rate, horizon) == rk.projected(rho, rate, horizon)
    assert kernel(rho, rate, horizon) >= rho, "a falling crowd is not projected down"


@pytest.mark.parametrize("kernel", both(kk.hazard_at))
@given(rho=st.floats(0, 7), pres=st.one_of(st.just(float("nan")), st.floats(0, 0.05)))
@SET
def test_hazard_at(kernel, rho, pres):
    assert tuple(kernel(rho, pres, 2.0, 1 / 3.0, 0.02, 4.0)) == rk.hazard_at(rho, pres, 2.0, 1 / 3.0, 0.02, 4.0)


@pytest.mark.parametrize("kernel", both(kcf.weidmann_v))
@given(rho=st.floats(-1, 7))
@SET
def test_weidmann_v(kernel, rho):
    assert kernel(rho, 1.34, 1.913, 5.4) == pytest.approx(rcf.weidmann_v(rho, 1.34, 1.913, 5.4), rel=1e-12, abs=1e-15)


CROWD_POINTWISE = {**dict.fromkeys(names(kc, "density_trend", "crowd_pressure"), (kc, rc)),
                   **dict.fromkeys(names(kk, "crowd_hazard", "projected_density"), (kk, rk)),
                   **dict.fromkeys(names(kcf, "weidmann_speed"), (kcf, rcf))}
"""The pointwise crowd kernels and where each lives: (kernel module, reference module)."""


@pytest.mark.parametrize("name", list(CROWD_POINTWISE))
@given(seed=seeds)
@SET
def test_crowd_pointwise(name, seed):
    rng = np.random.default_rng(seed)
    n = 40
    rho = with_nans(rng, rng.uniform(-0.5, 7, n))
    cases = {
        "density_trend": ((rho, with_nans(rng, rng.choice([100.0, 110.0, 160.0], n)),
                           with_nans(rng, rng.uniform(0, 7, n)), with_nans(rng, rng.choice([100.0, 105.0], n)), 0.3,
                           with_nans(rng, rng.normal(0, .01, n), 0.3)), 1),
        "crowd_hazard": ((rho, with_nans(rng, rng.uniform(0, .05, n)), 2.0, 5.0, 0.02, 4.0), 1),
        "projected_density": ((rho, with_nans(rng, rng.normal(0, 0.01, n)), 300.0), 1),
        "weidmann_speed": ((rho, 1.34, 1.913, 5.4), 2),
        "crowd_pressure": ((rho, with_nans(rng, rng.normal(0, 1, n)), with_nans(rng, rng.normal(0, 1, n)), 0.1,
                            with_nans(rng, rng.normal(0, 1, n), 0.3), rng.normal(0, 1, n), rng.uniform(0, 1, n)), 1),
    }
    args, nout = cases[name]
    outs = [np.zeros(n) for _ in range(nout)]
    kernels, reference = CROWD_POINTWISE[name]
    ref = run(getattr(reference, name), args, outs)
    for fn in both(getattr(kernels, name)):
        got = run(fn, args, outs)
        assert_same(got[1], ref[1])
        assert_same(got[0], ref[0])  # state arrays updated in place identically


def _codes(rng, shape, p1=0.1):
    """int8 cell codes: bit 1 (a wall, or an outlet) with probability ``p1``, bit 2 (a held river cell) on a random
    block of rows and columns (or none), so faces between two river cells, river and land, river and wall occur."""
    code = (rng.random(shape) < p1).astype(np.int8)
    if rng.random() < 0.7:
        rows, cols = rng.random(shape[0]) < rng.uniform(0, 1), rng.random(shape[1]) < rng.uniform(0, 1)
        code |= np.where(rows[:, None] & cols[None, :], 2, 0).astype(np.int8)
    return code


def _flood_state(rng, ny, nx):
    z = rng.uniform(0, 1, (ny, nx))
    h = rng.uniform(0, 0.3, (ny, nx)) * (rng.random((ny, nx)) > 0.3)
    wall = _codes(rng, (ny, nx))  # 0 open, 1 wall, 2 held river, 3 both (never set by the model, still defined)
    qx = rng.normal(0, 0.05, (ny, nx + 1))
    qy = rng.normal(0, 0.05, (ny + 1, nx))
    return z, h, wall, qx, qy


def _inertial_flux_case(rng, ny, nx):
    z, h, wall, qx, qy = _flood_state(rng, ny, nx)
    args = (h, z, wall, qx, qy, 0.5, 5.0, 0.03, 0.8, 9.80665, 1e-6, int(rng.integers(0, 2)))
    return args, [np.zeros_like(qx), np.zeros_like(qy)]


def _outflow_limit_case(rng, ny, nx):
    _z, h, _wall, qx, qy = _flood_state(rng, ny, nx)
    return (h, qx, qy, 20.0, 5.0), [np.zeros_like(h)]


def _continuity_case(rng, ny, nx):
    _z, h, _wall, qx, qy = _flood_state(rng, ny, nx)
    f = np.where(rng.random((ny, nx)) < 0.3, rng.uniform(0, 1, (ny, nx)), 1.0)
    args = (h, qx, qy, f, rng.uniform(0, 1e-5, (ny, nx)), rng.uniform(0, 1e-5, (ny, nx)),
            _codes(rng, (ny, nx)), 2.0, 5.0)  # outlet codes: 1 outlet, 2 left out of rowmax (held river), 3 both
    outs = [np.zeros_like(h), np.zeros_like(qx), np.zeros_like(qy), rng.uniform(0, 1, (ny, nx)),
            rng.uniform(0, 1, (ny, nx)), np.zeros(ny)]
    return args, outs


V0, GAMMA, RHO_MAX = 1.34, 1.913, 5.4  # Weidmann (1993)
FD = np.array([V0, GAMMA, RHO_MAX, *rcf.weidmann_capacity(V0, GAMMA, RHO_MAX)])


def _crowd_state(rng, ny, nx):
    """Walkable area [m2], people, move bitmask (never off the grid), unit direction, face widths [m], capacity."""
    area = rng.uniform(0, 30, (ny, nx)) * (rng.random((ny, nx)) > 0.15)
    count = rng.uniform(0, 6.5, (ny, nx)) * area * (rng.random((ny, nx)) > 0.2)
    moves = rng.integers(0, 16, (ny, nx)).astype(np.int8)
    moves[:, -1] &= ~1
    moves[:, 0] &= ~2
    moves[-1, :] &= ~4
    moves[0, :] &= ~8
    angle = rng.uniform(0, 2 * np.pi, (ny, nx))
    still = rng.random((ny, nx)) < 0.2
    ex, ey = np.where(still, 0.0, np.cos(angle)), np.where(still, 0.0, np.sin(angle))
    wx, wy = rng.uniform(0, 6, (ny, nx + 1)), rng.uniform(0, 6, (ny + 1, nx))
    cap = np.where(rng.random((ny, nx)) < 0.1, np.inf, RHO_MAX * area)
    return area, count, moves, ex, ey, wx, wy, cap


def _send_demand_case(rng, ny, nx):
    area, count, moves, ex, ey, wx, wy, _cap = _crowd_state(rng, ny, nx)
    return (count, area, ex, ey, moves, wx, wy, 2.5, FD), [np.zeros((ny, nx)) for _ in range(5)]


def _accept_inflow_case(rng, ny, nx):
    _area, count, _moves, _ex, _ey, wx, wy, cap = _crowd_state(rng, ny, nx)
    sends = [rng.uniform(0, 20, (ny, nx)) for _ in range(4)]
    args = (count, cap, *sends, rng.uniform(0, FD[4], (ny, nx)), wx, wy, 2.5)
    return args, [np.zeros((ny, nx)) for _ in range(4)]


def _apply_transfers_case(rng, ny, nx):
    _area, count, *_ = _crowd_state(rng, ny, nx)
    accepted = [rng.uniform(0, 20, (ny, nx)) for _ in range(4)]
    return (count, rng.random((ny, nx)) < 0.2, 2.5, *accepted), [rng.uniform(0, 5, (ny, nx)) for _ in range(4)]


# Inputs of the row-parallel passes (the kernels with a *_par variant): builder(rng, ny, nx) -> (args, outs)
ROW_CASES = {"flood.inertial_flux": _inertial_flux_case, "flood.outflow_limit": _outflow_limit_case,
             "flood.continuity": _continuity_case, "crowdflow.send_demand": _send_demand_case,
             "crowdflow.accept_inflow": _accept_inflow_case, "crowdflow.apply_transfers": _apply_transfers_case}
REFERENCES = {"flood": rf, "crowdflow": rcf}


@pytest.mark.parametrize("kernel", both(kf.inertial_flux, kf.inertial_flux_par, kf.outflow_limit, kf.outflow_limit_par,
                                        kf.continuity, kf.continuity_par, kcf.send_demand, kcf.send_demand_par,
                                        kcf.accept_inflow, kcf.accept_inflow_par, kcf.apply_transfers,
                                        kcf.apply_transfers_par), ids=_id)
@given(seed=seeds)
@SET
def test_row_kernels(kernel, seed):
    """The flood step and crowd-flow sub-step passes, serial and parallel, equal their reference."""
    rng = np.random.default_rng(seed)
    key = _key(kernel).removesuffix("_par")
    args, outs = ROW_CASES[key](rng, int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    mod, name = key.split(".")
    got, ref = run(kernel, args, outs), run(getattr(REFERENCES[mod], name), args, outs)
    assert_same(got[1], ref[1], atol=1e-13)
    assert_same(got[0], ref[0], atol=1e-13)  # inputs updated in place (apply_transfers: count) identically


@pytest.mark.parametrize("kernel", both(kf.cell_velocity))
@given(seed=seeds)
@SET
def test_cell_velocity(kernel, seed):
    rng = np.random.default_rng(seed)
    _z, h, _wall, qx, qy = _flood_state(rng, rng.integers(1, 8), rng.integers(1, 8))
    args = (h, qx, qy, 1e-3, 9.80665)
    outs = [np.zeros_like(h) for _ in range(3)]
    assert_same(run(kernel, args, outs)[1], run(rf.cell_velocity, args, outs)[1])


@pytest.mark.parametrize("kernel", both(kf.validity_flags))
@given(seed=seeds)
@SET
def test_validity_flags(kernel, seed):
    rng = np.random.default_rng(seed)
    _z, h, _wall, qx, qy = _flood_state(rng, rng.integers(1, 8), rng.integers(1, 8))
    args = (h, qx, qy, rng.uniform(0, 1.5, h.shape), 0.5, 0.01, 1e-6)
    outs = [np.zeros(h.shape, np.int8)]
    assert_same(run(kernel, args, outs)[1], run(rf.validity_flags, args, outs)[1])


@pytest.mark.parametrize("kernel", both(kf.weir_flux))
@given(seed=seeds, along_x=st.sampled_from([0, 1]))
@SET
def test_weir_flux(kernel, seed, along_x):
    """Broad-crested weir on barrier faces: free, submerged, below the crest, crest under the bed, walls, faces
    between two held river cells (closed) and between river and land (open)."""
    rng = np.random.default_rng(seed)
    ny, nx = int(rng.integers(2, 8)), int(rng.integers(2, 8))
    z, h, wall, qx, qy = _flood_state(rng, ny, nx)
    q = qx if along_x else qy
    faces = np.argwhere(np.ones((ny, nx - 1) if along_x else (ny - 1, nx), bool))
    faces = faces[rng.random(len(faces)) < 0.6]
    fi = faces[:, 0].astype(np.int64) + (0 if along_x else 1)
    fj = faces[:, 1].astype(np.int64) + (1 if along_x else 0)
    eta = z + h
    crest = rng.uniform(0.0, 1.3, fi.size)
    level = rng.random(fi.size) < 0.2
    crest[level] = eta[fi, fj][level]  # water exactly at the crest on one side
    args = (h, z, wall, fi, fj, crest, along_x, float(rng.choice([0.05, 1.0, 4.0])), 5.0, float(rng.uniform(0.8, 1.0)),
            9.80665)
    assert_same(run(kernel, args, [q])[1], run(rf.weir_flux, args, [q])[1])


@pytest.mark.parametrize("name", names(kt, "probe_speed", "segment_to_cells", "ewma_update", "congestion_level",
                                        "tpi_like", "california_incident", "speed_drop_incident"))
@given(seed=seeds)
@SET
def test_traffic(name, seed):
    rng = np.random.default_rng(seed)
    k, nb = int(rng.integers(0, 60)), int(rng.integers(1, 10))
    n = 30
    edges = np.full((5, 4), -np.inf)
    edges[1:] = np.array([[65, 50, 35, 20], [40, 30, 20, 15], [35, 25, 15, 10], [35, 25, 15, 10]]) / 3.6
    cases = {
        "probe_speed": ((rng.integers(-1, nb, k), with_nans(rng, rng.uniform(0, 25, k)),
                         rng.choice([0.0, 5.0, 10.0, 30.0], k), 3, 30.0), [np.zeros(nb), np.zeros(nb)]),
        "segment_to_cells": ((rng.integers(0, nb, k), rng.integers(0, n, k), rng.uniform(-5, 100, k),
                              with_nans(rng, rng.uniform(0, 25, nb))), [np.zeros(n)]),
        "ewma_update": ((with_nans(rng, rng.uniform(0, 25, n)), with_nans(rng, rng.uniform(0, 25, n)), 0.4),
                        [np.zeros(n)]),
        "congestion_level": ((with_nans(rng, np.concatenate([rng.uniform(0, 25, n - 8), edges[1:3].ravel()])),
                              rng.integers(0, 5, n).astype(np.int8), edges), [np.zeros(n, np.int8)]),
        "tpi_like": ((with_nans(rng, rng.uniform(0, 25, n)), rng.uniform(-1, 25, n), rng.uniform(0, 3, n),
                      np.array([0.0, 0.2, 0.5, 0.8, 1.1, 2.0])), [np.zeros(n)]),
        "california_incident": ((rng.uniform(0, 0.5, n), rng.uniform(0, 0.5, n), rng.uniform(0, 0.5, n),
                                 0.08, 0.5, 0.15, 2, rng.integers(0, 3, n)), [np.zeros(n, np.int8)]),
        "speed_drop_incident": ((with_nans(rng, rng.uniform(0, 25, n)), rng.uniform(-1, 25, n), 0.5, 2,
                                 rng.integers(0, 3, n)), [np.zeros(n, np.int8)]),
    }
    args, outs = cases[name]
    ref = run(getattr(rt, name), args, outs)
    for fn in both(getattr(kt, name)):
        got = run(fn, args, outs)
        assert_same(got[1], ref[1], rtol=1e-10)
        assert_same(got[0], ref[0])
        assert_same([got[2]], [ref[2]], rtol=1e-10)


@pytest.mark.parametrize("kernel", both(kr.rolling_sums))
@given(seed=seeds)
@SET
def test_rolling_sums(kernel, seed):
    rng = np.random.default_rng(seed)
    nb = int(rng.integers(1, 13))
    ring = rng.uniform(0, 0.01, (int(rng.integers(1, 10)), nb))
    windows = rng.integers(1, nb + 1, 3)
    args = (ring, int(rng.integers(0, nb)), windows)
    outs = [np.zeros((3, ring.shape[0]))]
    assert_same(run(kernel, args, outs)[1], run(rr.rolling_sums, args, outs)[1])


@pytest.mark.parametrize("kernel", both(kr.signal_level))
@given(seed=seeds)
@SET
def test_signal_level(kernel, seed):
    rng = np.random.default_rng(seed)
    acc = with_nans(rng, rng.uniform(0, 0.15, (4, 30)), 0.03)
    table = np.array([[0.035, np.inf, 0.05, np.inf], [0.05, np.inf, 0.08, np.inf], [0.08, np.inf, 0.1, np.inf],
                      [0.1, np.inf, 0.15, np.inf]])
    outs = [np.zeros(30, np.int8)]
    assert_same(run(kernel, (acc, table), outs)[1], run(rr.signal_level, (acc, table), outs)[1])


def _state(rng, h, n):
    """Random level-machine state, cell-major as the kernel keeps it: level, raw, history, flapping, pending and
    timers (float32 seconds, 0 where the timer's pending bit is clear, as the kernel leaves them)."""
    pending = rng.integers(0, 32, (n, h)).astype(np.int8)
    bits = (pending[..., None].astype(np.int64) >> np.arange(kk.N_TIMERS)) & 1
    timers = (rng.choice([0.0, 0.5, 1.0, 2.5, 3.0, 9.0, 10.0, 59.0], (n, h, kk.N_TIMERS)) * bits).astype(np.float32)
    hist = (rng.integers(0, 2**20, (n, h)) * (rng.random((n, h)) < 0.5)).astype(np.uint32)
    # the history clock runs while the history is not blank
    timers[..., kk.HIST_CLOCK] = np.where(hist != 0, rng.choice([0.0, 0.5, 3.0, 9.5], (n, h)), 0.0)
    return [rng.integers(-1, 5, (n, h)).astype(np.int8), rng.integers(0, 5, (n, h)).astype(np.int8), hist,
            rng.integers(0, 2, (n, h)).astype(np.int8), pending, timers]


@pytest.mark.parametrize("kernel", both(kk.flap_percent))
@given(seed=seeds)
@SET
def test_flap_percent(kernel, seed):
    rng = np.random.default_rng(seed)
    args, outs = (rng.integers(0, 2**20, 40).astype(np.uint32),), [np.zeros(40)]
    assert_same(run(kernel, args, outs)[1], run(rk.flap_percent, args, outs)[1])


def with_bad(rng, x, frac=0.05):
    """Some values +inf, -inf or negative: no data for the level machine (rule 9 of models/kernels/risk.py)."""
    x = x.copy()
    bad = rng.random(x.shape) < frac
    x[bad] = rng.choice([np.inf, -np.inf, -0.5], int(bad.sum()))
    return x


def random_tick_inputs(rng, n):
    """Random but plausible inputs for the fused tick, with NaN, +-inf and negative values among them (road
    class 5 is not a road)."""

    def noisy(x, nan_frac=0.1):
        return with_bad(rng, with_nans(rng, x, nan_frac))

    return (noisy(rng.uniform(0, 6, n)), noisy(rng.normal(0, 0.005, n)), noisy(rng.uniform(0, 0.04, n), 0.5),
            noisy(rng.uniform(0, 0.7, n)), noisy(rng.uniform(0, 0.7, n)), noisy(rng.uniform(0, 0.12, n)),
            noisy(rng.uniform(0, 0.16, n)), noisy(rng.uniform(0, 25, n)), with_bad(rng, rng.uniform(0, 25, n)),
            rng.integers(0, 6, n).astype(np.int8), rng.choice(np.array([0, 5, 6], np.int8), n),
            noisy(rng.uniform(0, 1, n)))


def random_timing(rng):
    """A kernel ``timing`` table (3, 9): delays [s] from a small set (0, fractions, whole seconds), flap thresholds,
    the flap-history sample period (0: every tick)."""
    t = np.zeros((3, kk.N_TIMING))
    t[:, kk.T_FOR:kk.T_FOR + 4] = rng.choice([0.0, 0.5, 1.0, 2.5, 3.0, 10.0], (3, 4))
    t[:, kk.T_KEEP] = rng.choice([0.0, 1.0, 2.5, 10.0], 3)
    t[:, kk.T_FLAP_WINDOW] = rng.choice([0.0, 5.0, 60.0], 3)
    t[:, kk.T_FLAP_HI], t[:, kk.T_FLAP_LO] = 20.0, 5.0
    t[:, kk.T_FLAP_SAMPLE] = rng.choice([0.0, 1.0, 10.0], 3)
    return t


@pytest.mark.parametrize("kernel", both(kk.risk_tick))
@given(seed=seeds)
@SET
def test_risk_tick(kernel, seed):
    from models import RiskConfig, tick_params

    rng = np.random.default_rng(seed)
    n = 60
    pp = tick_params(RiskConfig())
    state = _state(rng, 3, n)
    blank = rng.random(n) < 0.4  # blank cells take the kernel's quiet fast path
    for a in state:
        a[blank] = 0
    timing = random_timing(rng)
    places = [[1.11, 1.43, 2.5, 3.5, 0.9, 1.2, 2.0, 3.0], [0.5, 1.0, 2.0, 3.0, 0.4, 0.8, 1.6, 2.6]]
    thr = np.vstack([pp["thr"], places])  # rows 5 and 6: two places with crowd bands of their own
    for _ in range(4):  # several ticks so timers, history and flapping evolve
        inputs = list(random_tick_inputs(rng, n))
        quiet = blank & (rng.random(n) < 0.8)
        for i in (0, 3, 4):  # no crowd, no water
            inputs[i][quiet] = 0.0
        inputs[5][quiet] = inputs[6][quiet] = np.nan  # no rain data
        inputs[9][quiet] = 0  # no road
        dt = float(rng.choice([0.0, 0.1, 1.0, 10.0, 60.0]))
        args = (*inputs, pp["p"], thr, pp["tthr"], pp["road_exp"], timing, dt)
        overall = np.where(blank, 0, rng.integers(-1, 5, n)).astype(np.int8)
        outs = [np.zeros((3, n)), *state, overall, *(np.zeros(n, np.int8) for _ in range(3))]
        got = run(kernel, args, outs)[1]
        ref = run(rk.risk_tick, args, outs)[1]
        for x, y in zip(got, ref, strict=True):
            np.testing.assert_array_equal(x, y)  # exactly: float32 timers included
        state = got[1:7]


@pytest.mark.parametrize("kernel", both(kcf.weidmann_capacity), ids=_id)
@given(v0=st.floats(0.5, 2.0), gamma=st.floats(0.2, 5.0), rho_max=st.floats(2.0, 10.0))
@SET
def test_weidmann_capacity(kernel, v0, gamma, rho_max):
    """Bisection (kernel) and Newton on u = gamma / rho (reference) find the same maximum of rho v(rho)."""
    assert_same(kernel(v0, gamma, rho_max), rcf.weidmann_capacity(v0, gamma, rho_max), rtol=1e-12)


@pytest.mark.parametrize("name", names(kcf, "fast_sweep", "descent_direction", "slowness", "admit"))
@given(seed=seeds)
@SET
def test_crowdflow_potential_and_sources(name, seed):
    rng = np.random.default_rng(seed)
    area, count, moves, _ex, _ey, _wx, _wy, cap = _crowd_state(rng, int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    shape = area.shape
    if name == "fast_sweep":
        args, outs = (rng.uniform(0.5, 3.0, shape), moves, rng.random(shape) < 0.15, 2.0, 0.0, 1000), [np.zeros(shape)]
    elif name == "descent_direction":
        args = (np.where(rng.random(shape) < 0.1, np.inf, rng.uniform(0, 50, shape)), moves)
        outs = [np.zeros(shape), np.zeros(shape)]
    elif name == "slowness":
        args, outs = (count, area, moves, FD, 0.1), [np.zeros(shape)]
    else:
        k = int(rng.integers(0, area.size + 1))
        cells = rng.choice(area.size, k, replace=False).astype(np.int64)
        width = np.where(rng.random(area.size) < 0.2, 0.0, rng.uniform(0.0, 10.0, area.size))
        dt = float(rng.choice([0.0, 0.5, 2.5]))  # 0: an instantaneous injection, limited by room only
        args = (cells, rng.uniform(0, 3, k), rng.uniform(0, 50, k), count.ravel(), cap.ravel(), area.ravel(), width,
                FD, dt)
        outs = [rng.uniform(0, 5, k)]
    ref = run(getattr(rcf, name), args, outs)
    for fn in both(getattr(kcf, name)):
        got = run(fn, args, outs)
        assert_same(got[1], ref[1], atol=1e-13)
        assert_same(got[0], ref[0], atol=1e-13)


def _polylines(rng):
    """Random links: 1-4 segments each (some zero-length), vertices in a 300 m square."""
    n_links = int(rng.integers(1, 12))
    nv = rng.integers(2, 6, n_links)
    start = np.r_[0, np.cumsum(nv)].astype(np.int64)
    vert = rng.uniform(0, 300, (int(start[-1]), 2))
    dup = rng.random(vert.shape[0]) < 0.1
    dup[start[:-1]] = False
    vert[dup] = vert[np.flatnonzero(dup) - 1]
    return vert, start


@pytest.mark.parametrize("name", names(kmm, "project_points", "grid_index", "link_candidates", "viterbi_step"))
@given(seed=seeds)
@SET
def test_mapmatch(name, seed):
    rng = np.random.default_rng(seed)
    vert, start = _polylines(rng)
    n_links, k = start.size - 1, int(rng.integers(0, 25))
    px, py = rng.uniform(-50, 350, k), rng.uniform(-50, 350, k)
    cell = float(rng.choice([20.0, 75.0, 500.0]))
    nx, ny = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    if name == "project_points":
        args, outs = (px, py, rng.integers(-1, n_links, k), vert, start), [np.zeros(k) for _ in range(3)]
    elif name == "grid_index":
        args, outs = (vert, start, 0.0, 0.0, cell, nx, ny), []
    elif name == "link_candidates":
        index = kmm.grid_index(vert, start, 0.0, 0.0, cell, nx, ny)
        m = int(rng.integers(1, 9))
        args = (px, py, float(rng.choice([10.0, 50.0, 200.0])), vert, start, 0.0, 0.0, cell, nx, ny, *index)
        outs = [np.zeros((k, m), np.int64), *(np.zeros((k, m)) for _ in range(3))]
    else:
        m, n = int(rng.integers(0, 6)), int(rng.integers(1, 6))
        trans = np.where(rng.random((m, n)) < 0.3, -np.inf, rng.normal(0, 3, (m, n)))
        args = (np.where(rng.random(m) < 0.2, -np.inf, rng.normal(0, 3, m)), trans, rng.normal(0, 3, n))
        outs = [np.zeros(n), np.zeros(n, np.int64)]
    ref = run(getattr(rmm, name), args, outs)
    for fn in both(getattr(kmm, name)):
        got = run(fn, args, outs)
        assert_same(got[1], ref[1], rtol=1e-12, atol=1e-9)
        if name == "grid_index":
            for x, y in zip(got[2], ref[2], strict=True):
                np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- the guard: discovered, not listed
def discover_kernels() -> list[tuple[str, str, Dispatcher]]:
    """(module, name, dispatcher) of every public numba dispatcher defined in a module of models/kernels/."""
    found = []
    for info in pkgutil.iter_modules(models.kernels.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"models.kernels.{info.name}")
        found += [(info.name, n, f) for n, f in vars(mod).items() if isinstance(f, Dispatcher)
                  and not n.startswith("_") and f.py_func.__module__ == mod.__name__]
    return found


KERNELS = discover_kernels()
PARALLEL = [f for _mod, name, f in KERNELS if name.endswith("_par")]


def test_every_kernel_has_a_numpy_twin_and_a_value_test():
    assert {"bands", "crowd", "crowdflow", "flood", "mapmatch", "rain", "risk", "traffic"} <= {m for m, _, _ in KERNELS}
    for mod, name, _f in KERNELS:
        serial = name.removesuffix("_par")
        try:
            twin = getattr(importlib.import_module(f"models.reference.{mod}"), serial, None)
        except ModuleNotFoundError:
            twin = None
        assert callable(twin) and not isinstance(twin, Dispatcher), f"no numpy twin models.reference.{mod}.{serial}"
        if name != serial:
            assert isinstance(getattr(importlib.import_module(f"models.kernels.{mod}"), serial, None), Dispatcher)
            assert f"{mod}.{serial}" in ROW_CASES, f"no inputs to compare {mod}.{name} with its serial variant"
    missing = {f"{m}.{n}" for m, n, _ in KERNELS} - TESTED
    assert not missing, f"kernels without a value test in this file: {sorted(missing)}"


@pytest.mark.parametrize("par", PARALLEL, ids=_id)
@given(seed=seeds)
@SET
def test_parallel_variant_equals_serial_bit_for_bit(par, seed):
    mod, name = _key(par).split(".")
    serial = getattr(importlib.import_module(f"models.kernels.{mod}"), name.removesuffix("_par"))
    rng = np.random.default_rng(seed)
    args, outs = ROW_CASES[_key(serial)](rng, int(rng.integers(1, 40)), int(rng.integers(1, 40)))
    (a_in, a_out, _), (b_in, b_out, _) = run(serial, args, outs), run(par, args, outs)
    for x, y in zip(a_in + a_out, b_in + b_out, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("par", PARALLEL, ids=_id)
def test_parallel_variant_is_compiled_parallel_with_its_own_cache_entry(par):
    """One body, two compilations: numba's cache key has no ``parallel`` flag, so each needs its own entry."""
    mod, name = _key(par).split(".")
    serial = getattr(importlib.import_module(f"models.kernels.{mod}"), name.removesuffix("_par"))
    assert par.py_func.__code__ is serial.py_func.__code__  # the same body
    assert par.targetoptions.get("parallel") and not serial.targetoptions.get("parallel")
    assert par._cache._cache_file._index_path != serial._cache._cache_file._index_path
