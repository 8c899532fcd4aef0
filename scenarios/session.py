"""From a scenario file to its outputs: the grid, the forcing, the start state (baseline or a fork), the run.

A fork (``start: {snapshot: DIR}``) reads the live twin's ``live.nc`` in its state folder (the water
on the ground and the crowd density of its last snapshot) and starts the models from there. It only
reads: the live service, its snapshot and its raw log are not touched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from scenarios.compare import compare
from scenarios.forcing import Forcing, prepare
from scenarios.place_metrics import scenario_places
from scenarios.report import write_outputs
from scenarios.runner import Progress, RunResult, ScenarioModels, run_models
from scenarios.spec import Scenario, load_scenario, parse_scenario
from twin.district.dataset import load_twin
from twin.district.sources import data_dir

SUMMARY = "summary.json"


def cache_dir() -> Path:
    """Where built grids are kept between runs (``$XDG_CACHE_HOME/citytwin``, default ``~/.cache/citytwin``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "citytwin"


def cached_twin(district: str = "bund", cell_m: float = 10.0, say=print, progress: bool = False) -> Path:
    """The bundled district's twin at ``cell_m`` metres, built once into the cache (``progress``: a bar)."""
    path = cache_dir() / f"{district}-{cell_m:g}m.nc"
    if not path.is_file():
        from twin.district.gridfile import build_grid_file

        say(f"building the {district} twin at {cell_m:g} m into {path} (once; about 15 s at 10 m)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"building-{os.getpid()}-{path.name}")
        build_grid_file(out=tmp, cell=cell_m, district=district, progress=progress)
        for src in tmp.parent.glob(f"{tmp.stem}*"):  # the NetCDF and its building table, moved into place
            src.replace(path.with_name(src.name.replace(tmp.stem, path.stem)))
    return path


def grid_file(spec: Scenario) -> Path:
    """The twin file a scenario runs on."""
    if spec.grid.path is not None:
        return Path(spec.grid.path)
    return cached_twin(spec.grid.district, spec.grid.cell_m)


def road_network(twin_file: Path, say=None):
    """The road network beside a twin file (`twin.district.roads.road_network_for`: built and written there when
    missing), or None with a one-line warning when it cannot be built (e.g. a custom twin whose district sources are
    not bundled): the scenario's traffic then runs on the road cells."""
    from twin.district.roads import road_network_for

    try:
        return road_network_for(twin_file)
    except Exception as exc:  # any failure to build: the cell traffic, said in one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        (say or (lambda text: print(text, file=sys.stderr)))(
            f"warning: no road network for {twin_file} ({reason}); scenario traffic runs on road cells")
        return None


def fork_state(snapshot_dir: Path, static: xr.Dataset) -> dict[str, np.ndarray]:
    """Water depth [m] and crowd density [person m-2] of a live twin's last snapshot (read only)."""
    path = Path(snapshot_dir) / "live.nc"
    if not path.is_file():
        raise FileNotFoundError(f"start.snapshot: {path} does not exist (a live twin writes it with each snapshot)")
    with xr.open_dataset(path) as live:
        if live.sizes.get("y") != static.sizes["y"] or live.sizes.get("x") != static.sizes["x"]:
            raise ValueError(f"start.snapshot: {path} is on another grid than the scenario")
        return {name: np.nan_to_num(live[name].values.astype(float)) for name in ("water_depth", "crowd_density")
                if name in live}


def run_spec(spec: Scenario, progress: Progress | None = None, say=None) -> tuple[RunResult, Forcing]:
    """Run a validated scenario; returns the result and its forcing (``forcing.static``: the twin it ran
    on, with the interventions). ``say(warnings)`` hears the forcing's warnings before the run starts."""
    twin_file = grid_file(spec)
    static, _ = load_twin(twin_file)
    forcing = prepare(spec, static)
    if say is not None and forcing.warnings:
        say(forcing.warnings)
    start_time = spec.start_time if spec.start_time is not None else 0.0
    models = ScenarioModels(forcing, start_time, spec.seed, status=spec.status, road_network=road_network(twin_file))
    if spec.snapshot is not None:
        models.start_from(fork_state(spec.snapshot, static))
    result = run_models(models, duration_s=spec.duration_s, step_s=spec.step_s, every_s=spec.outputs.every_s,
                        progress=progress)
    return result, forcing


def run_file(path: Path, out: Path, progress: Progress | None = None, overrides: dict[str, object] | None = None,
             from_live: Path | None = None, say=None) -> dict:
    """Run a scenario file and write its outputs into ``out``; returns the headline numbers. ``from_live``: start
    from a live twin's state folder at its time (`live_overrides`); ``say(warnings)`` hears the run's warnings
    before it starts."""
    overrides = {**(overrides or {}), **(live_overrides(Path(from_live)) if from_live is not None else {})}
    spec = load_scenario(path, overrides)
    result, forcing = run_spec(spec, progress, say=say)
    return write_outputs(result, forcing.static, out, spec.name, forcing.timeline(), spec=spec,
                         warnings=forcing.warnings, grid=str(grid_file(spec)))


def live_overrides(state_dir: Path) -> dict[str, object]:
    """The fields that make a scenario start from a live twin now ("what if, starting now"): its state folder as
    the start and its snapshot's time (``live.nc``'s ``snapshot_time``, else the file's modification time) as the
    start time, in Shanghai time (+08:00). Times in the file are then offsets from that moment."""
    live = state_dir / "live.nc"
    if not live.is_file():
        raise FileNotFoundError(f"--from-live {state_dir}: no live.nc there (a live twin's --state folder holds "
                                "live.nc and snapshot.pkl after its first snapshot)")
    with xr.open_dataset(live) as ds:
        when = float(ds.attrs.get("snapshot_time", live.stat().st_mtime))
    moment = dt.datetime.fromtimestamp(round(when), dt.timezone(dt.timedelta(hours=8)))
    return {"start": {"snapshot": str(state_dir.resolve())}, "start_time": moment.isoformat()}


def run_document(doc: dict, source: str) -> tuple[RunResult, Forcing]:
    """Run a scenario given as a parsed document (an ensemble member); ``source`` is its file."""
    return run_spec(parse_scenario(doc, Path(source).parent, source))


def compare_folders(a: Path, b: Path, out: Path) -> str:
    """Compare two run folders (their grid from A's summary); returns the printed table."""
    summary = json.loads((a / SUMMARY).read_text()) if (a / SUMMARY).is_file() else {}
    if "grid" not in summary:
        raise FileNotFoundError(f"{a} is not a scenario run folder: {SUMMARY} with its grid is missing")
    static, _ = load_twin(Path(summary["grid"]))
    return compare(a, b, static, out)


def ensemble_file(path: Path, vary: dict[str, list[object]], out: Path, *, scheduler: str | None = None,
                  workers: int = 2) -> dict[str, object]:
    """Run the ensemble of a scenario file (see `scenarios.ensemble`)."""
    from scenarios.ensemble import members, run_ensemble
    from scenarios.spec import read_text, read_yaml, resolve_extends

    source = str(path)
    doc = resolve_extends(read_yaml(read_text(Path(path), source), source), Path(path).parent, source=source)
    for _, member in members(doc, vary):  # every member is checked before anything runs
        parse_scenario(member, Path(path).parent, source)
    spec = load_scenario(path)
    static, _ = load_twin(grid_file(spec))
    road_network(grid_file(spec))  # built once here, so the workers only read it
    places = scenario_places(static, data_dir() / spec.grid.district, spec)
    return run_ensemble(doc, source, vary, static, out, scheduler=scheduler, workers=workers, places=places)
