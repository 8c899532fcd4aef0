"""Scenario speed: simulated time per wall time, and the ensemble speed-up on Dask workers.

1. The Bund on New Year's Eve with a 5-year storm and a pump station down (all hazards on: flood,
   crowd flow, traffic queues, risk and alerts), 10 m cells, ``--hours`` hours (default 6; the
   crowd's file covers 2 h, the rest is the storm's aftermath and the dispersal). Target: 6 h in
   under 5 minutes on this machine.
2. The same at 5 m cells for ``--minutes-5m`` minutes (default 30), as simulated / wall.
3. An ensemble of four members (storm return periods 2, 5, 10, 20 years, 30 minutes each, 10 m) on
   one Dask worker and on two: the speed-up of two workers over one, measured in the same run.

Run: ``python benchmarks/scenarios.py`` (grids are built once into the cache). The machine is shared:
only the ratios measured in one run are meaningful.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

from scenarios.session import cached_twin, run_spec  # noqa: E402
from scenarios.spec import load_scenario  # noqa: E402

FILES = pathlib.Path(__file__).resolve().parents[1] / "data" / "scenarios"


def speed(cell_m: float, minutes: float) -> tuple[float, float]:
    """(simulated s, wall s) of the storm-and-crowd scenario on the Bund at ``cell_m``; runs shorter than
    the file's 2 hours keep the arrivals and drop the gatherings (which peak later)."""
    grid = cached_twin("bund", cell_m)
    overrides: dict[str, object] = {"duration": f"{minutes:g}min", "grid": str(grid)}
    if minutes < 120:
        overrides["forcing.crowd.gathering"] = []
    spec = load_scenario(FILES / "storm-5yr-pump-down.yaml", overrides)
    t0 = time.perf_counter()
    result, _ = run_spec(spec)
    wall = time.perf_counter() - t0
    print(f"  {cell_m:g} m: {minutes:g} simulated min in {wall:.1f} s wall = {minutes * 60 / wall:.1f}x real time; "
          f"alerts raised {sum(1 for _, e in result.events if e.kind == 'raised')}, "
          f"water balance {result.balance['water']:.1e}, people {result.balance['people']:.1e}", flush=True)
    return minutes * 60, wall


def ensemble_wall(workers: int, folder: pathlib.Path) -> float:
    """Wall seconds of the four-member storm ensemble on ``workers`` local Dask workers."""
    from scenarios.session import ensemble_file

    grid = cached_twin("bund", 10.0)
    storm = folder / "storm.yaml"
    storm.write_text(f"name: storm\ngrid: {grid}\nstart_time: 2025-07-01T18:00:00+08:00\nduration: 30min\n"
                     "forcing:\n  rain:\n    design_storm: {return_period: 5, duration: 30min}\n")
    t0 = time.perf_counter()
    ensemble_file(storm, {"forcing.rain.design_storm.return_period": [2, 5, 10, 20]}, folder / f"w{workers}",
                  workers=workers)
    wall = time.perf_counter() - t0
    print(f"  ensemble of 4 on {workers} worker(s): {wall:.1f} s", flush=True)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours at 10 m (default 6; 0 skips)")
    parser.add_argument("--minutes-5m", type=float, default=30.0, help="simulated minutes at 5 m (default 30; 0 skips)")
    args = parser.parse_args()
    print("1. storm and crowd on the Bund")
    if args.hours > 0:
        _, wall = speed(10.0, args.hours * 60)
        print(f"   10 m: {args.hours:g} h in {wall / 60:.1f} min (target < 5 min): {'met' if wall < 300 else 'MISSED'}")
    if args.minutes_5m > 0:
        speed(5.0, args.minutes_5m)
    print("2. ensemble speed-up")
    with tempfile.TemporaryDirectory() as tmp:
        one = ensemble_wall(1, pathlib.Path(tmp))
        two = ensemble_wall(2, pathlib.Path(tmp))
    print(f"   2 workers vs 1: {one / two:.2f}x faster")


if __name__ == "__main__":
    main()
