"""The alert-level state machine of issue 14, rule by rule (docstring of models/kernels/risk.py,
docs/science/alerts.md 5).

Every series here runs through the numba kernel (`models.kernels.risk.risk_tick`) and its numpy reference
(`models.reference.risk.risk_tick`): :func:`run` asserts that the two agree exactly on every output and every
state array, tick by tick, before a test looks at the values. Hypothesis draws the series for the agreement
test and for the properties of rules 1 and 5; one focused test per rule asserts the values that rule gives.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import (
    AlertLevels,
    AlertState,
    AlertTiming,
    CrowdConfig,
    FloodConfig,
    RiskConfig,
    TrafficConfig,
    tick_params,
)
from models.kernels import risk as kernel
from models.reference import risk as reference

NAN, INF = float("nan"), float("inf")
NAMES = ("rho", "rate", "pres", "depth", "hv", "r1", "r6", "speed", "vff", "rclass", "crow", "vuln")
"""Kernel inputs in argument order (SI units: person m-2, m, m s-1, ...)."""
DEFAULTS = {"rho": 0.0, "rate": NAN, "pres": NAN, "depth": 0.0, "hv": NAN, "r1": NAN, "r6": NAN, "speed": NAN,
            "vff": 15.0, "rclass": 0, "crow": 0, "vuln": 0.2}
STEPS = (1.0, 2.0, 3.0, 4.0)
"""Crowd raise thresholds that make a density of k person m-2 the raw level k."""
CROWD, FLOOD, TRAFFIC = 0, 1, 2
NO_FLAP = {"flap_high": 101.0, "flap_low": 100.0}
"""Flap thresholds no percent state change (0-100) can pass: flap damping off."""
DEFAULT_TIMING = AlertTiming()
SET = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


pytestmark = pytest.mark.usefixtures("one_numba_thread")  # a few cells a tick: no thread start-up per tick


def config(timing: AlertTiming = DEFAULT_TIMING, crowd_clear=STEPS, flood: AlertTiming | None = None,
           traffic: AlertTiming | None = None) -> RiskConfig:
    """Crowd density k [person m-2] is raw level k (clear thresholds ``crowd_clear``); flood and traffic thresholds
    are the defaults; ``timing`` for every hazard unless ``flood`` / ``traffic`` say otherwise."""
    return RiskConfig(crowd=CrowdConfig(density_raise=STEPS, density_clear=crowd_clear, timing=timing),
                      flood=FloodConfig(timing=flood or timing), traffic=TrafficConfig(timing=traffic or timing))


@dataclass
class Run:
    """What the kernel gave at every tick: levels (ticks, cells, hazards), the rest (ticks, cells)."""

    level: np.ndarray
    overall: np.ndarray
    nodata: np.ndarray
    changed: np.ndarray
    forecast: np.ndarray
    risk: np.ndarray
    state: AlertState

    def of(self, hazard: int, cell: int = 0) -> list[int]:
        return self.level[:, cell, hazard].tolist()


def _arrays(tick: dict, n: int) -> list[np.ndarray]:
    """Writable copies (a read-only array is another numba signature: a compile of its own)."""
    def dtype(name: str) -> type:
        return np.int8 if name in ("rclass", "crow") else float

    return [np.array(np.broadcast_to(np.asarray(tick.get(name, DEFAULTS[name]), dtype(name)), (n,))) for name in NAMES]


def _one_run(fn, ticks: list[dict], cfg: RiskConfig, dts: np.ndarray, n: int) -> dict:
    pp = tick_params(cfg)
    params = (pp["p"], pp["thr"], pp["tthr"], pp["road_exp"], pp["timing"])
    state = AlertState.zeros(3, n)
    rec: dict[str, list] = {k: [] for k in ("level", "overall", "nodata", "changed", "forecast", "risk")}
    for tick, dt in zip(ticks, dts, strict=True):
        risk = np.empty((3, n))
        changed, nodata, forecast = np.empty(n, np.int8), np.empty(n, np.int8), np.empty(n, np.int8)
        fn(*_arrays(tick, n), *params, float(dt), risk, *state.args(), changed, nodata, forecast)
        for name, value in (("level", state.level), ("overall", state.overall), ("nodata", nodata),
                            ("changed", changed), ("forecast", forecast), ("risk", risk)):
            rec[name].append(value.copy())
    out = {k: np.array(v) for k, v in rec.items()}
    out["state"] = state
    return out


def run(ticks: list[dict], cfg: RiskConfig, dt=1.0) -> Run:
    """The inputs of each tick (name -> value or per-cell values, defaults in `DEFAULTS`) through the kernel and
    the reference, ``dt`` [s] one step or one per tick; asserts both agree exactly, returns the kernel's run."""
    dts = np.broadcast_to(np.asarray(dt, float), (len(ticks),))
    n = max([np.size(v) for t in ticks for v in t.values()] + [1])
    got = _one_run(kernel.risk_tick, ticks, cfg, dts, n)
    ref = _one_run(reference.risk_tick, ticks, cfg, dts, n)
    for name in ("level", "overall", "nodata", "changed", "forecast", "risk"):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=f"kernel and reference differ: {name}")
    for a, b, name in zip(got["state"].args(), ref["state"].args(), ("level", "raw", "history", "flapping",
                                                                      "pending", "timers", "overall"), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"kernel and reference differ: state {name}")
    return Run(**got)


def crowd(series, timing: AlertTiming = DEFAULT_TIMING, dt=1.0, **other) -> Run:
    """One cell whose crowd density follows ``series`` [person m-2] (level k at k); ``other`` inputs fixed."""
    return run([{"rho": x, **other} for x in series], config(timing), dt)


def changes(levels: list[int]) -> list[tuple[int, int]]:
    """(tick, new level) of every level change after the first tick."""
    return [(i, b) for i, (a, b) in enumerate(itertools.pairwise(levels), start=1) if a != b]


# ---------------------------------------------------------------- the kernel and its reference, on drawn series
RHO = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.5, 4.5, 5.5, NAN, INF, -INF, -1.0]
DEPTH = [0.0, 0.04, 0.1, 0.2, 0.3, 0.6, NAN, INF, -0.1]
SPEED = [0.5, 2.0, 4.0, 6.0, 8.0, 12.0, 20.0, NAN, INF, -1.0]
RATE = [NAN, -0.01, 0.0, 0.005, 0.02, INF]
PRESSURE = [NAN, 0.0, 0.05, INF, -1.0]
HV = [NAN, 0.0, 0.35, 0.6, INF, -0.2]
DELAYS = [0.0, 0.5, 1.0, 2.5, 3.0, 10.0, 30.0]


def held_values(values, n_ticks):
    """A series of ``n_ticks`` values drawn from ``values`` in runs of 1-12 ticks (level jumps, gaps, bad values)."""
    runs = st.lists(st.tuples(st.sampled_from(values), st.integers(1, 12)), min_size=1, max_size=12)
    return runs.map(lambda rs: ([v for v, k in rs for _ in range(k)] * n_ticks)[:n_ticks])


timings = st.builds(lambda f, k, w, flap, sample: AlertTiming(for_s=f, keep_s=k, flap_window_s=w, flap_high=flap[0],
                                                              flap_low=flap[1], flap_sample_s=sample),
                    st.tuples(*[st.sampled_from(DELAYS)] * 4), st.sampled_from(DELAYS),
                    st.sampled_from([0.0, 5.0, 60.0]), st.sampled_from([(20.0, 5.0), (10.0, 2.0), (101.0, 100.0)]),
                    st.sampled_from([0.0, 1.0, 10.0]))


@st.composite
def drawn_runs(draw, n_cells=3):
    n_ticks = draw(st.integers(1, 60))
    cells = [{name: draw(held_values(values, n_ticks)) for name, values in
              (("rho", RHO), ("rate", RATE), ("pres", PRESSURE), ("depth", DEPTH), ("hv", HV), ("speed", SPEED))}
             for _ in range(n_cells)]
    road = [draw(st.integers(0, 4)) for _ in range(n_cells)]
    ticks = [{name: [c[name][i] for c in cells] for name in cells[0]} | {"rclass": road} for i in range(n_ticks)]
    dt = draw(st.one_of(st.sampled_from([1.0, 10.0]),
                        st.lists(st.sampled_from([0.0, 0.1, 0.3, 1.0, 2.5, 10.0]), min_size=n_ticks, max_size=n_ticks)))
    cfg = config(draw(timings), (0.8, 1.8, 2.8, 3.8), draw(timings), draw(timings))
    return ticks, cfg, dt


@given(drawn=drawn_runs())
@settings(SET, max_examples=120)
def test_kernel_and_reference_agree_exactly_on_drawn_series(drawn):
    """Series with NaN gaps, +-inf, negatives and level jumps, at 1 s, 10 s and uneven ticks: the kernel and the
    numpy reference give the same levels, flags, risk and state at every tick (`run` asserts it)."""
    ticks, cfg, dt = drawn
    out = run(ticks, cfg, dt)
    assert out.level.shape == (len(ticks), 3, 3)
    assert ((out.level >= -1) & (out.level <= 4)).all()


# ---------------------------------------------------------------- rule 1: time, not ticks
def test_rule1_delays_are_seconds_of_twin_time():
    """for 3 s and keep_firing_for 10 s mean seconds at any tick: red 3 s after the density reaches 4.5 at a 1 s
    tick, at the next tick (10 s) at a 10 s tick, and one colour down every 10 s after it falls, at both ticks."""
    timing = AlertTiming(for_s=3.0, keep_s=10.0)
    series = [4.5] * 60 + [0.5] * 60  # seconds
    at_1s = crowd(series, timing, dt=1.0).of(CROWD)
    at_10s = crowd(series[::10], timing, dt=10.0).of(CROWD)
    assert changes(at_1s) == [(3, 4), (70, 3), (80, 2), (90, 1), (100, 0)]
    assert changes(at_10s) == [(1, 4), (7, 3), (8, 2), (9, 1), (10, 0)]  # ticks of 10 s
    assert at_10s == at_1s[::10]
    with pytest.raises(TypeError):
        AlertTiming(3, 10)  # the old positional (for_ticks, keep_ticks) cannot be read as seconds


DENSITIES = [0.5, 1.5, 2.5, 3.5, 4.5, NAN]
DEPTHS = [0.0, 0.07, 0.2, 0.35, 0.6, NAN]


@st.composite
def slow_series(draw):
    """Crowd and flood series of 10 s segments, each long enough for every pending delay to run out within it."""
    timing = AlertTiming(for_s=draw(st.tuples(*[st.sampled_from([0.0, 2.0, 2.5, 3.0, 7.0, 10.0, 15.0, 30.0])] * 4)),
                         keep_s=draw(st.sampled_from([0.0, 2.5, 3.0, 10.0, 20.0])),
                         flap_window_s=draw(st.sampled_from([0.0, 10.0, 60.0])),
                         **draw(st.sampled_from([{}, {"flap_high": 10.0, "flap_low": 2.0}])))
    settle = int(np.ceil((max(timing.raise_delays()) + 4 * timing.keep_s) / 10.0)) + 1  # [10 s]
    seconds = {}
    for name, values in (("rho", DENSITIES), ("depth", DEPTHS)):
        segments = draw(st.lists(st.tuples(st.sampled_from(values), st.integers(0, 3)), min_size=1, max_size=5))
        seconds[name] = [v for v, extra in segments for _ in range(10 * (settle + extra))]
    total = max(len(s) for s in seconds.values())
    for s in seconds.values():
        s.extend([s[-1]] * (total - len(s)))
    return timing, seconds


@given(drawn=slow_series())
@settings(SET, max_examples=30)
def test_rule1_a_10s_tick_shows_the_levels_of_a_1s_tick_at_every_10s(drawn):
    """Rule 1 as a property: a metric that changes on the 10 s grid, run at a 1 s and at a 10 s tick, gives the same
    crowd, flood and overall levels and no-data flags at every 10 s tick; so every level change at the 10 s tick
    comes at the first tick at or after the 1 s tick's (within one tick). Flap damping is on: its history is sampled
    every 10 s of twin time (``flap_sample_s``), so both ticks see the same 21 samples (rule 6)."""
    timing, seconds = drawn
    cfg = config(timing)
    n = len(seconds["rho"])
    fine = run([{"rho": seconds["rho"][t], "depth": seconds["depth"][t]} for t in range(n)], cfg, 1.0)
    coarse = run([{"rho": seconds["rho"][t], "depth": seconds["depth"][t]} for t in range(0, n, 10)], cfg, 10.0)
    np.testing.assert_array_equal(coarse.level, fine.level[::10])
    np.testing.assert_array_equal(coarse.overall, fine.overall[::10])
    np.testing.assert_array_equal(coarse.nodata, fine.nodata[::10])
    for t, new in changes(coarse.of(CROWD)):  # the same change, at most one coarse tick later
        before = [i for i, lv in changes(fine.of(CROWD)) if i <= 10 * t]
        assert before and 10 * t - before[-1] < 10 and fine.of(CROWD)[10 * t] == new


# ---------------------------------------------------------------- rule 2: each level its own run
def test_rule2_time_at_a_lower_level_never_counts_toward_a_higher_one():
    """Yellow, yellow, yellow, red at 1 s ticks with for 3 s: the 4th tick is yellow (its own 3 s are up), not red;
    red comes 3 s after the density first reached red."""
    lv = crowd([2.0, 2.0, 2.0, 4.0, 4.0, 4.0, 4.0], AlertTiming(for_s=3.0)).of(CROWD)
    assert lv == [0, 0, 0, 2, 2, 2, 4]
    per_level = AlertTiming(for_s=(0.0, 0.0, 0.0, 10.0))  # red needs 10 s of its own, the others none
    lv = crowd([4.5] * 12, per_level).of(CROWD)
    assert lv[:10] == [3] * 10 and lv[10:] == [4, 4]
    lv = crowd([4.5, 4.5, 3.5, 4.5, 4.5, 4.5, 4.5], AlertTiming(for_s=3.0)).of(CROWD)
    assert lv == [0, 0, 0, 3, 3, 3, 4]  # one tick below red restarts red's run; orange's run goes on


# ---------------------------------------------------------------- rule 3: no data freezes, delays restart
def test_rule3_after_a_gap_every_delay_starts_again_from_the_first_fresh_sample():
    """A raise pending 2 of its 3 s, a 20 s gap, then one high tick: no raise; red 3 s after the first fresh sample.
    A clear pending 8 of its 10 s, a gap, then low again: the full 10 s again. The level stays through the gap."""
    timing = AlertTiming(for_s=3.0, keep_s=10.0)
    lv = crowd([4.5, 4.5, 4.5] + [NAN] * 20 + [4.5, 0.5], timing).of(CROWD)
    assert lv == [0] * 25
    lv = crowd([4.5, 4.5, 4.5] + [NAN] * 20 + [4.5] * 4, timing).of(CROWD)
    assert lv[:26] == [0] * 26 and lv[26] == 4
    out = crowd([4.5] * 4 + [3.5] * 9 + [NAN] * 5 + [3.5] * 11, timing)
    lv = out.of(CROWD)
    assert lv[:17] == [0, 0, 0] + [4] * 14  # 8 s below red, then the gap: held
    assert lv[18:28] == [4] * 10 and lv[28] == 3  # 10 s from the first fresh sample
    assert out.nodata[13:18, 0].tolist() == [1] * 5 and out.nodata[18:, 0].tolist() == [0] * 11


# ---------------------------------------------------------------- rule 4: silent hazards are held
def _component_dataset(**values) -> xr.Dataset:
    base = {"crowd_density": 0.0, "water_depth": 0.0, "traffic_speed": NAN, "free_flow_speed": 50.0,
            "road_class": 0, "vulnerability": 0.2}
    base.update(values)
    n = max(np.size(v) for v in base.values())
    units = {"crowd_density": "person m-2", "water_depth": "m", "traffic_speed": "km h-1", "free_flow_speed": "km h-1",
             "crowd_trend": "person m-2 s-1", "crowd_pressure": "s-2"}
    return xr.Dataset({k: (("y", "x"), np.broadcast_to(np.asarray(v, np.int8 if k == "road_class" else float), (n,))
                           .reshape(1, n).copy(), {"units": units.get(k, "1")}) for k, v in base.items()})


def test_rule4_a_silent_hazard_keeps_its_level_flagged_and_counts_in_the_overall():
    """Flood red, then the water gauge goes stale: level_flood stays red with the flood no-data bit set, and the
    overall level stays red; a cell that never had crowd data is -1, one whose counter fell silent keeps its level."""
    wet = _component_dataset(water_depth=[0.6, 0.0], crowd_density=[2.5, NAN])
    comp = AlertLevels(wet, config(AlertTiming(for_s=0.0, keep_s=10.0)))
    out = comp.update(wet, 1.0)
    assert out["level_flood"].values[0].tolist() == [4, 0] and out["level"].values[0].tolist() == [4, 0]
    assert out["level_crowd"].values[0].tolist() == [2, -1]  # never had crowd data: -1
    for _ in range(30):
        out = comp.update(_component_dataset(water_depth=[0.0, 0.0], crowd_density=[0.0, NAN]), 1.0,
                          stale={"flood": np.array([[True, False]]), "crowd": np.array([[True, False]])})
    assert out["level_flood"].values[0, 0] == 4 and out["level_crowd"].values[0, 0] == 2
    assert out["level_nodata"].values[0].tolist() == [1 | 2, 1]  # cell 0: crowd and flood silent; cell 1: crowd
    assert out["level"].values[0, 0] == 4  # the held flood red is the overall level
    assert out["level_changed"].values[0].tolist() == [0, 0]


# ---------------------------------------------------------------- rule 5: hazards are independent
def test_rule5_a_silent_crowd_counter_does_not_lower_a_flood_red():
    """The issue's case: water at 0.6 m in a cell off the roads with a counter at 1.5 person/m2; the counter falls
    silent: the flood level stays red (exposure weights only the risk, which becomes unknown: NaN, not 0)."""
    out = run([{"depth": 0.6, "rho": 1.5}] * 5 + [{"depth": 0.6, "rho": NAN}] * 30, config(AlertTiming()))
    assert out.of(FLOOD)[3:] == [4] * 32
    assert out.nodata[5:, 0].tolist() == [1] * 30  # crowd no data
    assert out.risk[4, FLOOD, 0] > 0 and np.isnan(out.risk[5:, FLOOD, 0]).all()


def test_rule5_exposure_and_vulnerability_never_raise_or_cap_a_level():
    """15 cm at a tunnel portal (expressway, V = 1) is the yellow its depth gives, not orange; 30 cm in an empty
    park (E = 0) is orange, not capped at blue. Risk = H x E x V orders them; a road without a density reading
    keeps its road exposure (the risk is a lower bound there)."""
    ticks = [{"depth": [0.16, 0.30, 0.30], "rclass": [1, 0, 2], "vuln": [1.0, 0.1, 0.5], "rho": [2.0, 0.0, NAN]}] * 4
    out = run(ticks, config(AlertTiming()))
    assert out.level[-1, :, FLOOD].tolist() == [2, 3, 3]
    hz = (np.array([0.16, 0.30, 0.30]) - 0.15) / 0.35
    np.testing.assert_allclose(out.risk[-1, FLOOD], hz * [1.0, 0.0, 0.8] * [1.0, 0.1, 0.5])


INPUTS_OF = {CROWD: {"rho": RHO, "rate": RATE, "pres": PRESSURE}, FLOOD: {"depth": DEPTH, "hv": HV},
             TRAFFIC: {"speed": SPEED}}
"""The inputs of each hazard's own metrics (the road class belongs to traffic)."""


@st.composite
def two_worlds(draw):
    """One hazard's inputs, and two different worlds of everything else (the other hazards' metrics, the road
    class unless the hazard is traffic, and the vulnerability)."""
    n_ticks = draw(st.integers(2, 50))
    kept = draw(st.sampled_from([CROWD, FLOOD, TRAFFIC]))
    shared = {name: draw(held_values(values, n_ticks)) for name, values in INPUTS_OF[kept].items()}
    road = draw(st.integers(0, 4))
    worlds = []
    for _ in range(2):
        inputs = {name: draw(held_values(values, n_ticks)) for k, names in INPUTS_OF.items() if k != kept
                  for name, values in names.items()}
        fixed = {"vuln": draw(st.sampled_from([0.0, 0.2, 1.0, NAN])),
                 "rclass": road if kept == TRAFFIC else draw(st.integers(0, 4))}
        worlds.append([{k: v[i] for k, v in (shared | inputs).items()} | fixed for i in range(n_ticks)])
    return kept, worlds, draw(timings)


@given(drawn=two_worlds())
@settings(SET, max_examples=60)
def test_rule5_one_hazards_inputs_never_change_anothers_level(drawn):
    """Whatever the other hazards' inputs do (silent, inf, jumps), whatever the exposure and the vulnerability, a
    hazard's level and its no-data flag are the same when its own inputs are."""
    kept, (a, b), timing = drawn
    ra, rb = run(a, config(timing)), run(b, config(timing))
    np.testing.assert_array_equal(ra.level[:, :, kept], rb.level[:, :, kept])
    np.testing.assert_array_equal(ra.nodata & (1 << kept), rb.nodata & (1 << kept))


# ---------------------------------------------------------------- rule 6: flap damping is bounded
def test_rule6_flap_hold_is_at_most_one_step_and_ends_after_the_window():
    """Yellow and none alternating every second (for 0, keep 0): once flapping, a fall to none steps to blue at
    once (one step above what the metric says) and blue is held; when the density stays low, blue ends 5 s (the
    flap window) after the step. Without flap damping the level follows the metric."""
    series = [0.0, 2.0] * 4 + [0.0] * 10
    damped = crowd(series, AlertTiming(for_s=0.0, keep_s=0.0, flap_window_s=5.0, flap_sample_s=1.0))
    lv, flapping = damped.of(CROWD), damped.state.flapping
    assert lv == [0, 2, 0, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert all(level <= metric + 1 for level, metric in zip(lv, series, strict=True))  # never two steps above
    assert flapping[0, CROWD] == 1  # still flapping when the hold ended: the window, not the flag, ended it
    plain = crowd(series, AlertTiming(for_s=0.0, keep_s=0.0, **NO_FLAP)).of(CROWD)
    assert plain == [int(x) for x in series]


def test_rule6_a_flapping_level_two_steps_above_the_metric_steps_down_as_usual():
    """Red flapping with none, for 0 and keep 2 s: red goes to orange after 2 s as without flapping; damping only
    holds the last step (blue, one above none), and that for the flap window of 6 s."""
    timing = AlertTiming(for_s=0.0, keep_s=2.0, flap_window_s=6.0, flap_sample_s=1.0)
    lv = crowd([4.0, 0.0] * 6 + [0.0] * 16, timing).of(CROWD)
    tail = lv[11:]
    assert changes(tail) == [(2, 3), (4, 2), (6, 1), (12, 0)]  # 2 s per step, then blue held 6 s


def test_rule6_the_flap_history_is_sampled_in_seconds_not_ticks():
    """Yellow and none alternating every 10 s: ticked every 1 s or every 10 s, the history holds the same samples
    (one per 10 s of twin time) and the hazard flaps at the same time; with a sample per tick the 1 s tick would
    see ten times fewer changes per sample and never flap."""
    timing = AlertTiming(for_s=0.0, keep_s=0.0, flap_window_s=30.0)  # flap_sample_s 10 s, the default
    seconds = [0.0, 2.0] * 6
    fine = crowd([v for v in seconds for _ in range(10)], timing)
    coarse = crowd(seconds, timing, dt=10.0)
    assert coarse.state.flapping[0, CROWD] == 1 and fine.state.flapping[0, CROWD] == 1
    np.testing.assert_array_equal(fine.state.history, coarse.state.history)
    assert fine.of(CROWD)[::10] == coarse.of(CROWD)
    per_tick = crowd([v for v in seconds for _ in range(10)], AlertTiming(for_s=0.0, keep_s=0.0, flap_sample_s=0.0))
    assert per_tick.state.flapping[0, CROWD] == 0


# ---------------------------------------------------------------- rule 7: one step down per clear delay
def test_rule7_deescalation_is_one_step_per_clear_delay():
    """Red, then the density falls to none: orange, yellow, blue, none, each keep_s = 4 s after the previous at a
    1 s tick; at a 10 s tick the steps that fell due in a tick are taken together (2, then 2)."""
    timing = AlertTiming(for_s=0.0, keep_s=4.0)
    lv = crowd([4.5] * 3 + [0.0] * 20, timing).of(CROWD)
    assert changes(lv) == [(7, 3), (11, 2), (15, 1), (19, 0)]
    lv = crowd([4.5] * 3 + [0.0] * 3, timing, dt=10.0).of(CROWD)
    assert lv == [4, 4, 4, 4, 2, 0]  # 10 s: two steps of 4 s (8 s, 2 s left over), then 12 s: two more


# ---------------------------------------------------------------- rule 8: crowd levels are observed
def test_rule8_the_trend_makes_a_forecast_level_never_an_observed_one():
    """1.5 person/m2 rising 0.01 person/m2/s: the observed crowd level is what 1.5 gives (blue); the forecast level
    is what 1.5 + 300 s x 0.01 = 4.5 gives (orange). A falling trend forecasts the observed level; no trend, -1."""
    out = crowd([1.5] * 4, AlertTiming(for_s=0.0), rate=0.01)
    assert out.of(CROWD) == [1] * 4 and out.forecast[:, 0].tolist() == [4] * 4
    cfg = RiskConfig()  # the real bands: 1.08 / 2 / 4 / 5 person/m2
    out = run([{"rho": 1.5, "rate": 0.01}] * 4, cfg)
    assert out.of(CROWD)[-1] == 1 and out.forecast[-1, 0] == 3
    assert run([{"rho": 1.5, "rate": -0.01}], cfg).forecast[0, 0] == 1
    assert run([{"rho": 1.5}], cfg).forecast[0, 0] == -1
    assert run([{"rho": NAN, "rate": 0.01}], cfg).forecast[0, 0] == -1


def test_rule8_density_of_one_to_one_point_two_never_makes_red():
    """The issue's case: 100 ticks at 1.0-1.2 person/m2 with a trend swinging +-0.01 person/m2/s (real bands and
    delays). The observed crowd level is never above blue; only the forecast swings."""
    rng = np.random.default_rng(14)
    ticks = [{"rho": rng.uniform(1.0, 1.2), "rate": 0.01 * (-1) ** k, "vuln": 1.0} for k in range(100)]
    out = run(ticks, RiskConfig())
    assert max(out.of(CROWD)) == 1 and max(out.overall[:, 0]) == 1
    assert out.forecast[:, 0].max() >= 3


def test_rule8_pressure_with_a_dense_crowd_adds_one_observed_level():
    out = crowd([4.2] * 4, AlertTiming(for_s=0.0), pres=0.05)
    assert out.of(CROWD)[-1] == 4 and out.forecast[-1, 0] == -1  # no trend given: no forecast
    assert crowd([1.0] * 4, AlertTiming(for_s=0.0), pres=1.0).of(CROWD)[-1] == 1  # pressure alone never alerts


# ---------------------------------------------------------------- rule 9: +-inf and negatives are no data
@pytest.mark.parametrize("bad", [INF, -INF, -1.0, NAN])
def test_rule9_inf_and_negative_metrics_are_no_data(bad):
    """A density, depth or speed of +-inf or below zero is no data, as NaN: the level is held and flagged, the risk
    is NaN, and a run of them never raises. An optional metric (h v) that is bad is not used."""
    timing = AlertTiming(for_s=2.0, keep_s=2.0)
    ticks = [{"rho": 2.5, "depth": 0.2, "speed": 2.0, "rclass": 2}] * 3 + [{"rho": bad, "depth": bad, "speed": bad,
                                                                             "rclass": 2}] * 6
    out = run(ticks, config(timing))
    assert out.level[2, 0].tolist() == [2, 2, 4] and out.level[-1, 0].tolist() == [2, 2, 4]  # 2 m/s: red
    assert out.nodata[3:, 0].tolist() == [7] * 6 and np.isnan(out.risk[3:, :, 0]).all()
    never = run([{"rho": bad, "depth": bad, "speed": bad, "rclass": 2}] * 6, config(timing))
    assert never.level[-1, 0].tolist() == [-1, -1, -1] and never.overall[-1, 0] == -1
    hv = run([{"depth": 0.2, "hv": bad}] * 3, config(timing))
    assert hv.of(FLOOD)[-1] == 2  # depth's yellow; a bad h v neither raises nor silences the flood level


# ---------------------------------------------------------------- the component around the kernel
def test_the_component_refuses_a_dt_that_is_not_seconds():
    ds = _component_dataset()
    comp = AlertLevels(ds)
    for bad in (-1.0, NAN, INF):
        with pytest.raises(ValueError, match="dt"):
            comp.update(ds, bad)


def test_a_state_saved_with_tick_counters_is_upgraded_on_restore():
    """A snapshot from before the timers were seconds (reported, n_up, n_down) restores: levels, flap history and
    overall carry over; the pending delays start again (as after a gap)."""
    ds = _component_dataset(crowd_density=[4.5, 0.0])
    comp = AlertLevels(ds, config(AlertTiming(for_s=0.0)))
    comp.update(ds, 1.0)
    n = 2
    old = {"level": comp.state.level.copy(), "reported": comp.state.level.copy(), "raw": comp.state.raw.copy(),
           "n_up": np.ones((n, 3), np.int16), "n_down": np.zeros((n, 3), np.int16),
           "history": comp.state.history.copy(), "flapping": comp.state.flapping.copy(),
           "overall": comp.state.overall.copy()}
    fresh = AlertLevels(ds, config(AlertTiming(for_s=0.0)))
    fresh.restore_state({"state": old})
    np.testing.assert_array_equal(fresh.state.level, comp.state.level)
    assert fresh.state.timers.shape == (n, 3, kernel.N_TIMERS) and not fresh.state.pending.any()
    out = fresh.update(ds, 1.0)
    assert out["level_crowd"].values[0].tolist() == [4, 0]
