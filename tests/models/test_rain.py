"""Rain accumulation and rainstorm signals (docs/science/risk.md 4, composite test 2)."""

import numpy as np
import pytest
import xarray as xr

from models import RainAccumulation


def hyetograph(steps):
    """Run (rate mm/h, hours) steps in 10-min ticks; return the last outputs."""
    ds = xr.Dataset({"rain_rate": (("y", "x"), [[0.0]], {"units": "mm h-1"})})
    comp = RainAccumulation(ds)
    out = None
    for rate, hours in steps:
        for _ in range(round(hours * 6)):
            out = comp.update(ds.assign(rain_rate=(("y", "x"), [[rate]], {"units": "mm h-1"})), 600.0)
    return out


@pytest.mark.parametrize(("steps", "shanghai", "cma"), [
    ([(36.0, 1)], 1, 0),         # 36 mm in 1 h -> Shanghai blue; national nothing (< 50 mm)
    ([(55.0, 1)], 2, 3),         # 55 mm / 1 h -> Shanghai yellow; national >= 50 mm in 3 h -> orange
    ([(85.0, 1)], 3, 3),         # 85 mm / 1 h -> Shanghai orange
    ([(10.0, 6)], 1, 2),         # 60 mm evenly over 6 h -> Shanghai blue (6 h >= 50, 1 h < 35); national yellow
    ([(50.0 / 12, 12)], 0, 1),   # national: 50 mm in 12 h -> blue
    ([(50.0 / 6, 6)], 1, 2),     # national: 50 mm in 6 h -> yellow; Shanghai 6 h >= 50 -> blue
    ([(100.0 / 3, 3)], 3, 4),    # national: 100 mm in 3 h -> red; Shanghai 6 h >= 100 -> orange
])
def test_signal_cases(steps, shanghai, cma):
    """Shanghai [src] and national CMA [src] rules side by side on synthetic hyetographs (docs/science/risk.md 4)."""
    out = hyetograph(steps)
    assert int(out["rain_signal"].values[0, 0]) == shanghai
    assert int(out["rain_signal_cma"].values[0, 0]) == cma


def test_accumulations_roll_off():
    out = hyetograph([(36.0, 1), (0.0, 1)])
    assert out["rain_1h"].values[0, 0] == pytest.approx(0.0, abs=1e-12)
    assert out["rain_6h"].values[0, 0] == pytest.approx(36.0)
    assert out["rain_1h"].attrs["units"] == "mm"


def test_bins_split_across_ticks():
    ds = xr.Dataset({"rain_rate": (("y", "x"), [[60.0]], {"units": "mm h-1"})})
    comp = RainAccumulation(ds)
    for _ in range(7):
        out = comp.update(ds, 450.0)  # ticks that do not align with the 600 s bins
    assert out["rain_1h"].values[0, 0] == pytest.approx(60.0 * 3150 / 3600)  # all 52.5 mm still inside 1 h
    np.testing.assert_allclose(out["rain_12h"].values, out["rain_3h"].values)
