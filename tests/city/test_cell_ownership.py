"""Which district twin owns a cell (`twin.city.districts.cell_owners`, docs/guides/city.md): the cell centre's
district, its edge included, the smallest partition key on a tie, so every cell of the city's ground is owned by
exactly one twin.

The rule on hand-made areas (hypothesis: borders and overlaps on lines of cell centres), then on the four bund4
district grids (the session's build, tests/city/conftest.py), whose ``in_district`` masks must not overlap and must
cover every cell of their grids whose centre lies in the city's ground.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.city.districts import OWNERSHIP_RULE, cell_owners, owned_cells
from twin.district.dataset import grid_of
from twin.district.grid import GridSpec

HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WAIBAIDU_BRIDGE = (121.4857, 31.2453)
"""A point of the Waibaidu Bridge deck, over Suzhou Creek on the Huangpu-Hongkou border. [degree]"""


# ---------------------------------------------------------------- the rule on hand-made areas
def centres(n: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Points at whole coordinates 0..n-1 on both axes: the centres of a lattice of unit cells."""
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    return x, y


@HYP
@given(split=st.integers(1, 19), overlap=st.integers(0, 3), names=st.permutations(["310101", "310109", "310110"]))
def test_every_centre_of_the_union_has_exactly_one_owner_the_smallest_key_on_a_tie(split, overlap, names):
    # three areas side by side on the lattice: a | b | c, a and b sharing the column x = split (centres on it) or
    # overlapping by `overlap` columns; b and c sharing the row y = 10
    a = shapely.box(0, 0, split + overlap, 20)
    b = shapely.box(split, 0, 20, 10)
    c = shapely.box(split, 10, 20, 20)
    areas = dict(zip(names, (a, b, c), strict=True))
    x, y = centres()
    keys, owner = cell_owners(areas, x, y)
    assert keys == sorted(areas)
    union = shapely.union_all([a, b, c])
    assert np.array_equal(owner >= 0, shapely.intersects_xy(union, x, y))  # the whole lattice: one owner each
    held = {k: shapely.intersects_xy(areas[k], x, y) for k in keys}
    for k, key in enumerate(keys):
        others = [held[o] for o in keys[:k]]
        first = held[key] & ~np.logical_or.reduce(others) if others else held[key]
        assert np.array_equal(owner == k, first), "a cell held by several areas goes to the smallest key"
        assert np.array_equal(owned_cells(areas, key, x, y), owner == k)
    tie = (x >= split) & (x <= split + overlap) & (y < 10)  # held by a and b alone: the smaller key of the two
    assert (owner[tie] == keys.index(min(names[0], names[1]))).all()
    corner = (x >= split) & (x <= split + overlap) & (y == 10)  # held by all three
    assert (owner[corner] == 0).all()


def test_points_in_no_area_and_areas_far_away_own_nothing():
    x, y = centres(5)
    keys, owner = cell_owners({"310101": shapely.box(100, 100, 101, 101), "310109": shapely.box(0, 0, 1.5, 1.5)},
                              x, y)
    assert keys == ["310101", "310109"]
    assert sorted(map(tuple, np.argwhere(owner == 1).tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (owner[2:, :] == -1).all() and (owner[:, 2:] == -1).all() and not (owner == 0).any()
    assert cell_owners({"310101": shapely.box(0, 0, 1, 1)}, np.zeros(0), np.zeros(0))[1].size == 0


# ---------------------------------------------------------------- the four bund4 district grids
def _frame(grids: list[GridSpec]) -> GridSpec:
    """The smallest grid on the same lattice holding every grid."""
    g0 = grids[0]
    x0, y0 = min(g.x0 for g in grids), max(g.y0 for g in grids)
    x1 = max(g.x0 + g.nx * g.cell_size for g in grids)
    y1 = min(g.y0 - g.ny * g.cell_size for g in grids)
    return GridSpec(g0.crs, x0, y0, g0.cell_size, round((y0 - y1) / g0.cell_size), round((x1 - x0) / g0.cell_size))


def _offset(grid: GridSpec, frame: GridSpec) -> tuple[int, int]:
    dr, dc = (frame.y0 - grid.y0) / grid.cell_size, (grid.x0 - frame.x0) / grid.cell_size
    assert dr == round(dr) and dc == round(dc), "the district grids lie on one lattice"
    return round(dr), round(dc)


@pytest.mark.slow  # the session's bund4 build: about 10 s, once
def test_the_four_districts_own_every_cell_of_the_citys_ground_once(bund4_built):
    city, report = bund4_built
    twins = {d.partition: d.twin()[0] for d in city.districts}
    grids = {p: grid_of(ds) for p, ds in twins.items()}
    frame = _frame(list(grids.values()))
    owners = np.zeros(frame.shape, np.int64)   # how many twins own each cell
    in_grids = np.zeros(frame.shape, bool)     # the cell is in some district grid
    owner_of = np.full(frame.shape, "", dtype=object)
    for partition, ds in twins.items():
        grid = grids[partition]
        r, c = _offset(grid, frame)
        mine = ds["in_district"].values == 1
        owners[r:r + grid.ny, c:c + grid.nx] += mine
        in_grids[r:r + grid.ny, c:c + grid.nx] = True
        owner_of[r:r + grid.ny, c:c + grid.nx][mine] = partition
        lon, lat = grid.cell_centres_lonlat()
        assert np.array_equal(mine, owned_cells(city.areas, partition, lon, lat)), "the layer is the rule"
        assert int(mine.sum()) == next(d.cells for d in report.districts if d.partition == partition)
        assert "smallest partition key" in ds["in_district"].attrs["long_name"]
    assert owners.max() == 1, "no cell is owned by two district twins"
    lon, lat = frame.cell_centres_lonlat()
    ground = shapely.intersects_xy(shapely.union_all(list(city.areas.values())), lon, lat)
    assert np.array_equal(owners == 1, in_grids & ground), "every cell of the city's ground in a grid has an owner"
    # the Waibaidu Bridge deck: its cells go to Huangpu south of the border line, to Hongkou north of it
    deck = shapely.Point(*WAIBAIDU_BRIDGE).buffer(0.0004)
    on_deck = shapely.intersects_xy(deck, lon, lat) & (owners == 1)
    assert set(owner_of[on_deck]) == {"310101", "310109"}
    for code in ("310101", "310109"):
        cells = on_deck & (owner_of == code)
        assert shapely.intersects_xy(city.areas[code], lon[cells], lat[cells]).all()


@pytest.mark.slow
def test_the_rule_is_part_of_the_grid_digest(bund4_built):
    city, _ = bund4_built
    huangpu = city.district("310101")
    assert OWNERSHIP_RULE.startswith("centre in area")
    assert huangpu.is_built(network=False)
    neighbours = [key for key, _ in huangpu._neighbours()]
    assert "310109" in neighbours and "310101" not in neighbours, "Hongkou reaches into Huangpu's rectangle"
