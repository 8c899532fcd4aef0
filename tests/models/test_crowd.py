"""Science tests of the crowd models (docs/science/crowd.md 1, "Validation tests we can run here (crowd)")."""

import numpy as np
import pytest
import xarray as xr

from models import CrowdConfig, CrowdFusion, CrowdState
from models.kernels.bands import classify_bands
from models.kernels.crowd import density_trend
from models.kernels.crowdflow import weidmann_speed
from models.kernels.risk import crowd_hazard, projected_density

FT2 = 0.09290304  # m2 per ft2 (exact)
FT = 0.3048

# Fruin (1971) walkway LOS, as tabulated in docs/science/crowd.md 1.1 [src]: density edges in p/m2 (rounded) and
# flow in p/m/min.
FRUIN_WALKWAY_DENSITY = (0.31, 0.43, 0.72, 1.08, 2.17)
FRUIN_WALKWAY_FLOW_P_M_MIN = (23, 33, 49, 66, 82)
FRUIN_WALKWAY_FLOW_P_FT_MIN = (7, 10, 15, 20, 25)
# Fruin queuing LOS density edges, docs/science/crowd.md 1.1 [mem].
FRUIN_QUEUE_DENSITY = (0.83, 1.08, 1.54, 3.57, 5.26)
# Weidmann (1993) speeds at 1..5 p/m2, docs/science/crowd.md 1.2 [run].
WEIDMANN_SPEEDS = {1.0: 1.06, 2.0: 0.61, 3.0: 0.33, 4.0: 0.16, 5.0: 0.04}


def los(x, edges):
    out = np.empty(len(x), np.int8)
    classify_bands(np.asarray(x, float), np.asarray(edges, float), 0, out)
    return out


def test_fruin_walkway_edges_from_ft2_table():
    edges = CrowdConfig().walkway_density_edges()
    # exact conversions of Fruin's ft2 bands; the tabulated 2.17 is 1 / 0.46 m2 (rounded), exact 1 / 0.4645 = 2.153
    np.testing.assert_allclose(edges, FRUIN_WALKWAY_DENSITY, atol=0.02)
    np.testing.assert_allclose(edges[:4], FRUIN_WALKWAY_DENSITY[:4], atol=0.006)
    assert pytest.approx(3.25, abs=0.005) == 35 * FT2  # 35 ft2 = 3.25 m2
    np.testing.assert_allclose(np.array(FRUIN_WALKWAY_FLOW_P_FT_MIN) / FT, FRUIN_WALKWAY_FLOW_P_M_MIN, atol=0.5)


@pytest.mark.parametrize(("density", "expected"), [
    (0.0, 0), (0.30, 0), (0.32, 1), (0.42, 1), (0.44, 2), (0.71, 2), (0.73, 3), (1.07, 3), (1.09, 4),
    (2.15, 4), (2.17, 5), (7.0, 5), (np.nan, -1)])
def test_fruin_walkway_classifier(density, expected):
    assert los([density], CrowdConfig().walkway_density_edges())[0] == expected


def test_fruin_walkway_exact_edges_belong_to_lower_band():
    edges = CrowdConfig().walkway_density_edges()
    np.testing.assert_array_equal(los(edges, edges), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(los(np.nextafter(edges, np.inf), edges), [1, 2, 3, 4, 5])


@pytest.mark.parametrize(("density", "expected"), [(0.83, 0), (0.84, 1), (1.54, 2), (1.55, 3), (3.57, 3),
                                                   (3.58, 4), (5.26, 4), (5.27, 5)])
def test_fruin_queue_classifier(density, expected):
    assert los([density], FRUIN_QUEUE_DENSITY)[0] == expected


def test_weidmann_peak_flow():
    """Jmax = 1.225 +- 0.005 p/m/s at rho = 1.75 p/m2 (docs/science/crowd.md 1.2, crowd test 2)."""
    rho = np.linspace(0.01, 5.4, 54_000)
    v, q = np.empty_like(rho), np.empty_like(rho)
    weidmann_speed(rho, 1.34, 1.913, 5.4, v, q)
    assert q.max() == pytest.approx(1.225, abs=0.005)
    assert rho[q.argmax()] == pytest.approx(1.75, abs=0.02)
    assert v[q.argmax()] == pytest.approx(0.70, abs=0.01)
    dens = np.array(list(WEIDMANN_SPEEDS))
    v5, q5 = np.empty(5), np.empty(5)
    weidmann_speed(dens, 1.34, 1.913, 5.4, v5, q5)
    np.testing.assert_allclose(v5, list(WEIDMANN_SPEEDS.values()), atol=0.006)


def _fusion_ds(counts, rel_errors, pieces, area):
    """Fusion inputs; ``pieces``: (cell, fraction of the cell, sensors covering it) per coverage piece."""
    cover = [(p, s) for p, (_, _, sensors) in enumerate(pieces) for s in sensors]
    return xr.Dataset({
        "sensor_count": ("sensor", np.asarray(counts, float)),
        "sensor_rel_error": ("sensor", np.asarray(rel_errors, float)),
        "piece_cell": ("piece", np.array([c for c, _, _ in pieces], np.int64)),
        "piece_fraction": ("piece", np.array([f for _, f, _ in pieces], float)),
        "cover_piece": ("cover", np.array([p for p, _ in cover], np.int64)),
        "cover_sensor": ("cover", np.array([s for _, s in cover], np.int64)),
        "walkable_area": (("y", "x"), np.asarray(area, float)),
    })


def test_fusion_inverse_variance_where_counters_overlap_and_uncovered_cells():
    # sensor 0 covers cells 0 and 1 (100 m2 each): 100 people -> 0.5 p/m2, var(N) = 100 + (0.1 x 100)^2 = 200;
    # sensor 1 covers all of cell 1 too: 300 people -> 3 p/m2, var(N) = 300 + (0.2 x 300)^2 = 3900
    ds = _fusion_ds([100, 300], [0.1, 0.2], [(0, 1.0, [0]), (1, 1.0, [0, 1])], [[100.0, 100.0, 100.0]])
    out = CrowdFusion(ds).update(ds)
    rho = out["crowd_density"].values[0]
    sd = out["crowd_density_sigma"].values[0]
    w0, w1 = 200.0**2 / 200.0, 100.0**2 / 3900.0  # 1 / var(rho_s) = W_s^2 / var(N_s)
    assert rho[0] == pytest.approx(0.5)
    assert sd[0] == pytest.approx(np.sqrt(200.0) / 200.0)
    assert rho[1] == pytest.approx((w0 * 0.5 + w1 * 3.0) / (w0 + w1))
    assert sd[1] == pytest.approx(1 / np.sqrt(w0 + w1))
    assert np.isnan(rho[2]) and np.isnan(sd[2])


def test_fusion_never_fakes_zero():
    """A counter over a cell without walkable area gives no data there, never zero density, and neither its own
    density: nobody stands there (counter 0 covers a walkable and a non-walkable cell, counter 1 only the latter)."""
    ds = _fusion_ds([10, 5], [0.1, 0.1], [(0, 1.0, [0]), (1, 1.0, [0]), (2, 1.0, [1])], [[100.0, 0.0, 0.0]])
    rho = CrowdFusion(ds).update(ds)["crowd_density"].values[0]
    assert rho[0] == pytest.approx(0.1)
    assert np.isnan(rho[1]) and np.isnan(rho[2])


def test_fusion_counts_spread_over_walkable_footprint():
    ds = _fusion_ds([90], [0.1], [(0, 1.0, [0]), (1, 0.5, [0])], [[100.0, 100.0]])
    rho = CrowdFusion(ds).update(ds)["crowd_density"].values[0]
    np.testing.assert_allclose(rho, [90 / 150, 90 / 150])


def test_a_rising_density_is_a_forecast_not_a_hazard():
    """Trend: 1.5 p/m2 rising at 0.01 p/m2/s is projected to 4.5 p/m2 with a 300 s horizon (docs/science/crowd.md
    1.2 Still), but the hazard is of the observed 1.5 p/m2 (issue 14: the trend never makes an observed alert)."""
    out = np.empty(2)
    crowd_hazard(np.array([1.5, 2.6]), np.full(2, np.nan), 2.0, 5.0, 0.02, 4.0, out)
    np.testing.assert_allclose(out, [0.0, 0.2])
    proj = np.empty(3)
    projected_density(np.array([1.5, 1.5, 1.5]), np.array([0.01, -0.01, np.nan]), 300.0, proj)
    np.testing.assert_allclose(proj, [4.5, 1.5, np.nan])


def test_the_trend_is_sampled_per_reading_not_per_tick():
    """A counter reporting every 60 s, 0.6 person/m2 more each time (0.01 person/m2/s): at a 1 s tick the trend is
    0.01, not the 0.6 person/m2/s a per-tick difference makes of each new report; readings of a steady crowd are
    samples of no change, each one taking 30 % off the trend (alpha 0.3)."""
    prev, prev_t, trend, out = np.full(1, np.nan), np.full(1, np.nan), np.full(1, np.nan), np.empty(1)
    seen = []
    for t in range(600):
        reading = 60.0 * (t // 60)
        density_trend(np.array([1.0 + 0.01 * reading]), np.array([reading]), prev, prev_t, 0.3, trend, out)
        seen.append(out[0])
    assert np.nanmax(seen) == pytest.approx(0.01, rel=1e-9) and np.nanmin(seen) == pytest.approx(0.01, rel=1e-9)
    for k in range(10):  # ten more readings, the same density
        density_trend(np.array([1.0 + 0.01 * 540.0]), np.array([600.0 + 60.0 * k]), prev, prev_t, 0.3, trend, out)
    assert out[0] == pytest.approx(0.01 * 0.7 ** 10, rel=1e-9)
    density_trend(np.array([np.nan]), np.array([1300.0]), prev, prev_t, 0.3, trend, out)
    assert np.isnan(out[0]) and trend[0] == pytest.approx(0.01 * 0.7 ** 10), "no data: no sample, the state kept"


def test_pressure_never_alerts_alone():
    """High crowd pressure at 1 p/m2 leaves the hazard at 0; at 4.5 p/m2 it sets it to 1 (docs/science/crowd.md 1.3)."""
    out = np.empty(2)
    crowd_hazard(np.array([1.0, 4.5]), np.array([0.5, 0.5]), 2.0, 5.0, 0.02, 4.0, out)
    np.testing.assert_array_equal(out, [0.0, 1.0])


def test_crowd_state_pressure_and_outputs():
    rng = np.random.default_rng(0)
    comp = None
    for _ in range(50):
        ds = xr.Dataset({
            "crowd_density": (("y", "x"), [[1.0, 4.5, np.nan]], {"units": "person m-2"}),
            "crowd_velocity_x": (("y", "x"), rng.normal(0.3, 0.5, (1, 3)), {"units": "m s-1"}),
            "crowd_velocity_y": (("y", "x"), rng.normal(0.0, 0.5, (1, 3)), {"units": "m s-1"}),
        })
        comp = comp or CrowdState(ds)
        out = comp.update(ds, 1.0)
    p = out["crowd_pressure"].values[0]
    assert p[0] > 0.02 and p[1] > 0.02  # turbulent velocities
    hz = out["crowd_hazard"].values[0]
    assert hz[0] == 0.0 and hz[1] == 1.0 and np.isnan(hz[2])
    assert out["crowd_los"].values.tolist() == [[3, 5, -1]]  # 1.0 p/m2 is walkway LOS D
    assert out["crowd_pressure"].attrs["units"] == "s-2"
