"""Congestion on road links (models.links): GB/T 33171 levels, warning timing, hold, incidents, fusion, indices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from models.config import GBT33171_KMH, AlertTiming
from models.links import LinkCongestion, LinkTrafficConfig, fuse_loops, paint_cells, road_index

pytestmark = pytest.mark.usefixtures("one_numba_thread")

ARTERIAL = 2
INSTANT = LinkTrafficConfig(timing=AlertTiming(for_s=0.0, keep_s=0.0, flap_window_s=0.0))
"""No raise or clear delay: the warning level is the level the speed is at."""


def static(classes, free_kmh=60.0, length_m=100.0) -> xr.Dataset:
    n = len(classes)
    return xr.Dataset({
        "link_class": ("link", np.asarray(classes, np.int8), {"units": "1"}),
        "link_free_flow": ("link", np.broadcast_to(np.asarray(free_kmh, float), (n,)).copy(), {"units": "km h-1"}),
        "link_length": ("link", np.broadcast_to(np.asarray(length_m, float), (n,)).copy(), {"units": "m"})})


def speeds(ds: xr.Dataset, kmh) -> xr.Dataset:
    n = ds.sizes["link"]
    return ds.assign(link_speed=("link", np.broadcast_to(np.asarray(kmh, float), (n,)).copy(), {"units": "km h-1"}))


def run(model: LinkCongestion, ds: xr.Dataset, kmh, seconds: float, dt: float = 10.0) -> list[xr.Dataset]:
    """``seconds`` of twin time at speed ``kmh`` in ticks of ``dt``; the outputs of every tick."""
    return [model.update(speeds(ds, kmh), dt) for _ in range(round(seconds / dt))]


# ---------------------------------------------------------------- GB/T 33171 levels
# The bounds are converted as the inputs are (times 1000 / 3600, models/config.py KMH_TO_MS): dividing by 3.6 instead
# put a speed of exactly 35 or 65 km/h one level better.
ON_BOUNDS = [pytest.param(c, k) for c in (1, 2, 3, 4) for k in range(4)]


@pytest.mark.parametrize(("road_class", "k"), ON_BOUNDS)
def test_a_speed_on_a_gbt_bound_is_the_worse_level(road_class, k):
    bound = GBT33171_KMH[road_class][k]
    ds = static([road_class] * 3)
    out = LinkCongestion(ds).update(speeds(ds, [bound, bound + 0.01, bound - 0.01]), 0.0)
    assert out["link_level"].values.tolist() == [k + 1, k, k + 1]


@pytest.mark.parametrize("road_class", [1, 2, 3, 4])
def test_levels_per_class_between_the_bounds(road_class):
    b = GBT33171_KMH[road_class]
    mids = [b[0] + 5.0, (b[0] + b[1]) / 2, (b[1] + b[2]) / 2, (b[2] + b[3]) / 2, b[3] / 2, math.nan]
    ds = static([road_class] * len(mids))
    out = LinkCongestion(ds).update(speeds(ds, mids), 0.0)
    assert out["link_level"].values.tolist() == [0, 1, 2, 3, 4, -1]
    assert out["link_level"].dtype == np.int8


def test_the_same_speed_is_a_different_level_on_another_class():
    ds = static([1, 2, 3])  # 33 km/h: moderate on an expressway (<= 35), basically smooth on an arterial (<= 40)
    out = LinkCongestion(ds).update(speeds(ds, 33.0), 0.0)
    assert out["link_level"].values.tolist() == [3, 1, 1]


def test_warning_colours_follow_the_bounds_without_delays():
    # arterial: light (<= 30) blue, moderate (<= 20) yellow, severe (<= 15) orange, red at v / v_free <= 0.2
    kmh = [35.0, 25.0, 18.0, 14.0, 10.0]
    ds = static([ARTERIAL] * 5, free_kmh=60.0)
    out = LinkCongestion(ds, config=INSTANT).update(speeds(ds, kmh), 1.0)
    assert out["link_warning"].values.tolist() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- warning timing
def test_orange_only_after_the_raise_delay_and_steps_down_per_keep_delay():
    cfg = LinkTrafficConfig()
    assert (cfg.timing.raise_delays(), cfg.timing.keep_s) == ((120.0, 120.0, 30.0, 30.0), 120.0)
    ds = static([ARTERIAL], free_kmh=40.0)  # 10 km/h: severe, ratio 0.25 > 0.2: orange, not red
    model = LinkCongestion(ds, config=cfg)
    first = model.update(speeds(ds, 10.0), 0.0)
    assert first["link_level"].item() == 4 and first["link_warning"].item() == 0  # the GB/T level is at once
    warn = [o["link_warning"].item() for o in run(model, ds, 10.0, 150.0)]
    assert warn[:2] == [0] * 2  # 10 and 20 s after the first slow sample
    assert warn[2:] == [3] * 13  # from 30 s: severe is raised after 30 s, straight to orange
    # back to free flow: one colour down per 120 s below the clear bound, counted from the first free sample
    down = [o["link_warning"].item() for o in run(model, ds, 40.0, 400.0)]
    assert down[:12] == [3] * 12  # free samples at 10 .. 120 s: 0 .. 110 s since the first
    assert set(down[12:24]) == {2} and set(down[24:36]) == {1} and set(down[36:]) == {0}


def test_moderate_congestion_is_raised_after_one_signal_cycle():
    ds = static([ARTERIAL], free_kmh=60.0)  # 18 km/h: moderate on an arterial (<= 20), yellow
    model = LinkCongestion(ds)
    model.update(speeds(ds, 18.0), 0.0)
    warn = [o["link_warning"].item() for o in run(model, ds, 18.0, 150.0)]
    assert warn[:11] == [0] * 11 and warn[11:] == [2] * 4  # from 120 s


def test_a_queue_shorter_than_the_raise_delay_never_raises():
    ds = static([ARTERIAL], free_kmh=40.0)
    model = LinkCongestion(ds)
    model.update(speeds(ds, 40.0), 0.0)
    moderate = run(model, ds, 18.0, 100.0)  # 100 s at moderate, less than a cycle's 120 s
    severe = run(model, ds, 10.0, 20.0)  # then 20 s severe, less than its 30 s
    fast = run(model, ds, 40.0, 300.0)
    assert all(o["link_warning"].item() == 0 for o in moderate + severe + fast)
    assert [o["link_level"].item() for o in moderate + severe] == [3] * 10 + [4] * 2


# ---------------------------------------------------------------- silence
def _orange(model, ds):
    model.update(speeds(ds, 10.0), 0.0)
    assert run(model, ds, 10.0, 30.0)[-1]["link_warning"].item() == 3


def test_a_silent_link_holds_its_level_for_hold_s_then_is_no_data():
    assert LinkTrafficConfig().hold_s == 600.0
    ds = static([ARTERIAL], free_kmh=40.0)
    model = LinkCongestion(ds)
    _orange(model, ds)
    silent = run(model, ds, math.nan, 650.0)
    warn = [o["link_warning"].item() for o in silent]
    assert warn[:60] == [3] * 60  # held 10 .. 600 s
    assert warn[60:] == [-1] * 5  # 610 s on: no data
    assert [o["link_level"].item() for o in silent] == [-1] * 65  # GB/T level: no speed, no level


def test_data_back_at_free_flow_after_a_long_silence_does_not_show_the_old_level():
    ds = static([ARTERIAL], free_kmh=40.0)
    model = LinkCongestion(ds)
    _orange(model, ds)
    run(model, ds, math.nan, 610.0)
    back = run(model, ds, 40.0, 30.0)
    assert [o["link_warning"].item() for o in back] == [0, 0, 0]
    # a fresh machine: congestion must again last the raise delay before it shows
    again = [o["link_warning"].item() for o in run(model, ds, 10.0, 130.0)]
    assert again[:3] == [0] * 3 and again[3] == 3  # 30 s after the first slow sample


def test_after_a_silence_shorter_than_hold_s_the_old_level_is_kept():
    ds = static([ARTERIAL], free_kmh=40.0)
    model = LinkCongestion(ds)
    _orange(model, ds)
    run(model, ds, math.nan, 590.0)
    back = [o["link_warning"].item() for o in run(model, ds, 40.0, 30.0)]
    assert back == [3, 3, 3]  # held, and stepping down only after keep_s


# ---------------------------------------------------------------- incidents
def _learned(seconds: float = 900.0, kmh: float = 40.0):
    ds = static([ARTERIAL], free_kmh=50.0)
    model = LinkCongestion(ds)
    model.update(speeds(ds, kmh), 0.0)
    run(model, ds, kmh, seconds)
    return model, ds


def test_no_incident_test_before_baseline_min_s_of_data():
    assert LinkTrafficConfig().baseline_min_s == 600.0
    ds = static([ARTERIAL], free_kmh=50.0)
    model = LinkCongestion(ds)
    first = model.update(speeds(ds, 40.0), 0.0)
    assert first["link_incident"].item() == -1 and first["link_baseline"].item() == pytest.approx(40.0)
    out = run(model, ds, 40.0, 610.0)
    assert [o["link_incident"].item() for o in out[:60]] == [-1] * 60  # baseline 0 .. 590 s old
    assert out[60]["link_incident"].item() == 0  # 600 s of data behind it: tested, none
    # even a collapse to 5 km/h is not an incident while the baseline is young
    young = LinkCongestion(ds)
    young.update(speeds(ds, 40.0), 0.0)
    run(young, ds, 40.0, 300.0)
    assert {o["link_incident"].item() for o in run(young, ds, 5.0, 200.0)} == {-1}


def test_a_sustained_drop_below_half_the_baseline_is_an_incident():
    model, ds = _learned()
    drop = run(model, ds, 15.0, 320.0)  # 15 < 0.5 x 40
    inc = [o["link_incident"].item() for o in drop]
    assert inc[:30] == [0] * 30  # less than 300 s since the first slow sample
    assert inc[30:] == [1, 1]
    # the baseline is frozen during the drop (the slow speeds do not become the usual speed)
    assert all(o["link_baseline"].item() == pytest.approx(40.0) for o in drop)
    # recovery ends the incident at once
    assert model.update(speeds(ds, 40.0), 10.0)["link_incident"].item() == 0


def test_a_short_drop_or_a_mild_one_is_not_an_incident():
    model, ds = _learned()
    short = run(model, ds, 10.0, 60.0) + run(model, ds, 40.0, 60.0) + run(model, ds, 10.0, 200.0)
    assert {o["link_incident"].item() for o in short} == {0}  # the drop timer restarts after recovery
    model, ds = _learned()
    mild = run(model, ds, 21.0, 600.0)  # 21 > 0.5 x 40: slow, not a drop
    assert {o["link_incident"].item() for o in mild} == {0}
    assert mild[-1]["link_baseline"].item() < 40.0  # and the baseline learns it


def test_a_single_slow_sample_is_not_an_incident_whatever_the_tick():
    ds = static([ARTERIAL], free_kmh=50.0)
    model = LinkCongestion(ds)
    model.update(speeds(ds, 40.0), 0.0)
    run(model, ds, 40.0, 900.0, dt=300.0)
    assert model.update(speeds(ds, 10.0), 300.0)["link_incident"].item() == 0


def test_a_silent_link_is_not_tested_and_keeps_its_drop_time():
    model, ds = _learned()
    run(model, ds, 15.0, 200.0)
    silent = run(model, ds, math.nan, 100.0)
    assert {o["link_incident"].item() for o in silent} == {-1}
    inc = [o["link_incident"].item() for o in run(model, ds, 15.0, 120.0)]
    assert inc[:10] == [0] * 10 and inc[10] == 1  # 190 s from the first slow sample to the silence + 110 s after


# ---------------------------------------------------------------- fuse_loops
def test_fuse_loops_probe_only_loop_only_both_and_stale():
    speed = np.array([30.0, np.nan, 20.0, np.nan, 50.0])
    vehicles = np.array([3.0, 0.0, 1.0, 0.0, 2.0])
    loop_link = np.array([0, 1, 1, 2, -1])
    loop_speed = np.array([60.0, 24.0, 36.0, np.nan, 99.0])  # link 2's loop is stale; -1: on no link
    out = fuse_loops(speed, vehicles, loop_link, loop_speed, loop_weight=2.0)
    np.testing.assert_allclose(out[:3], [(30 * 3 + 60 * 2) / 5, 30.0, 20.0])
    assert np.isnan(out[3]) and out[4] == 50.0
    # the weight counts: a loop worth 5 vehicles pulls link 0 further towards 60
    assert fuse_loops(speed, vehicles, loop_link, loop_speed, 5.0)[0] == pytest.approx((90 + 300) / 8)


def test_fuse_loops_counts_a_probe_speed_without_vehicles_as_one_vehicle():
    out = fuse_loops(np.array([30.0]), np.array([np.nan]), np.array([0]), np.array([60.0]), 2.0)
    assert out[0] == pytest.approx((30 + 120) / 3)


def test_fuse_loops_with_only_stale_loops_returns_the_probe_speeds_untouched():
    speed = np.array([30.0, np.nan])
    out = fuse_loops(speed, np.array([1.0, 0.0]), np.array([0, 1]), np.array([np.nan, np.nan]))
    np.testing.assert_array_equal(out, speed)
    out[0] = 1.0
    assert speed[0] == 30.0  # a copy


# ---------------------------------------------------------------- road_index and paint_cells
def test_road_index_is_length_weighted_per_road_and_for_the_district():
    names = np.array(["A", "A", "B", "", "C"], dtype=object)
    length = np.array([100.0, 300.0, 200.0, 50.0, 100.0])
    tpi = np.array([2.0, 6.0, 4.0, 8.0, np.nan])
    roads, district = road_index(names, length, tpi)
    assert roads == pytest.approx({"A": 5.0, "B": 4.0})  # unnamed links and roads without data are not listed
    assert district == pytest.approx((200 + 1800 + 800 + 400) / 650)


def test_road_index_without_data_is_nan():
    roads, district = road_index(np.array(["A", "B"], dtype=object), np.array([10.0, 20.0]),
                                 np.array([np.nan, np.nan]))
    assert roads == {} and math.isnan(district)


def test_the_tpi_and_district_index_of_the_model():
    ds = static([ARTERIAL] * 3, free_kmh=40.0, length_m=[100.0, 300.0, 100.0])
    model = LinkCongestion(ds)
    # extra time r = v_free / v - 1: 0 (index 0), 0.5 (index 4), 1.1 (index 8); NaN no data
    out = model.update(speeds(ds, [40.0, 40.0 / 1.5, math.nan]), 0.0)
    np.testing.assert_allclose(out["link_tpi"].values[:2], [0.0, 4.0])
    assert np.isnan(out["link_tpi"].values[2])
    assert model.district_tpi == pytest.approx((0 * 100 + 4 * 300) / 400)
    roads, district = road_index(np.array(["A", "A", "A"], dtype=object), ds["link_length"].values,
                                 out["link_tpi"].values)
    assert district == pytest.approx(model.district_tpi) and roads["A"] == pytest.approx(3.0)


def test_paint_cells_is_the_length_weighted_mean_per_cell():
    table = (np.array([0, 0, 1, 2, 3]), np.array([0, 1, 1, 3, 4]), np.array([30.0, 10.0, 30.0, 5.0, 8.0]))
    out = paint_cells(table, np.array([10.0, 50.0, np.nan, 20.0]), 6)
    np.testing.assert_allclose(out[[0, 1, 4]], [10.0, (10 * 10 + 50 * 30) / 40, 20.0])
    assert np.isnan(out[2]) and np.isnan(out[3]) and np.isnan(out[5])  # no link / a link without data


# ---------------------------------------------------------------- snapshots
def test_a_restored_copy_continues_exactly_as_the_original():
    ds = static([ARTERIAL, ARTERIAL, 1, 3], free_kmh=[40.0, 50.0, 60.0, 35.0])
    a = LinkCongestion(ds)
    a.update(speeds(ds, [40.0, 45.0, 70.0, 30.0]), 0.0)
    run(a, ds, [40.0, 45.0, 70.0, 30.0], 700.0)  # baselines learned
    run(a, ds, [10.0, 20.0, math.nan, 8.0], 200.0)  # raise timers half way, drops under way
    saved = a.save_state()
    b = LinkCongestion(ds)
    b.restore_state(saved)
    seq = [[10.0, 20.0, math.nan, 8.0]] * 15 + [[40.0, math.nan, 65.0, 30.0]] * 15
    warnings, incidents = set(), set()
    for kmh in seq:
        oa, ob = a.update(speeds(ds, kmh), 10.0), b.update(speeds(ds, kmh), 10.0)
        xr.testing.assert_identical(oa, ob)
        assert a.district_tpi == pytest.approx(b.district_tpi, nan_ok=True)
        warnings |= set(oa["link_warning"].values.tolist())
        incidents |= set(oa["link_incident"].values.tolist())
    # the run went through raises, an incident and a held silent link: the comparison saw state, not constants
    assert {0, 3} <= warnings and {-1, 0, 1} <= incidents
    # the snapshot is a copy: running the original did not change it
    c = LinkCongestion(ds)
    c.restore_state(saved)
    np.testing.assert_array_equal(c.drop_s, saved["drop_s"])


def test_restoring_resumes_timers_mid_way():
    ds = static([ARTERIAL], free_kmh=60.0)  # 18 km/h: moderate, yellow after 120 s
    a = LinkCongestion(ds)
    a.update(speeds(ds, 18.0), 0.0)
    run(a, ds, 18.0, 60.0)  # half the raise delay
    b = LinkCongestion(ds)
    b.restore_state(a.save_state())
    warn = [o["link_warning"].item() for o in run(b, ds, 18.0, 60.0)]
    assert warn[:5] == [0] * 5 and warn[5] == 2  # 60 s more, not 120
    fresh = LinkCongestion(ds)
    fresh.update(speeds(ds, 18.0), 0.0)
    assert [o["link_warning"].item() for o in run(fresh, ds, 18.0, 60.0)] == [0] * 6
