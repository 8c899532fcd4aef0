"""Property tests (hypothesis) of twin.district.geo: Beidou codes and GCJ-02 inverses."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from twin.district import geo

LEVELS = st.integers(min_value=1, max_value=10)
# The whole supported band (0 <= lon < 180, 0 <= lat < 88) and the Shanghai box.
BAND_LON = st.floats(min_value=0.0, max_value=179.99999999, allow_nan=False)
BAND_LAT = st.floats(min_value=0.0, max_value=87.99999999, allow_nan=False)
SH_LON = st.floats(min_value=120.85, max_value=122.0)
SH_LAT = st.floats(min_value=30.68, max_value=31.88)


@given(lon=BAND_LON, lat=BAND_LAT, level=LEVELS)
def test_decode_of_encode_contains_point(lon, lat, level):
    code = geo.beidou_encode(lon, lat, level)
    west, south, east, north = geo.beidou_decode_exact(code)
    assert west <= Fraction(lon) < east  # half-open in exact arithmetic
    assert south <= Fraction(lat) < north
    f_west, f_south, f_east, f_north = geo.beidou_decode(code)
    assert f_west <= lon <= f_east  # closed after rounding the edges to floats
    assert f_south <= lat <= f_north


@given(lon=BAND_LON, lat=BAND_LAT)
def test_parent_code_is_prefix_of_child_code(lon, lat):
    codes = [geo.beidou_encode(lon, lat, level) for level in range(1, 11)]
    for level in range(1, 10):
        assert codes[level].startswith(codes[level - 1])
        assert geo.beidou_parent(codes[level]) == codes[level - 1]
        assert geo.beidou_parent(codes[9], level) == codes[level - 1]


@given(lon=SH_LON, lat=SH_LAT, level=LEVELS)
def test_encode_of_cell_centre_gives_the_code_back(lon, lat, level):
    code = geo.beidou_encode(lon, lat, level)
    west, south, east, north = geo.beidou_decode_exact(code)
    assert geo.beidou_encode((west + east) / 2, (south + north) / 2, level) == code
    assert geo.beidou_encode(west, south, level) == code  # SW corner belongs to the cell
    assert geo.beidou_level(code) == level


@given(
    lon=arrays(np.float64, st.integers(1, 50), elements=BAND_LON),
    lat=st.data(),
    level=LEVELS,
)
@settings(max_examples=100)
def test_encode_many_equals_scalar_encode(lon, lat, level):
    lat_arr = lat.draw(arrays(np.float64, lon.shape, elements=BAND_LAT))
    many = geo.beidou_encode_many(lon, lat_arr, level)
    scalar = [geo.beidou_encode(float(a), float(b), level) for a, b in zip(lon, lat_arr, strict=True)]
    assert many.tolist() == scalar


@given(
    k_lon=st.integers(1, 180 * 3600 * 2048 - 1),
    k_lat=st.integers(1, 88 * 3600 * 2048 - 1),
    level=LEVELS,
)
def test_exact_unit_points_use_floor(k_lon, k_lat, level):
    """A point on any 1/2048-arc-second node lands in the cell whose SW corner is floor(node / cell)."""
    unit = Fraction(1, 3600 * 2048)
    lon, lat = k_lon * unit, k_lat * unit
    west, south, _, _ = geo.beidou_decode_exact(geo.beidou_encode(lon, lat, level))
    d_lon, d_lat = (round(Fraction(v) / unit) for v in geo.beidou_cell_size(level))
    assert west == (k_lon // d_lon) * d_lon * unit
    assert south == (k_lat // d_lat) * d_lat * unit


@given(lon=SH_LON, lat=SH_LAT)
def test_gcj02_inverse_round_trip(lon, lat):
    g_lon, g_lat = geo.wgs84_to_gcj02(lon, lat)
    w_lon, w_lat = geo.gcj02_to_wgs84(g_lon, g_lat)
    assert abs(w_lon - lon) < 1e-8 and abs(w_lat - lat) < 1e-8  # 1e-8 deg ~ 1 mm


@given(lon=SH_LON, lat=SH_LAT)
def test_bd09_round_trip(lon, lat):
    b = geo.gcj02_to_bd09(lon, lat)
    back = geo.bd09_to_gcj02(*b)
    assert abs(back[0] - lon) < 1e-9 and abs(back[1] - lat) < 1e-9
