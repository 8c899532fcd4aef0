"""Science tests of the traffic models (docs/science/traffic.md 3, "Validation tests we can run here (traffic)")."""

import numpy as np
import pytest
import xarray as xr

from models import Congestion, LoopDetectors, ProbeSpeeds, TrafficConfig, cell_speeds_from_segments, segment_speeds
from models.kernels.traffic import congestion_level, tpi_like

# GB/T 33171-2016 segment levels by road class, docs/science/traffic.md 3.3 [src]: (speed km/h, level) at and just
# above each bound.
GBT33171_CASES = [
    # class, speed, level (0 smooth .. 4 severe)
    (1, 65.0, 1), (1, 65.1, 0), (1, 50.0, 2), (1, 50.1, 1), (1, 35.0, 3), (1, 35.1, 2), (1, 20.0, 4), (1, 20.1, 3),
    (2, 40.0, 1), (2, 40.1, 0), (2, 30.0, 2), (2, 30.1, 1), (2, 20.0, 3), (2, 20.1, 2), (2, 15.0, 4), (2, 15.1, 3),
    (3, 35.0, 1), (3, 35.1, 0), (3, 25.0, 2), (3, 25.1, 1), (3, 15.0, 3), (3, 15.1, 2), (3, 10.0, 4), (3, 10.1, 3),
    (4, 35.0, 1), (4, 35.1, 0), (4, 10.0, 4), (4, 10.1, 3),
]


@pytest.mark.parametrize(("cls", "kmh", "level"), GBT33171_CASES)
def test_gbt33171_boundaries(cls, kmh, level):
    out = np.empty(1, np.int8)
    congestion_level(np.array([kmh / 3.6]), np.array([cls], np.int8), TrafficConfig().gbt_edges_ms(), out)
    assert out[0] == level


def test_gbt33171_no_road_or_no_data():
    out = np.empty(2, np.int8)
    congestion_level(np.array([10.0, np.nan]), np.array([0, 2], np.int8), TrafficConfig().gbt_edges_ms(), out)
    assert out.tolist() == [-1, -1]


def _stop_and_go_pings(rng, n_vehicles=40, period=10.0):
    """Vehicles crossing a 400 m segment: cruise at 14 m/s, queue at a signal (0.3 m/s) for 20-60 s."""
    speeds, dist, time = [], 0.0, 0.0
    for _ in range(n_vehicles):
        wait = rng.uniform(20, 60)
        cruise = 400.0 / 14.0
        t = np.arange(rng.uniform(0, period), cruise + wait, period)
        v = np.where(t < cruise / 2, 14.0, np.where(t < cruise / 2 + wait, 0.3, 14.0))
        speeds.append(v)
        dist += 400.0 + 0.3 * wait
        time += cruise + wait
    return np.concatenate(speeds), dist / time


def test_probe_space_mean_speed_vs_harmonic_mean():
    """Time-sampled pings: the arithmetic (time-weighted) mean is the space-mean speed; the harmonic mean
    of pings is biased low by stops (docs/science/traffic.md 3.4, traffic test 4 regression)."""
    rng = np.random.default_rng(7)
    v, truth = _stop_and_go_pings(rng)
    ours, n = segment_speeds(np.zeros(v.size, np.int64), v, np.full(v.size, 10.0), 1)
    assert abs(ours[0] - truth) < 0.5
    harmonic = v.size / np.sum(1.0 / v)
    assert harmonic - truth < -3.0
    assert n[0] == v.size


def test_probe_minimum_sample_rule_and_smoothing():
    ds = xr.Dataset({"ping_cell": ("ping", np.array([0, 0, 0, 1, 1])),
                     "ping_speed": ("ping", np.array([36.0, 36.0, 72.0, 50.0, 50.0]), {"units": "km h-1"}),
                     "ping_interval": ("ping", np.full(5, 30.0), {"units": "s"})},
                    coords={"y": [0.0], "x": [0.0, 50.0]})
    comp = ProbeSpeeds(ds)
    out = comp.update(ds)
    assert out["traffic_speed"].values[0, 0] == pytest.approx(48.0)  # (36 + 36 + 72) / 3 km/h
    assert np.isnan(out["traffic_speed"].values[0, 1])  # 2 pings < 3: no data, not a speed
    assert out["traffic_samples"].values.tolist() == [[3.0, 2.0]]
    ds2 = ds.assign(ping_speed=("ping", np.array([24.0, 24.0, 24.0, 50.0, 50.0]), {"units": "km h-1"}))
    out2 = comp.update(ds2)
    assert out2["traffic_speed"].values[0, 0] == pytest.approx(0.5 * 24.0 + 0.5 * 48.0)


def loops_ds(occ, speed=50.0, flow=600.0, cell=(0, 1), downstream=(1, -1), t=None, occ_units="1"):
    n = len(cell)
    data = {"detector_cell": ("detector", np.asarray(cell, np.int64)),
            "detector_speed": ("detector", np.broadcast_to(np.asarray(speed, float), (n,)), {"units": "km h-1"}),
            "detector_flow": ("detector", np.broadcast_to(np.asarray(flow, float), (n,)), {"units": "h-1"}),
            "detector_occupancy": ("detector", np.asarray(occ, float), {"units": occ_units}),
            "detector_downstream": ("detector", np.asarray(downstream, np.int64))}
    if t is not None:
        data["detector_time"] = ("detector", np.broadcast_to(np.asarray(t, float), (n,)), {"units": "s"})
    return xr.Dataset(data, coords={"y": [0.0], "x": [0.0, 10.0, 20.0]})


def test_loop_detector_california():
    cfg = TrafficConfig()
    comp = None
    flags = []
    # upstream occupancy climbs while downstream empties: an incident between them
    for occ_up, occ_dn in [(0.10, 0.10), (0.10, 0.10), (0.30, 0.05), (0.35, 0.04), (0.35, 0.04)]:
        ds = loops_ds([occ_up, occ_dn])
        comp = comp or LoopDetectors(ds, cfg)
        flags.append(comp.update(ds)["traffic_incident"].values[0].tolist())
    # at the upstream detector's cell; the downstream one has no pair (-1 not tested), nor has the empty cell
    assert flags == [[0, -1, -1], [0, -1, -1], [0, -1, -1], [1, -1, -1], [1, -1, -1]]  # persistence 2


def test_loop_detector_interval_is_a_new_reading():
    """Ticks faster than the detectors repeat a reading: the California test advances per reading only."""
    comp = None
    seq = [(0.10, 0.10), (0.10, 0.10), (0.30, 0.05), (0.35, 0.04)]
    flags = []
    for k, (occ_up, occ_dn) in enumerate(seq):
        for _ in range(3):  # three ticks per 1-min interval
            ds = loops_ds([occ_up, occ_dn], t=60.0 * k)
            comp = comp or LoopDetectors(ds)
            flags.append(int(comp.update(ds)["traffic_incident"].values[0, 0]))
    assert flags == [0] * 9 + [1] * 3  # as four intervals, not twelve ticks


def test_loop_detector_no_false_alarm_when_uniform():
    rng = np.random.default_rng(1)
    comp = None
    for _ in range(60):
        ds = loops_ds(rng.uniform(0.08, 0.12, 2))
        comp = comp or LoopDetectors(ds)
        assert comp.update(ds)["traffic_incident"].values.max() == 0


def test_loop_detector_readings_on_the_grid():
    """A lone detector's speed is its cell's speed as reported; several in a cell: harmonic mean of the speeds,
    sum of the flows, mean of the occupancies; a stale reading (NaN) or a detector outside the grid counts for
    nothing, a stopped one (0 km/h) makes its cell 0 km/h."""
    ds = loops_ds([20.0, 40.0, 10.0, 30.0, 90.0], speed=[33.3, 36.0, 108.0, np.nan, 5.0],
                  flow=[600, 300, 900, 100, 50], cell=(0, 1, 1, 1, -1), downstream=(-1,) * 5, occ_units="%")
    out = LoopDetectors(ds).update(ds)
    assert out["loop_speed"].values[0, 0] == 33.3
    assert out["loop_speed"].values[0, 1] == pytest.approx(2 / (1 / 36 + 1 / 108))  # 54 km/h
    assert np.isnan(out["loop_speed"].values[0, 2]) and np.isnan(out["traffic_flow"].values[0, 2])
    assert out["traffic_flow"].values[0].tolist()[:2] == [600.0, 1300.0]
    np.testing.assert_allclose(out["traffic_occupancy"].values[0, :2], [20.0, (40 + 10 + 30) / 3])
    assert out["traffic_occupancy"].attrs["units"] == "%" and out["traffic_flow"].attrs["units"] == "h-1"
    stopped = ds.assign(detector_speed=("detector", [0.0, 0.0, 50.0, np.nan, 5.0], {"units": "km h-1"}))
    assert LoopDetectors(stopped).update(stopped)["loop_speed"].values[0, :2].tolist() == [0.0, 0.0]


def test_tpi_like_bands_and_monotone():
    breaks = np.array(TrafficConfig().tpi_breaks)
    vff = np.full(6, 60.0)
    speed = vff / (1 + np.array([0.0, 0.2, 0.5, 0.8, 1.1, 5.0]))
    out = np.empty(6)
    tpi_like(speed, vff, np.ones(6), breaks, out)
    np.testing.assert_allclose(out, [0, 2, 4, 6, 8, 10], atol=1e-12)
    speeds = np.linspace(60, 1, 200)
    out = np.empty(200)
    tpi_like(speeds, np.full(200, 60.0), np.ones(200), breaks, out)
    assert np.all(np.diff(out) >= 0) and out.min() >= 0 and out.max() <= 10


def test_congestion_component_and_speed_drop():
    ds = xr.Dataset({"traffic_speed": (("y", "x"), [[60.0, 18.0]], {"units": "km h-1"}),
                     "road_class": (("y", "x"), np.array([[1, 2]], np.int8)),
                     "free_flow_speed": (("y", "x"), [[80.0, 50.0]], {"units": "km h-1"}),
                     "traffic_speed_ref": (("y", "x"), [[70.0, 45.0]], {"units": "km h-1"})})
    comp = Congestion(ds)
    out = comp.update(ds)
    assert out["congestion_level"].values.tolist() == [[1, 3]]
    assert out["traffic_incident"].values.tolist() == [[0, 0]]
    out = comp.update(ds)
    assert out["traffic_incident"].values.tolist() == [[0, 1]]  # 18 < 0.5 x 45 twice
    assert 0 <= comp.network_tpi <= 10
    no_ref = Congestion(ds).update(ds.drop_vars("traffic_speed_ref"))
    assert no_ref["traffic_incident"].values.tolist() == [[-1, -1]]  # without a speed profile: not tested
    assert no_ref["congestion_level"].values.tolist() == [[1, 3]]


def test_cells_inherit_length_weighted_segment_speeds():
    out = cell_speeds_from_segments([0, 1, 1], [0, 0, 1], [30.0, 10.0, 50.0], np.array([10.0, 20.0]), 3)
    np.testing.assert_allclose(out[:2], [(30 * 10 + 10 * 20) / 40, 20.0])
    assert np.isnan(out[2])
