"""The ``twin`` command line: the composition root (the only module that may import everything).

Every command has ``--help``; bad input ends with a one-line reason on stderr and exit
status 2; anything that takes more than a few seconds shows progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or unusable input: reported in one line, exit status 2."""


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bbox must be four numbers W,S,E,N, got {text!r}") from None
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"bbox must be four numbers W,S,E,N, got {text!r}")
    return parts  # type: ignore[return-value]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


# ---------------------------------------------------------------- twin grid
def _grid_build(args: argparse.Namespace) -> int:
    from pyproj.exceptions import CRSError

    from twin.district.cityjson import CityJSONError
    from twin.district.dem import DemError
    from twin.district.grid import GridError
    from twin.district.gridfile import build_grid_file
    from twin.district.roads import network_paths, road_network_for
    from twin.district.sources import SourceError, bundled_district

    try:
        path = build_grid_file(district=args.district, source=args.source, cell=args.cell, out=args.out,
                               bbox=args.bbox, crs=args.crs, dem=args.dem, dem_crs=args.dem_crs,
                               drainage=args.drainage, progress=not args.quiet)
        network = road_network_for(path, args.source or bundled_district(args.district or "bund"))
    except (GridError, SourceError, DemError, CityJSONError, CRSError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write or read a file: {exc}") from None
    except ValueError as exc:  # bad values in the inputs (e.g. a drainage_capacity that is not a number)
        raise UsageError(str(exc)) from None
    print(f"wrote {path}")
    print(f"wrote {network_paths(path)[0]} ({len(network.links):,} road links, {len(network.nodes):,} nodes)")
    return 0


def _grid_info(args: argparse.Namespace) -> int:
    from twin.district.gridfile import describe_grid_file

    try:
        text = describe_grid_file(args.file)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc}") from None
    print(text)
    return 0


def _add_grid(sub: argparse._SubParsersAction) -> None:
    grid = sub.add_parser("grid", help="build or inspect a district's grid twin",
                          description="Build a district's grid twin (CIM layers and buildings) or inspect one.")
    gsub = grid.add_subparsers(dest="grid_command", required=True, metavar="{build,info}")
    b = gsub.add_parser("build", help="build a grid twin from vector data",
                        description="Build the static CIM layers and the building table of a district "
                                    "on a regular grid and write them to NetCDF (+ GeoParquet).")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--district", default=None, help="bundled district name (default: bund)")
    src.add_argument("--source", type=Path, help="folder with buildings.geojson and optional roads, water, "
                                                 "landuse, pois, transit layers and a DEM")
    b.add_argument("--cell", type=_positive, default=10.0, help="cell size in metres (default 10)")
    b.add_argument("--out", type=Path, required=True, help="NetCDF file to write, e.g. bund.nc")
    b.add_argument("--bbox", type=_bbox, help="W,S,E,N in degrees (default: the buildings' extent); "
                                              "write --bbox=W,S,E,N when W is negative")
    b.add_argument("--crs", default="EPSG:4549", help="projected CRS of the grid (default EPSG:4549)")
    b.add_argument("--dem", type=Path, help="ESRI ASCII DEM to use instead of the derived elevation")
    b.add_argument("--dem-crs", help="CRS of the DEM when it has no .prj beside it")
    b.add_argument("--drainage", type=Path, help="polygons with drainage_capacity (mm/h) overriding the default")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_grid_build)
    i = gsub.add_parser("info", help="summarise a grid twin file",
                        description="Print a grid twin's extent, shape, CRS and every layer with units "
                                    "and min/mean/max.")
    i.add_argument("file", type=Path, help="NetCDF file written by 'twin grid build'")
    i.set_defaults(func=_grid_info)


# ---------------------------------------------------------------- twin run
def _run(args: argparse.Namespace) -> int:
    from twin.cli.run import run_service

    try:
        return run_service(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise UsageError(str(exc)) from None


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the live twin against an MQTT broker",
                       description="Run the live twin: subscribe to the district's feeds, keep the twin current, "
                                   "score risk every tick, raise/update/cancel CAP alerts and route them to "
                                   "field units. Stops cleanly on Ctrl-C or SIGTERM.")
    r.add_argument("--broker", help="mqtt://user:pass@host:1883 or mqtts://... (TLS); without it an embedded "
                                    "broker (amqtt, MQTT 3.1.1) is started on 127.0.0.1 and a free port")
    r.add_argument("--grid", type=Path, help="twin NetCDF from 'twin grid build' (default: the Bund at 10 m, "
                                             "built once into the state folder)")
    r.add_argument("--registry", type=Path, help="device registry GeoJSON or CSV, imported into the registry database "
                   "when that holds no device; otherwise the database is the truth and the file is not read "
                   "(default: data/bund/registry.geojson; docs/guides/devices.md)")
    r.add_argument("--registry-db", metavar="URL", help="device registry database: sqlite:///path or postgresql://"
                   "user@host/db (default: --db when it is PostgreSQL, else registry.db in the state folder)")
    r.add_argument("--walkable", type=Path, metavar="FILE", help="GeoJSON polygons that override the walkable area "
                   "(railings, flood walls, temporary barriers; property walkable_fraction 0-1; "
                   "docs/science/crowd.md 1.4)")
    r.add_argument("--crowd-bands", type=Path, metavar="FILE", help="GeoJSON polygons of places with crowd density "
                   "bands of their own (stairs, ramps, bridges; properties name, kind, density_raise, density_clear, "
                   "source; e.g. data/bund/crowd-bands.geojson; docs/science/alerts.md, Per-place bands)")
    r.add_argument("--units", type=Path, metavar="FILE", help="GeoJSON polygons of the management grid units (网格) "
                   "for the city's vital signs (property id required; name, name_en, street, street_en optional; "
                   "default: generated 500 m units; docs/guides/vital-signs.md)")
    r.add_argument("--inhibit", type=Path, metavar="FILE", help="inhibition rules (YAML, Alertmanager-style; default: "
                   "the packaged twin/alerting/inhibit.yaml; docs/guides/silences-and-inhibition.md)")
    r.add_argument("--storm-max", type=int, default=10, metavar="N", help="alert storm control: at most N new alerts "
                   "per minute go to field units one by one, the rest in one summary per hazard (default 10)")
    r.add_argument("--web-base", metavar="URL", help="the dashboard's public base URL, for the CAP 'web' link of "
                   "every alert (default: http://HOST:PORT of --http when given)")
    r.add_argument("--state", type=Path, default=Path("var/twin"), help="state folder: raw log, snapshots, "
                                                                         "alert database (default var/twin)")
    r.add_argument("--db", help="alert store URL: sqlite:///path (default: in the state folder) or "
                                "postgresql://user@host/db")
    r.add_argument("--tick", type=_positive, default=1.0, help="tick period in seconds (default 1)")
    r.add_argument("--prefix", default="city/", help="MQTT topic prefix (default city/)")
    r.add_argument("--client-id", default="citytwin-bund", help="MQTT client id (fixed: the session persists)")
    r.add_argument("--protocol", choices=("5", "3.1.1"), help="MQTT protocol version (default 5; 3.1.1 with the "
                                                              "embedded broker)")
    r.add_argument("--receiver", choices=("process", "thread"), default="process",
                   help="where the MQTT subscriber runs: a child process (default: reading messages does not take the "
                        "twin's interpreter lock, about twice the throughput) or a thread of this process "
                        "(docs/liveness.md section 8)")
    r.add_argument("--buffer", type=_positive, default=500.0, help="field units within this many metres of an "
                                                                   "alert area get it (default 500)")
    r.add_argument("--snapshot-every", type=_positive, default=60.0, help="seconds between snapshots (default 60)")
    r.add_argument("--duration", type=_positive, help="stop after this many seconds")
    r.add_argument("--http", type=int, metavar="PORT", help="serve the dashboard and HTTP API on this port "
                                                            "(0: a free port; default: no HTTP)")
    r.add_argument("--http-host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                                                            "needs a token)")
    r.add_argument("--http-token", help="bearer token for HTTP writes (acknowledgements); default: the "
                                        "TWIN_HTTP_TOKEN environment variable")
    r.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="a web origin allowed to call the API from another site (repeatable; default: none)")
    r.add_argument("--unit-tokens", type=Path, metavar="FILE",
                   help="JSON object of field-unit id -> token: each unit's page (/unit) and task routes accept only "
                        "its own token (at least 8 characters, all different; docs/guides/field-unit.md)")
    r.add_argument("--open311-key", action="append", default=[], metavar="KEY",
                   help="an api_key the Open311 POST /open311/v2/requests.json accepts (repeatable; at least 8 "
                        "characters; default: none, citizen reports over HTTP refused)")
    for option, text in CASE_OPTION_HELP:
        r.add_argument(option, type=Path, metavar="FILE", help=text)
    r.add_argument("--no-cases", action="store_true", help="run without the case loop: alerts open no case, units' "
                   "task answers and citizen reports are refused (dead letters)")
    from twin.cli.city_run import add_city_options
    from twin.cli.gateway import jt808_options
    from twin.cli.run import add_clock_options

    add_clock_options(r)
    add_city_options(r)
    jt808_options(r)
    r.set_defaults(func=_run)


CASE_OPTION_HELP = (
    ("--case-rules", "case rules (YAML): which alerts open a case, of which category and priority, dispatched "
                     "automatically or not (default: the packaged twin/cases/rules.yaml; docs/guides/cases.md)"),
    ("--case-limits", "time limits of the case steps per category and priority (YAML; default: the packaged "
                      "twin/cases/limits.yaml; docs/guides/cases.md)"),
    ("--services", "the service catalogue (YAML): report categories (Open311 service codes), their duty and "
                   "priority, and the report sources (default: the packaged twin/cases/services.yaml)"),
)
"""``twin run``'s case-loop file options (twin/cli/run.py checks the files)."""


# ---------------------------------------------------------------- twin simulate, twin demo
def _guard(parser: argparse.ArgumentParser) -> None:
    """Bad values become usage errors (exit 2); a broker that cannot be reached ends with exit 1."""
    run = parser.get_default("func")

    def guarded(args: argparse.Namespace) -> int:
        try:
            return int(run(args) or 0)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(str(exc)) from None
        except ConnectionError as exc:
            print(f"twin: error: {exc}", file=sys.stderr)
            return 1

    parser.set_defaults(func=guarded)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from scenarios.simulate_cli import add_parser

    _guard(add_parser(sub))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from scenarios.demo.run import add_parser

    _guard(add_parser(sub))


def _add_scenario(sub: argparse._SubParsersAction) -> None:
    from scenarios.scenario_cli import add_parser

    for parser in add_parser(sub):  # run, compare, ensemble
        _guard(parser)


def _add_devices(sub: argparse._SubParsersAction) -> None:
    from twin.cli.devices import add_parser

    add_parser(sub)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    from twin.cli.replay import add_parser

    _guard(add_parser(sub))


def _add_city(sub: argparse._SubParsersAction) -> None:
    from twin.cli.city import add_parser

    add_parser(sub)  # twin city build: reports its own errors, exit 2


def _add_ingest_worker(sub: argparse._SubParsersAction) -> None:
    from twin.cli.worker import add_parser

    add_parser(sub)  # twin ingest-worker: bad input exit 2, NATS unreachable exit 1


def _add_city_tier(sub: argparse._SubParsersAction) -> None:
    from twin.cli.city_tier import add_serve_parser

    add_serve_parser(sub)  # twin city-tier: bad input exit 2, NATS unreachable exit 1


def _add_gateway(sub: argparse._SubParsersAction) -> None:
    from twin.cli.gateway import add_parser

    add_parser(sub)  # twin gateway jt808: bad input exit 2, cannot listen exit 1


def _add_district(sub: argparse._SubParsersAction) -> None:
    from twin.cli.district import add_parser

    add_parser(sub)  # twin district: bad input exit 2, NATS unreachable exit 1


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``twin`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="twin", description="citytwin: a live digital twin of a city district (Shanghai first).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_devices(sub)
    _add_grid(sub)
    _add_run(sub)
    _add_replay(sub)
    _add_simulate(sub)
    _add_scenario(sub)
    _add_city(sub)
    _add_ingest_worker(sub)
    _add_district(sub)
    _add_city_tier(sub)
    _add_gateway(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``twin`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("twin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter quiet at exit
        return 0

