"""Restart from a snapshot against a fresh start: time to the first tick, each in a new process.

A live twin of the Bund at 10 m runs a story (crowd, storm, loop detectors, vehicles, units) for some
ticks and writes its snapshot (`twin.live.snapshot`). Then, in new Python processes (so nothing is
warm but the numba cache on disk, as after a real restart), the time from process start to the end
of the first tick is measured for

(a) a fresh start: load the twin file and the registry, build the core, run one tick;
(b) a restart: the same, plus reading the snapshot and restoring it before the tick.

Reported: the median of each over the repeats, and (b) - (a). Target (issue 13): (b) - (a) <= 2 s.
A snapshot holds no compiled function, so a restored twin's kernels load from the same cache as a
fresh one's.

    python benchmarks/restart.py            # 5 repeats
    python benchmarks/restart.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from ingest.batch import Batch  # noqa: E402
from ingest.registry import load_registry  # noqa: E402
from twin.alerting.store import Store  # noqa: E402
from twin.district.dataset import grid_of, load_twin  # noqa: E402
from twin.district.sources import data_dir  # noqa: E402
from twin.live import snapshot  # noqa: E402
from twin.live.core import CoreConfig, TwinCore  # noqa: E402

T0 = 1_735_689_600.0
TICK_S = 60.0
REGISTRY = data_dir() / "bund" / "registry.geojson"

CHILD = """
import sys, time
t0 = time.perf_counter()
from pathlib import Path
from ingest.registry import load_registry
from twin.alerting.store import Store
from twin.district.dataset import grid_of, load_twin
from twin.live import snapshot
from twin.live.core import CoreConfig, TwinCore
grid, registry, state, t = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
static, _ = load_twin(grid)
core = TwinCore(static, load_registry(registry), Store.open(":memory:"), CoreConfig())
if state:
    core.restore_state(snapshot.read(Path(state), grid_of(static)).state)
core.on_tick(t)
print(time.perf_counter() - t0)
"""


def _story(core: TwinCore, registry, ticks: int) -> None:
    """A crowd swelling, a storm and slowing loops, so the snapshot carries alerts and model state."""
    crowd = [d.id for d in registry.of_kind("crowd")]
    gauges = [d.id for d in registry.of_kind("rain")]
    loops = [d.id for d in registry.of_kind("traffic")]
    for k in range(ticks):
        t = T0 + TICK_S * k
        core.on_batch(Batch.build(len(crowd), device=np.array(crowd, dtype=object), t=t, quantity="count",
                                  value=np.full(len(crowd), 300 + 5000.0 * k / ticks)))
        core.on_batch(Batch.build(len(gauges), device=np.array(gauges, dtype=object), t=t, quantity="rain",
                                  value=np.full(len(gauges), 80.0)))
        core.on_batch(Batch.build(len(loops), device=np.array(loops, dtype=object), t=t, quantity="speed",
                                  value=np.full(len(loops), 45.0 - 30.0 * k / ticks)))
        core.on_tick(t)


def _child(grid: Path, state: Path | None, t: float) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(grid), str(REGISTRY), str(state or ""), str(t)],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="processes per variant (default 5)")
    parser.add_argument("--ticks", type=int, default=20, help="ticks of story before the snapshot (default 20)")
    args = parser.parse_args(argv)
    from twin.district.gridfile import build_grid_file

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grid = build_grid_file(out=work / "bund10.nc", cell=10.0, district="bund", progress=False)
        static, _ = load_twin(grid)
        registry = load_registry(REGISTRY)
        core = TwinCore(static, registry, Store.open(":memory:"), CoreConfig())
        _story(core, registry, args.ticks)
        state = work / "state"
        state.mkdir()
        started = time.perf_counter()
        path = snapshot.write(state, core.save_state(), grid_of(static), (0, 0), time.time())
        write_s = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6
        t_next = T0 + TICK_S * args.ticks
        _child(grid, None, t_next)  # warm the numba cache on disk once, as a deployed twin has it
        fresh, restored = [], []
        for _ in range(args.repeats):  # interleaved, so a busy moment hits both alike
            fresh.append(_child(grid, None, t_next))
            restored.append(_child(grid, state, t_next))
    a, b = statistics.median(fresh), statistics.median(restored)
    print(f"Bund at 10 m, {args.ticks} ticks of story, {len(core.active_alerts())} alerts active at the snapshot")
    print(f"snapshot: {size_mb:.1f} MB, written in {write_s:.2f} s")
    print(f"(a) fresh start to the first tick:   median {a:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in fresh)})")
    print(f"(b) restart from the snapshot:       median {b:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in restored)})")
    print(f"(b) - (a) = {b - a:.2f} s (target <= 2 s): {'met' if b - a <= 2.0 else 'MISSED'}; (b)/(a) = {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
