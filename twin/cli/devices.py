"""``twin devices``: the device registry in its database (docs/guides/devices.md).

``twin devices import FILE`` (GeoJSON or CSV), ``twin devices list``, ``twin devices show ID`` and ``twin devices
retire ID``, on the registry database of ``--db`` (default ``var/twin/registry.db``, where ``twin run`` keeps it
with its default state folder; a running twin on the same database picks the changes up within its poll period).
Bad input ends with the problems on stderr and exit status 2; a database that cannot be reached, with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from ingest.registry import DEVICE_KINDS, STATUSES, RegistryError
from ingest.registry_db import DeviceConflict, RegistryStore, UnknownDeviceError
from twin.cli.main import UsageError

DEFAULT_DB = "var/twin/registry.db"
"""The registry database ``twin run`` uses with its default state folder (``var/twin``) and an SQLite alert store."""
SHOWN_PROBLEMS = 50
"""Problems of a refused import printed one a line (the rest counted). [1]"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``twin devices`` and its commands to the ``twin`` parser; returns the ``devices`` parser."""
    p = sub.add_parser("devices", help="the device registry: import, list, show, retire",
                       description="The device registry in its database (SQLite or PostgreSQL): bulk import from "
                                   "GeoJSON or CSV, list, show, retire. A running twin on the same database applies "
                                   "the changes without a restart (docs/guides/devices.md).")
    dsub = p.add_subparsers(dest="devices_command", required=True, metavar="{import,list,show,retire}")
    i = dsub.add_parser("import", help="add and update devices from a GeoJSON or CSV file",
                        description="Check every row with the registry's rules, then add the new devices and update "
                                    "the changed ones in one transaction (devices not in the file are left as they "
                                    "are). Any problem refuses the whole import and lists every problem, unless "
                                    "--skip-bad. CSV columns: id, kind, quantities (;-separated), name, unit_type, "
                                    "lon, lat, optional geometry (GeoJSON), other columns become properties.")
    i.add_argument("file", type=Path, help="registry GeoJSON FeatureCollection, or CSV (name ending in .csv)")
    i.add_argument("--skip-bad", action="store_true", help="import the good rows, report the bad ones (exit 0)")
    i.set_defaults(func=_import)
    ls = dsub.add_parser("list", help="list devices", description="List devices by id, one a line: id, kind, "
                                                                   "status, version, name.")
    ls.add_argument("--kind", choices=DEVICE_KINDS, help="only devices of this kind")
    ls.add_argument("--status", choices=(*STATUSES, "all"), default="all", help="only active or retired (default all)")
    ls.add_argument("--limit", type=_count, default=1000, help="at most this many (default 1000)")
    ls.add_argument("--after", metavar="ID", help="start after this id (the last of the page before)")
    ls.add_argument("--json", action="store_true", help="print a GeoJSON FeatureCollection instead")
    ls.set_defaults(func=_list)
    show = dsub.add_parser("show", help="one device and its history", description="Print one device as a GeoJSON "
                                                                                   "Feature with every change of it.")
    show.add_argument("id", help="the device's id")
    show.set_defaults(func=_show)
    r = dsub.add_parser("retire", help="retire a device (its messages are refused; history kept)",
                        description="Retire a device: a twin on this database refuses its messages as "
                                    "retired_device once it has applied the change. Its entry and history stay; "
                                    "PUT /api/devices/{id} registers it again.")
    r.add_argument("id", help="the device's id")
    r.set_defaults(func=_retire)
    for parser in (i, ls, show, r):
        parser.add_argument("--db", default=DEFAULT_DB, help=f"registry database: an SQLite path or sqlite:///path, "
                            f"or postgresql://user@host/db (default {DEFAULT_DB}; twin run keeps it in its state "
                            "folder, or in its --db when that is PostgreSQL)")
    return p


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _open(url: str) -> RegistryStore:
    """The registry database, or exit status 1 with one line when it cannot be opened."""
    try:
        return RegistryStore.open(url)
    except (sqlite3.Error, OSError) as exc:
        raise _UnreachableError(f"cannot open the registry database {url}: {' '.join(str(exc).split())}") from None
    except Exception as exc:  # psycopg's errors, without importing psycopg for SQLite users
        if type(exc).__module__.startswith("psycopg"):
            raise _UnreachableError(f"cannot open the registry database {url}: {' '.join(str(exc).split())}") \
                from None
        raise


class _UnreachableError(Exception):
    """The database cannot be opened: one line on stderr, exit status 1."""


def _guarded(run):
    def command(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except _UnreachableError as exc:
            print(f"twin: error: {exc}", file=sys.stderr)
            return 1
    return command


@_guarded
def _import(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise UsageError(f"{args.file} does not exist")
    store = _open(args.db)
    try:
        print(f"importing {args.file} into {args.db} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            report = store.import_file(args.file, skip_bad=args.skip_bad, actor="twin devices import",
                                       progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
        except RegistryError as exc:
            _print_problems(exc.problems)
            raise UsageError(f"{len(exc.problems)} problem(s) in {args.file}: nothing imported (fix them, or "
                             "--skip-bad imports the good rows)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {args.file}: {exc}") from None
        if report.bad:
            _print_problems(report.bad)
        versions = (f"versions {report.first_version}-{report.last_version}" if report.written
                    else f"version {store.version()}")
        skipped = f", {len(report.bad)} bad rows left out" if report.bad else ""
        print(f"imported {args.file}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged"
              f"{skipped} ({versions}) in {time.perf_counter() - t0:.1f} s")
    finally:
        store.close()
    return 0


def _print_problems(problems: list[str]) -> None:
    for text in problems[:SHOWN_PROBLEMS]:
        print(f"  {text}", file=sys.stderr)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"  ... and {len(problems) - SHOWN_PROBLEMS} more", file=sys.stderr)


@_guarded
def _list(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        status = None if args.status == "all" else args.status
        devices = store.page(args.kind, status, args.after, args.limit)
        if args.json:
            print(json.dumps({"type": "FeatureCollection", "version": store.version(),
                              "features": [_feature(d) for d in devices]}, ensure_ascii=False))
            return 0
        for d in devices:
            print(f"{d.id}\t{d.kind}\t{d.status}\t{d.version}\t{d.name}")
        total = store.count(args.kind, status)
        more = f"; the next page: --after {devices[-1].id}" if len(devices) == args.limit and total > args.limit else ""
        print(f"{len(devices)} of {total} devices (registry version {store.version()}){more}", file=sys.stderr)
    finally:
        store.close()
    return 0


def _feature(d) -> dict:
    return {**d.feature(), "id": d.id, "registry": {"status": d.status, "version": d.version, "added": d.added}}


@_guarded
def _show(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        device = store.device(args.id)
        if device is None:
            raise UsageError(f"no device {args.id!r} in {args.db}")
        history = [{"version": c.version, "op": c.op, "at": c.at, "actor": c.actor, "status": c.device.status}
                   for c in store.history(args.id)]
        print(json.dumps({**_feature(device), "history": history}, ensure_ascii=False))
    finally:
        store.close()
    return 0


@_guarded
def _retire(args: argparse.Namespace) -> int:
    store = _open(args.db)
    try:
        try:
            change = store.retire(args.id, actor="twin devices retire")
        except UnknownDeviceError:
            raise UsageError(f"no device {args.id!r} in {args.db}") from None
        except DeviceConflict as exc:
            print(exc.detail)
            return 0
        print(f"retired {args.id} (registry version {change.version}); a twin on this database refuses its "
              "messages once it has applied the change")
    finally:
        store.close()
    return 0
