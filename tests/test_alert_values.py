"""Alert values (twin.alerting.values): current value, peak and its time, trend, history, update steps (issue 16)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.alerting.cap import cap_time
from twin.alerting.values import AlertValues, TrendBands, ValueSteps, least_squares_slope

T0 = 1_767_189_600.0  # 2025-12-31 22:00 Shanghai
CROWD = "citytwin.bund.crowd.1"
TRAFFIC = "citytwin.bund.traffic.2"


def fed(values: list[float], hazard: str = "crowd", ident: str = CROWD, dt: float = 10.0,
        tracker: AlertValues | None = None) -> AlertValues:
    """A tracker fed ``values`` every ``dt`` seconds from T0."""
    tracker = tracker or AlertValues()
    for i, v in enumerate(values):
        tracker.observe(T0 + i * dt, ident, hazard, v, ("crowd-01", "crowd-02"))
    return tracker


def test_the_crowd_that_peaked_at_4_6_says_so_and_when():
    v = fed([3.1, 3.8, 4.6, 4.2, 3.9])
    assert v.current(CROWD) == 3.9
    s = v.snapshot(CROWD)
    assert (s["value"], s["unit"], s["peak"], s["peak_at"]) == (3.9, "person/m2", 4.6, T0 + 20)
    p = v.parameters(CROWD)
    assert p["value"] == "3.90 person/m2"
    assert p["peakValue"] == "4.60 person/m2"
    assert p["peakAt"] == cap_time(T0 + 20) == "2025-12-31T22:00:20+08:00"
    assert p["devices"] == "crowd-01, crowd-02"


def test_the_peak_of_a_speed_is_its_minimum_and_keeps_its_first_time():
    v = fed([40.0, 22.0, 30.0, 22.0, 35.0], hazard="traffic", ident=TRAFFIC)
    s = v.snapshot(TRAFFIC)
    assert (s["peak"], s["peak_at"], s["unit"]) == (22.0, T0 + 10, "km/h")


def test_trend_sign_arrow_and_slope_per_minute():
    rising = fed([2.0 + 0.02 * i for i in range(31)])  # +0.02 per 10 s = +0.12 per minute
    word, slope = rising.trend(CROWD)
    assert word == "rising" and slope == pytest.approx(0.12)
    assert rising.snapshot(CROWD)["trend_arrow"] == "↑"
    assert rising.parameters(CROWD)["trend"] == "rising, +0.12 person/m2 per minute"
    falling = fed([60.0 - 0.5 * i for i in range(31)], hazard="traffic", ident=TRAFFIC)  # -3 km/h per minute
    assert falling.trend(TRAFFIC) == ("falling", pytest.approx(-3.0))
    assert falling.snapshot(TRAFFIC)["trend_arrow"] == "↓"
    wobble = fed([3.0, 3.01, 2.99, 3.0, 3.01, 3.0])  # within the crowd's dead band
    assert wobble.trend(CROWD)[0] == "steady" and wobble.snapshot(CROWD)["trend_arrow"] == "→"


def test_the_trend_uses_only_the_last_trend_window():
    # rising for 10 minutes, then flat for 6: the 5-minute trend is steady (slope ~0)
    values = [1.0 + 0.1 * i for i in range(60)] + [7.0] * 36
    v = fed(values)
    word, slope = v.trend(CROWD)
    assert word == "steady" and slope == pytest.approx(0.0, abs=1e-9)


def test_one_value_has_no_slope_and_says_steady():
    v = fed([2.5])
    assert v.trend(CROWD) == ("steady", None)
    assert v.parameters(CROWD)["trend"] == "steady"
    assert v.snapshot(CROWD)["trend"] is None


def test_history_is_sampled_every_minute_and_bounded_to_30_minutes():
    v = fed([float(i) for i in range(3 * 360)])  # 3 h at 10 s
    history = v.snapshot(CROWD)["history"]
    times = [t for t, _ in history]
    assert v.max_samples == 31
    assert len(history) == 30  # the last 30 minutes: samples at 02:29 ... 02:58, the next is due at 02:59
    assert all(b - a == 60.0 for a, b in itertools.pairwise(times))
    assert history[-1] == [T0 + 10740, 1074.0] and history[0] == [T0 + 9000, 900.0]
    exact = fed([float(i) for i in range(181)])  # 30 min exactly: both ends
    assert len(exact.snapshot(CROWD)["history"]) == 31


def test_nan_keeps_the_last_value_and_adds_nothing():
    v = fed([2.0, 2.5])
    v.observe(T0 + 100, CROWD, "crowd", math.nan, ())
    v.observe(T0 + 200, CROWD, "crowd", None, ())
    s = v.snapshot(CROWD)
    assert s["value"] == 2.5 and s["peak"] == 2.5 and s["devices"] == []
    assert len(s["history"]) == 1  # the first sample only (the second value came 10 s later)
    v.observe(T0 + 2000, CROWD, "crowd", math.nan, ())
    assert v.snapshot(CROWD)["history"] == [], "samples older than 30 minutes go even without new data"
    assert v.snapshot(CROWD)["value"] == 2.5


def test_an_alert_with_no_value_yet_has_no_parameters():
    v = AlertValues()
    v.observe(T0, CROWD, "crowd", math.nan, ())
    assert v.parameters(CROWD) == {}
    assert v.snapshot(CROWD)["value"] is None
    assert v.snapshot("nobody") is None and v.parameters("nobody") == {}


def test_due_when_the_value_moved_a_step_from_the_last_published_message():
    steps = ValueSteps()
    v = fed([3.1])
    assert not v.due(CROWD, steps.step("crowd")), "never published: its first message is the Alert"
    v.mark_published(CROWD)
    fed([3.3, 3.55], tracker=v, dt=10.0)
    assert not v.due(CROWD, steps.step("crowd"))  # moved 0.45
    v.observe(T0 + 40, CROWD, "crowd", 3.6, ())
    assert v.due(CROWD, steps.step("crowd"))  # moved 0.5
    v.mark_published(CROWD)
    assert not v.due(CROWD, steps.step("crowd"))
    v.observe(T0 + 50, CROWD, "crowd", 3.05, ())
    assert v.due(CROWD, 0.5), "a fall counts as much as a rise"


def test_due_once_a_value_comes_after_a_message_without_one():
    v = AlertValues()
    v.observe(T0, CROWD, "crowd", math.nan, ())
    v.mark_published(CROWD)
    assert not v.due(CROWD, 0.5)
    v.observe(T0 + 10, CROWD, "crowd", 2.0, ())
    assert v.due(CROWD, 0.5)


def test_value_steps_are_per_hazard_and_checked():
    steps = ValueSteps()
    assert (steps.step("crowd"), steps.step("crowd_forecast"), steps.step("flood"), steps.step("traffic"),
            steps.step("rain")) == (0.5, 0.5, 0.05, 5.0, 5.0)
    with pytest.raises(ValueError, match="no value step for hazard 'hail'"):
        steps.step("hail")
    with pytest.raises(ValueError, match=r"ValueSteps\.flood must be a positive number"):
        ValueSteps(flood=0)


def test_bad_settings_and_hazards_are_clear_errors():
    with pytest.raises(ValueError, match="sample_s"):
        AlertValues(sample_s=0)
    with pytest.raises(ValueError, match="longer than history_s"):
        AlertValues(history_s=60, sample_s=120)
    with pytest.raises(KeyError, match="unknown hazard 'hail'"):
        AlertValues().observe(T0, "x", "hail", 1.0, ())


def test_forget_drops_an_alert():
    v = fed([2.0])
    v.forget(CROWD)
    v.forget("never-seen")
    assert CROWD not in v and v.identifiers() == [] and v.snapshot(CROWD) is None


def test_state_round_trips_through_json():
    v = fed([2.0 + 0.05 * i for i in range(100)], tracker=AlertValues(trend_s=120))
    fed([40.0, 30.0], hazard="traffic", ident=TRAFFIC, tracker=v)
    v.mark_published(CROWD)
    state = json.loads(json.dumps(v.save_state(), allow_nan=False))
    back = AlertValues(trend_s=120)
    back.restore_state(state)
    for ident in (CROWD, TRAFFIC):
        assert back.snapshot(ident) == v.snapshot(ident)
        assert back.parameters(ident) == v.parameters(ident)
    assert back.due(CROWD, 0.5) == v.due(CROWD, 0.5)
    # and it carries on where it was: the next sample a minute after the last one
    v.observe(T0 + 1000, CROWD, "crowd", 9.0, ())
    back.observe(T0 + 1000, CROWD, "crowd", 9.0, ())
    assert back.snapshot(CROWD) == v.snapshot(CROWD)


def test_least_squares_slope_of_a_line_and_of_too_few_points():
    assert least_squares_slope([(0, 1.0), (10, 2.0), (20, 3.0)]) == pytest.approx(0.1)
    assert least_squares_slope([(5, 1.0)]) is None
    assert least_squares_slope([(5, 1.0), (5, 2.0)]) is None


def test_trend_bands_are_per_hazard():
    v = fed([3.0 + 0.004 * i for i in range(31)], tracker=AlertValues(bands=TrendBands(crowd=0.01)))
    assert v.trend(CROWD)[0] == "rising"  # 0.024 per minute: steady for the default band, rising for 0.01


observations = st.lists(st.tuples(st.floats(0.1, 400.0), st.one_of(st.just(math.nan), st.floats(-50.0, 50.0))),
                        min_size=1, max_size=150)


@settings(max_examples=40, deadline=None)
@given(observations, st.sampled_from(["crowd", "traffic"]), st.sampled_from([(600.0, 60.0), (300.0, 7.0)]))
def test_history_stays_bounded_and_the_peak_is_the_worst_observed(steps, hazard, window):
    history_s, sample_s = window
    v = AlertValues(history_s=history_s, sample_s=sample_s)
    t = T0
    seen = []
    for dt, value in steps:
        t += dt
        v.observe(t, "a", hazard, value, ())
        if math.isfinite(value):
            seen.append(value)
        s = v.snapshot("a")
        assert len(s["history"]) <= v.max_samples
        assert all(t - h_t <= history_s for h_t, _ in s["history"])
    s = v.snapshot("a")
    if seen:
        assert s["peak"] == (max(seen) if hazard == "crowd" else min(seen))
        assert s["value"] == seen[-1]
    else:
        assert s["peak"] is None and s["history"] == []
