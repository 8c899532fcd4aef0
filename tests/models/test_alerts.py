"""Alert hygiene (docs/science/alerts.md 5): hysteresis and delays, Nagios flap vectors, for/keep_firing_for,
stale data.

The level state machine is the one inside the fused risk tick (`AlertLevels`); these tests drive it through
one hazard on one cell: the crowd density, with the thresholds of each test, nobody vulnerable, no road and
dry ground, so the crowd level is the state machine's answer to the metric alone.
"""

import itertools

import numpy as np
import pytest
import xarray as xr

from models import LEVEL_NODATA, AlertLevels, AlertTiming, CrowdConfig, RiskConfig, stale_mask

INF = np.inf
STEPS = (1.0, 2.0, 3.0, 4.0)
"""Raise (and clear) thresholds that make a density of k person m-2 the raw level k."""


pytestmark = pytest.mark.usefixtures("one_numba_thread")  # a few cells a tick: no thread start-up per tick


def crowd_dataset(density, depth=0.0):
    # every layer a writable array (``.copy()``): a read-only one (a size-1 ``np.broadcast_to``) is another numba
    # type, so `AlertLevels` would compile a second ``risk_tick`` for these tests alone (about 35 s on CI's cold
    # numba cache); the values are the same either way
    density = np.atleast_1d(np.asarray(density, float))
    n = density.size
    grid = {"crowd_density": (density, "person m-2"), "water_depth": (np.broadcast_to(depth, (n,)).copy(), "m"),
            "traffic_speed": (np.full(n, np.nan), "km h-1"), "free_flow_speed": (np.full(n, 50.0), "km h-1"),
            "road_class": (np.zeros(n, np.int8), "1"), "vulnerability": (np.zeros(n), "1")}
    return xr.Dataset({k: (("y", "x"), np.asarray(v).reshape(1, n), {"units": u}) for k, (v, u) in grid.items()})


def levels(raise_, clear, timing, n_cells=1):
    """`AlertLevels` whose crowd levels follow ``raise_`` / ``clear`` (person m-2) with ``timing``."""
    cfg = RiskConfig(crowd=CrowdConfig(density_raise=raise_, density_clear=clear, timing=timing))
    return AlertLevels(crowd_dataset(np.zeros(n_cells)), cfg)


def step(comp, density, dt=1.0):
    """One tick of ``dt`` [s]; (crowd level, crowd changed, crowd no data) of the first cell."""
    out = comp.update(crowd_dataset(density), dt)
    return (int(out["level_crowd"].values[0, 0]), int(out["level_changed"].values[0, 0] & 1),
            int(out["level_nodata"].values[0, 0] & 1))


def run_series(metric, raise_, clear, timing, dt=1.0):
    comp = levels(raise_, clear, timing)
    return np.array([step(comp, x, dt)[0] for x in metric]), comp


FAST = AlertTiming(for_s=0.0, keep_s=0.0, flap_high=101.0, flap_low=100.0, flap_sample_s=0.0)  # a sample a tick
"""No delays, no flap damping: the level follows the metric."""


def raises(lv):
    lv = np.maximum(lv, 0)
    return int(np.sum((lv[1:] > 0) & (lv[:-1] == 0)))


def test_noisy_sine_hygiene():
    """Sine + noise (sd 5 % of T_on) around T_on = 0.15: without hysteresis/delays >> 10 raises per hour;
    with a 10 % deadband and for = keep_firing_for = 30 s (3 ticks of 10 s) at most 2 raise/clear pairs per hour
    (docs/science/alerts.md 5, test 1)."""
    rng = np.random.default_rng(42)
    t_on, tick, hours = 0.15, 10.0, 3
    t = np.arange(0, hours * 3600, tick)
    metric = t_on * (1 + 0.1 * np.sin(2 * np.pi * t / 3600.0)) + rng.normal(0, 0.05 * t_on, t.size)
    naive, _ = run_series(metric, (t_on, INF, INF, INF), (t_on, INF, INF, INF), FAST, tick)
    clean, _ = run_series(metric, (t_on, INF, INF, INF), (0.9 * t_on, INF, INF, INF),
                          AlertTiming(for_s=30.0, keep_s=30.0, flap_high=101.0, flap_low=100.0), tick)
    assert raises(naive) / hours > 10
    assert raises(clean) / hours <= 2
    assert raises(clean) >= hours  # the real excursions are still seen


def nagios_history(states):
    comp = levels(STEPS, STEPS, FAST)
    for s in states:
        step(comp, float(s))
    return comp


@pytest.mark.parametrize(("states", "pct"), [
    ([0, 1] * 10 + [0], 100.0),      # 21 alternating states
    ([0] * 20 + [1], 6.25),          # one change at the newest transition (weight 1.25)
    ([0, 1] + [1] * 19, 3.75),       # one change at the oldest transition (weight 0.75)
    ([0] * 21, 0.0),
])
def test_nagios_percent_state_change(states, pct):
    """Nagios flapping.c: 21 states, weights 0.75 -> 1.25 (docs/science/alerts.md 5, test 2) [src]."""
    assert nagios_history(states).flap_percent()[0, 0] == pytest.approx(pct)


def test_flapping_enters_above_high_and_leaves_below_low():
    comp = levels(STEPS, STEPS, AlertTiming(for_s=0.0, keep_s=0.0, flap_sample_s=0.0))
    seen = []
    for s in [0, 1, 0, 1, 0, 1] + [1] * 30:
        step(comp, float(s))
        seen.append((comp.flap_percent()[0, 0], int(comp.state.flapping[0, 0])))
    for (_p_prev, f_prev), (p, f) in itertools.pairwise(seen):
        if f and not f_prev:
            assert p > 20.0
        if f_prev and not f:
            assert p < 5.0
    assert any(f for _, f in seen) and seen[-1][1] == 0


def test_flapping_holds_the_level_one_step_above_the_metric_for_the_flap_window():
    """A flapping alert stays up instead of clearing, but only one step above the metric (yellow flapping with
    none is held at blue) and only for the flap window (docs/science/alerts.md 5.3; rule 6 of the kernel)."""
    comp = levels(STEPS, STEPS, AlertTiming(for_s=0.0, keep_s=0.0, flap_window_s=5.0, flap_sample_s=0.0))
    for s in [0, 2, 0, 2, 0, 2]:
        step(comp, float(s))
    assert comp.state.flapping[0, 0] == 1
    held = [step(comp, 0.0)[0] for _ in range(7)]
    assert held == [1, 1, 1, 1, 1, 0, 0]  # blue for the 5 s window, then none


def test_for_and_keep_firing_for_semantics():
    """for: 10 min, keep_firing_for: 5 min at one evaluation a minute (Prometheus) [src]."""
    timing = AlertTiming(for_s=600.0, keep_s=300.0, flap_high=101.0, flap_low=100.0)
    on = (1.0, INF, INF, INF)
    lv, _ = run_series([1.0] * 10 + [0.0] * 10, on, on, timing, 60.0)  # true for 9 min (10 evaluations)
    assert lv.max() == 0
    lv, _ = run_series([1.0] * 11 + [0.0] * 10, on, on, timing, 60.0)  # true for 10 min
    assert lv[9] == 0 and lv[10] == 1  # fires at the evaluation 10 min after it became true
    assert (lv[11:16] == 1).all() and lv[16] == 0  # keeps firing 5 min after the condition was last met


def test_escalate_fast_deescalate_slowly():
    """none -> red in one move after the raise delay; red -> none one colour per clear delay (4 s)."""
    raise_, clear = (1.0, 2.0, 3.0, 4.0), (0.8, 1.8, 2.8, 3.8)
    lv, _ = run_series([0.0] + [4.5] * 3 + [0.0] * 20, raise_, clear,
                       AlertTiming(for_s=1.0, keep_s=4.0, flap_high=101.0, flap_low=100.0))
    assert lv[2] == 4  # none -> red directly after the raise delay
    assert [int(i) for i in np.flatnonzero(np.diff(lv[2:])) + 3] == [8, 12, 16, 20]  # the metric fell at 4
    assert list(lv[[8, 12, 16, 20]]) == [3, 2, 1, 0]


def test_stale_data_neither_raises_nor_clears():
    """No data for > 3 update periods -> flagged no data, level held, state frozen (docs/science/alerts.md 5,
    test 4); a cell that never had data is -1."""
    comp = levels(STEPS, STEPS, AlertTiming(for_s=2.0, keep_s=2.0, flap_high=101.0, flap_low=100.0))
    out = [step(comp, x) for x in [3.0, 3.0, 3.0] + [np.nan] * 5 + [0.0]]
    assert out[2] == (3, 1, 0)
    assert out[3:8] == [(3, 0, 1)] * 5  # held, flagged, not cleared
    assert out[8] == (3, 0, 0)  # data back and low: still needs the clear delay
    comp2 = levels(STEPS, STEPS, AlertTiming(for_s=1.0, keep_s=1.0))
    out = [step(comp2, np.nan) for _ in range(4)]
    assert int(comp2.state.level[0, 0]) == LEVEL_NODATA and out[-1] == (LEVEL_NODATA, 0, 1)  # stale never raises


def test_snapshot_restore_continues_identically():
    rng = np.random.default_rng(5)
    timing = AlertTiming(for_s=2.0, keep_s=3.0, flap_window_s=4.0)
    a, b = levels(STEPS, STEPS, timing, 50), levels(STEPS, STEPS, timing, 50)
    seq = [(np.where(rng.random(50) < 0.1, np.nan, rng.uniform(0, 5, 50)), rng.uniform(0, 0.6, 50))
           for _ in range(30)]
    for rho, depth in seq[:15]:
        a.update(crowd_dataset(rho, depth), 1.0)
    b.restore_state(a.save_state())
    for rho, depth in seq[15:]:
        oa, ob = a.update(crowd_dataset(rho, depth), 1.0), b.update(crowd_dataset(rho, depth), 1.0)
        for name in ("level_crowd", "level_flood", "level", "level_changed", "level_nodata"):
            np.testing.assert_array_equal(oa[name].values, ob[name].values)


def test_stale_mask_after_three_periods_and_nodata_code():
    from twin.district.layers import LEVEL_NODATA as TWIN_NODATA

    assert LEVEL_NODATA == TWIN_NODATA
    last = np.array([100.0, 60.0, 71.0, np.nan, -np.inf])
    np.testing.assert_array_equal(stale_mask(last, 100.0, 10.0), [False, True, False, True, True])
