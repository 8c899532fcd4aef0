"""``DistrictRaster`` (which district a position is in) and ``DistrictRouter`` (which district a record goes to)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ingest.batch import Batch
from ingest.districts import OUTSIDE, DistrictRaster, DistrictRouter
from ingest.registry import registry_from_geojson
from ingest.worker import movers_of, static_districts
from tests.ingest.conftest import feature

WEST, SOUTH, D = 121.0, 31.0, 0.01


def small_raster() -> DistrictRaster:
    """3 rows x 4 columns; row 0 (south) is all district "A", the north-east corner is outside."""
    index = np.array([[0, 0, 0, 0],
                      [1, 1, 0, -1],
                      [1, 2, 2, -1]], dtype=np.int16)
    return DistrictRaster(("A", "B", "C"), index, WEST, SOUTH, D, D)


def reference_locate(r: DistrictRaster, lon: float, lat: float) -> int:
    """One point at a time, the slow obvious way."""
    if not (np.isfinite(lon) and np.isfinite(lat)):
        return OUTSIDE
    for row in range(r.index.shape[0]):
        for col in range(r.index.shape[1]):
            if (r.west + col * r.dlon <= lon < r.west + (col + 1) * r.dlon
                    and r.south + row * r.dlat <= lat < r.south + (row + 1) * r.dlat):
                return int(r.index[row, col])
    return OUTSIDE


def test_row_zero_is_the_south_edge():
    r = small_raster()
    assert r.locate(np.array([121.005]), np.array([31.005])).tolist() == [0]  # south-west cell: A
    assert r.locate(np.array([121.005]), np.array([31.025])).tolist() == [1]  # north-west cell: B
    assert r.locate(np.array([121.035]), np.array([31.025])).tolist() == [OUTSIDE]  # north-east corner
    assert r.codes_of(np.array([121.015, 121.015]), np.array([31.025, 40.0])).tolist() == ["C", ""]


def test_outside_the_raster_and_nan_are_outside():
    r = small_raster()
    lon = np.array([120.99, 121.04, 121.005, np.nan, 121.005, np.inf])
    lat = np.array([31.005, 31.005, 30.99, 31.005, np.nan, 31.0])
    assert r.locate(lon, lat).tolist() == [OUTSIDE] * 6


@given(arrays(np.float64, st.integers(0, 50), elements=st.floats(120.98, 121.06) | st.just(np.nan)),
       st.data())
@settings(max_examples=60, deadline=None)
def test_locate_agrees_with_a_point_by_point_lookup(lon, data):
    lat = data.draw(arrays(np.float64, len(lon), elements=st.floats(30.98, 31.05) | st.just(np.nan)))
    r = small_raster()
    got = r.locate(lon, lat)
    assert got.dtype == np.int16 and got.shape == lon.shape
    assert got.tolist() == [reference_locate(r, x, y) for x, y in zip(lon, lat, strict=True)]


def test_save_and_load_round_trip(tmp_path):
    r = small_raster()
    r.save(tmp_path / "d.npz")
    back = DistrictRaster.load(tmp_path / "d.npz")
    assert back.codes == r.codes and (back.index == r.index).all()
    assert (back.west, back.south, back.dlon, back.dlat) == (r.west, r.south, r.dlon, r.dlat)


def test_a_file_that_is_no_raster_is_refused(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a district raster"):
        DistrictRaster.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", codes=np.array(["A"]), index=np.zeros((1, 1), np.int16), bounds=np.zeros(3))
    with pytest.raises(ValueError, match="bounds"):
        DistrictRaster.load(tmp_path / "y.npz")


@pytest.mark.parametrize("codes, index, dlon, problem", [
    (("A",), np.zeros(3, np.int16), 0.1, "2-D"),
    (("A",), np.zeros((2, 2)), 0.1, "integer"),
    (("A",), np.full((2, 2), 1, np.int16), 0.1, "index values"),
    (("A", "A"), np.zeros((2, 2), np.int16), 0.1, "unique"),
    (("A",), np.zeros((2, 2), np.int16), 0.0, "cell size"),
])
def test_a_bad_raster_is_refused_naming_the_problem(codes, index, dlon, problem):
    with pytest.raises(ValueError, match=problem):
        DistrictRaster(codes, index, WEST, SOUTH, dlon, 0.1)


def test_the_raster_cannot_be_changed_through_the_array_it_was_given():
    index = np.zeros((2, 2), np.int16)
    r = DistrictRaster(("A",), index, WEST, SOUTH, D, D)
    index[0, 0] = -1
    assert r.index[0, 0] == 0 and not r.index.flags.writeable


# -- routing ------------------------------------------------------------------------------------------------


IN_A, IN_C = (121.005, 31.005), (121.015, 31.025)


def test_static_devices_go_by_their_map_and_movers_by_their_position():
    router = DistrictRouter(small_raster(), {"s1": "A", "s2": "C", "u0": "B", "tile": "A-t2"},
                            movers=("u0", "v0"))
    nan = np.nan
    b = Batch.build(9, device=["s1", "s2", "v0", "v0", "u0", "u0", "report-src", "x", "tile"],
                    lon=[IN_C[0], nan, IN_A[0], 125.0, nan, IN_C[0], IN_A[0], nan, nan],
                    lat=[IN_C[1], nan, IN_A[1], 31.0, nan, IN_C[1], IN_A[1], nan, nan])
    split = router.split(b)
    assert {k: v.tolist() for k, v in split.parts.items()} == {"A": [0, 2, 6], "B": [4], "C": [1, 5], "A-t2": [8]}
    assert split.outside.tolist() == [3] and split.unplaced.tolist() == [7]
    assert router.codes == ("A", "B", "C", "A-t2")


@given(st.lists(st.tuples(st.sampled_from(["s1", "s2", "v0", "u0", "zz"]), st.floats(120.99, 121.05),
                          st.floats(30.99, 31.04), st.booleans()), max_size=40))
@settings(max_examples=60, deadline=None)
def test_every_row_goes_to_exactly_one_place(rows):
    router = DistrictRouter(small_raster(), {"s1": "A", "s2": "B", "u0": "C"}, movers=("u0", "v0"))
    n = len(rows)
    b = Batch.build(n, device=[r[0] for r in rows], lon=[r[1] if r[3] else np.nan for r in rows],
                    lat=[r[2] if r[3] else np.nan for r in rows]) if n else Batch.empty()
    split = router.split(b)
    seen = np.concatenate([*split.parts.values(), split.outside, split.unplaced]) if n else np.empty(0)
    assert sorted(seen.tolist()) == list(range(n))
    for code, part in split.parts.items():
        assert part.tolist() == sorted(part.tolist())  # batch order kept
        for i in part.tolist():
            device, lon, lat, has = rows[i]
            if device in ("s1", "s2") or (device == "u0" and not has):
                assert code == {"s1": "A", "s2": "B", "u0": "C"}[device]
            else:
                assert code == small_raster().codes[reference_locate(small_raster(), lon, lat)]


def test_gcj02_positions_are_converted_before_the_lookup():
    shifted = []

    def to_wgs84(lon, lat):
        shifted.append(len(lon))
        return lon - 0.01, lat  # a stand-in offset: one cell west

    router = DistrictRouter(small_raster(), {}, movers=("v0",), to_wgs84=to_wgs84)
    b = Batch.build(2, device="v0", lon=[121.015, 121.015], lat=[31.005, 31.025], datum=["GCJ02", "WGS84"])
    split = router.split(b)
    assert shifted == [1]
    assert {k: v.tolist() for k, v in split.parts.items()} == {"A": [0], "C": [1]}


def test_static_districts_from_the_registry():
    doc = {"type": "FeatureCollection", "features": [
        feature("p", "rain", ["rain"], {"type": "Point", "coordinates": list(IN_C)}),
        feature("poly", "crowd", ["count"], {"type": "Polygon", "coordinates": [[
            [121.001, 31.001], [121.009, 31.001], [121.009, 31.009], [121.001, 31.009], [121.001, 31.001]]]}),
        feature("far", "rain", ["rain"], {"type": "Point", "coordinates": [125.0, 31.0]}),
        feature("given", "rain", ["rain"], {"type": "Point", "coordinates": list(IN_C)}, district="B"),
        feature("v0", "vehicle", ["position"]),
        feature("u0", "unit", ["position"], unit_type="police"),
    ]}
    registry = registry_from_geojson(doc)
    mapping, missing = static_districts(registry, small_raster(), explicit={"u0": "A"})
    assert mapping == {"p": "C", "poly": "A", "given": "B", "u0": "A"}
    assert missing == ["far"]
    assert movers_of(registry) == frozenset({"v0", "u0"})
