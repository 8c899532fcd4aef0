"""Per-place crowd density bands (issue 14: "stricter bands for stairs, ramps, bridges are explicit per-place
thresholds, and the alert's evidence shows which bands applied"): `models.config.PlaceBands`, the rows
`models.risk.tick_params` appends, the ``crowd_band`` input of `models.risk.AlertLevels`, and
`models.hazards.density_bands_text` (the CAP ``densityBands`` parameter)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import AlertLevels, CrowdConfig, RiskConfig, tick_params
from models.config import MAX_PLACE_BANDS, PlaceBands
from models.hazards import density_bands_text
from models.reference import risk as reference

INF = math.inf
STAIR = PlaceBands("Lujiazui Exit 1 stair", "stair", (1.11, 1.43, 2.5, 3.5), (0.89, 1.14, 2.0, 2.8),
                   "Fruin (1971) stairway LOS D/E/F [mem]; red [design]")
"""Fruin's stairway bands (docs/science/crowd.md 1.1), as data/bund/crowd-bands.geojson gives them."""
RAMP = PlaceBands("ramp", "ramp", (INF, 1.5, 3.0, 4.0), (INF, 1.2, 2.4, 3.2))
"""A place with an unused colour (no blue)."""
SET = settings(deadline=None, database=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])

pytestmark = pytest.mark.usefixtures("one_numba_thread")


def _dataset(density: np.ndarray, band: np.ndarray | None) -> xr.Dataset:
    """What `AlertLevels` reads: crowd density [person m-2] and, if given, the ``crowd_band`` layer; no water,
    no road."""
    shape = density.shape
    layers = {"crowd_density": (density, "person m-2"), "water_depth": (np.zeros(shape), "m"),
              "traffic_speed": (np.full(shape, np.nan), "km h-1"), "free_flow_speed": (np.full(shape, 50.0), "km h-1"),
              "road_class": (np.zeros(shape, np.int8), "1"), "vulnerability": (np.full(shape, 0.2), "1")}
    if band is not None:
        layers["crowd_band"] = (band.astype(np.int8), "1")
    return xr.Dataset({k: (("y", "x"), v, {"units": u}) for k, (v, u) in layers.items()})


def _levels(ds: xr.Dataset, config: RiskConfig, kernel=None, ticks: int = 3, dt: float = 2.0) -> np.ndarray:
    comp = AlertLevels(ds, config)
    if kernel is not None:
        comp.kernel = kernel
    for _ in range(ticks):
        out = comp.update(ds, dt)
    return out["level_crowd"].values


# ---------------------------------------------------------------- the level on a stair and in the district
@pytest.mark.parametrize("kernel", [None, reference.risk_tick], ids=["kernel", "reference"])
def test_the_same_density_is_orange_on_a_stair_and_yellow_in_the_district(kernel):
    """3.0 person/m2 is at or above the stair's orange (2.5) and below the district's (4.0, yellow from 2.0)."""
    density = np.full((2, 3), 3.0)
    band = np.array([[1, 0, 0], [0, 1, 0]])
    levels = _levels(_dataset(density, band), RiskConfig(place_bands=(STAIR,)), kernel)
    assert levels.tolist() == [[3, 2, 2], [2, 3, 2]]  # orange on the stair cells, yellow elsewhere
    # 3.6 person/m2: red on the stair (3.5), still yellow in the district
    levels = _levels(_dataset(np.full((2, 3), 3.6), band), RiskConfig(place_bands=(STAIR,)), kernel)
    assert levels.tolist() == [[4, 2, 2], [2, 4, 2]]


def test_kernel_and_reference_agree_with_places(one_numba_thread):
    rng = np.random.default_rng(14)
    density = rng.uniform(0.0, 6.0, (5, 8))
    band = rng.integers(0, 3, (5, 8))
    config = RiskConfig(place_bands=(STAIR, RAMP))
    np.testing.assert_array_equal(_levels(_dataset(density, band), config),
                                  _levels(_dataset(density, band), config, reference.risk_tick))


def test_each_band_number_takes_its_places_row():
    """Band 2 is the second place (the ramp: no blue); band 0 and a missing layer are the district's."""
    density = np.array([[1.2, 1.2, 1.2, 1.6, 1.6, 1.6]])
    band = np.array([[0, 1, 2, 0, 1, 2]])
    config = RiskConfig(place_bands=(STAIR, RAMP))
    assert _levels(_dataset(density, band), config).tolist() == [[1, 1, 0, 1, 2, 2]]
    assert _levels(_dataset(density, None), config).tolist() == [[1, 1, 1, 1, 1, 1]]
    assert _levels(_dataset(density, np.zeros_like(band)), config).tolist() == [[1, 1, 1, 1, 1, 1]]


def test_the_stair_clears_at_its_own_clear_thresholds():
    """Hysteresis with the stair's clear bands: after orange at 3.0, 2.2 (above the stair's orange clear 2.0)
    holds orange; 1.9 steps down after the clear delay."""
    config = RiskConfig(place_bands=(STAIR,), crowd=CrowdConfig())
    ds = _dataset(np.array([[3.0]]), np.array([[1]]))
    comp = AlertLevels(ds, config)
    for _ in range(3):
        comp.update(ds, 2.0)
    ds["crowd_density"][:] = 2.2
    for _ in range(10):
        out = comp.update(ds, 2.0)
    assert int(out["level_crowd"][0, 0]) == 3
    ds["crowd_density"][:] = 1.9
    for _ in range(6):
        out = comp.update(ds, 2.0)
    assert int(out["level_crowd"][0, 0]) == 2


@pytest.mark.parametrize("bad", [2, -1, 127])
def test_a_band_outside_the_places_is_a_clear_error(bad):
    band = np.array([[0, 1, bad]])
    ds = _dataset(np.ones((1, 3)), band)
    with pytest.raises(ValueError, match=rf"crowd_band must be 0 .* to 1 .*1 cell\(s\) have {bad}$"):
        AlertLevels(ds, RiskConfig(place_bands=(STAIR,)))
    comp = AlertLevels(_dataset(np.ones((1, 3)), np.zeros((1, 3))), RiskConfig(place_bands=(STAIR,)))
    with pytest.raises(ValueError, match="crowd_band must be 0"):
        comp.update(ds, 1.0)
    with pytest.raises(ValueError, match=r"crowd_band must be 0 .* to 0"):  # no places: only 0 is allowed
        AlertLevels(_dataset(np.ones((1, 3)), np.array([[0, 0, 1]])), RiskConfig())


def test_a_fractional_or_missing_band_is_an_error():
    ds = _dataset(np.ones((1, 3)), None)
    ds["crowd_band"] = (("y", "x"), np.array([[0.0, 0.5, np.nan]]), {"units": "1"})
    with pytest.raises(ValueError, match=r"2 cell\(s\) have 0.5, nan"):
        AlertLevels(ds, RiskConfig(place_bands=(STAIR,)))


# ---------------------------------------------------------------- tick_params
def test_tick_params_appends_one_monotone_row_per_place():
    thr = tick_params(RiskConfig(place_bands=(STAIR, RAMP)))["thr"]
    assert thr.shape == (7, 8)
    np.testing.assert_array_equal(thr[:5], tick_params(RiskConfig())["thr"])
    np.testing.assert_array_equal(thr[5], [1.11, 1.43, 2.5, 3.5, 0.89, 1.14, 2.0, 2.8])
    # the ramp's unused blue takes yellow's thresholds: non-decreasing, the same "highest colour met"
    np.testing.assert_array_equal(thr[6], [1.5, 1.5, 3.0, 4.0, 1.2, 1.2, 2.4, 3.2])
    assert (np.diff(thr[:, 0:4], axis=1) >= 0).all() and (np.diff(thr[:, 4:8], axis=1) >= 0).all()


# ---------------------------------------------------------------- PlaceBands
thresholds = st.floats(0.05, 8.0, allow_nan=False)


@st.composite
def valid_bands(draw):
    """Raise thresholds non-decreasing, each used colour's clear below its raise and the clears non-decreasing;
    some lower colours unused (inf)."""
    up = sorted(draw(st.lists(thresholds, min_size=4, max_size=4)))
    unused = draw(st.integers(0, 3))
    ratio = draw(st.floats(0.5, 0.95))
    down = [u * ratio for u in up]
    up = [INF] * unused + up[unused:]
    down = [INF] * unused + down[unused:]
    return tuple(up), tuple(down)


@given(bands=valid_bands(), kind=st.sampled_from(["stair", "ramp", "bridge", "other"]))
@SET
def test_valid_bands_are_accepted_as_floats(bands, kind):
    up, down = bands
    b = PlaceBands("p", kind, up, down)
    assert b.density_raise == up and all(isinstance(v, float) for v in b.density_raise + b.density_clear)
    thr = tick_params(RiskConfig(place_bands=(b,)))["thr"][5]
    assert (np.diff(thr[:4]) >= 0).all() and (np.diff(thr[4:]) >= 0).all()


@given(bands=valid_bands(), colour=st.integers(0, 3), how=st.sampled_from(["swap", "equal", "nan", "negative",
                                                                           "-inf", "clear-without-raise"]))
@SET
def test_broken_bands_are_refused_naming_the_place(bands, colour, how):
    up, down = list(bands[0]), list(bands[1])
    colour = max(colour, sum(v == INF for v in up)) if how != "clear-without-raise" else colour
    if how == "clear-without-raise":
        up[colour], down[colour] = INF, 1.0
    elif how == "swap":
        up[colour], down[colour] = down[colour], up[colour]
    elif how == "equal":
        down[colour] = up[colour]
    elif how == "nan":
        up[colour] = math.nan
    elif how == "negative":
        down[colour] = -0.5
    else:
        up[colour] = -INF
    with pytest.raises(ValueError, match="PlaceBands 'the ramp'"):
        PlaceBands("the ramp", "ramp", tuple(up), tuple(down))


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "tower"}, "kind must be one of stair, ramp, bridge, other"),
    ({"name": " "}, "name must be a non-empty string"),
    ({"density_raise": (1.0, 2.0, 3.0)}, "four thresholds"),
    ({"density_raise": (1.0, 2.0, "3", 4.0)}, "orange must be a number"),
    ({"density_raise": (1.0, True, 3.0, 4.0)}, "yellow must be a number"),
    ({"density_raise": (2.0, 1.5, 3.0, 4.0), "density_clear": (1.0, 1.2, 2.0, 3.0)}, "decreases"),
    ({"density_clear": (0.9, 0.8, 2.0, 3.0)}, "density_clear .* decreases"),
    ({"density_raise": (INF,) * 4, "density_clear": (INF,) * 4}, "no colour is used"),
    ({"source": 3}, "source must be a string"),
])
def test_each_bad_field_is_a_clear_error(kwargs, match):
    fields = {"name": "stair", "kind": "stair", "density_raise": STAIR.density_raise,
              "density_clear": STAIR.density_clear, **kwargs}
    with pytest.raises(ValueError, match=match):
        PlaceBands(**fields)


def test_risk_config_takes_a_tuple_of_place_bands_and_no_more_than_the_kernel_rows():
    assert RiskConfig(place_bands=[STAIR]).place_bands == (STAIR,)
    with pytest.raises(ValueError, match="PlaceBands expected"):
        RiskConfig(place_bands=({"name": "x"},))
    with pytest.raises(ValueError, match=f"at most {MAX_PLACE_BANDS}"):
        RiskConfig(place_bands=(STAIR,) * (MAX_PLACE_BANDS + 1))
    many = RiskConfig(place_bands=(STAIR,) * MAX_PLACE_BANDS)
    assert tick_params(many)["thr"].shape[0] == 4 + MAX_PLACE_BANDS + 1 <= 128  # the last row, 4 + j, is an int8


# ---------------------------------------------------------------- densityBands
def test_density_bands_text_names_each_set_of_bands_once_places_first():
    config = RiskConfig(place_bands=(STAIR, RAMP))
    assert density_bands_text(config, np.array([0, 0])) == "district: blue 1.08, yellow 2, orange 4, red 5 person/m2"
    assert density_bands_text(config, np.array([0, 1, 1, 0], np.int8)) == (
        "Lujiazui Exit 1 stair (stair): blue 1.11, yellow 1.43, orange 2.5, red 3.5 person/m2; "
        "district: blue 1.08, yellow 2, orange 4, red 5 person/m2")
    assert density_bands_text(config, np.array([2])) == "ramp (ramp): yellow 1.5, orange 3, red 4 person/m2"
    assert density_bands_text(config, np.array([2, 0, 1])).startswith("Lujiazui Exit 1 stair (stair): ")
    assert density_bands_text(config, np.array([], np.int8)).startswith("district: ")
    with pytest.raises(ValueError, match="crowd band 3"):
        density_bands_text(config, np.array([0, 3]))
