"""Exact area-weighted coverage: totals equal the union area of the features."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.district.coverage import (
    coverage_area,
    coverage_fraction,
    overlap_areas,
    overlay_faces,
    shared_coverage,
    split_into_blocks,
    union_parts,
)
from twin.district.grid import GridSpec

GRID = GridSpec("EPSG:4549", 642000.0, 3459000.0, 10.0, 40, 60)


def _circle(x, y, r):
    return shapely.Point(GRID.x0 + x, GRID.y0 - y).buffer(r, quad_segs=32)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 650), st.floats(-50, 450), st.floats(1, 120)), min_size=1, max_size=12))
def test_coverage_sums_to_the_union_area(circles):
    geoms = [_circle(*c) for c in circles]
    expected = shapely.intersection(shapely.union_all(geoms), shapely.box(*GRID.bounds)).area
    total = coverage_area(GRID, geoms).sum()
    assert abs(total - expected) <= 1e-6 * max(expected, 1.0)
    frac = coverage_fraction(GRID, geoms)
    assert frac.min() >= 0 and frac.max() <= 1 + 1e-12


def test_a_cell_inside_a_polygon_is_fully_covered_and_one_outside_is_not():
    square = shapely.box(GRID.x0 + 100, GRID.y0 - 200, GRID.x0 + 200, GRID.y0 - 100)
    cov = coverage_fraction(GRID, [square])
    assert cov[15, 15] == 1.0 and cov[0, 0] == 0.0
    assert cov.sum() == 100.0  # 100 m x 100 m = 100 cells of 10 m
    half = shapely.box(GRID.x0 + 100, GRID.y0 - 205, GRID.x0 + 110, GRID.y0 - 200)
    assert coverage_fraction(GRID, [half])[20, 10] == 0.5


def test_large_features_are_split_without_losing_area():
    ring = _circle(300, 200, 190).difference(_circle(300, 200, 100))
    wiggly = shapely.Polygon(shapely.get_coordinates(ring.exterior.segmentize(1.0)),
                             [shapely.get_coordinates(ring.interiors[0].segmentize(1.0))])
    pieces, origin = split_into_blocks(GRID, np.array([wiggly], dtype=object), block=4)
    assert pieces.size > 10 and (origin == 0).all()
    np.testing.assert_allclose(shapely.area(pieces).sum(), wiggly.area, rtol=1e-9)
    _, cell, area = overlap_areas(GRID, [wiggly])
    np.testing.assert_allclose(area.sum(), wiggly.area, rtol=1e-9)
    per_cell = np.bincount(cell, weights=area, minlength=GRID.size)
    assert per_cell.max() <= GRID.cell_area * (1 + 1e-12)


def test_union_parts_do_not_overlap():
    geoms = [_circle(100, 100, 50), _circle(130, 100, 50)]
    parts = union_parts(GRID, geoms)
    np.testing.assert_allclose(shapely.area(parts).sum(), shapely.union_all(geoms).area, rtol=1e-12)


def test_bund_buildings_and_water_coverage_equal_their_union_area(bund10):
    ds, buildings = bund10
    from twin.district.dataset import grid_of

    grid = grid_of(ds)
    box = shapely.box(*grid.bounds)
    footprints = shapely.intersection(shapely.union_all(buildings.table.geometry.to_numpy()), box).area
    total = float(ds["building_fraction"].sum()) * grid.cell_area
    assert abs(total - footprints) / footprints < 1e-6


# ---------------------------------------------------------------- overlapping features in pieces (crowd counters)
features = st.lists(st.tuples(st.floats(-50, 650), st.floats(-50, 450), st.floats(1, 120)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(features)
def test_shared_coverage_pieces_tile_each_feature_and_never_overlap(circles):
    geoms = [_circle(*c) for c in circles]
    cover = shared_coverage(GRID, geoms)
    grid_box = shapely.box(*GRID.bounds)
    inside = np.array([shapely.intersection(g, grid_box).area for g in geoms])
    np.testing.assert_allclose(cover.feature_area(len(geoms)), inside, rtol=1e-9, atol=1e-6)
    per_cell = np.bincount(cover.piece_cell, weights=cover.piece_area, minlength=GRID.size)
    np.testing.assert_allclose(per_cell, coverage_area(GRID, geoms).ravel(), rtol=1e-9, atol=1e-6)
    owners = np.bincount(cover.owner_piece, minlength=cover.piece_cell.size)
    assert (owners >= 1).all(), "every piece is covered by some feature"
    pairs = np.unique(np.column_stack([cover.owner_piece, cover.owner_feature]), axis=0)
    assert len(pairs) == cover.owner_piece.size, "a feature covers a piece once"


def test_two_overlapping_boxes_make_three_faces_and_the_shared_one_has_both():
    a = shapely.box(GRID.x0, GRID.y0 - 10, GRID.x0 + 20, GRID.y0)
    b = shapely.box(GRID.x0 + 15, GRID.y0 - 10, GRID.x0 + 40, GRID.y0)
    faces, face, feature = overlay_faces([a, b])
    assert faces.size == 3
    both = [f for f in range(3) if set(feature[face == f]) == {0, 1}]
    assert len(both) == 1 and faces[both[0]].area == pytest.approx(50.0)
    cover = shared_coverage(GRID, [a, b])
    shared = np.flatnonzero(np.bincount(cover.owner_piece) == 2)
    assert cover.piece_cell[shared].tolist() == [1] and cover.piece_area[shared] == pytest.approx([50.0])


def test_a_sliver_of_overlap_is_a_piece_of_its_own_area():
    a = shapely.box(GRID.x0, GRID.y0 - 10, GRID.x0 + 40, GRID.y0)
    b = shapely.box(GRID.x0 + 40 - 1e-4, GRID.y0 - 10, GRID.x0 + 100, GRID.y0)
    cover = shared_coverage(GRID, [a, b])
    shared = np.flatnonzero(np.bincount(cover.owner_piece) == 2)
    assert cover.piece_cell[shared].tolist() == [3]
    assert cover.piece_area[shared] == pytest.approx([1e-3], rel=1e-6)
