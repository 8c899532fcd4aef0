"""Snapshots of the live twin: an explicit, versioned state file, never a pickle of the object graph.

A snapshot is one zip file, ``snapshot.zip`` in the service's state folder, holding:

- ``manifest.json``: ``schema`` (``citytwin.snapshot``), ``version`` (`VERSION`), ``written_at``
  [unix s], ``position`` (the raw-log position just after the tick it was taken at), ``stream`` (a district
  twin's: per stream partition, the sequence of the last record the state covers; ``{}`` for ``twin run``,
  docs/city-deployment.md section 4), ``grid`` (CRS, origin, cell size, shape: a snapshot restores only onto
  the same grid) and ``state``: the tree of every evolving value, part by part (``core``, ``book``,
  ``router``, ``twin_state``, ``models``, ``dedupe``), each as its owner's ``state()`` gives it;
- one ``.npy`` file per array of that tree (numpy's own format, read with ``allow_pickle=False``);
  in the JSON tree an array stands as ``{"$array": "<file>"}``.

So a snapshot can be read with any zip tool, ``json`` and numpy, and nothing in it is executed when
it is loaded. Each stateful class lists what evolves in its ``state()`` and takes it back in
``restore(state)``; tests restore a snapshot into a fresh core and check that it goes on exactly as
the original does.

Versions: 1 was a pickle (``snapshot.pkl``); it is refused with a message saying what to do (move it
away, and the service rebuilds its state by replaying the raw log from the start). A newer version
than this code knows is refused too. An older explicit version would be migrated here, step by step,
by `MIGRATIONS`.

``stream`` came after version 2 without a new version: it is optional. A manifest without it (written before
it, or by ``twin run``) reads as ``{}``, and a reader from before it ignores it, so snapshots go both ways
between the two (a new version would have made older code refuse every new ``twin run`` snapshot, for a key
that code has no use for).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.district.grid import GridSpec

SCHEMA = "citytwin.snapshot"
VERSION = 2
FILE = "snapshot.zip"
LEGACY_FILE = "snapshot.pkl"
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
"""version n -> a function turning a version-n manifest (with its arrays in place) into version n + 1."""


class SnapshotError(ValueError):
    """A snapshot that cannot be restored (another version, another grid, a damaged file)."""


@dataclass(frozen=True)
class Snapshot:
    """What a snapshot file holds: the state tree (arrays in place), the raw-log position, when, and the stream
    positions (a district twin's)."""

    state: dict[str, Any]
    position: tuple[int, int]
    written_at: float
    stream: dict[str, int] = field(default_factory=dict)
    """Per stream partition, the sequence of the last record the state covers [1]; {} when not a district twin's."""


def grid_fields(grid: GridSpec) -> dict[str, Any]:
    """The grid as the manifest records it."""
    return {"crs": grid.crs, "x0": float(grid.x0), "y0": float(grid.y0), "cell_size": float(grid.cell_size),
            "ny": int(grid.ny), "nx": int(grid.nx)}


# ---------------------------------------------------------------- the tree <-> JSON + arrays
def _flatten(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON-able form of a state value; arrays are moved into ``arrays`` under a file name."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"state value {path!r} is an object array: give plain values or numeric arrays")
        name = f"{path}.npy"
        arrays[name] = value
        return {"$array": name}
    if isinstance(value, dict):
        return {str(k): _flatten(v, f"{path}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_flatten(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"state value {path!r} of type {type(value).__name__} is not plain data")


def _unflatten(value: Any, arrays: Callable[[str], np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$array"}:
            return arrays(value["$array"])
        return {k: _unflatten(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, arrays) for v in value]
    return value


# ---------------------------------------------------------------- files
STORE_ABOVE = 1 << 20
"""Arrays larger than this are stored without compression [byte]: the largest, the dedupe memory's hashes
(16 MB at 2,000,000 keys), do not compress, and deflating them took the ingest thread's time between ticks."""


def write(folder: Path, state: dict[str, Any], grid: GridSpec, position: tuple[int, int], written_at: float,
          stream: Mapping[str, int] | None = None) -> Path:
    """Write a snapshot into ``folder`` atomically (a temporary file, fsynced, then renamed). Returns its path.

    ``stream``: per stream partition, the sequence of the last record the state covers (a district twin's)."""
    arrays: dict[str, np.ndarray] = {}
    positions = {str(k): int(v) for k, v in (stream or {}).items()}
    if any(v < 0 for v in positions.values()):
        raise ValueError(f"stream positions must be >= 0, got {positions}")
    manifest = {"schema": SCHEMA, "version": VERSION, "written_at": float(written_at),
                "position": [int(p) for p in position], "stream": positions, "grid": grid_fields(grid),
                "state": _flatten(state, "state", arrays)}
    path = Path(folder) / FILE
    tmp = path.with_name(f"{FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            z.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, allow_nan=True))
            for name, array in arrays.items():
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
                data = buf.getvalue()
                z.writestr(name, data, compress_type=zipfile.ZIP_STORED if len(data) > STORE_ABOVE else None)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def exists(folder: Path) -> bool:
    """A snapshot (of any version) is in ``folder``."""
    return (Path(folder) / FILE).is_file() or (Path(folder) / LEGACY_FILE).is_file()


def read(folder: Path, grid: GridSpec) -> Snapshot:
    """The snapshot in ``folder``, checked against this code's version and ``grid``; raises `SnapshotError`."""
    folder = Path(folder)
    path = folder / FILE
    if not path.is_file() and (folder / LEGACY_FILE).is_file():
        raise SnapshotError(
            f"{folder / LEGACY_FILE} is a version-1 snapshot (a pickle of the old object graph), which this "
            f"version no longer reads. Move it out of {folder} and start again: the service then rebuilds its "
            "state by replaying the raw log from the start.")
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            manifest = _migrate(manifest, path)
            _check_grid(manifest, grid, path)

            def array(name: str) -> np.ndarray:
                return np.load(io.BytesIO(z.read(name)), allow_pickle=False)

            state = _unflatten(manifest["state"], array)
            stream = _stream_positions(manifest.get("stream", {}))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{path} is damaged ({type(exc).__name__}: {exc}); move it away to replay the "
                            "raw log from the start") from None
    return Snapshot(state, (int(manifest["position"][0]), int(manifest["position"][1])),
                    float(manifest["written_at"]), stream)


def _stream_positions(value: Any) -> dict[str, int]:
    """The manifest's ``stream``: partition -> sequence (ValueError when it is anything else)."""
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in value.items()):
        raise ValueError(f"stream positions must map partitions to sequences >= 0, got {str(value)[:200]}")
    return dict(value)


def _migrate(manifest: dict, path: Path) -> dict:
    if manifest.get("schema") != SCHEMA:
        raise SnapshotError(f"{path} is not a citytwin snapshot (schema {manifest.get('schema')!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise SnapshotError(f"{path} is snapshot version {version!r}, newer than this citytwin reads ({VERSION}); "
                            "run the version that wrote it, or move the file away to replay the raw log")
    while version < VERSION:
        if version not in MIGRATIONS:
            raise SnapshotError(f"{path} is snapshot version {version}, which cannot be migrated to {VERSION}; "
                                "move it away to replay the raw log from the start")
        manifest = MIGRATIONS[version](manifest)
        version = manifest["version"]
    return manifest


def _check_grid(manifest: dict, grid: GridSpec, path: Path) -> None:
    want, got = grid_fields(grid), manifest.get("grid", {})
    differ = [k for k in want if got.get(k) != want[k]]
    if differ:
        detail = ", ".join(f"{k} {got.get(k)!r} (twin: {want[k]!r})" for k in differ)
        raise SnapshotError(f"{path} was taken on another grid: {detail}; restore it with that grid, or move it "
                            "away to replay the raw log")


@contextlib.contextmanager
def fresh_state_folder(state: Path | None, who: str, prefix: str) -> Iterator[Path]:
    """``state`` (new, or holding no twin yet; kept) or a temporary folder named ``prefix``… (removed at the end).
    ValueError when ``state`` already holds a twin (a snapshot or a raw log): ``who`` needs a fresh folder."""
    if state is not None:
        if exists(state) or (state / "rawlog").exists():
            raise ValueError(f"--state {state} already holds a twin; {who} needs a fresh folder")
        state.mkdir(parents=True, exist_ok=True)
        yield state
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
