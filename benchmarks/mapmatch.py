"""Benchmark of HMM map matching: fixes matched per second, as a ratio against a baseline in the same run.

A synthetic street grid of 16 x 17 intersections 100 m apart, every street two-way: 1,022 directed links. 500
vehicles drive random routes at 10 m/s, one fix every 5 s with 5 m Gaussian noise, fed interleaved by time to
``MapMatcher.push`` (online, lag 2) as the live twin would. The same fixes are matched by a matcher whose geometric
kernels are the numpy references of ``models.reference.mapmatch`` (the baseline; same routes, same HMM, same
scipy routing), timed on the first 3,000 fixes (it brute-forces every link per fix). Reported: fixes/s of
each, the ratio, and the share of fixes on the true link.

Run: ``nice -n 19 python benchmarks/mapmatch.py`` (``--quick``: 100 vehicles). The machine is shared: only the
ratio measured in one run is meaningful.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402

from models.mapmatch import MapMatcher, RoadGraph, route_positions, synthetic_grid  # noqa: E402
from models.reference import mapmatch as rmm  # noqa: E402


def fleet(g: RoadGraph, n_vehicles: int, duration: float, dt: float, sigma: float, seed: int = 0):
    """Interleaved fixes (t, vehicle, x, y, speed, course, true link) of vehicles on random routes."""
    rng = np.random.default_rng(seed)
    rows = []
    for veh in range(n_vehicles):
        route = [int(rng.integers(g.n_links))]
        while g.link_length[route].sum() < 10.0 * duration + 200:
            nxt = np.flatnonzero((g.link_u == g.link_v[route[-1]]) & (g.link_v != g.link_u[route[-1]]))
            route.append(int(rng.choice(nxt)))
        t = np.arange(0.0, duration, dt) + rng.uniform(0, dt)
        x, y, link, h = route_positions(g, route, rng.uniform(5, 60) + 10.0 * (t - t[0]))
        course = (90.0 - np.degrees(h)) % 360.0
        for k in range(t.size):
            rows.append((t[k], veh, x[k] + rng.normal(0, sigma), y[k] + rng.normal(0, sigma), 10.0, course[k],
                         link[k]))
    rows.sort()
    return rows


def run(g: RoadGraph, rows) -> tuple[float, float]:
    """(fixes per second, share on the true link) of online matching."""
    mm = MapMatcher(g)
    truth = {(r[1], r[0]): r[6] for r in rows}
    t0 = time.perf_counter()
    out = []
    for t, veh, x, y, v, c, _ in rows:
        out += mm.push(veh, t, x, y, v, c)
    out += mm.flush()
    wall = time.perf_counter() - t0
    hit = np.mean([truth[(m.vehicle, m.t)] == m.link for m in out])
    return len(rows) / wall, float(hit)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_veh = 100 if args.quick else 500
    arrays = synthetic_grid(16, 17, 100.0)
    fast, slow = RoadGraph(**arrays), RoadGraph(**arrays, kernels=rmm)
    rows = fleet(fast, n_veh, 300.0, 5.0, 5.0)
    run(fast, rows[:2000])  # compile and warm the route cache's code paths
    rate, hit = run(fast, rows)
    rate_ref, hit_ref = run(slow, rows[:3000])  # the baseline is slow: its rate on the first 3,000 fixes
    print(f"map matching: {fast.n_links} links, {n_veh} vehicles, {len(rows)} fixes at 5 s, 5 m noise")
    print(f"  numba kernels : {rate:9.0f} fixes/s, {hit:.3f} on the true link")
    print(f"  numpy baseline: {rate_ref:9.0f} fixes/s, {hit_ref:.3f} on the true link (first 3,000 fixes)")
    print(f"  ratio         : {rate / rate_ref:.1f}x; live need at 500 vehicles / 5 s: 100 fixes/s "
          f"({rate / 100.0:.0f}x headroom)")


if __name__ == "__main__":
    main()
