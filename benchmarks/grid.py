"""Benchmark: building the Bund grid twin at 10 m and 5 m, and exact coverage against a plain baseline.

Run:  python benchmarks/grid.py            (add --repeat N for more runs; the median is reported)

The coverage baseline is the straightforward exact method measured in the same run on the same
data: every grid cell polygon intersected with the union of the building footprints (shapely 2,
vectorised, STRtree to skip empty cells). Ours clips large features into blocks and takes cells
wholly inside a feature without clipping.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import shapely

from twin.district.build import twin_from_sources
from twin.district.coverage import coverage_area, union_parts
from twin.district.sources import bundled_district, read_district

TARGET_5M_S = 30.0


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def baseline_coverage(grid, geoms) -> np.ndarray:
    union = shapely.union_all(geoms)
    cells = grid.cell_polygons()
    tree = shapely.STRtree(cells)
    hit = tree.query(union, predicate="intersects")
    out = np.zeros(grid.size)
    out[hit] = shapely.area(shapely.intersection(cells[hit], union))
    return out.reshape(grid.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sources = read_district(bundled_district("bund"))
    rows = []
    for cell in (10.0, 5.0):
        seconds, (ds, buildings) = timed(lambda c=cell: twin_from_sources(sources, c), args.repeat)
        rows.append((cell, ds.sizes["y"] * ds.sizes["x"], len(buildings.table), seconds))
    print(f"{'cell':>6} {'cells':>10} {'buildings':>10} {'build s':>9}")
    for cell, n, nb, s in rows:
        print(f"{cell:>5.0f}m {n:>10,} {nb:>10,} {s:>9.2f}")
    five = rows[-1][3]
    print(f"5 m build: {five:.1f} s (target < {TARGET_5M_S:.0f} s): {'met' if five < TARGET_5M_S else 'MISSED'}")

    from twin.district.dataset import grid_of

    grid = grid_of(ds)
    parts = union_parts(grid, buildings.table.geometry.to_numpy())
    ours_s, ours = timed(lambda: coverage_area(grid, parts), args.repeat)
    base_s, base = timed(lambda: baseline_coverage(grid, parts), args.repeat)
    err = float(np.abs(ours - base).max())
    print(f"building coverage at 5 m: ours {ours_s:.2f} s, baseline {base_s:.2f} s, "
          f"speed-up {base_s / ours_s:.1f}x, max difference {err:.2e} m2")


if __name__ == "__main__":
    main()
