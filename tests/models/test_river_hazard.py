"""The river level hazard: `models.risk.RiverSignal` (levels, hysteresis, no data), its registry entry and config,
the level grid `models.hazards.alert_grids` gives it, and the CAP message of a river alert."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from models.config import RiskConfig, RiverConfig
from models.hazards import ALERT_HAZARDS, LEVEL_NODATA, alert_grids, hazard
from models.risk import RiverSignal

RIVER = np.zeros((4, 5), bool)
RIVER[:, :2] = True  # the river in the two western columns


def _tick(signal: RiverSignal, level: float) -> np.ndarray:
    layer = np.where(RIVER, level, np.nan)
    return signal.update(xr.Dataset({"river_level": (("y", "x"), layer, {"units": "m"})}), 60.0)["river_signal"].values


@pytest.mark.parametrize(("level", "expected"), [(3.2, 0), (4.79, 0), (4.80, 1), (5.09, 1), (5.10, 2), (5.39, 2),
                                                 (5.40, 3), (5.59, 3), (5.60, 4), (5.86, 4)])
def test_level_at_a_river_level_from_rest(level, expected):
    out = _tick(RiverSignal(), level)
    assert (out[RIVER] == expected).all() and (out[~RIVER] == 0).all()
    assert out.dtype == np.int8


def test_a_tide_rises_and_falls_with_hysteresis():
    """Raise at each colour's threshold; a colour clears only 0.10 m below its raise threshold, one colour or more
    at once as the level falls through the clear thresholds (4.70, 5.00, 5.30, 5.50)."""
    s = RiverSignal()
    tide = [4.5, 4.8, 5.0, 5.2, 5.45, 5.62, 5.55, 5.51, 5.49, 5.31, 5.29, 5.05, 4.99, 4.75, 4.71, 4.69, 4.85]
    got = [int(_tick(s, v)[0, 0]) for v in tide]
    assert got == [0, 1, 1, 2, 3, 4, 4, 4, 3, 3, 2, 2, 1, 1, 1, 0, 1]
    assert s.value == 4.85 and s.level == 1
    # a fall straight from red to below blue's clear threshold clears it all
    s2 = RiverSignal()
    _tick(s2, 5.7)
    assert int(_tick(s2, 4.0)[0, 0]) == 0


def test_no_river_level_is_no_data_and_the_held_level_comes_back():
    s = RiverSignal()
    empty = xr.Dataset({"river_level": (("y", "x"), np.full((4, 5), np.nan), {"units": "m"})})
    assert (s.update(empty, 60.0)["river_signal"].values == LEVEL_NODATA).all()
    assert s.level == LEVEL_NODATA
    _tick(s, 5.45)
    assert (s.update(empty, 60.0)["river_signal"].values == LEVEL_NODATA).all()
    assert s.level == 3
    assert int(_tick(s, 5.35)[0, 0]) == 3  # held: above orange's clear threshold 5.30


def test_state_survives_a_snapshot():
    s = RiverSignal()
    _tick(s, 5.45)
    fresh = RiverSignal()
    fresh.restore_state(s.save_state())
    assert int(_tick(fresh, 5.35)[0, 0]) == 3


def test_river_config_defaults_and_checks():
    cfg = RiverConfig()
    assert cfg.level_raise == (4.80, 5.10, 5.40, 5.60)
    assert cfg.level_clear == (4.70, 5.00, 5.30, 5.50)
    assert RiskConfig().river == cfg
    with pytest.raises(ValueError, match="must not decrease"):
        RiverConfig(level_raise=(5.0, 4.9, 5.4, 5.6))
    with pytest.raises(ValueError, match="clear_margin must be a positive"):
        RiverConfig(clear_margin=0.0)
    with pytest.raises(ValueError, match="four thresholds"):
        RiverConfig(level_raise=(4.8, 5.6))
    s = RiverSignal(config=RiverConfig(level_raise=(3.0, 3.5, 4.0, 4.5), clear_margin=0.2))
    assert int(_tick(s, 4.5)[0, 0]) == 4 and int(_tick(s, 4.31)[0, 0]) == 4 and int(_tick(s, 4.29)[0, 0]) == 3


def test_the_registry_entry():
    h = hazard("river")
    assert "river" in ALERT_HAZARDS
    assert (h.metric, h.unit, h.worst, h.evidence, h.sensor_kind) == ("river_level", "m", "max", "peakRiverLevel",
                                                                      "level")
    assert (h.event, h.event_zh, h.category, h.certainty) == ("High river level warning", "江河高水位预警", "Met",
                                                              "Observed")
    assert "flood wall" in h.instruction and "防汛墙" in h.instruction_zh
    assert h.raise_thresholds(RiskConfig()) == (4.80, 5.10, 5.40, 5.60)
    assert [h.response_type(lv) for lv in (1, 2, 3, 4)] == ["Monitor", "Prepare", "Avoid", "Avoid"]
    assert h.headline_en.format(colour="Red", place="the Bund") == "Red high river level warning, the Bund"
    assert h.headline_zh.format(colour="红色", place="外滩") == "外滩高水位红色预警"


def _layers(**extra) -> dict[str, np.ndarray]:
    z = np.zeros((4, 5), np.int8)
    return {"level_crowd": z, "level_flood": z, "level_traffic": z, "rain_signal": z, "level_crowd_forecast": z,
            "level_nodata": z, **extra}


def test_alert_grids_take_the_river_signal_and_no_layer_is_no_data():
    signal = np.where(RIVER, 3, 0).astype(np.int8)
    grids = alert_grids(_layers(river_signal=signal))
    np.testing.assert_array_equal(grids["river"], signal)
    assert (alert_grids(_layers())["river"] == LEVEL_NODATA).all()


def test_a_river_alert_is_a_valid_bilingual_cap_message():
    from twin.alerting import cap
    from twin.alerting.compose import ComposeContext, issue
    from twin.alerting.lifecycle import AlertBook
    from twin.district.grid import GridSpec

    grid = GridSpec.from_bbox(121.484, 31.236, 121.492, 31.244, 20.0)
    levels = np.zeros(grid.shape, np.int8)
    levels[:, :6] = 4
    ctx = ComposeContext(grid, "twin.bund@citytwin", "bund", evidence=lambda h, c: {"peakRiverLevel": "5.71 m"})
    (event,) = issue(AlertBook("bund").tick(1_735_689_600.0, {"river": levels}, places={}), ctx)
    m = event.message
    assert cap.problems(m) == []
    zh, en = m["info"]
    assert (zh["language"], en["language"]) == ("zh-CN", "en-US")
    assert (en["event"], zh["event"]) == ("High river level warning", "江河高水位预警")
    assert en["headline"].startswith("Red high river level warning") and "高水位红色预警" in zh["headline"]
    assert en["category"] == "Met" and en["responseType"] == "Avoid" and en["certainty"] == "Observed"
    params = {p["valueName"]: p["value"] for p in en["parameter"]}
    assert params["hazard"] == "river" and params["peakRiverLevel"] == "5.71 m" and params["warningLevel"] == "red"
    assert "防汛墙" in zh["instruction"] and "flood wall" in en["instruction"]
