"""``twin city build MANIFEST``: build and cache every district twin of a city manifest (docs/guides/city.md).

Registered by `twin.cli.main` through `add_parser`. Bad input (a manifest with problems, a bad option) ends with
the problems on stderr and exit status 2; progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _build(args: argparse.Namespace) -> int:
    from ingest.registry import RegistryError
    from twin.city.boundaries import BoundaryError
    from twin.city.city import load_city, summary_table
    from twin.city.manifest import ManifestError

    try:
        city = load_city(args.manifest, args.cache)
    except (ManifestError, BoundaryError) as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return 2
    only = set(args.district or ())
    unknown = sorted(only - set(city.partitions))
    if unknown:
        print(f"twin: error: no district {', '.join(unknown)} in {args.manifest}; districts: "
              f"{', '.join(city.partitions)}", file=sys.stderr)
        return 2
    started = time.perf_counter()

    def progress(partition: str, step: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:6.1f} s] {partition}: {step}", file=sys.stderr, flush=True)

    if not args.quiet:
        print(f"building {len(city.districts)} district twins of {city.name_en} into {city.cache}", file=sys.stderr)
    try:
        report = city.build(force=args.force, network=not args.no_network, progress=progress,
                            only=only or None)
        city.raster(args.raster_cell)
    except RegistryError as exc:
        print(f"twin: error: the city's device registries: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(report))
    print(f"cache: {city.cache} (district raster: {city.cache / f'raster-{args.raster_cell:g}m.npz'})")
    return 0


def _cell(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of metres, got {text!r}") from None
    if not 1.0 <= value <= 10_000.0:
        raise argparse.ArgumentTypeError(f"must be from 1 to 10000 m, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``twin city`` (with ``build``) to the ``twin`` subcommands; returns the ``build`` parser."""
    city = sub.add_parser("city", help="build a city's district twins from a city manifest",
                          description="The city deployment's districts (docs/guides/city.md).")
    csub = city.add_subparsers(dest="city_command", required=True, metavar="{build}")
    b = csub.add_parser("build", help="build and cache every district's grid twin and device registry",
                        description="Build (or find in the cache) every district twin of a city manifest: its "
                                    "sources (real OpenStreetMap data cut to the district, or a synthetic "
                                    "district), grid twin, road network and device registry, and the city's "
                                    "district raster. Prints a table of the districts.")
    b.add_argument("manifest", type=Path, help="city manifest (YAML), e.g. data/city/bund4.yaml")
    b.add_argument("--cache", type=Path, default=None,
                   help="folder to build into (default var/city/<manifest name>)")
    b.add_argument("--district", action="append", metavar="KEY",
                   help="build only this district (partition key, e.g. 310101 or 310115-t2); repeatable")
    b.add_argument("--force", action="store_true", help="rebuild even what the cache holds")
    b.add_argument("--no-network", action="store_true", help="skip the road networks (faster)")
    b.add_argument("--raster-cell", type=_cell, default=100.0, help="district raster cell in metres (default 100)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress")
    b.set_defaults(func=_build)
    return b
