"""GridSpec: projected CRS only, point -> cell against brute force, cell geometry, Beidou codes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.district import geo
from twin.district.grid import GridError, GridSpec

BUND = (121.4802, 31.2264, 121.5209, 31.2510)


@pytest.fixture(scope="module")
def grid() -> GridSpec:
    return GridSpec.from_bbox(*BUND, 25.0)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:4490", "OGC:CRS84"])
def test_geographic_crs_is_refused(crs):
    with pytest.raises(GridError, match="projected"):
        GridSpec.from_bbox(*BUND, 10.0, crs=crs)
    with pytest.raises(GridError, match="projected"):
        GridSpec(crs, 0.0, 0.0, 10.0, 5, 5)


@pytest.mark.parametrize(("crs", "share"), [("EPSG:3857", "36"), ("EPSG:2056", "")])
def test_a_crs_that_distorts_areas_here_is_refused(crs, share):
    with pytest.raises(GridError, match=f"distorts areas by {share}"):
        GridSpec.from_bbox(*BUND, 10.0, crs=crs)
    GridSpec.from_bbox(*BUND, 10.0, crs="EPSG:32651")  # UTM 51N fits


def test_huge_grids_are_refused_before_any_work():
    with pytest.raises(GridError, match="too large"):
        GridSpec.from_bbox(121.0, 31.0, 122.0, 32.0, 0.5)
    with pytest.raises(GridError, match="too large"):
        GridSpec("EPSG:4549", 0.0, 0.0, 1.0, 100_000, 100_000)


def test_crs_text_is_normalised():
    assert GridSpec("epsg:4549", 642000.0, 3459000.0, 10.0, 2, 2).crs == "EPSG:4549"


def test_bad_shape_and_cell_size_are_refused():
    with pytest.raises(GridError):
        GridSpec("EPSG:4549", 0.0, 0.0, 0.0, 5, 5)
    with pytest.raises(GridError):
        GridSpec("EPSG:4549", 0.0, 0.0, 10.0, 0, 5)
    with pytest.raises(GridError, match="bbox"):
        GridSpec.from_bbox(121.5, 31.3, 121.4, 31.2, 10.0)
    with pytest.raises(GridError, match="finite"):
        GridSpec("EPSG:4549", float("nan"), 0.0, 10.0, 5, 5)


def test_default_crs_is_shanghai_gauss_kruger(grid):
    assert grid.crs == "EPSG:4549"


def test_spec_is_frozen(grid):
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.cell_size = 5.0  # type: ignore[misc]


def test_grid_covers_the_bbox_and_is_snapped(grid):
    x, y = geo.to_projected(np.array([BUND[0], BUND[2], BUND[0], BUND[2]]),
                            np.array([BUND[1], BUND[1], BUND[3], BUND[3]]))
    xmin, ymin, xmax, ymax = grid.bounds
    assert xmin <= x.min() and xmax >= x.max() and ymin <= y.min() and ymax >= y.max()
    assert grid.x0 % grid.cell_size == 0 and grid.y0 % grid.cell_size == 0
    # no more than one spare cell on any side
    assert x.min() - xmin < grid.cell_size and xmax - x.max() < grid.cell_size


def _brute_force(grid: GridSpec, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Search every cell box for the one holding each point (half-open: west and north edges in)."""
    rows, cols = np.full(x.size, -1), np.full(x.size, -1)
    for r in range(grid.ny):
        for c in range(grid.nx):
            box = grid.cell_polygon(r, c).bounds  # (west, south, east, north)
            hit = (x >= box[0]) & (x < box[2]) & (y <= box[3]) & (y > box[1])
            rows[hit], cols[hit] = r, c
    return rows, cols


@pytest.mark.parametrize("cell", [50.0, 0.7, 3.3])
def test_point_to_cell_agrees_with_brute_force(cell):
    g = GridSpec("EPSG:4549", 642000.0, 3459000.0, cell, 12, 17)
    rng = np.random.default_rng(7)
    xmin, ymin, xmax, ymax = g.bounds
    x = rng.uniform(xmin - 4 * cell, xmax + 4 * cell, 5000)
    y = rng.uniform(ymin - 4 * cell, ymax + 4 * cell, 5000)
    # points exactly on cell edges, too
    x[:200] = g.x0 + rng.integers(0, g.nx + 1, 200) * g.cell_size
    y[200:400] = g.y0 - rng.integers(0, g.ny + 1, 200) * g.cell_size
    row, col = g.cell_of(x, y)
    brow, bcol = _brute_force(g, x, y)
    np.testing.assert_array_equal(row, brow)
    np.testing.assert_array_equal(col, bcol)
    assert ((row == -1) == (col == -1)).all()
    assert (row == -1).any(), "the sample should include outside points"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(6.4e5, 6.45e5), st.floats(allow_nan=True, allow_infinity=True)),
       st.one_of(st.floats(3.457e6, 3.46e6), st.floats(allow_nan=True, allow_infinity=True)))
def test_point_to_cell_never_wraps(x, y):
    g = GridSpec("EPSG:4549", 642000.0, 3459000.0, 50.0, 12, 17)
    row, col = g.cell_of(x, y)
    if row >= 0:
        assert g.cell_polygon(int(row), int(col)).buffer(1e-6).contains(shapely.Point(x, y))
    else:
        assert col == -1


def test_lonlat_lookup_matches_projected(grid):
    lon, lat = grid.cell_centres_lonlat()
    row, col = grid.cell_of_lonlat(lon.ravel(), lat.ravel())
    np.testing.assert_array_equal(row, np.repeat(np.arange(grid.ny), grid.nx))
    np.testing.assert_array_equal(col, np.tile(np.arange(grid.nx), grid.ny))
    assert grid.cell_of_lonlat(0.0, 0.0) == (-1, -1)


def test_cell_polygons_tile_the_grid(grid):
    polys = grid.cell_polygons()
    assert polys.shape == (grid.size,)
    np.testing.assert_allclose(shapely.area(polys), grid.cell_area)
    assert shapely.union_all(polys).equals(shapely.box(*grid.bounds))
    r, c = 3, 5
    assert polys[r * grid.nx + c].equals(grid.cell_polygon(r, c))
    assert polys[r * grid.nx + c].contains(shapely.Point(grid.x[c], grid.y[r]))


def test_cell_centres_are_inside_shanghai(grid):
    lon, lat = grid.cell_centres_lonlat()
    assert lon.shape == grid.shape
    assert BUND[0] - 0.001 < lon.min() < lon.max() < BUND[2] + 0.001
    assert BUND[1] - 0.001 < lat.min() < lat.max() < BUND[3] + 0.001


@pytest.mark.parametrize(("cell", "level"), [(10.0, 7), (50.0, 7), (100.0, 6), (200.0, 5), (5.0, 8), (1.0, 8)])
def test_beidou_level_is_the_largest_code_cell_that_fits(cell, level):
    g = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.24, cell)
    assert g.beidou_level == level


def test_beidou_code_of_every_cell_names_a_place_inside_it():
    g = GridSpec.from_bbox(121.48, 31.23, 121.49, 31.235, 20.0)
    codes = g.beidou_codes()
    assert codes.shape == g.shape
    lon, lat = g.cell_centres_lonlat()
    for r in range(0, g.ny, 5):
        for c in range(0, g.nx, 5):
            code = str(codes[r, c])
            assert code.startswith("N51H") and geo.beidou_level(code) == g.beidou_level
            west, south, east, north = geo.beidou_decode(code)
            assert west <= lon[r, c] < east and south <= lat[r, c] < north
            corners = geo.to_projected(np.array([west, east]), np.array([south, north]))
            assert np.all(np.abs(np.diff(corners[0])) <= g.cell_size)


def test_attrs_round_trip(grid):
    assert GridSpec.from_attrs(grid.to_attrs()) == grid
    with pytest.raises(GridError, match="grid_crs"):
        GridSpec.from_attrs({})
