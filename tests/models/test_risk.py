"""Composite risk and the fused risk tick (docs/science/risk.md 4, "Validation tests we can run here (composite)")."""

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from models import AlertLevels, AlertTiming, CrowdConfig, FloodConfig, RiskConfig, TrafficConfig

FAST = AlertTiming(for_s=0.0, keep_s=0.0, flap_high=101.0, flap_low=100.0)
FAST_CFG = RiskConfig(crowd=CrowdConfig(timing=FAST), flood=FloodConfig(timing=FAST),
                      traffic=TrafficConfig(timing=FAST))


def dataset(**values):
    base = {"crowd_density": 0.0, "water_depth": 0.0, "traffic_speed": np.nan, "free_flow_speed": 50.0,
            "road_class": 0, "vulnerability": 0.0}
    base.update(values)
    n = max(np.size(v) for v in base.values())
    units = {"crowd_density": "person m-2", "water_depth": "m", "traffic_speed": "km h-1", "free_flow_speed": "km h-1",
             "rain_1h": "mm", "rain_6h": "mm", "flow_hazard": "m2 s-1", "crowd_trend": "person m-2 s-1",
             "crowd_pressure": "s-2"}
    data = {}
    for k, v in base.items():
        arr = np.broadcast_to(np.asarray(v, np.int8 if k == "road_class" else float), (n,)).reshape(1, n).copy()
        data[k] = (("y", "x"), arr, {"units": units.get(k, "1")})
    return xr.Dataset(data)


def tick(ds, comp=None, n=1, **kw):
    comp = comp or AlertLevels(ds, kw.pop("config", FAST_CFG))
    for _ in range(n):
        out = comp.update(ds, 60.0, **kw)
    return out, comp


def test_five_year_storm_underpass_with_crowd_vs_empty_park():
    """58 mm/h for 1 h over an underpass with a crowd (E, V high) and over an empty park: both carry the colour
    their water and rain give; the risk ranks the underpass above the park, whose risk is 0 (nobody there)
    (docs/science/risk.md 4, composite test 3)."""
    ds = dataset(crowd_density=[1.5, 0.0], water_depth=[0.12, 0.12], rain_1h=[58.0, 58.0], rain_6h=[58.0, 58.0],
                 vulnerability=[0.9, 0.1])
    out, _ = tick(ds, config=RiskConfig(), n=5)
    assert out["level_flood"].values[0].tolist() == [2, 2]  # Shanghai 1 h >= 50 mm: yellow, in both
    assert out["level"].values[0].tolist() == [2, 2]
    assert out["risk_flood"].values[0, 0] > out["risk_flood"].values[0, 1] == 0.0


def test_level_is_max_over_hazards_and_compound_escalates():
    ds = dataset(crowd_density=[2.5, 2.5, 0.5], water_depth=[0.0, 0.2, 0.2], vulnerability=0.2)
    out, _ = tick(ds)
    assert out["level_crowd"].values[0].tolist() == [2, 2, 0]
    assert out["level_flood"].values[0].tolist() == [0, 2, 2]
    assert out["level"].values[0].tolist() == [2, 3, 2]  # waterlogging in a crowded cell: one step up


def test_colour_order_and_nodata():
    ds = dataset(crowd_density=[0.5, 1.2, 2.2, 4.2, 5.5, np.nan], vulnerability=0.2)
    out, _ = tick(ds)
    assert out["level_crowd"].values[0].tolist() == [0, 1, 2, 3, 4, -1]
    assert out["level"].values[0, 5] == 0  # flood and traffic still report


def test_stale_mask_gives_nodata_and_freezes():
    ds = dataset(crowd_density=[4.5, 4.5], vulnerability=0.2)
    out, comp = tick(ds)
    assert out["level_crowd"].values[0].tolist() == [3, 3]
    low = dataset(crowd_density=[0.0, 0.0], vulnerability=0.2)
    out, _ = tick(low, comp, stale={"crowd": np.array([[True, False]])})
    assert out["level_crowd"].values[0].tolist() == [3, 0]  # stale cell held; fresh one clears (no delays here)
    assert out["level_nodata"].values[0].tolist() == [1, 0]
    assert comp.state.level[0, 0] == 3
    assert out["level_changed"].values[0].tolist() == [0, 1 | 8]


def test_trend_gives_a_forecast_level_not_the_observed_level():
    ds = dataset(crowd_density=1.5, crowd_trend=0.01, vulnerability=0.2)
    out, _ = tick(ds)
    assert out["level_crowd"].values[0, 0] == 1  # observed 1.5 p/m2: blue
    assert out["level_crowd_forecast"].values[0, 0] == 3  # 1.5 + 0.01 x 300 = 4.5 p/m2: orange, a forecast


def test_pressure_alone_never_alerts():
    out, _ = tick(dataset(crowd_density=1.0, crowd_pressure=1.0, vulnerability=0.2))
    assert out["level_crowd"].values[0, 0] == 0
    out, _ = tick(dataset(crowd_density=4.2, crowd_pressure=1.0, vulnerability=0.2))
    assert out["level_crowd"].values[0, 0] == 4


def test_traffic_levels_by_road_class():
    ds = dataset(traffic_speed=[60.0, 45.0, 30.0, 18.0, 12.0, 18.0], free_flow_speed=[80, 80, 80, 80, 80, 50],
                 road_class=[1, 1, 1, 1, 1, 2], vulnerability=0.2)
    out, _ = tick(ds)
    assert out["level_traffic"].values[0].tolist() == [0, 1, 2, 3, 4, 2]


def test_missing_required_input_is_named():
    ds = dataset().drop_vars("water_depth")
    with pytest.raises(KeyError, match="water_depth"):
        AlertLevels(ds).update(ds, 60.0)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None, database=None)
def test_risk_properties(seed):
    """R monotone in H, E and V; R = 0 when E = 0; all in [0, 1]; E and V change no level (docs/science/risk.md 4,
    composite test 1)."""
    rng = np.random.default_rng(seed)
    n = 30
    rho = rng.uniform(0, 6, n)
    v = rng.uniform(0, 1, n)
    base = dict(crowd_density=rho, water_depth=rng.uniform(0, 0.6, n), traffic_speed=rng.uniform(0, 60, n),
                free_flow_speed=60.0, road_class=rng.integers(0, 5, n).astype(np.int8), vulnerability=v)
    r0 = tick(dataset(**base))[0]
    r_v = tick(dataset(**{**base, "vulnerability": np.minimum(v + 0.2, 1.0)}))[0]
    r_h = tick(dataset(**{**base, "water_depth": base["water_depth"] + 0.1}))[0]
    r_e = tick(dataset(**{**base, "road_class": np.where(base["road_class"] == 0, 4, base["road_class"])}))[0]
    for k in ("risk_crowd", "risk_flood", "risk_traffic"):
        a = r0[k].values
        assert np.all((a >= 0) & (a <= 1))
        assert np.all(r_v[k].values >= a)
    assert np.all(r_h["risk_flood"].values >= r0["risk_flood"].values)
    assert np.all(r_e["risk_flood"].values >= r0["risk_flood"].values)
    empty = tick(dataset(**{**base, "crowd_density": 0.0, "road_class": np.zeros(n, np.int8)}))[0]
    assert np.all(empty["risk_flood"].values == 0)
    for k in ("level_flood", "level_traffic"):  # E and V weight the risk only: the levels are the same
        np.testing.assert_array_equal(r_v[k].values, r0[k].values)
    np.testing.assert_array_equal(empty["level_flood"].values, r0["level_flood"].values)
    lv = np.stack([r0[f"level_{h}"].values for h in ("crowd", "flood", "traffic")])
    n_hi = (lv >= 2).sum(axis=0)
    expect = np.where(n_hi >= 2, np.minimum(lv.max(axis=0) + 1, 4), lv.max(axis=0))
    np.testing.assert_array_equal(r0["level"].values, expect)
