"""The device registry in a database: SQLite by default, PostgreSQL by URL (docs/guides/devices.md).

Two tables:

- ``devices``: one row per device ever registered: ``id`` (primary key), ``kind``, ``quantities`` (JSON list),
  ``name``, ``unit_type``, ``geometry`` (GeoJSON, lon/lat; NULL for none), ``properties`` (the Feature's properties
  as given, JSON), ``status`` (``active`` or ``retired``), ``version`` (of its last change), ``added`` (the version
  that first registered it), ``updated_at`` [unix s].
- ``device_log``: the change log, one row per change with a ``version`` that grows by one per change across the
  whole registry: ``op`` (``add``, ``update``, ``retire``), the device as it is after the change, ``at`` [unix s]
  and ``actor``. Nothing is ever deleted: a retired device keeps its row and its history.

A running twin picks changes up incrementally with `RegistryStore.changes_since`; `RegistryStore.registry` reads
the whole registry, now or as it was at a version. Writers take the registry's write lock (SQLite ``BEGIN
IMMEDIATE``; PostgreSQL a transaction advisory lock), so versions are given out in commit order and a reader that
has seen version v has seen every change up to v.

Bulk import (`RegistryStore.import_devices`, ``twin devices import``) validates every row with the registry's rules
(`ingest.registry`), compares with what is stored (same row: unchanged; a different kind: a problem, kinds never
change), and writes all changes in one transaction with ``executemany`` (SQLite) or ``COPY`` (PostgreSQL). Any
problem refuses the whole import with the list of problems, unless ``skip_bad`` is set: then the good rows are
imported and the bad ones reported.

URLs as the alert store's (`twin.alerting.store`): ``sqlite:///path/registry.db`` (or a plain path, or
``:memory:``) and ``postgresql://user@host:port/db``.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ingest.registry import STATUSES, Device, Registry, RegistryError, expected_quantities, read_devices

log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, quantities TEXT NOT NULL, name TEXT NOT NULL,
        unit_type TEXT NOT NULL, geometry TEXT, properties TEXT NOT NULL, status TEXT NOT NULL,
        version BIGINT NOT NULL, added BIGINT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS device_log (
        version BIGINT PRIMARY KEY, id TEXT NOT NULL, op TEXT NOT NULL, kind TEXT NOT NULL, geometry TEXT,
        properties TEXT NOT NULL, status TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS devices_version ON devices (version)",
    "CREATE INDEX IF NOT EXISTS devices_kind ON devices (kind, id)",
    "CREATE INDEX IF NOT EXISTS device_log_id ON device_log (id, version)",
)
"""The registry's tables and indexes, created when missing."""
DEVICE_COLUMNS = ("id", "kind", "quantities", "name", "unit_type", "geometry", "properties", "status", "version",
                  "added", "updated_at")
LOG_COLUMNS = ("version", "id", "op", "kind", "geometry", "properties", "status", "at", "actor")
PG_LOCK = 0x63747772656769
"""The PostgreSQL advisory lock key of the registry's writers ("ctwregi")."""
SQLITE_CACHE_KIB = 262_144
"""SQLite page cache of a registry connection [KiB] (256 MiB at most, used as needed): a million-row import keeps its
indexes in memory instead of re-reading pages."""
CHUNK = 50_000
"""Rows per ``executemany`` of a bulk import (bounded memory per call) [row]."""


@contextmanager
def _bulk_objects() -> Iterator[None]:
    """Python's cyclic garbage collector paused while millions of acyclic objects (parsed rows, devices) are made:
    each of its passes would walk all of them again (a million-device file parses in about half the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class UnknownDeviceError(KeyError):
    """No device of that id is registered."""


class DeviceConflict(ValueError):  # noqa: N818 -- a refused change, named by what it is
    """A change that contradicts the registry: ``code`` ``device_exists`` (add of a registered id),
    ``kind_change`` (a device's kind never changes) or ``already_retired``; ``detail`` says what to do."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Change:
    """One row of the change log: the registry ``version`` it made, ``op`` (add, update, retire), the device after
    it, when [unix s] and by whom."""

    version: int
    op: str
    device: Device
    at: float
    actor: str


@dataclass
class ImportReport:
    """What a bulk import did: devices added, updated (including re-activated) and unchanged, the problems of the
    rows left out (``skip_bad``), the versions it wrote (``first_version`` > ``last_version`` when nothing
    changed) and how long it took [s]."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    bad: list[str] = field(default_factory=list)
    first_version: int = 0
    last_version: int = 0
    seconds: float = 0.0

    @property
    def written(self) -> int:
        """Devices added or updated [1]."""
        return self.added + self.updated


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":")).encode


def _dumps(value: Any) -> str:
    """Compact JSON, readable (non-ASCII kept), with lone surrogates escaped (they cannot be stored as UTF-8)."""
    text = _ENCODE(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _ENCODE_ASCII(value)
    return text


def device_of_row(dev_id: str, kind: str, geometry: str | None, properties: str, status: str, version: int,
                  added: int) -> Device:
    """The ``Device`` of a stored row (stored rows were checked when written; they are not checked again)."""
    props = json.loads(properties)
    q = props.get("quantities")
    return Device(dev_id, kind, tuple(q) if q else expected_quantities(kind), str(props.get("name", "")),
                  str(props.get("unit_type", "") or ""), json.loads(geometry) if geometry else None, props,
                  status, int(version), int(added))


def _geometry_json(geometry: dict | None) -> str | None:
    """The ``geometry`` column: a plain Point written directly (most devices; the JSON encoder would take three
    times as long), anything else by the encoder."""
    if geometry is None:
        return None
    if len(geometry) == 2 and geometry.get("type") == "Point":
        pos = geometry.get("coordinates")
        if type(pos) is list and len(pos) == 2 and all(type(x) is float or type(x) is int for x in pos):
            return f'{{"type":"Point","coordinates":[{pos[0]!r},{pos[1]!r}]}}'
    return _dumps(geometry)


@functools.cache
def _quantities(quantities: tuple[str, ...]) -> str:
    """The ``quantities`` column of a device (a handful of distinct values: cached)."""
    return _dumps(list(quantities))


class _Row:
    """A device serialised for the tables."""

    __slots__ = ("device", "geometry", "properties")

    def __init__(self, device: Device) -> None:
        self.device = device
        self.geometry = _geometry_json(device.geometry)
        self.properties = _dumps(device.properties)

    def device_row(self, status: str, version: int, added: int, now: float) -> tuple:
        d = self.device
        return (d.id, d.kind, _quantities(d.quantities), d.name, d.unit_type, self.geometry, self.properties,
                status, version, added, now)

    def log_row(self, version: int, op: str, status: str, now: float, actor: str) -> tuple:
        return version, self.device.id, op, self.device.kind, self.geometry, self.properties, status, now, actor


class RegistryStore:
    """The registry's tables over one DB-API connection (calls serialised by a lock; see the module docstring)."""

    def __init__(self, connect, placeholder: str, url: str, postgres: bool) -> None:
        self._ph, self.url, self.postgres = placeholder, url, postgres
        self._lock = threading.RLock()
        self._conn = connect()
        with self._tx() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)

    # ------------------------------------------------------------ plumbing
    @classmethod
    def open(cls, url: str | Path) -> RegistryStore:
        """Open (creating the tables if needed) the registry at a URL or SQLite path."""
        url = str(url)
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            return cls(lambda: psycopg.connect(url, autocommit=True), "%s", url, True)
        path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

        def connect():
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            return conn

        return cls(connect, "?", url, False)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    def _all(self, sql: str, args: Iterable = ()) -> list[tuple]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(self._q(sql), tuple(args))
            return cur.fetchall()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator:
        """A transaction; ``write`` takes the registry's write lock first (versions in commit order)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE" if write and not self.postgres else "BEGIN")
            try:
                if write and self.postgres:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK,))
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _bulk(self, cur, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """Insert many rows: PostgreSQL ``COPY``, SQLite ``executemany`` in chunks."""
        if not rows:
            return
        if self.postgres:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for start in range(0, len(rows), CHUNK):
            cur.executemany(sql, rows[start:start + CHUNK])

    @staticmethod
    def _version(cur) -> int:
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM device_log")
        return int(cur.fetchone()[0])

    # ------------------------------------------------------------ reads
    def version(self) -> int:
        """The registry's version now: that of its last change (0: empty)."""
        return int(self._all("SELECT COALESCE(MAX(version), 0) FROM device_log")[0][0])

    def is_empty(self) -> bool:
        """No device was ever registered."""
        return not self._all("SELECT 1 FROM devices LIMIT 1")

    def count(self, kind: str | None = None, status: str | None = None) -> int:
        """Devices (of a kind, in a status) [1]."""
        where, args = self._filter(kind, status)
        return int(self._all(f"SELECT COUNT(*) FROM devices{where}", args)[0][0])

    @staticmethod
    def _filter(kind: str | None, status: str | None, after: str | None = None) -> tuple[str, list]:
        clauses, args = [], []
        for column, value, op in (("kind", kind, "="), ("status", status, "="), ("id", after, ">")):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def device(self, device_id: str) -> Device | None:
        """One device (active or retired), or None."""
        rows = self._all("SELECT id, kind, geometry, properties, status, version, added FROM devices WHERE id = ?",
                         (device_id,))
        return device_of_row(*rows[0]) if rows else None

    def updated_at(self, device_id: str) -> float | None:
        """When a device last changed [unix s], or None."""
        rows = self._all("SELECT updated_at FROM devices WHERE id = ?", (device_id,))
        return float(rows[0][0]) if rows else None

    def page(self, kind: str | None = None, status: str | None = None, after: str | None = None,
             limit: int = 100) -> list[Device]:
        """Devices by id (a kind, a status), those after the id ``after`` only, at most ``limit``."""
        where, args = self._filter(kind, status, after)
        rows = self._all(f"SELECT id, kind, geometry, properties, status, version, added FROM devices{where} "
                         "ORDER BY id LIMIT ?", [*args, int(limit)])
        return [device_of_row(*r) for r in rows]

    def registry(self, at: int | None = None) -> Registry:
        """Every device, active and retired, as the registry is now, or as it was at version ``at`` (devices
        registered after it left out, the others as they were)."""
        with self._lock:
            version = self.version()
            at = version if at is None else min(int(at), version)
            rows = self._all("SELECT id, kind, geometry, properties, status, version, added FROM devices "
                             "WHERE version <= ?", (at,))
            if at < version:
                rows += self._all(
                    "SELECT l.id, l.kind, l.geometry, l.properties, l.status, l.version, d.added FROM device_log l "
                    "JOIN devices d ON d.id = l.id WHERE d.version > ? AND l.version = (SELECT MAX(m.version) "
                    "FROM device_log m WHERE m.id = l.id AND m.version <= ?)", (at, at))
        with _bulk_objects():
            devices = sorted((device_of_row(*r) for r in rows), key=lambda d: d.added)
        return Registry({d.id: d for d in devices if d.active}, {d.id: d for d in devices if not d.active}, at)

    def changes_since(self, version: int, limit: int | None = None, upto: int | None = None) -> list[Change]:
        """The changes after ``version`` (up to ``upto``), oldest first, at most ``limit``."""
        sql = ("SELECT l.version, l.op, l.id, l.kind, l.geometry, l.properties, l.status, d.added, l.at, l.actor "
               "FROM device_log l JOIN devices d ON d.id = l.id WHERE l.version > ?")
        args: list = [int(version)]
        if upto is not None:
            sql += " AND l.version <= ?"
            args.append(int(upto))
        sql += " ORDER BY l.version"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [Change(int(v), op, device_of_row(i, k, g, p, s, v, a), float(at), actor)
                for v, op, i, k, g, p, s, a, at, actor in self._all(sql, args)]

    def history(self, device_id: str) -> list[Change]:
        """Every change of one device, oldest first."""
        rows = self._all("SELECT l.version, l.op, l.id, l.kind, l.geometry, l.properties, l.status, d.added, l.at, "
                         "l.actor FROM device_log l JOIN devices d ON d.id = l.id WHERE l.id = ? ORDER BY l.version",
                         (device_id,))
        return [Change(int(v), op, device_of_row(i, k, g, p, s, v, a), float(at), actor)
                for v, op, i, k, g, p, s, a, at, actor in rows]

    # ------------------------------------------------------------ one device
    def add(self, device: Device, actor: str = "api") -> Change:
        """Register a new device (checked by the caller: `ingest.registry.device_from_feature`). Raises
        `DeviceConflict` ``device_exists`` if its id is registered, active or retired."""
        row, now = _Row(device), time.time()
        with self._tx(write=True) as cur:
            cur.execute(self._q("SELECT status FROM devices WHERE id = ?"), (device.id,))
            found = cur.fetchone()
            if found is not None:
                hint = "change it with PUT" if found[0] == "active" else "it is retired: register it again with PUT"
                raise DeviceConflict("device_exists", f"device {device.id!r} is already registered ({found[0]}); "
                                     f"{hint}")
            v = self._version(cur) + 1
            self._bulk(cur, "devices", DEVICE_COLUMNS, [row.device_row("active", v, v, now)])
            self._bulk(cur, "device_log", LOG_COLUMNS, [row.log_row(v, "add", "active", now, actor)])
        return Change(v, "add", replace(device, status="active", version=v, added=v), now, actor)

    def update(self, device: Device, actor: str = "api") -> Change | None:
        """A registered device's new entry (moved, other quantities, other properties); a retired device is
        registered again (active). None when nothing differs (no new version). Raises `UnknownDeviceError`, or
        `DeviceConflict` ``kind_change``."""
        row, now = _Row(device), time.time()
        with self._tx(write=True) as cur:
            cur.execute(self._q("SELECT kind, geometry, properties, status, added FROM devices WHERE id = ?"),
                        (device.id,))
            found = cur.fetchone()
            if found is None:
                raise UnknownDeviceError(device.id)
            kind, geometry, properties, status, added = found
            if kind != device.kind:
                raise DeviceConflict("kind_change", f"device {device.id!r} is a {kind}; a device's kind never "
                                     f"changes: retire it and register a new id for the {device.kind}")
            if (geometry, properties, status) == (row.geometry, row.properties, "active"):
                return None
            v = self._version(cur) + 1
            self._upsert(cur, [row.device_row("active", v, int(added), now)])
            self._bulk(cur, "device_log", LOG_COLUMNS, [row.log_row(v, "update", "active", now, actor)])
        return Change(v, "update", replace(device, status="active", version=v, added=int(added)), now, actor)

    def retire(self, device_id: str, actor: str = "api") -> Change:
        """Take a device out of service: its messages are refused (``retired_device``); its row and history stay.
        Raises `UnknownDeviceError`, or `DeviceConflict` ``already_retired``."""
        now = time.time()
        with self._tx(write=True) as cur:
            cur.execute(self._q("SELECT id, kind, geometry, properties, status, version, added FROM devices "
                                "WHERE id = ?"), (device_id,))
            found = cur.fetchone()
            if found is None:
                raise UnknownDeviceError(device_id)
            device = device_of_row(*found)
            if not device.active:
                raise DeviceConflict("already_retired", f"device {device_id!r} was retired at version "
                                     f"{device.version}")
            v = self._version(cur) + 1
            cur.execute(self._q("UPDATE devices SET status = 'retired', version = ?, updated_at = ? WHERE id = ?"),
                        (v, now, device_id))
            self._bulk(cur, "device_log", LOG_COLUMNS, [_Row(device).log_row(v, "retire", "retired", now, actor)])
        return Change(v, "retire", replace(device, status="retired", version=v), now, actor)

    def _upsert(self, cur, rows: list[tuple]) -> None:
        sets = ", ".join(f"{c} = excluded.{c}" for c in DEVICE_COLUMNS if c not in ("id", "added"))
        sql = self._q(f"INSERT INTO devices ({', '.join(DEVICE_COLUMNS)}) VALUES ({', '.join('?' * 11)}) "
                      f"ON CONFLICT (id) DO UPDATE SET {sets}")
        for start in range(0, len(rows), CHUNK):
            cur.executemany(sql, rows[start:start + CHUNK])

    # ------------------------------------------------------------ bulk import
    def import_file(self, path: str | Path, *, skip_bad: bool = False, actor: str = "import",
                    progress: Callable[[str], None] | None = None) -> ImportReport:
        """Import a registry GeoJSON or CSV file (`ingest.registry.read_devices`); see `import_devices`. Raises
        `RegistryError` (every problem) or `OSError`. ``progress`` hears one line per step."""
        t0 = time.perf_counter()
        with _bulk_objects():
            devices, problems = read_devices(path)
            if progress is not None:
                progress(f"read and checked {len(devices) + len(problems):,} rows in {time.perf_counter() - t0:.1f} s"
                         f" ({len(problems):,} problems)")
            report = self.import_devices(devices, problems=problems, skip_bad=skip_bad, actor=actor)
        report.seconds = time.perf_counter() - t0
        return report

    def import_devices(self, devices: list[Device], *, problems: Iterable[str] = (), skip_bad: bool = False,
                       actor: str = "import") -> ImportReport:
        """Add the new devices and update the changed ones (re-activating retired ones), in the given order, in one
        transaction; devices not in the list are left as they are (retire them explicitly). ``problems`` are those
        the parser found; a device whose kind differs from its registered one is another. With problems and not
        ``skip_bad`` nothing is written and `RegistryError` lists them all; with ``skip_bad`` the good devices are
        imported and the problems reported in ``ImportReport.bad``."""
        t0 = time.perf_counter()
        problems = list(problems)
        report = ImportReport()
        now = time.time()
        with self._tx(write=True) as cur:
            stored = self._stored(cur)
            new, changed, seen = [], [], set()
            for d in devices:
                if d.id in seen:
                    problems.append(f"device {d.id}: duplicate id")
                    continue
                seen.add(d.id)
                row = _Row(d)
                known = stored.get(d.id)
                if known is None:
                    new.append(row)
                elif known[0] != d.kind:
                    problems.append(f"device {d.id}: registered as a {known[0]}, imported as a {d.kind}: a device's "
                                    "kind never changes (retire it and register a new id)")
                elif known[1:4] == (row.geometry, row.properties, "active"):
                    report.unchanged += 1
                else:
                    changed.append((row, int(known[4])))
            if problems and not skip_bad:
                raise RegistryError(problems)
            first = self._version(cur) + 1
            v = first
            log_rows, device_rows, upserts = [], [], []
            for row in new:
                device_rows.append(row.device_row("active", v, v, now))
                log_rows.append(row.log_row(v, "add", "active", now, actor))
                v += 1
            for row, added in changed:
                upserts.append(row.device_row("active", v, added, now))
                log_rows.append(row.log_row(v, "update", "active", now, actor))
                v += 1
            self._bulk(cur, "devices", DEVICE_COLUMNS, device_rows)
            self._upsert(cur, upserts)
            self._bulk(cur, "device_log", LOG_COLUMNS, log_rows)
        report.added, report.updated, report.bad = len(new), len(changed), problems
        report.first_version, report.last_version = first, v - 1
        report.seconds = time.perf_counter() - t0
        return report

    def _stored(self, cur) -> dict[str, tuple]:
        """{id: (kind, geometry, properties, status, added)} of every stored device ({} for an empty registry)."""
        cur.execute("SELECT id, kind, geometry, properties, status, added FROM devices")
        return {r[0]: r[1:] for r in cur.fetchall()}


def check_status(status: str | None) -> str | None:
    """``status`` if it is one of `ingest.registry.STATUSES` (or None); ValueError otherwise."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return status


def follow_versions(queue_changes: Callable[[], object], stop: threading.Event, poll_s: float) -> None:
    """Call ``queue_changes`` (which reads the database's version and queues what is new) now and then every
    ``poll_s`` [s] until ``stop`` is set. A database that fails is logged and asked again at the next poll: the
    thread that follows the registry never dies of it."""
    while True:
        try:
            queue_changes()
        except Exception:
            log.exception("reading the device registry's version failed")
        if stop.wait(poll_s):
            return
