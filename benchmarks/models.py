"""Benchmarks of the model kernels, each figure a ratio against a baseline measured in the same run.

1. Flood: our local inertial kernels vs landlab's OverlandFlow (de Almeida scheme, Cython) on the same
   512 x 512 grid, rain and fixed dt, in cell-updates per second; ours serial, and the ``prange`` variant
   on 1 and 2 numba threads. Targets: >= 1.0x landlab on one thread, >= 1.6x on two.
2. Risk tick: the fused kernel (all hazards, risk, levels, state machine, composite) on a 2.5 M-cell grid
   (Shanghai at 50 m) vs a numpy STREAM triad (a = b + s c, 24 bytes per element) over the same number of
   bytes the tick touches: the memory-bandwidth yardstick. Target: within 1.5x of it. The same maths as
   numpy expressions (models.reference.risk) is timed on a slice and scaled per cell.

Run: ``python benchmarks/models.py`` (``--quick`` for a short run). Needs the ``bench`` extra (landlab).
The machine is shared: thread counts are set explicitly and only ratios measured in one run are meaningful.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

# Run as a script, this file's directory comes first on sys.path and "models" would be this file.
_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

import numba  # noqa: E402
import numpy as np  # noqa: E402

from models import FloodConfig, FloodModel, RiskConfig, tick_params  # noqa: E402
from models.kernels import risk as rk  # noqa: E402
from models.reference import risk as rref  # noqa: E402


def best_of(fn, repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls [s] (the least disturbed by the other users)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ----------------------------------------------------------------------------------------- flood
def flood_case(n: int, dx: float):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:n, 0:n] * dx
    z = 0.002 * xx + 0.001 * yy + rng.uniform(0, 0.05, (n, n))
    return z


def bench_flood(n: int, steps: int, dt: float, repeat: int) -> list[tuple[str, float, float]]:
    import xarray as xr
    from landlab import RasterModelGrid
    from landlab.components import OverlandFlow

    dx, rain_mm_h, h0 = 5.0, 50.0, 0.01
    z = flood_case(n, dx)
    rows = []

    def run_landlab():
        grid = RasterModelGrid((n, n), xy_spacing=dx)
        grid.add_field("topographic__elevation", z.ravel().copy(), at="node")
        grid.add_field("surface_water__depth", np.full(n * n, h0), at="node")
        grid.set_closed_boundaries_at_grid_edges(True, True, True, True)
        of = OverlandFlow(grid, rainfall_intensity=rain_mm_h / 3.6e6)
        t0 = time.perf_counter()
        for _ in range(steps):
            of.overland_flow(dt=dt)
        return time.perf_counter() - t0, grid.number_of_core_nodes, float(grid.at_node["surface_water__depth"].mean())

    times = [run_landlab() for _ in range(repeat)]
    t_ll, cells_ll, depth_ll = min(times)[0], times[0][1], times[0][2]
    rows.append(("landlab OverlandFlow (Cython)", cells_ll * steps / t_ll, depth_ll))

    coords = {"y": np.arange(n) * dx, "x": np.arange(n) * dx}
    zero = np.zeros((n, n))
    ds = xr.Dataset({"elevation": (("y", "x"), z), "building_fraction": (("y", "x"), zero),
                     "water_mask": (("y", "x"), np.zeros((n, n), np.int8)),
                     "runoff_coefficient": (("y", "x"), np.ones((n, n))),
                     "drainage_capacity": (("y", "x"), zero)}, coords=coords)
    variants = [("citytwin serial kernels", False, 1), ("citytwin prange, 1 thread", True, 1),
                ("citytwin prange, 2 threads", True, 2)]
    for label, parallel, threads in variants:
        numba.set_num_threads(threads)
        model = FloodModel(ds, FloodConfig(boundary="closed"), parallel=parallel, depth=np.full((n, n), h0))
        model.set_rain(rain_mm_h)
        model._substep(dt, 0.0)  # compile / load from cache outside the timing

        def run(model=model):
            for _ in range(steps):
                model._substep(dt, model.time)

        t = best_of(run, repeat)
        rows.append((label, n * n * steps / t, float(model.h.mean())))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return rows


# ------------------------------------------------------------------------------------------ risk
def tick_inputs(n: int, seed: int = 0):
    """Plausible city-wide inputs: mostly quiet cells with hot spots and a little missing data."""
    rng = np.random.default_rng(seed)
    rho = rng.exponential(0.2, n)
    hot = rng.random(n) < 0.01
    rho[hot] = rng.uniform(2.0, 6.0, hot.sum())
    rate = rng.normal(0, 1e-4, n)
    pres = np.where(hot, rng.uniform(0, 0.04, n), np.nan)
    depth = np.where(rng.random(n) < 0.05, rng.uniform(0, 0.6, n), 0.0)
    hv = depth * rng.uniform(0, 1.0, n)
    r1 = np.full(n, 0.030)
    r6 = np.full(n, 0.045)
    rclass = np.where(rng.random(n) < 0.3, rng.integers(1, 5, n), 0).astype(np.int8)
    vff = np.where(rclass > 0, rng.uniform(30, 80, n), 0.0) / 3.6
    speed = np.where(rclass > 0, vff * rng.uniform(0.2, 1.1, n), np.nan)
    vuln = rng.uniform(0, 1, n)
    for a in (rho, depth, speed):
        a[rng.random(n) < 0.01] = np.nan
    return rho, rate, pres, depth, hv, r1, r6, speed, vff, rclass, vuln


def tick_state(n: int):
    return [np.zeros((3, n), np.int8), np.zeros((3, n), np.int8), np.zeros((3, n), np.int8),
            np.zeros((3, n), np.int16), np.zeros((3, n), np.int16), np.zeros((3, n), np.uint32),
            np.zeros((3, n), np.int8), np.zeros(n, np.int8)]


def bench_risk(n: int, repeat: int, ref_cells: int) -> tuple[list[tuple[str, float]], float, int]:
    inputs = tick_inputs(n)
    pp = tick_params(RiskConfig())
    params = (pp["p"], pp["thr"], pp["tthr"], pp["road_exp"], pp["ticks"])
    state = tick_state(n)
    risk = np.empty((3, n))
    changed = np.empty(n, np.int8)
    in_bytes = sum(a.nbytes for a in inputs)
    state_bytes = sum(a.nbytes for a in state)
    nbytes = in_bytes + risk.nbytes + changed.nbytes + 2 * state_bytes  # state is read and written
    m = nbytes // 24
    arr = {"a": np.empty(m), "b": np.ones(m), "c": np.full(m, 2.0)}

    def triad():
        np.multiply(arr["c"], 3.0, out=arr["a"])
        np.add(arr["a"], arr["b"], out=arr["a"])

    rows = [("numpy triad a = b + s c (same bytes)", best_of(triad, repeat))]
    arr.clear()
    for label, kernel, threads in [("fused risk tick, serial", rk.risk_tick, 1),
                                   ("fused risk tick, prange 2 threads", rk.risk_tick_par, 2)]:
        numba.set_num_threads(threads)
        st = tick_state(n)
        kernel(*inputs, *params, risk, *st[:7], st[7], changed)  # warm-up, state now evolves

        def run(kernel=kernel, st=st):
            kernel(*inputs, *params, risk, *st[:7], st[7], changed)

        rows.append((label, best_of(run, repeat)))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    k = min(ref_cells, n)
    sub = tuple(x[:k].copy() for x in inputs)
    st = tick_state(k)
    r_sub, ch_sub = np.empty((3, k)), np.empty(k, np.int8)
    t_ref = best_of(lambda: rref.risk_tick(*sub, *params, r_sub, *st[:7], st[7], ch_sub), max(1, repeat // 2))
    rows.append((f"same maths as numpy expressions (scaled from {k:,} cells)", t_ref * n / k))
    return rows, nbytes / 1e6, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (about 30 s)")
    ap.add_argument("--no-landlab", action="store_true", help="skip the landlab comparison")
    args = ap.parse_args(argv)
    steps, repeat = (20, 2) if args.quick else (100, 3)
    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads max, numpy {np.__version__}")

    print("\n== Flood: 512 x 512 cells, dx 5 m, 50 mm/h rain, fixed dt 1.0 s, "
          f"{steps} steps, closed edges, best of {repeat} ==")
    if args.no_landlab:
        print("(skipped)")
    else:
        rows = bench_flood(512, steps, 1.0, repeat)
        base = rows[0][1]
        print(f"{'variant':40s} {'M cell-updates/s':>17s} {'vs landlab':>11s} {'mean depth m':>13s}")
        for label, rate, depth in rows:
            print(f"{label:40s} {rate / 1e6:17.1f} {rate / base:10.2f}x {depth:13.6f}")

    n = 1600 * 1600
    rows, mbytes, n = bench_risk(n, repeat, 250_000 if args.quick else 500_000)
    print(f"\n== Risk tick: {n:,} cells (Shanghai at 50 m), {mbytes:.0f} MB touched per tick, best of {repeat} ==")
    base = rows[0][1]
    print(f"{'variant':55s} {'time ms':>9s} {'/ triad':>8s} {'GB/s':>7s}")
    for label, t in rows:
        print(f"{label:55s} {t * 1e3:9.1f} {t / base:7.2f}x {mbytes / 1e3 / t:7.1f}")
    times = {label: t for label, t in rows}
    print("\nratios: fused serial / triad = {:.2f}, fused 2 threads / triad = {:.2f}, numpy maths / fused 2 threads = "
          "{:.0f}".format(times["fused risk tick, serial"] / base, times["fused risk tick, prange 2 threads"] / base,
                          rows[-1][1] / times["fused risk tick, prange 2 threads"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
