"""Alert hygiene (SCIENCE.md 5): hysteresis and delays, Nagios flap vectors, for/keep_firing_for, stale data."""

import itertools

import numpy as np
import pytest

from models import LEVEL_NODATA, AlertMachine, AlertState, AlertTiming, stale_mask, threshold_levels

INF = np.inf


def run_series(metric, raise_, clear, timing):
    m = AlertMachine(1, 1, timing)
    levels = []
    for x in metric:
        r, h = threshold_levels(np.array([x]), raise_, clear)
        lv, _ = m.step(r[None, :], h[None, :])
        levels.append(int(lv[0, 0]))
    return np.array(levels), m


def raises(levels):
    lv = np.maximum(levels, 0)
    return int(np.sum((lv[1:] > 0) & (lv[:-1] == 0)))


def test_noisy_sine_hygiene():
    """Sine + noise (sd 5 % of T_on) around T_on = 0.15 m: without hysteresis/delays >> 10 raises per hour;
    with a 10 % deadband and for = 3 ticks at most 2 raise/clear pairs per hour (SCIENCE.md 5, test 1)."""
    rng = np.random.default_rng(42)
    t_on, tick, hours = 0.15, 10.0, 3
    t = np.arange(0, hours * 3600, tick)
    metric = t_on * (1 + 0.1 * np.sin(2 * np.pi * t / 3600.0)) + rng.normal(0, 0.05 * t_on, t.size)
    naive, _ = run_series(metric, (t_on, INF, INF, INF), (t_on, INF, INF, INF), AlertTiming(0, 0, 101, 100))
    clean, _ = run_series(metric, (t_on, INF, INF, INF), (0.9 * t_on, INF, INF, INF), AlertTiming(3, 3, 101, 100))
    assert raises(naive) / hours > 10
    assert raises(clean) / hours <= 2
    assert raises(clean) >= hours  # the real excursions are still seen


def nagios_history(states):
    m = AlertMachine(1, 1, AlertTiming(0, 0, 101, 100))
    for s in states:
        m.step(np.array([[s]]), np.array([[s]]))
    return m


@pytest.mark.parametrize(("states", "pct"), [
    ([0, 1] * 10 + [0], 100.0),      # 21 alternating states
    ([0] * 20 + [1], 6.25),          # one change at the newest transition (weight 1.25)
    ([0, 1] + [1] * 19, 3.75),       # one change at the oldest transition (weight 0.75)
    ([0] * 21, 0.0),
])
def test_nagios_percent_state_change(states, pct):
    """Nagios flapping.c: 21 states, weights 0.75 -> 1.25 (SCIENCE.md 5, test 2) [src]."""
    assert nagios_history(states).flap_percent()[0, 0] == pytest.approx(pct)


def test_flapping_enters_above_high_and_leaves_below_low():
    m = AlertMachine(1, 1, AlertTiming(0, 0, 20.0, 5.0))
    seen = []
    for s in [0, 1, 0, 1, 0, 1] + [1] * 30:
        m.step(np.array([[s]]), np.array([[s]]))
        seen.append((m.flap_percent()[0, 0], int(m.state.flapping[0, 0])))
    for (_p_prev, f_prev), (p, f) in itertools.pairwise(seen):
        if f and not f_prev:
            assert p > 20.0
        if f_prev and not f:
            assert p < 5.0
    assert any(f for _, f in seen) and seen[-1][1] == 0


def test_flapping_holds_the_level():
    m = AlertMachine(1, 1, AlertTiming(0, 0, 20.0, 5.0))
    for s in [0, 2, 0, 2, 0, 2]:
        m.step(np.array([[s]]), np.array([[s]]))
    assert m.state.flapping[0, 0] == 1
    lv, _ = m.step(np.array([[0]]), np.array([[0]]))
    assert lv[0, 0] == 2  # a single "unstable" alert stays up instead of clearing


def test_for_and_keep_firing_for_semantics():
    """for: 10 ticks, keep_firing_for: 5 ticks at 1 tick/min (Prometheus) [src]."""
    timing = AlertTiming(10, 5, 101, 100)
    on = (1.0, INF, INF, INF)
    lv, _ = run_series([1.0] * 10 + [0.0] * 10, on, on, timing)  # true for 9 min (10 evaluations)
    assert lv.max() == 0
    lv, _ = run_series([1.0] * 11 + [0.0] * 10, on, on, timing)  # true for 10 min
    assert lv[9] == 0 and lv[10] == 1  # fires at the evaluation 10 min after it became true
    assert (lv[11:16] == 1).all() and lv[16] == 0  # keeps firing 5 min after the condition was last met


def test_escalate_fast_deescalate_slowly():
    raise_, clear = (1.0, 2.0, 3.0, 4.0), (0.8, 1.8, 2.8, 3.8)
    lv, _ = run_series([0.0] + [4.5] * 3 + [0.0] * 20, raise_, clear, AlertTiming(1, 3, 101, 100))
    assert lv[2] == 4  # none -> red directly after the raise delay
    steps = lv[3:]
    assert list(steps[steps < 4][:16:4]) == [3, 2, 1, 0]  # one colour per clear delay
    assert np.all(np.diff(lv[2:]) >= -1)


def test_stale_data_neither_raises_nor_clears():
    """No data for > 3 update periods -> reported no-data, state frozen (SCIENCE.md 5, test 4)."""
    m = AlertMachine(1, 1, AlertTiming(2, 2, 101, 100))
    seq = [3, 3, 3, -1, -1, -1, -1, -1, 0]
    out = []
    for r in seq:
        lv, ch = m.step(np.array([[r]]), np.array([[r]]))
        out.append((int(lv[0, 0]), int(ch[0, 0])))
    assert out[2] == (3, 1)
    assert [o[0] for o in out[3:8]] == [-1] * 5
    assert int(m.state.level[0, 0]) == 3  # held, not cleared
    assert out[8][0] == 3  # data back and low: still needs the clear delay
    m2 = AlertMachine(1, 1, AlertTiming(1, 1, 101, 100))
    for r in [-1, -1, -1, -1]:
        lv, _ = m2.step(np.array([[r]]), np.array([[r]]))
    assert int(m2.state.level[0, 0]) == 0 and lv[0, 0] == -1  # stale never raises


def test_snapshot_restore_continues_identically():
    rng = np.random.default_rng(5)
    a = AlertMachine(2, 50, AlertTiming(2, 3, 20, 5))
    seq = [rng.integers(-1, 5, (2, 50)) for _ in range(30)]
    for r in seq[:15]:
        a.step(r, r)
    b = AlertMachine(2, 50, AlertTiming(2, 3, 20, 5))
    b.state = AlertState.restore(a.state.snapshot())
    for r in seq[15:]:
        la, ca = a.step(r, np.maximum(r - 1, -1))
        lb, cb = b.step(r, np.maximum(r - 1, -1))
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(ca, cb)


def test_stale_mask_after_three_periods_and_nodata_code():
    from twin.district.layers import LEVEL_NODATA as TWIN_NODATA

    assert LEVEL_NODATA == TWIN_NODATA
    last = np.array([100.0, 60.0, 71.0, np.nan])
    np.testing.assert_array_equal(stale_mask(last, 100.0, 10.0), [False, True, False, True])
