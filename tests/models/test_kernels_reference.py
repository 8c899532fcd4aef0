"""Every kernel equals its plain numpy reference on random inputs, compiled and through py_func."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.kernels import bands as kb
from models.kernels import crowd as kc
from models.kernels import flood as kf
from models.kernels import rain as kr
from models.kernels import risk as kk
from models.kernels import traffic as kt
from models.reference import bands as rb
from models.reference import crowd as rc
from models.reference import flood as rf
from models.reference import rain as rr
from models.reference import risk as rk
from models.reference import traffic as rt

SET = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


def both(kernel):
    """The compiled kernel and its pure-Python path."""
    return [kernel, kernel.py_func]


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


def assert_same(res_k, res_r, rtol=1e-12):
    for x, y in zip(res_k, res_r, strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-14, equal_nan=True)
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
    ns, nc, k = rng.integers(1, 6), rng.integers(1, 20), rng.integers(0, 40)
    args = (rng.integers(0, ns, k), rng.integers(0, nc, k), rng.uniform(0, 1, k) * (rng.random(k) > 0.1),
            with_nans(rng, rng.uniform(0, 200, ns)), rng.uniform(0, 20, ns), rng.uniform(0, 500, nc))
    outs = [np.zeros(nc), np.zeros(nc)]
    assert_same(run(kernel, args, outs)[1], run(rc.fuse_density, args, outs)[1], rtol=1e-10)


@pytest.mark.parametrize("name", ["density_from_counts", "density_trend", "crowd_hazard", "weidmann_speed",
                                  "crowd_pressure", "occupancy_update"])
@given(seed=seeds)
@SET
def test_crowd_pointwise(name, seed):
    rng = np.random.default_rng(seed)
    n = 40
    rho = with_nans(rng, rng.uniform(-0.5, 7, n))
    cases = {
        "density_from_counts": ((rng.uniform(0, 100, n), rng.uniform(-10, 100, n)), 1),
        "density_trend": ((rho, with_nans(rng, rng.uniform(0, 7, n)), 10.0, 0.3, with_nans(rng, rng.normal(0, .01, n),
                                                                                            0.3)), 1),
        "crowd_hazard": ((rho, with_nans(rng, rng.normal(0, 0.01, n)), with_nans(rng, rng.uniform(0, .05, n)), 300.0,
                          2.0, 5.0, 0.02, 4.0), 1),
        "weidmann_speed": ((rho, 1.34, 1.913, 5.4), 2),
        "occupancy_update": ((with_nans(rng, rng.integers(0, 50, n).astype(float)), rng.poisson(3, n).astype(float),
                              rng.poisson(3, n).astype(float), with_nans(rng, rng.uniform(0, 50, n), 0.7)), 1),
        "crowd_pressure": ((rho, with_nans(rng, rng.normal(0, 1, n)), with_nans(rng, rng.normal(0, 1, n)), 0.1,
                            with_nans(rng, rng.normal(0, 1, n), 0.3), rng.normal(0, 1, n), rng.uniform(0, 1, n)), 1),
    }
    args, nout = cases[name]
    outs = [np.zeros(n) for _ in range(nout)]
    ref = run(getattr(rc, name), args, outs)
    for fn in both(getattr(kc, name)):
        got = run(fn, args, outs)
        assert_same(got[1], ref[1])
        assert_same(got[0], ref[0])  # state arrays updated in place identically


def _flood_state(rng, ny, nx):
    z = rng.uniform(0, 1, (ny, nx))
    h = rng.uniform(0, 0.3, (ny, nx)) * (rng.random((ny, nx)) > 0.3)
    wall = (rng.random((ny, nx)) < 0.1).astype(np.int8)
    qx = rng.normal(0, 0.05, (ny, nx + 1))
    qy = rng.normal(0, 0.05, (ny + 1, nx))
    return z, h, wall, qx, qy


@pytest.mark.parametrize("kernel", both(kf.inertial_flux) + both(kf.inertial_flux_par))
@given(seed=seeds, open_bc=st.sampled_from([0, 1]))
@SET
def test_inertial_flux(kernel, seed, open_bc):
    rng = np.random.default_rng(seed)
    ny, nx = rng.integers(1, 8), rng.integers(1, 8)
    z, h, wall, qx, qy = _flood_state(rng, ny, nx)
    args = (h, z, wall, qx, qy, 0.5, 5.0, 0.03, 0.8, 9.80665, 1e-6, open_bc)
    outs = [np.zeros_like(qx), np.zeros_like(qy)]
    assert_same(run(kernel, args, outs)[1], run(rf.inertial_flux, args, outs)[1])


@pytest.mark.parametrize("kernel", both(kf.outflow_limit) + both(kf.outflow_limit_par))
@given(seed=seeds)
@SET
def test_outflow_limit(kernel, seed):
    rng = np.random.default_rng(seed)
    _z, h, _wall, qx, qy = _flood_state(rng, rng.integers(1, 8), rng.integers(1, 8))
    args = (h, qx, qy, 20.0, 5.0)
    outs = [np.zeros_like(h)]
    assert_same(run(kernel, args, outs)[1], run(rf.outflow_limit, args, outs)[1])


@pytest.mark.parametrize("kernel", both(kf.continuity) + both(kf.continuity_par))
@given(seed=seeds)
@SET
def test_continuity(kernel, seed):
    rng = np.random.default_rng(seed)
    ny, nx = rng.integers(1, 8), rng.integers(1, 8)
    _z, h, _wall, qx, qy = _flood_state(rng, ny, nx)
    f = np.where(rng.random((ny, nx)) < 0.3, rng.uniform(0, 1, (ny, nx)), 1.0)
    args = (h, qx, qy, f, rng.uniform(0, 1e-5, (ny, nx)), rng.uniform(0, 1e-5, (ny, nx)),
            (rng.random((ny, nx)) < 0.1).astype(np.int8), 2.0, 5.0)
    outs = [np.zeros_like(h), np.zeros_like(qx), np.zeros_like(qy), rng.uniform(0, 1, (ny, nx)),
            rng.uniform(0, 1, (ny, nx)), np.zeros(ny)]
    assert_same(run(kernel, args, outs)[1], run(rf.continuity, args, outs)[1])


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


@pytest.mark.parametrize("name", ["probe_speed", "loop_speed", "segment_to_cells", "ewma_update", "congestion_level",
                                  "tpi_like", "california_incident", "speed_drop_incident"])
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
        "loop_speed": ((rng.integers(0, nb, k), rng.uniform(-1, 30, k)), [np.zeros(nb), np.zeros(nb)]),
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
    """Random state arrays, cell-major (n, h) as the kernels use them."""
    return [rng.integers(0, 5, (n, h)).astype(np.int8), rng.integers(-1, 5, (n, h)).astype(np.int8),
            rng.integers(0, 5, (n, h)).astype(np.int8), rng.integers(0, 4, (n, h)).astype(np.int16),
            rng.integers(0, 4, (n, h)).astype(np.int16),
            (rng.integers(0, 2**20, (n, h)) * (rng.random((n, h)) < 0.5)).astype(np.uint32),
            rng.integers(0, 2, (n, h)).astype(np.int8)]


@pytest.mark.parametrize("kernel", both(kk.alert_step))
@given(seed=seeds)
@SET
def test_alert_step(kernel, seed):
    rng = np.random.default_rng(seed)
    h, n = 2, 40
    raise_l = rng.integers(-1, 5, (n, h))
    hold_l = np.where(raise_l < 0, -1, np.minimum(raise_l + rng.integers(0, 3, (n, h)), 4))
    args = (raise_l, hold_l, rng.integers(0, 3, (h, 2)), 20.0, 5.0)
    outs = [*_state(rng, h, n), np.zeros((n, h), np.int8)]
    assert_same(run(kernel, args, outs)[1], run(rk.alert_step, args, outs)[1])


@pytest.mark.parametrize("name", ["flap_percent", "threshold_levels", "composite_level"])
@given(seed=seeds)
@SET
def test_risk_small(name, seed):
    rng = np.random.default_rng(seed)
    n = 40
    cases = {
        "flap_percent": ((rng.integers(0, 2**20, n).astype(np.uint32),), [np.zeros(n)]),
        "threshold_levels": ((with_nans(rng, rng.uniform(0, 6, n)), np.array([1.0, 2, 4, 5, 0.7, 1.5, 3, 4.5]),
                              float(rng.choice([1.0, -1.0]))), [np.zeros(n, np.int64), np.zeros(n, np.int64)]),
        "composite_level": ((rng.integers(-1, 5, (3, n)).astype(np.int8), 2), [np.zeros(n, np.int8)]),
    }
    args, outs = cases[name]
    ref = run(getattr(rk, name), args, outs)
    for fn in both(getattr(kk, name)):
        assert_same(run(fn, args, outs)[1], ref[1])


def random_tick_inputs(rng, n):
    """Random but plausible inputs for the fused tick (also used by the benchmark sanity check)."""
    return (with_nans(rng, rng.uniform(0, 6, n)), with_nans(rng, rng.normal(0, 0.005, n)),
            with_nans(rng, rng.uniform(0, 0.04, n), 0.5), with_nans(rng, rng.uniform(0, 0.7, n)),
            with_nans(rng, rng.uniform(0, 0.7, n)), with_nans(rng, rng.uniform(0, 0.12, n)),
            with_nans(rng, rng.uniform(0, 0.16, n)), with_nans(rng, rng.uniform(0, 25, n)), rng.uniform(0, 25, n),
            rng.integers(0, 5, n).astype(np.int8), with_nans(rng, rng.uniform(0, 1, n)))


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
    for _ in range(3):  # several ticks so counters, history and flapping evolve
        inputs = list(random_tick_inputs(rng, n))
        quiet = blank & (rng.random(n) < 0.8)
        for i in (0, 3, 4):  # no crowd, no water
            inputs[i][quiet] = 0.0
        inputs[5][quiet] = inputs[6][quiet] = np.nan  # no rain data
        inputs[9][quiet] = 0  # no road
        args = (*inputs, pp["p"], pp["thr"], pp["tthr"], pp["road_exp"], rng.integers(0, 3, (3, 2)))
        overall = np.where(blank, 0, rng.integers(-1, 5, n)).astype(np.int8)
        outs = [np.zeros((3, n)), *state, overall, np.zeros(n, np.int8)]
        got = run(kernel, args, outs)[1]
        ref = run(rk.risk_tick, args, outs)[1]
        assert_same(got, ref)
        state = got[1:8]


COVERED = {
    "bands": {"classify_bands"},
    "crowd": {"fuse_density", "density_from_counts", "density_trend", "crowd_hazard", "weidmann_speed",
              "crowd_pressure", "occupancy_update"},
    "flood": {"inertial_flux", "inertial_flux_par", "outflow_limit", "outflow_limit_par", "continuity",
              "continuity_par", "cell_velocity", "validity_flags"},
    "rain": {"rolling_sums", "signal_level"},
    "risk": {"alert_step", "flap_percent", "threshold_levels", "composite_level", "risk_tick"},
    "traffic": {"probe_speed", "loop_speed", "segment_to_cells", "ewma_update", "congestion_level", "tpi_like",
                "california_incident", "speed_drop_incident"},
}


def test_every_public_kernel_is_covered_here():
    import importlib

    import numba

    for mod, names in COVERED.items():
        kmod = importlib.import_module(f"models.kernels.{mod}")
        public = {n for n, f in vars(kmod).items()
                  if isinstance(f, numba.core.registry.CPUDispatcher) and not n.startswith("_")}
        assert public == names, mod
