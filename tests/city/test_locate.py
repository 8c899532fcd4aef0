"""The district raster: known places land in their districts; vectorised lookups agree with point-in-polygon tests
away from borders (within one raster cell of a border either side is right)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ingest.districts import DistrictRaster
from twin.city.boundaries import read_boundaries
from twin.city.city import load_city
from twin.city.locate import boundary_arrays, cell_degrees, district_raster, scanline_mask
from twin.district.sources import data_dir

PLACES = {
    "Oriental Pearl Tower": ((121.49954, 31.23970), "310115"),
    "People's Square": ((121.47370, 31.23040), "310101"),
    "Xujiahui": ((121.43650, 31.18850), "310104"),
    "Jing'an Temple": ((121.44550, 31.22350), "310106"),
    "North Bund (rain-04)": ((121.49460, 31.24850), "310109"),
    "Wujiaochang": ((121.51400, 31.29950), "310110"),
    "Songjiang new town": ((121.22700, 31.03200), "310117"),
    "Chongming, Chengqiao": ((121.39700, 31.62300), "310151"),
    "Pudong airport": ((121.80500, 31.14300), "310115"),
}
"""Places and the district each lies in (WGS84; well inside the district, far from any border)."""


@functools.cache
def _raster() -> DistrictRaster:
    return district_raster(read_boundaries())


@functools.cache
def _borders() -> shapely.Geometry:
    b = read_boundaries()
    border = shapely.union_all([b[c].geometry.boundary for c in b.codes])
    shapely.prepare(border)
    return border


def test_known_places_are_in_their_districts():
    raster = _raster()
    lon, lat = (np.array(v) for v in zip(*(p for p, _ in PLACES.values()), strict=True))
    assert list(raster.codes_of(lon, lat)) == [code for _, code in PLACES.values()]


def test_the_raster_has_about_100_m_cells_with_row_0_south():
    raster = _raster()
    dlon, dlat = cell_degrees(100.0, 31.3)
    assert math.isclose(raster.dlat, dlat) and math.isclose(raster.dlat * 111_195, 100.0, rel_tol=1e-3)
    assert math.isclose(raster.dlon, dlon, rel_tol=0.01)
    rows, _ = raster.shape
    south_row, north_row = raster.index[0], raster.index[rows - 1]
    chongming = raster.codes.index("310151")
    assert (north_row == -1).all() and (south_row == -1).all()  # the one-cell margin
    top = max(r for r in range(rows) if (raster.index[r] >= 0).any())
    assert chongming in raster.index[top]  # Chongming is the northernmost district


def test_off_the_map_and_nan_are_outside():
    raster = _raster()
    assert list(raster.locate(np.array([0.0, 121.5, np.nan, 122.6]), np.array([0.0, np.nan, 31.2, 31.0]))) == \
        [-1, -1, -1, -1]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(
    arrays(np.float64, n, elements=st.floats(120.85, 122.25)), arrays(np.float64, n, elements=st.floats(30.67,
                                                                                                         31.88)))))
def test_locate_is_point_in_polygon_away_from_borders(points):
    lon, lat = points
    raster, boundaries = _raster(), read_boundaries()
    got = raster.locate(lon, lat)
    expected = np.full(lon.size, -1)
    for k, code in enumerate(raster.codes):
        expected[shapely.contains_xy(boundaries[code].geometry, lon, lat)] = k
    near = shapely.dwithin(_borders(), shapely.points(lon, lat), math.hypot(raster.dlon, raster.dlat))
    assert np.array_equal(got[~near], expected[~near])


def test_the_scanline_fill_counts_holes_and_islands():
    square = shapely.box(0.0, 0.0, 10.0, 10.0)
    holed = shapely.MultiPolygon([shapely.difference(square, shapely.box(3.0, 3.0, 7.0, 7.0)),
                                  shapely.box(12.0, 2.0, 14.0, 4.0)])
    mask = scanline_mask(holed, (12, 16), 0.0, 0.0, 1.0, 1.0)
    rows, cols = np.nonzero(mask)
    assert np.array_equal(mask, shapely.contains_xy(holed, *np.meshgrid(np.arange(16) + 0.5, np.arange(12) + 0.5)))
    assert mask.sum() == 100 - 16 + 4 and not mask[5, 5] and mask[2, 12] and not mask[2, 11]
    assert rows.min() == 0 and cols.max() == 13


def test_a_citys_raster_routes_to_its_partitions_and_tiles(tmp_path):
    city = load_city(data_dir() / "city" / "shanghai16.yaml", cache=tmp_path)
    raster = city.raster()
    assert raster.codes == city.partitions
    where = {name: raster.codes_of(np.array([p[0]]), np.array([p[1]]))[0] for name, (p, _) in PLACES.items()}
    assert where["Oriental Pearl Tower"] == "310115-t1" and where["People's Square"] == "310101"
    assert where["Pudong airport"] == "310115-t2"  # outside both tiles: the nearest tile (Century Park)
    assert where["Xujiahui"] == "310104"
    t2 = city.district("310115-t2").area.centroid
    assert raster.codes_of(np.array([t2.x]), np.array([t2.y]))[0] == "310115-t2"
    assert DistrictRaster.load(tmp_path / "raster-100m.npz").codes == raster.codes  # cached
    assert city.raster().shape == raster.shape


def test_a_city_of_some_districts_leaves_the_others_outside(bund4):
    raster = district_raster(bund4)
    assert raster.codes == ("310101", "310109", "310110", "310115")
    lon, lat = np.array([121.4737, 121.4365, 121.5140]), np.array([31.2304, 31.1885, 31.2995])
    assert list(raster.codes_of(lon, lat)) == ["310101", "", "310110"]


def test_the_arrays_are_those_of_the_ingest_raster():
    arrays_ = boundary_arrays(read_boundaries(), 500.0)
    raster = arrays_.raster()
    assert arrays_.index.dtype == np.int16 and raster.index.shape == arrays_.index.shape
    assert (raster.west, raster.south, raster.dlon, raster.dlat) == (arrays_.west, arrays_.south, arrays_.dlon,
                                                                     arrays_.dlat)
    with pytest.raises(ValueError, match="cell_m must be a positive"):
        district_raster(read_boundaries(), 0.0)
