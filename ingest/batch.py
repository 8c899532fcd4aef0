"""``Batch``: a columnar set of observations, one row per record (numpy arrays of one length).

Columns; absent values are NaN (floats), -1 (``fix``) or "" (strings):

==========  ========  =======================================================
device      object    device id (str), from the topic
t           float64   observation time [s since 1970-01-01 UTC]
quantity    object    ``count``, ``rain``, ``depth``, ``speed``, ``flow``, ``occ``, ``position``,
                      an acknowledgement status ``ack``/``on_scene``/``resolved``, a unit's task answer
                      ``task_{status}`` or a citizen ``report``
value       float64   value in the canonical unit of the quantity (see ``ingest.decoders.units``)
lon, lat    float64   position as sent [degree], in ``datum``
speed_kmh   float64   ground speed [km h-1]
course_deg  float64   course over ground, clockwise from true north [degree]
hdop        float64   horizontal dilution of precision [1]
alt_m       float64   antenna altitude above the geoid (mean sea level) as sent [m] (NMEA GGA/GNS), NaN unknown
fix         int8      GGA fix quality (0 none, 1 GNSS, 2 DGNSS, 4 RTK fixed, 5 RTK float...), -1 absent
datum       object    ``CGCS2000``, ``WGS84`` or ``GCJ02`` for positions and reports, "" otherwise
ref         object    reference carried by the record (the alert identifier of an ack, the case id of a unit's task
                      answer, the source's own id of a citizen report), "" otherwise
note        object    free text carried by the record (a task answer's note; a citizen report's details as compact
                      JSON, ``ingest.decoders.report.report_note``), "" otherwise
==========  ========  =======================================================

Treat the columns as read-only: absent columns are shared read-only arrays. ``concat`` and ``take`` return
fresh arrays.

The per-record dedupe key is ``(device, t, quantity, ref)`` (``note`` is not part of it); ``ref`` is "" except
for acks, task answers and reports, so for observations it is the ``(device, time, name)`` key of
docs/reliability.md 6.1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOAT_COLUMNS = ("t", "value", "lon", "lat", "speed_kmh", "course_deg", "hdop", "alt_m")
STRING_COLUMNS = ("device", "quantity", "datum", "ref", "note")
COLUMNS = (
    "device",
    "t",
    "quantity",
    "value",
    "lon",
    "lat",
    "speed_kmh",
    "course_deg",
    "hdop",
    "alt_m",
    "fix",
    "datum",
    "ref",
    "note",
)

_COLUMN_SET = frozenset(COLUMNS)
_SCALARS = (str, float, int)
_DTYPES = {c: np.float64 for c in FLOAT_COLUMNS} | {"fix": np.int8}

Key = tuple[str, float, str, str]


_DEFAULTS: dict[tuple[str, int], np.ndarray] = {}


def filled(n: int, value: Any, dtype: Any = object) -> np.ndarray:
    """A fresh array of ``n`` times ``value`` (``np.full``, several times faster for object arrays: ``np.full``
    casts a string element by element)."""
    arr = np.empty(n, dtype=dtype)
    arr.fill(value)
    return arr


def _default(name: str, n: int) -> np.ndarray:
    """Column of absent values; small ones are shared read-only arrays (built once)."""
    cached = _DEFAULTS.get((name, n))
    if cached is not None:
        return cached
    if name in FLOAT_COLUMNS:
        arr = filled(n, np.nan, np.float64)
    elif name == "fix":
        arr = filled(n, -1, np.int8)
    else:
        arr = filled(n, "")
    arr.flags.writeable = False
    if n <= 4:
        _DEFAULTS[(name, n)] = arr
    return arr


def _coerce(name: str, values: Any, n: int) -> np.ndarray:
    if values is None:
        return _default(name, n)
    if n == 1 and type(values) in _SCALARS:  # the common one-record message
        arr = np.empty(1, dtype=_DTYPES.get(name, object))
        arr[0] = values
        return arr
    if name in FLOAT_COLUMNS:
        arr = np.asarray(values, dtype=np.float64)
    elif name == "fix":
        arr = np.asarray(values, dtype=np.int8)
    else:
        if isinstance(values, str):
            return filled(n, values)
        arr = np.asarray(values, dtype=object)
    if arr.ndim == 0:
        return filled(n, arr[()], arr.dtype)
    return arr


@dataclass(frozen=True, eq=False)
class Batch:
    """Observations decoded from one or more messages; see the module docstring for the columns."""

    device: np.ndarray
    t: np.ndarray
    quantity: np.ndarray
    value: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    speed_kmh: np.ndarray
    course_deg: np.ndarray
    hdop: np.ndarray
    alt_m: np.ndarray
    fix: np.ndarray
    datum: np.ndarray
    ref: np.ndarray
    note: np.ndarray
    ignored: int = field(default=0)
    """Sentences or records skipped on purpose (NMEA GSV/GSA/proprietary, no-fix epochs) [1]."""

    def __post_init__(self) -> None:
        n = len(self.t)
        bad = [c for c in COLUMNS if len(getattr(self, c)) != n]
        if bad:
            raise ValueError(f"Batch columns {bad} do not have length {n}")

    @classmethod
    def build(cls, n: int, *, ignored: int = 0, **columns: Any) -> Batch:
        """Batch of ``n`` rows; missing columns get their absent value, scalars are broadcast."""
        unknown = columns.keys() - _COLUMN_SET
        if unknown:
            raise TypeError(f"unknown Batch columns: {sorted(unknown)}")
        get = columns.get
        return cls(*[_coerce(c, get(c), n) for c in COLUMNS], ignored=ignored)

    @classmethod
    def empty(cls, ignored: int = 0) -> Batch:
        """A batch with no rows."""
        return cls.build(0, ignored=ignored)

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        """Rows of all ``batches`` in order."""
        if not batches:
            return cls.empty()
        cols = {c: np.concatenate([getattr(b, c) for b in batches]) for c in COLUMNS}
        return cls(**cols, ignored=sum(b.ignored for b in batches))

    def __len__(self) -> int:
        return len(self.t)

    def take(self, index: np.ndarray) -> Batch:
        """Rows selected by a boolean mask or an integer index."""
        return Batch(**{c: getattr(self, c)[index] for c in COLUMNS}, ignored=self.ignored)

    def keys(self) -> list[Key]:
        """Dedupe key ``(device, t, quantity, ref)`` of every row."""
        return list(
            zip(self.device.tolist(), self.t.tolist(), self.quantity.tolist(), self.ref.tolist(), strict=True)
        )

    def columns(self) -> dict[str, np.ndarray]:
        """The columns as a dict (shared arrays, not copies)."""
        return {c: getattr(self, c) for c in COLUMNS}

    def records(self) -> Iterable[dict[str, Any]]:
        """Rows as dicts (slow; for tests, logs and small outputs)."""
        lists = {c: getattr(self, c).tolist() for c in COLUMNS}
        for i in range(len(self)):
            yield {c: lists[c][i] for c in COLUMNS}
