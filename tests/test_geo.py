"""Tests of twin.district.geo against the vectors and validation tests of docs/science/spatial.md section 6."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod, Proj

from twin.district import geo

GEOD = Geod(ellps="WGS84")
ROOT = Path(__file__).resolve().parents[1]

# docs/science/spatial.md 6.1 / 6.3 fixtures (checked against an independent codec / measured with pyproj).
BEIDOU_VECTOR = ((121.49045, 31.23934), "N51H263E465066336755")
GCJ_VECTOR_WGS84 = (121.4906, 31.2400)
GCJ_VECTOR_GCJ02 = (121.495066, 31.238014)
SHANGHAI_BOX = (120.85, 30.68, 122.0, 31.88)
OUTSIDE_CHINA = [
    (2.3522, 48.8566), (-74.0060, 40.7128), (139.6917, 35.6895), (151.2093, -33.8688), (0.0, 0.0),
]


def _random_shanghai(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    west, south, east, north = SHANGHAI_BOX
    return rng.uniform(west, east, n), rng.uniform(south, north, n)


def _metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


# --------------------------------------------------------------------------------------------
# Projections and datums
# --------------------------------------------------------------------------------------------


def test_transformer_is_cached_and_xy_ordered():
    assert geo.transformer("EPSG:4490", "EPSG:4549") is geo.transformer("EPSG:4490", "EPSG:4549")
    x, y = geo.to_projected(121.4906, 31.2400)
    # Gauss-Kruger CM 120E: easting ~500 km + 142 km, northing ~3458 km. Swapped axes would fail.
    assert 640_000 < x < 645_000
    assert 3_455_000 < y < 3_462_000


def test_epsg4549_point_scale_at_the_bund():
    factors = Proj("EPSG:4549").get_factors(*GCJ_VECTOR_WGS84)
    assert factors.meridional_scale == pytest.approx(1.000249, abs=1e-6)
    assert factors.parallel_scale == pytest.approx(1.000249, abs=1e-6)


@pytest.mark.parametrize("crs", ["EPSG:4549", "EPSG:4550", "EPSG:32651"])
def test_projection_round_trip_below_1mm(crs):
    lon, lat = _random_shanghai(5000, seed=3)
    x, y = geo.to_projected(lon, lat, crs=crs)
    lon2, lat2 = geo.to_lonlat(x, y, crs=crs)
    assert _metres(lon, lat, lon2, lat2).max() < 1e-3


def test_to_cgcs2000_mixed_datums():
    lon = np.array([121.5, 121.5, 121.5, 121.5, 121.5])
    lat = np.full(5, 31.2)
    datum = np.array(["CGCS2000", "WGS84", "GCJ02", "gcj-02", ""])
    out_lon, out_lat = geo.to_cgcs2000(lon, lat, datum)
    w_lon, w_lat = geo.gcj02_to_wgs84(121.5, 31.2)
    np.testing.assert_array_equal(out_lon[[0, 1, 4]], lon[[0, 1, 4]])
    np.testing.assert_array_equal(out_lat[[0, 1, 4]], lat[[0, 1, 4]])
    np.testing.assert_allclose(out_lon[2:4], w_lon, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out_lat[2:4], w_lat, rtol=0, atol=1e-12)


def test_to_cgcs2000_scalar_datum_and_scalars():
    lon, lat = geo.to_cgcs2000(121.5, 31.2, "GCJ02")
    assert isinstance(lon, float)
    assert (lon, lat) == geo.gcj02_to_wgs84(121.5, 31.2)
    assert geo.to_cgcs2000(121.5, 31.2, "WGS84") == (121.5, 31.2)
    arr_lon, _ = geo.to_cgcs2000(np.array([121.5, 121.6]), np.array([31.2, 31.3]), "GCJ02")
    assert arr_lon.shape == (2,)


def test_to_cgcs2000_missing_datum_means_cgcs2000():
    datum = np.array(["GCJ02", None, np.nan, " "], dtype=object)  # a Batch column with gaps
    lon, lat = geo.to_cgcs2000(np.full(4, 121.5), np.full(4, 31.2), datum)
    assert lon[0] != 121.5
    np.testing.assert_array_equal(lon[1:], 121.5)
    np.testing.assert_array_equal(lat[1:], 31.2)


def test_to_cgcs2000_rejects_unknown_datum():
    with pytest.raises(ValueError, match="unknown datum"):
        geo.to_cgcs2000([121.5], [31.2], ["BD09"])


# --------------------------------------------------------------------------------------------
# GCJ-02 and BD-09
# --------------------------------------------------------------------------------------------


def test_gcj02_bund_vector():
    lon, lat = geo.wgs84_to_gcj02(*GCJ_VECTOR_WGS84)
    assert lon == pytest.approx(GCJ_VECTOR_GCJ02[0], abs=1e-6)
    assert lat == pytest.approx(GCJ_VECTOR_GCJ02[1], abs=1e-6)
    assert isinstance(lon, float)


def test_gcj02_offset_in_shanghai_is_450_to_500_m():
    lon, lat = _random_shanghai(2000, seed=4)
    g_lon, g_lat = geo.wgs84_to_gcj02(lon, lat)
    d = _metres(lon, lat, g_lon, g_lat)
    assert d.min() > 450 and d.max() < 505


def test_gcj02_iterative_inverse_residual_below_1cm():
    g_lon, g_lat = _random_shanghai(20_000, seed=5)
    w_lon, w_lat = geo.gcj02_to_wgs84(g_lon, g_lat)
    f_lon, f_lat = geo.wgs84_to_gcj02(w_lon, w_lat)
    assert _metres(g_lon, g_lat, f_lon, f_lat).max() < 0.01
    # and it recovers known WGS84 points
    lon, lat = _random_shanghai(20_000, seed=6)
    back = geo.gcj02_to_wgs84(*geo.wgs84_to_gcj02(lon, lat))
    assert _metres(lon, lat, *back).max() < 0.01


def test_gcj02_one_step_inverse_error_regression_guard():
    """The naive inverse w = g - (f(g) - g) errs ~1 m (measured 0.01-2.23 m): why we iterate."""
    g_lon, g_lat = _random_shanghai(20_000, seed=7)
    f_lon, f_lat = geo.wgs84_to_gcj02(g_lon, g_lat)
    one_lon, one_lat = 2 * g_lon - f_lon, 2 * g_lat - f_lat
    exact = geo.gcj02_to_wgs84(g_lon, g_lat)
    err = _metres(one_lon, one_lat, *exact)
    assert err.mean() == pytest.approx(1.0, abs=0.1)
    assert err.max() == pytest.approx(2.2, abs=0.1)


@pytest.mark.parametrize(("lon", "lat"), OUTSIDE_CHINA)
def test_outside_china_unchanged(lon, lat):
    assert geo.wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert geo.gcj02_to_wgs84(lon, lat) == (lon, lat)
    assert geo.to_cgcs2000(lon, lat, "GCJ02") == (lon, lat)


def test_outside_china_unchanged_in_arrays():
    lon = np.array([p[0] for p in OUTSIDE_CHINA] + [121.5])
    lat = np.array([p[1] for p in OUTSIDE_CHINA] + [31.2])
    g_lon, g_lat = geo.wgs84_to_gcj02(lon, lat)
    np.testing.assert_array_equal(g_lon[:-1], lon[:-1])
    np.testing.assert_array_equal(g_lat[:-1], lat[:-1])
    assert g_lon[-1] != lon[-1]
    w_lon, _ = geo.gcj02_to_wgs84(lon, lat)
    np.testing.assert_array_equal(w_lon[:-1], lon[:-1])


def test_bd09_round_trips():
    lon, lat = _random_shanghai(5000, seed=8)
    b_lon, b_lat = geo.gcj02_to_bd09(lon, lat)
    d = _metres(lon, lat, b_lon, b_lat)
    assert d.min() > 500 and d.max() < 1000  # BD-09 adds ~0.0065 deg E, 0.006 deg N to GCJ-02
    back = geo.bd09_to_gcj02(b_lon, b_lat)
    assert _metres(lon, lat, *back).max() < 1e-3
    back_w = geo.bd09_to_wgs84(*geo.wgs84_to_bd09(lon, lat))
    assert _metres(lon, lat, *back_w).max() < 0.01


def test_conversions_accept_scalars_and_arrays_alike():
    lon, lat = _random_shanghai(10, seed=9)
    for fn in (geo.wgs84_to_gcj02, geo.gcj02_to_wgs84, geo.gcj02_to_bd09, geo.bd09_to_gcj02):
        arr = fn(lon, lat)
        assert arr[0].shape == (10,)
        one = fn(float(lon[3]), float(lat[3]))
        assert isinstance(one[0], float)
        assert one == pytest.approx((arr[0][3], arr[1][3]), abs=1e-12)


# --------------------------------------------------------------------------------------------
# Beidou grid codes
# --------------------------------------------------------------------------------------------


def test_beidou_vector():
    (lon, lat), code = BEIDOU_VECTOR
    assert geo.beidou_encode(lon, lat) == code
    assert geo.beidou_encode(lon, lat, level=1) == "N51H"
    assert geo.beidou_encode_many([lon], [lat], 10)[0] == code
    west, south, east, north = geo.beidou_decode(code)
    assert west <= lon <= east and south <= lat <= north


@pytest.mark.parametrize(
    ("level", "sw_offset", "expected"),
    [(3, (0.25, 0.0), "1"), (3, (0.0, 1 / 6), "2"), (3, (0.25, 2 / 6), "5"),
     (6, (2 / 3600, 0.0), "1"), (6, (0.0, 2 / 3600), "2"), (6, (2 / 3600, 2 / 3600), "3")],
)
def test_beidou_zorder_convention(level, sw_offset, expected):
    """Z-order digit = 2 * i_lat + i_lon (NE map [[0, 1], [2, 3], [4, 5]] indexed [lat][lon]).

    Convention pin, not an independent vector: the checked vector has (1, 1) at level 3 and (0, 0)
    at level 6, so it cannot tell 2 * i_lat + i_lon from 3 * i_lon + i_lat; this follows the
    ywx001/BeidouGridCodec reading of the standard's figures 4 and 7.
    """
    parent = geo.beidou_encode(121.0, 31.0, level - 1)
    west, south, _, _ = geo.beidou_decode_exact(parent)
    half_lon, half_lat = (Fraction(v) / 2 for v in geo.beidou_cell_size(level))
    lon = west + Fraction(sw_offset[0]).limit_denominator(10**6) + half_lon
    lat = south + Fraction(sw_offset[1]).limit_denominator(10**6) + half_lat
    assert geo.beidou_encode(lon, lat, level) == parent + expected


@pytest.mark.parametrize("level", range(1, 11))
def test_beidou_length_and_prefix_per_level(level):
    (lon, lat), code = BEIDOU_VECTOR
    short = geo.beidou_encode(lon, lat, level)
    assert len(short) == geo.BEIDOU_CODE_LENGTHS[level] == [4, 6, 7, 9, 11, 12, 14, 16, 18, 20][level - 1]
    assert code.startswith(short)
    assert geo.beidou_level(short) == level
    assert short.startswith("N51H")


def test_beidou_shanghai_sheet_is_n51h():
    lon, lat = _random_shanghai(1000, seed=10)
    codes = geo.beidou_encode_many(lon, lat, 1)
    assert set(codes.tolist()) == {"N51H"}
    assert geo.beidou_decode("N51H") == (120.0, 28.0, 126.0, 32.0)


@pytest.mark.parametrize(
    ("level", "size_deg"),
    [(1, (6.0, 4.0)), (2, (0.5, 0.5)), (3, (0.25, 1 / 6)), (4, (1 / 60, 1 / 60)), (5, (4 / 3600, 4 / 3600)),
     (6, (2 / 3600, 2 / 3600)), (7, (1 / 4 / 3600,) * 2), (10, (1 / 2048 / 3600,) * 2)],
)
def test_beidou_cell_size_degrees(level, size_deg):
    assert geo.beidou_cell_size(level) == pytest.approx(size_deg, rel=1e-15)


@pytest.mark.parametrize(("level", "ew_m", "ns_m"), [(5, 105.9, 123.2), (6, 52.9, 61.6)])
def test_beidou_cell_size_metres_at_31_23N(level, ew_m, ns_m):
    dlon, dlat = geo.beidou_cell_size(level)
    ew = _metres(121.0, 31.23, 121.0 + dlon, 31.23)
    ns = _metres(121.0, 31.23 - dlat / 2, 121.0, 31.23 + dlat / 2)
    assert ew == pytest.approx(ew_m, rel=0.005)
    assert ns == pytest.approx(ns_m, rel=0.005)


@pytest.mark.parametrize("level", range(1, 10))
def test_beidou_children_tile_parent_exactly(level):
    (lon, lat), _ = BEIDOU_VECTOR
    parent = geo.beidou_encode(lon, lat, level)
    pw, ps, pe, pn = geo.beidou_decode_exact(parent)
    children = geo.beidou_children(parent)
    assert len(set(children)) == len(children)
    boxes = [geo.beidou_decode_exact(c) for c in children]
    dlon, dlat = (Fraction(v) for v in geo.beidou_cell_size(level + 1))
    corners = {(w, s) for w, s, _, _ in boxes}
    exact_dlon, exact_dlat = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
    n_lon, n_lat = round((pe - pw) / exact_dlon), round((pn - ps) / exact_dlat)
    assert len(children) == n_lon * n_lat
    # every child has the next level's size, lies in the parent, and the SW corners form the full lattice
    assert float(exact_dlon) == float(dlon) and float(exact_dlat) == float(dlat)
    for w, s, e, n in boxes:
        assert e - w == exact_dlon and n - s == exact_dlat
        assert pw <= w and e <= pe and ps <= s and n <= pn
    assert corners == {(pw + i * exact_dlon, ps + j * exact_dlat) for i in range(n_lon) for j in range(n_lat)}
    for c in children:
        assert geo.beidou_parent(c) == parent
        assert c.startswith(parent)


def test_beidou_parent_levels():
    code = BEIDOU_VECTOR[1]
    assert geo.beidou_parent(code) == code[:18]
    assert geo.beidou_parent(code, 1) == "N51H"
    assert geo.beidou_parent(code, 10) == code
    with pytest.raises(ValueError):
        geo.beidou_parent("N51H")


@pytest.mark.parametrize("level", range(1, 11))
def test_beidou_encode_many_equals_scalar(level):
    lon, lat = _random_shanghai(3000, seed=100 + level)
    many = geo.beidou_encode_many(lon, lat, level)
    assert many.tolist() == [geo.beidou_encode(a, b, level) for a, b in zip(lon, lat, strict=True)]


def test_beidou_encode_many_keeps_shape():
    lon, lat = _random_shanghai(12, seed=11)
    out = geo.beidou_encode_many(lon.reshape(3, 4), lat.reshape(3, 4), 6)
    assert out.shape == (3, 4)
    assert out[1, 2] == geo.beidou_encode(lon[6], lat[6], 6)


# ---- points exactly on cell edges: floor of the exact value, so they land in the NE cell -----


def _edge_units_per_level() -> list[tuple[int, int]]:
    """Cell size of each level in units of 1/2048 arc-second (exact)."""
    unit = Fraction(1, 3600 * 2048)
    sizes = [geo.beidou_cell_size(level) for level in range(1, 11)]
    return [(round(Fraction(a) / unit), round(Fraction(b) / unit)) for a, b in sizes]


@pytest.mark.parametrize("level", range(1, 11))
def test_beidou_exact_edge_points_land_in_ne_cell(level):
    """Points built from exact fractions of an arc-second on a cell corner: the cell starts there."""
    unit = Fraction(1, 3600 * 2048)
    du_lon, du_lat = _edge_units_per_level()[level - 1]
    rng = np.random.default_rng(level)
    for _ in range(50):
        lon = int(rng.integers(1, 180 * 3600 * 2048 // du_lon)) * du_lon * unit
        lat = int(rng.integers(1, 88 * 3600 * 2048 // du_lat)) * du_lat * unit
        west, south, _, _ = geo.beidou_decode_exact(geo.beidou_encode(lon, lat, level))
        assert (west, south) == (lon, lat)
        # an exact hair below the edge belongs to the SW neighbour
        below = geo.beidou_decode_exact(geo.beidou_encode(lon - unit / 7, lat - unit / 7, level))
        assert below[2] == lon and below[3] == lat


def test_beidou_float_edges_do_not_flip():
    """Floats exactly on level-10 edges (k / 32768 deg = multiples of 225 units) in both codecs."""
    k_lon = np.arange(121 * 32768, 121 * 32768 + 4000, 7)
    k_lat = np.arange(31 * 32768, 31 * 32768 + 4000, 7)[: k_lon.size]
    lon, lat = k_lon / 32768.0, k_lat / 32768.0
    many = geo.beidou_encode_many(lon, lat, 10)
    below = geo.beidou_encode_many(np.nextafter(lon, 0), np.nextafter(lat, 0), 10)
    for i in range(lon.size):
        code = geo.beidou_encode(float(lon[i]), float(lat[i]), 10)
        assert code == many[i]
        west, south, _, _ = geo.beidou_decode_exact(code)
        assert (west, south) == (Fraction(int(k_lon[i]), 32768), Fraction(int(k_lat[i]), 32768))
        _, _, east_below, north_below = geo.beidou_decode_exact(below[i])
        assert (east_below, north_below) == (west, south)


def test_beidou_decimal_and_string_inputs_are_exact():
    # 121.5 E is a level-2 edge; 31 deg 10' N a level-3 edge (not representable as a float)
    code = geo.beidou_encode(Decimal("121.5"), Fraction(31 * 6 + 1, 6), 3)
    west, south, _, _ = geo.beidou_decode_exact(code)
    assert (west, south) == (Fraction(243, 2), Fraction(187, 6))
    assert geo.beidou_encode("121.49045", "31.23934") == BEIDOU_VECTOR[1]


@pytest.mark.parametrize(
    ("lon", "lat"), [(-0.1, 31.0), (121.0, -0.1), (-58.38, -34.6), (180.0, 10.0), (10.0, 88.0)]
)
def test_beidou_unsupported_hemispheres_raise(lon, lat):
    with pytest.raises(ValueError, match="only the northern/eastern hemisphere is supported"):
        geo.beidou_encode(lon, lat)
    with pytest.raises(ValueError, match="only the northern/eastern hemisphere is supported"):
        geo.beidou_encode_many([121.0, lon], [31.0, lat], 5)


@pytest.mark.parametrize(
    "code",
    ["", "X51H", "N51", "N51H2", "N51HC6", "N51H28", "N51H266", "N51H263F4", "N61H", "N51W", "S51H", 12],
)
def test_beidou_bad_codes_raise(code):
    with pytest.raises(ValueError):
        geo.beidou_decode(code)


@pytest.mark.parametrize("level", [0, 11, 2.5, True])
def test_beidou_bad_level_raises(level):
    with pytest.raises(ValueError, match="level"):
        geo.beidou_encode(121.0, 31.0, level)


def test_beidou_nan_raises():
    with pytest.raises(ValueError, match="finite"):
        geo.beidou_encode(float("nan"), 31.0)
    with pytest.raises(ValueError, match="finite"):
        geo.beidou_encode_many([np.nan], [31.0], 3)


# --------------------------------------------------------------------------------------------
# Project-wide: Shanghai is never projected with Guangdong's EPSG:4547
# --------------------------------------------------------------------------------------------

_CODE_DIRS = ("twin", "ingest", "models", "scenarios", "benchmarks")
_CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json", ".cfg", ".ini")
_PY_4547 = re.compile(r"(?<![\d.])4547(?!\d)")  # not the digits of a decimal fraction like 31.4547
_CONFIG_4547 = re.compile(r"(?i)epsg\W{0,3}4547(?!\d)")
_EXPLAINED = re.compile(r"(?i)guangdong|not shanghai")


def test_no_epsg4547_for_shanghai():
    """EPSG:4547 (CM 114E) is Guangdong's zone. It may appear only in a sentence saying so."""
    offenders = []
    for folder in (*_CODE_DIRS, "data"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix == ".py" and folder != "data":
                pattern = _PY_4547
            elif path.suffix in _CONFIG_SUFFIXES and path.stat().st_size < 2_000_000:
                pattern = _CONFIG_4547
            else:
                continue
            for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                if pattern.search(line) and not _EXPLAINED.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "EPSG:4547 is Guangdong's zone, not Shanghai's:\n" + "\n".join(offenders)
