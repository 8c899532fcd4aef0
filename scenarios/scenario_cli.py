"""``twin scenario run | compare | ensemble`` (wired into ``twin/cli/main.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """Add ``scenario`` with its subcommands; returns the run, compare and ensemble parsers, whose
    ``func`` returns the exit status."""
    p = subparsers.add_parser("scenario", help="what-if scenarios: run, compare, ensembles",
                              description="Fork the twin, force it (rain, crowds, traffic), intervene (pumps, "
                                          "closures), run the models forward and compare the outcomes.")
    sub = p.add_subparsers(dest="scenario_command", required=True, metavar="{run,compare,ensemble}")
    r = sub.add_parser("run", help="run a scenario file",
                       description="Run a scenario file (YAML, see data/scenarios/README.md) and write its "
                                   "NetCDF, alert timeline (CSV, GeoJSON), peak maps (PNG) and report (HTML).")
    r.add_argument("file", type=Path, help="scenario file, e.g. data/scenarios/bund-nye-2014.yaml")
    r.add_argument("-o", "--out", type=Path, required=True, help="output folder (new or empty; see --force)")
    r.add_argument("--force", action="store_true", help="write into a non-empty output folder, replacing its files")
    r.add_argument("--from-live", type=Path, metavar="STATE_DIR",
                   help="what if, starting now: start from a live twin's state folder (twin run --state), its water "
                        "and crowd and its time, instead of the file's start")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_run)
    c = sub.add_parser("compare", help="compare two scenario runs",
                       description="Differences of two runs (B - A) per metric and per area, with maps.")
    c.add_argument("a", type=Path, help="run folder A (the baseline)")
    c.add_argument("b", type=Path, help="run folder B")
    c.add_argument("-o", "--out", type=Path, help="folder for compare.json and the maps (default: B/compare-A)")
    c.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    c.set_defaults(func=_compare)
    e = sub.add_parser("ensemble", help="run many variants on Dask and combine them into exceedance maps",
                       description="Run the cartesian product of --vary values on Dask distributed (a local "
                                   "cluster by default) and write exceedance maps (ensemble.nc).")
    e.add_argument("file", type=Path, help="scenario file")
    e.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2",
                   help="a field of the file and its values, e.g. forcing.rain.design_storm.return_period=2,5,10 "
                        "(repeatable)")
    e.add_argument("-o", "--out", type=Path, required=True, help="output folder (new or empty; see --force)")
    e.add_argument("--force", action="store_true", help="write into a non-empty output folder, replacing its files")
    e.add_argument("--workers", type=int, default=2, help="local Dask workers (default 2)")
    e.add_argument("--scheduler", help="address of a Dask scheduler to use instead of a local cluster")
    e.set_defaults(func=_ensemble)
    return [r, c, e]


def _progress_bar(quiet: bool):
    """A tqdm bar over simulated minutes, with wall time and ETA; None when quiet."""
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, unit="sim-min", file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} simulated min [{elapsed}<{remaining}, {rate_fmt}]")

    shown = [-1.0]

    def progress(done_s: float, total_s: float, wall_s: float) -> None:
        if wall_s - shown[0] < 0.5 and done_s < total_s:  # redraw twice a second at most
            return
        shown[0] = wall_s
        bar.total = total_s / 60.0
        bar.n = done_s / 60.0
        bar.refresh()

    return bar, progress


def output_folder(path: Path, force: bool) -> Path:
    """Check an output folder before anything runs: not a file; empty or new unless ``force``. Creates it."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"-o {path} is a file; give a folder for the outputs")
    if path.is_dir() and not force and (held := sum(1 for _ in path.iterdir())):
        raise ValueError(f"-o {path} is not empty ({held} entr{'ies' if held != 1 else 'y'}); give a new folder or "
                         "add --force to write into it")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"-o {path}: cannot create the folder ({exc.strerror or exc})") from None
    return path


def _say_warnings(warnings) -> None:
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from scenarios.session import run_file

    output_folder(args.out, args.force)
    bar, progress = _progress_bar(args.quiet)
    try:
        summary = run_file(args.file, args.out, progress=progress, from_live=args.from_live, say=_say_warnings)
    finally:
        if bar is not None:
            bar.close()
    print(run_line(summary))
    print(f"wrote {args.out}/report.html, places.csv, scenario.nc, alerts.csv, alerts.geojson, peak maps")
    return 0


def run_line(summary: dict) -> str:
    """The one-line result of a run: peaks with their places, alerts raised."""
    from scenarios.place_metrics import peak_place

    pd_, pc = summary["peak_depth_m"], summary["peak_density"]
    rows = summary.get("places", [])
    where_d, where_c = ("" if (p := peak_place(rows, key)) is None else f" at {p['name']} ({p[at]})"
                        for key, at in (("peak_depth_m", "peak_depth_at"), ("peak_density", "peak_density_at")))
    alerts = ", ".join(f"{h} {a['raised']} (first at minute {a['first_min']:g})" for h, a in summary["alerts"].items())
    return (f"{summary['name']}: {summary['simulated_min']:.0f} simulated min in {summary['wall_s']:.0f} s; "
            f"peak depth {pd_['value']:.2f} m{where_d}, peak density {pc['value']:.2f} person/m2{where_c}; "
            f"alerts: {alerts or 'none'}")


def _compare(args: argparse.Namespace) -> int:
    from scenarios.session import compare_folders

    for folder in (args.a, args.b):
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder (a scenario run's -o folder)")
    out = args.out or args.b / f"compare-{args.a.name}"
    print(compare_folders(args.a, args.b, output_folder(out, args.force or args.out is None)))
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from scenarios.ensemble import parse_vary
    from scenarios.session import ensemble_file

    if args.workers < 1:
        raise ValueError(f"--workers {args.workers} must be >= 1")
    output_folder(args.out, args.force)
    summary = ensemble_file(args.file, parse_vary(args.vary), args.out, scheduler=args.scheduler,
                            workers=args.workers)
    print(f"{len(summary['members'])} members in {summary['wall_s']:.0f} s on {summary['workers']} workers; "
          f"wrote {args.out}/ensemble.nc (exceedance maps) and ensemble.json")
    return 0
