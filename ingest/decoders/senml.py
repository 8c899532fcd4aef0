"""SenML JSON (RFC 8428) packs from ``city/sensors/{kind}/{device}``.

Two layers:

* ``resolve_pack`` applies RFC 8428 section 4.6 resolution to any pack (base name, base time, base unit,
  base value, base sum, version, relative times) and returns resolved records. It knows nothing about
  this project.
* ``senml_records`` maps a parsed pack to records of a sensor ``kind`` (docs/contract/mqtt.md): the name
  must be ``urn:dev:{device}:{quantity}`` with the device of the topic, the quantity one the kind measures,
  the unit one we accept (converted to the canonical unit), the value in a plausible range. It takes the
  parsed JSON, so a caller that has parsed the payload (the ingest's admission step) does not parse it
  again; ``decode_senml`` is the bytes API (topic in, ``Batch | Rejection`` out, never raises).

Three paths, one result. ``senml_records_reference`` is the general path, record by record; it is the
reference and words every refusal. A one-record pack takes ``_single`` (plain Python scalars, a ``Row``).
A pack of plain records after a base record (``{n, v}`` with ``t``, ``u``, both or neither: what a logger
flushing its buffer or a gateway sends) takes ``_fast_columns``: C-level list operations gather its fields
and numpy resolves times, converts units and checks ranges for the whole pack at once, with the reference's
arithmetic, so it gives the reference's ``Batch`` bit for bit. A pack of any other shape, and any pack the
fast paths find something wrong with, goes to the reference, so refusals are always the reference's
(tests/ingest/test_senml_pack_fast.py checks all of it on arbitrary packs with bad records mixed in).
"""

from __future__ import annotations

import json
import math
import re
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from ingest.batch import Batch, filled
from ingest.decoders._common import guarded, is_number, is_shallow, load_json_fast, load_json_reference, number
from ingest.decoders.units import QUANTITIES, SENSOR_KINDS
from ingest.rejection import Reason, Refusal, Rejection

SENML_VERSION = 10
"""SenML version this decoder implements (RFC 8428); packs with a higher ``bver`` are refused."""

RELATIVE_LIMIT = 2.0**28
"""Resolved times below this are relative to "now" (the receive time) [s] (RFC 8428 4.5.3)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-:./_]*$")
_BASE_KEYS = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_VALUE_KEYS = ("v", "vs", "vb", "vd")
_FAST_FIRST_KEYS = frozenset({"bn", "bt", "bu", "bver", "n", "v", "t", "u"})
_N, _V, _T, _U = itemgetter("n"), itemgetter("v"), itemgetter("t"), itemgetter("u")
_DICT_ONLY = {dict}
_NUMBER_TYPES = frozenset({int, float})


# --------------------------------------------------------------------------------------------
# RFC 8428 resolution (generic)


def resolve_pack(pack: Any, received_at: float) -> list[dict[str, Any]] | Rejection:
    """Resolve a parsed SenML pack into records without base fields or relative times.

    Parameters
    ----------
    pack : Any
        The result of ``json.loads`` on the payload.
    received_at : float
        Receive time, the "now" of relative times [s since epoch].

    Returns
    -------
    list of dict or Rejection
        Each record has ``n`` (str), ``t`` (absolute, [s]), optionally ``u``, one of ``v``/``vs``/``vb``/
        ``vd`` and/or ``s``. The rejection has no digest (``decode_senml`` adds it).
    """
    try:
        return _resolve(pack, received_at)
    except Refusal as bad:
        return Rejection(bad.reason, bad.detail, bad.field)


def _resolve(pack: Any, received_at: float) -> list[dict[str, Any]]:
    if not isinstance(pack, list) or not pack:
        raise Refusal(Reason.BAD_SCHEMA, "a SenML pack is a non-empty JSON array", "payload")
    base: dict[str, Any] = {"bn": "", "bt": 0.0, "bu": None, "bv": 0.0, "bs": 0.0}
    out = []
    for i, rec in enumerate(pack):
        if not isinstance(rec, dict):
            raise Refusal(Reason.BAD_SCHEMA, f"record {i} is not an object", f"[{i}]")
        _update_base(base, rec, i)
        out.append(_resolve_record(base, rec, i, received_at))
    return out


def _update_base(base: dict[str, Any], rec: dict[str, Any], i: int) -> None:
    for key in rec:
        if key.endswith("_"):
            raise Refusal(Reason.BAD_SCHEMA, f"must-understand field {key!r} not supported", f"[{i}].{key}")
    if "bver" in rec:
        _check_version(rec["bver"], i)
    for key, want in (("bn", str), ("bu", str)):
        if key in rec:
            if not isinstance(rec[key], want):
                raise Refusal(Reason.BAD_SCHEMA, f"{key} must be a string", f"[{i}].{key}")
            base[key] = rec[key]
    for key in ("bt", "bv", "bs"):
        if key in rec:
            base[key] = number(rec[key], f"[{i}].{key}", key)


def _check_version(ver: Any, i: int) -> None:
    """The one SenML version check (``bver`` of record ``i``), for the general and the fast paths."""
    if type(ver) is not int or ver < 1:
        raise Refusal(Reason.BAD_SCHEMA, "bver must be a positive integer", f"[{i}].bver")
    if ver > SENML_VERSION:
        raise Refusal(Reason.BAD_SCHEMA, f"SenML version {ver} > supported {SENML_VERSION}", f"[{i}].bver")


def _resolve_record(base: dict[str, Any], rec: dict[str, Any], i: int, received_at: float) -> dict:
    name = rec.get("n", "")
    if not isinstance(name, str):
        raise Refusal(Reason.BAD_SCHEMA, "n must be a string", f"[{i}].n")
    name = base["bn"] + name
    if not _NAME_RE.match(name):
        raise Refusal(Reason.BAD_SCHEMA, f"invalid resolved name {name[:80]!r}", f"[{i}].n")
    t = base["bt"] + number(rec.get("t", 0.0), f"[{i}].t", "t")
    out: dict[str, Any] = {"n": name, "t": received_at + t if abs(t) < RELATIVE_LIMIT else t}
    unit = rec.get("u", base["bu"])
    if unit is not None:
        if not isinstance(unit, str):
            raise Refusal(Reason.BAD_SCHEMA, "u must be a string", f"[{i}].u")
        out["u"] = unit
    _resolve_value(base, rec, i, out)
    return out


def _resolve_value(base: dict[str, Any], rec: dict[str, Any], i: int, out: dict[str, Any]) -> None:
    present = [k for k in _VALUE_KEYS if k in rec]
    if len(present) > 1:
        raise Refusal(Reason.BAD_SCHEMA, f"record has several values {present}", f"[{i}]")
    if "s" in rec:
        out["s"] = base["bs"] + number(rec["s"], f"[{i}].s", "s")
    if not present:
        if "s" not in rec:
            raise Refusal(Reason.BAD_SCHEMA, "record has no value and no sum", f"[{i}]")
        return
    key = present[0]
    val = rec[key]
    if key == "v":
        out["v"] = base["bv"] + number(val, f"[{i}].v", "v")
    elif key == "vb":
        if not isinstance(val, bool):
            raise Refusal(Reason.BAD_SCHEMA, "vb must be a boolean", f"[{i}].vb")
        out["vb"] = val
    else:
        if not isinstance(val, str):
            raise Refusal(Reason.BAD_SCHEMA, f"{key} must be a string", f"[{i}].{key}")
        out[key] = val


# --------------------------------------------------------------------------------------------
# Project mapping


@guarded
def decode_senml(payload: bytes, *, topic: str, received_at: float) -> Batch:
    """Decode a SenML JSON pack from ``.../sensors/{kind}/{device}`` into a ``Batch``.

    Values are converted to the canonical unit of their quantity (``ingest.decoders.units``); relative
    times are resolved against ``received_at`` [s]. Never raises on bad input.
    """
    parts = topic.split("/")
    if len(parts) < 2 or parts[-2] not in SENSOR_KINDS or not parts[-1]:
        raise Refusal(Reason.BAD_SCHEMA, f"topic {topic!r} is not .../sensors/{{kind}}/{{device}}", "topic")
    out = senml_payload_records(payload, kind=parts[-2], device=parts[-1], received_at=received_at)
    return row_batch(out) if type(out) is tuple else out


Row = tuple[str, float, str, float]
"""One decoded record: (device, t [s], quantity, value in the canonical unit)."""


def row_batch(row: Row) -> Batch:
    """The one-record ``Batch`` of a ``Row``."""
    device, t, quantity, value = row
    return Batch.build(1, device=device, t=t, quantity=quantity, value=value)


def senml_records(pack: Any, *, kind: str, device: str, received_at: float) -> Row | Batch:
    """The records of a parsed SenML pack (``load_json`` of the payload) sent by ``device`` of ``kind``.

    A one-record pack comes back as a plain ``Row`` (the ingest loop's fast path: no numpy arrays per
    message), others as a ``Batch``. Raises ``Refusal`` for bad input. The result is exactly that of
    ``senml_records_reference`` (as a ``Row`` for one record): the fast paths only take packs they can decode
    in full, and every pack they do not take, bad ones included, is decided by the reference.
    """
    single = _single(pack, received_at, kind, device)
    if single is not None:
        return single
    fast = _fast_columns(pack, received_at, kind, device)
    if fast is not None:
        return fast
    return senml_records_reference(pack, kind=kind, device=device, received_at=received_at)


def senml_payload_records(payload: bytes, *, kind: str, device: str, received_at: float) -> Row | Batch:
    """``senml_records(load_json(payload), ...)``, with a large pack parsed once: the pack fast path takes the
    document unchecked for its nesting (``load_json_fast``), as its own checks prove it two levels deep; any
    other large document is checked (``is_shallow``) and parsed again by the reference if it may be nested
    deeper than the reference parses. Raises ``Refusal`` for bad input."""
    pack, shallow = load_json_fast(payload)
    if not shallow:
        fast = _fast_columns(pack, received_at, kind, device)
        if fast is not None:
            return fast
        if not is_shallow(payload, pack):
            pack = load_json_reference(payload)
    return senml_records(pack, kind=kind, device=device, received_at=received_at)


def senml_records_reference(pack: Any, *, kind: str, device: str, received_at: float) -> Batch:
    """``senml_records`` by the general path alone, record by record: RFC 8428 resolution (``resolve_pack``),
    then the project mapping (quantity, unit, range). The reference the fast paths agree with; it words
    every refusal. Raises ``Refusal`` for bad input."""
    return _to_batch(*_slow_columns(pack, received_at), kind=kind, device=device)


def _single(pack: Any, received_at: float, kind: str, device: str) -> Row | None:
    """A one-record pack, decoded with Python scalars (same rules as ``_to_batch``); None otherwise."""
    if not (type(pack) is list and len(pack) == 1 and type(pack[0]) is dict):
        return None
    rec = _resolve_plain(pack[0], received_at)
    if rec is None:
        (rec,) = _resolve(pack, received_at)
    if "v" not in rec:
        raise Refusal(Reason.BAD_SCHEMA, "sensor records need a numeric value v", "[0]")
    q = _quantity_of(rec["n"], f"urn:dev:{device}:", kind)
    spec = QUANTITIES[q]
    unit = rec.get("u", "")
    factor = spec.factors.get(unit)
    if factor is None:
        raise Refusal(Reason.BAD_UNIT, f"unit {unit!r} not accepted for {q} (use {spec.unit})", "u")
    value = rec["v"] * factor if factor != 1.0 else rec["v"]
    if not math.isfinite(rec["t"]):
        raise Refusal(Reason.OUT_OF_RANGE, "time is not finite", "t")
    if not spec.low <= value <= spec.high:
        raise Refusal(Reason.OUT_OF_RANGE, f"{q} {value} outside [{spec.low}, {spec.high}] {spec.unit}", "v")
    return device, rec["t"], q, float(value)


def _resolve_plain(rec: dict[str, Any], received_at: float) -> dict[str, Any] | None:
    """``_resolve`` of one record made only of bn, bt, bu, bver, n, u, v, t with the right types; None
    for anything else (the general path then decides, with its exact error). A bad ``bver`` raises here
    what the general path would raise."""
    if not rec.keys() <= _FAST_FIRST_KEYS or "v" not in rec:
        return None
    get = rec.get
    bn, n, unit, v, t, bt = get("bn", ""), get("n", ""), get("u", get("bu")), rec["v"], get("t", 0), get("bt", 0)
    if type(bn) is not str or type(n) is not str or (unit is not None and type(unit) is not str):
        return None
    if "bu" in rec and type(rec["bu"]) is not str:
        return None
    if type(v) not in (int, float) or type(t) not in (int, float) or type(bt) not in (int, float):
        return None
    try:
        if not (math.isfinite(v) and math.isfinite(t) and math.isfinite(bt)):
            return None
    except OverflowError:  # an int no float holds: the general path refuses it as out_of_range
        return None
    if "bver" in rec:
        _check_version(rec["bver"], 0)
    name = bn + n
    if not _NAME_RE.match(name):
        return None
    t = float(bt) + float(t)
    out = {"n": name, "t": received_at + t if abs(t) < RELATIVE_LIMIT else t, "v": float(v)}
    if unit is not None:
        out["u"] = unit
    return out


def _slow_columns(pack: Any, received_at: float) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    records = _resolve(pack, received_at)
    for i, rec in enumerate(records):
        if "v" not in rec:
            raise Refusal(Reason.BAD_SCHEMA, "sensor records need a numeric value v", f"[{i}]")
    names = [r["n"] for r in records]
    units = [r.get("u", "") for r in records]
    t = np.array([r["t"] for r in records], dtype=np.float64)
    v = np.array([r["v"] for r in records], dtype=np.float64)
    return names, t, units, v


# --------------------------------------------------------------------------------------------
# The pack fast path: a logger's or gateway's buffer, column by column


class _Head(NamedTuple):
    """The first record of a plain pack, resolved: its base fields and its own record."""

    bn: str
    bt: float  # base time [s]
    bu: str  # base unit, "" if none: the unit of the later records that have no u
    name: str  # its own resolved name
    t: float  # its own resolved time [s], before the relative-time rule
    unit: str  # its own unit ("" if none)
    v: float  # its own value, as sent


class _Rest(NamedTuple):
    """The fields of the records after the first, one list entry per record, not checked yet."""

    names: list[Any]
    values: list[Any]
    times: list[Any] | None  # None: no record has t
    units: list[Any] | None  # None: no record has u


class _Codes(NamedTuple):
    """Distinct values of a column and, per record, the index of its own (None: all the first one)."""

    values: list[str]
    codes: np.ndarray | None


def _pack_head(first: Any) -> _Head | None:
    """The head of a pack whose first record has only bn, bt, bu, bver, n, u, v, t, every one of the type the
    reference asks for and a finite number where a number goes; None otherwise (the reference then decides)."""
    if type(first) is not dict or not first.keys() <= _FAST_FIRST_KEYS or "v" not in first:
        return None
    get = first.get
    bn, n, bu, v, t, bt = get("bn", ""), get("n", ""), get("bu"), first["v"], get("t", 0.0), get("bt", 0.0)
    unit = get("u", bu)
    if type(bn) is not str or type(n) is not str or not (bu is None or type(bu) is str):
        return None
    if not (unit is None or type(unit) is str) or not (is_number(v) and is_number(t) and is_number(bt)):
        return None
    ver = get("bver", SENML_VERSION)
    if type(ver) is not int or not 1 <= ver <= SENML_VERSION:
        return None
    return _Head(bn, float(bt), bu or "", bn + n, float(bt) + float(t), unit or "", float(v))


def _rest_columns(rest: list[Any]) -> _Rest | None:
    """The columns of records that are all objects of exactly the keys of the first of them, n and v with t, u,
    both or neither, gathered with C-level maps; None for anything else. Values are not checked here."""
    if set(map(type, rest)) != _DICT_ONLY:
        return None
    timed, united = "t" in rest[0], "u" in rest[0]
    if sum(map(len, rest)) != (2 + timed + united) * len(rest):
        return None
    try:  # every record has n and v (and t, u): with the length sum, exactly those keys
        return _Rest(list(map(_N, rest)), list(map(_V, rest)), list(map(_T, rest)) if timed else None,
                     list(map(_U, rest)) if united else None)
    except KeyError:
        return None


def _code(first: str, column: list[Any] | None, distinct: set[str], default: str, n: int) -> _Codes:
    """``_Codes`` of a column of ``n`` strings: ``first`` (the first record's), then ``column`` (``default`` for
    every record when None), whose ``distinct`` values the caller has checked are strings."""
    values = [first]
    code_of = {first: 0}
    for x in distinct if column is not None else (default,):
        if x not in code_of:
            code_of[x] = len(values)
            values.append(x)
    if len(values) == 1:
        return _Codes(values, None)
    codes = np.empty(n, dtype=np.intp)
    codes[0] = 0
    codes[1:] = code_of[default] if column is None else list(map(code_of.__getitem__, column))
    return _Codes(values, codes)


def _quantities(head: _Head, rest: _Rest, prefix: str, kind: str) -> _Codes | None:
    """The quantity of each record; None if a name is not a string, not a valid name, or not one of the
    quantities of ``kind`` measured by the topic's device (the reference then words the refusal)."""
    try:
        unique = set(rest.names)
    except TypeError:  # an unhashable name (an array or an object)
        return None
    if not all(type(n) is str for n in unique):
        return None
    names = _code(head.name[len(head.bn) :], rest.names, unique, "", len(rest.names) + 1)
    allowed = SENSOR_KINDS[kind]
    quantities = []
    for i, n in enumerate(names.values):
        name = head.name if i == 0 else head.bn + n
        if not name.startswith(prefix) or not _NAME_RE.match(name) or name[len(prefix) :] not in allowed:
            return None
        quantities.append(name[len(prefix) :])
    return _Codes(quantities, names.codes)


def _factors(head: _Head, rest: _Rest, quantities: _Codes, n: int) -> np.ndarray | None:
    """Per record, the factor from its unit to its quantity's canonical unit; None if a unit is not a string or
    not accepted for its quantity."""
    distinct: set[str] = set()
    if rest.units is not None:
        try:
            distinct = set(rest.units)
        except TypeError:  # an unhashable unit
            return None
        if not all(type(u) is str for u in distinct):
            return None
    units = _code(head.unit, rest.units, distinct, head.bu, n)
    table = np.array([[QUANTITIES[q].factors.get(u, np.nan) for u in units.values] for q in quantities.values],
                     dtype=np.float64)
    if quantities.codes is None and units.codes is None:
        return None if np.isnan(table[0, 0]) else np.full(n, table[0, 0])
    q_codes = quantities.codes if quantities.codes is not None else np.zeros(n, dtype=np.intp)
    u_codes = units.codes if units.codes is not None else np.zeros(n, dtype=np.intp)
    out = table.ravel()[q_codes * table.shape[1] + u_codes]
    return None if np.isnan(out).any() else out


def _fast_columns(pack: Any, received_at: float, kind: str, device: str) -> Batch | None:
    """The ``Batch`` of a plain pack, built column-wise with C-level list operations and numpy: a first record of
    bn, bt, bu, bver, n, u, v, t, then records of exactly ``{n, v}`` with ``t``, ``u``, both or neither (the same
    for all), with numbers for ``v`` and ``t`` (what a logger flushing its buffer or a gateway sends). None for any
    other shape and for any pack with something the reference refuses: the reference then decides and words the
    refusal, so a pack this path takes gives exactly the reference's ``Batch``
    (tests/ingest/test_senml_pack_fast.py)."""
    if type(pack) is not list or len(pack) < 2:
        return None
    head = _pack_head(pack[0])
    rest = _rest_columns(pack[1:]) if head is not None else None
    if head is None or rest is None:
        return None
    if not set(map(type, rest.values)) <= _NUMBER_TYPES:
        return None
    if rest.times is not None and not set(map(type, rest.times)) <= _NUMBER_TYPES:
        return None
    quantities = _quantities(head, rest, f"urn:dev:{device}:", kind)
    n = len(pack)
    factors = _factors(head, rest, quantities, n) if quantities is not None else None
    if quantities is None or factors is None:
        return None
    tv = _times_values(head, rest, received_at, factors)
    if tv is None or not _in_ranges(tv[1], quantities):
        return None
    codes = quantities.codes
    quantity = filled(n, quantities.values[0]) if codes is None else np.array(quantities.values, dtype=object)[codes]
    return Batch.build(n, device=filled(n, device), t=tv[0], quantity=quantity, value=tv[1])


def _times_values(
    head: _Head, rest: _Rest, received_at: float, factors: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Resolved times [s] and values in the canonical units, by the reference's arithmetic (bt + t, then the
    receive time added below ``RELATIVE_LIMIT``; 0.0 + v, times the unit's factor); None if a number is too
    large for a float or a time or value is not finite."""
    n = len(rest.values) + 1
    t = np.empty(n, dtype=np.float64)
    v = np.empty(n, dtype=np.float64)
    try:
        v[1:] = rest.values
        t[1:] = 0.0 if rest.times is None else rest.times
    except OverflowError:  # an int no float holds: the reference refuses it as out_of_range
        return None
    with np.errstate(over="ignore"):  # a sum beyond the float range is inf, refused below
        t[1:] += head.bt
    t[0], v[0] = head.t, head.v
    v += 0.0  # the reference adds the base value 0.0: -0.0 becomes 0.0
    if not (np.isfinite(t).all() and np.isfinite(v).all()):
        return None
    rel = np.abs(t) < RELATIVE_LIMIT
    if rel.any():
        t[rel] += received_at
    with np.errstate(over="ignore"):  # beyond the float range: inf, out of range
        v *= factors  # x * 1.0 is x: the reference multiplies only where the factor is not 1
    return t, v


def _in_ranges(value: np.ndarray, quantities: _Codes) -> bool:
    """Every value within its quantity's plausible range (``QUANTITIES``)."""
    if quantities.codes is None:
        spec = QUANTITIES[quantities.values[0]]
        return bool(((value >= spec.low) & (value <= spec.high)).all())
    low = np.array([QUANTITIES[q].low for q in quantities.values], dtype=np.float64)[quantities.codes]
    high = np.array([QUANTITIES[q].high for q in quantities.values], dtype=np.float64)[quantities.codes]
    return bool(((value >= low) & (value <= high)).all())


def _to_batch(names: Any, t: np.ndarray, units: Any, v: np.ndarray, *, kind: str, device: str) -> Batch:
    """Map resolved names/units/values to quantities of ``kind`` for ``device``; raise ``Refusal``.

    ``names`` and ``units`` are either one string for every record or one list entry per record.
    """
    n = len(t)
    prefix = f"urn:dev:{device}:"
    if isinstance(names, str):
        qmap = {names: _quantity_of(names, prefix, kind)}
        quantity = np.full(n, qmap[names], dtype=object)
    else:
        qmap = {name: _quantity_of(name, prefix, kind) for name in set(names)}
        quantity = np.array([qmap[x] for x in names], dtype=object)
    single_q = len(set(qmap.values())) == 1
    if isinstance(units, str):
        pairs = {(q, units) for q in set(qmap.values())}
        unit_arr = None
    else:
        unit_arr = np.array(units, dtype=object)
        pairs = set(zip(quantity.tolist(), units, strict=True))
    value = v.copy()
    for q, u in pairs:
        factor = QUANTITIES[q].factors.get(u)
        if factor is None:
            raise Refusal(Reason.BAD_UNIT, f"unit {u!r} not accepted for {q} (use {QUANTITIES[q].unit})", "u")
        if factor != 1.0:
            mask = np.ones(n, dtype=bool) if single_q else quantity == q
            if unit_arr is not None:
                mask &= unit_arr == u
            value[mask] *= factor
    _check_ranges(quantity, value, t, single=single_q)
    return Batch.build(n, device=np.full(n, device, dtype=object), t=t, quantity=quantity, value=value)


def _quantity_of(name: str, prefix: str, kind: str) -> str:
    if not name.startswith(prefix):
        if name.startswith("urn:dev:"):
            raise Refusal(Reason.IDENTITY_MISMATCH, f"name {name[:80]!r} is not from device {prefix}", "bn")
        raise Refusal(Reason.BAD_SCHEMA, f"name {name[:80]!r} does not start with {prefix!r}", "bn")
    q = name[len(prefix) :]
    if q not in SENSOR_KINDS[kind]:
        raise Refusal(Reason.BAD_SCHEMA, f"{kind} sensors measure {SENSOR_KINDS[kind]}, not {q[:40]!r}", "n")
    return q


def _check_ranges(quantity: np.ndarray, value: np.ndarray, t: np.ndarray, single: bool) -> None:
    if not np.isfinite(t).all():
        raise Refusal(Reason.OUT_OF_RANGE, "time is not finite", "t")
    for q in [quantity[0]] if single else set(quantity.tolist()):
        spec = QUANTITIES[q]
        vals = value if single else value[quantity == q]
        bad = ~((vals >= spec.low) & (vals <= spec.high))
        if bad.any():
            x = float(vals[bad][0])
            raise Refusal(Reason.OUT_OF_RANGE, f"{q} {x} outside [{spec.low}, {spec.high}] {spec.unit}", "v")


# --------------------------------------------------------------------------------------------
# Encoder


def encode_senml(batch: Batch, *, relative: bool = True) -> bytes:
    """Encode the rows of one device as a SenML pack (values in canonical units).

    With ``relative`` the first record carries ``bn``, ``bt`` (the first time) and ``bu`` (when one unit
    covers the pack) and later records carry ``t`` relative to ``bt``; otherwise every record carries its
    absolute ``t``. Raises ``ValueError`` for an empty batch or one with several devices.
    """
    if len(batch) == 0:
        raise ValueError("cannot encode an empty batch")
    devices = set(batch.device.tolist())
    if len(devices) != 1:
        raise ValueError(f"one device per pack, got {sorted(devices)}")
    device = devices.pop()
    quantities, ts, vs = batch.quantity.tolist(), batch.t.tolist(), batch.value.tolist()
    units = {QUANTITIES[q].unit for q in quantities}
    one_unit = units.pop() if len(units) == 1 else None
    bt = ts[0] if relative else 0.0
    recs: list[dict[str, Any]] = []
    for q, t, v in zip(quantities, ts, vs, strict=True):
        rec: dict[str, Any] = {"n": q, "v": v}
        if one_unit is None:
            rec["u"] = QUANTITIES[q].unit
        rec["t"] = t - bt
        recs.append(rec)
    head: dict[str, Any] = {"bn": f"urn:dev:{device}:"}
    if relative:
        head["bt"] = bt
    if one_unit is not None:
        head["bu"] = one_unit
    recs[0] = head | recs[0]
    if math.isclose(recs[0]["t"], 0.0) and relative:
        del recs[0]["t"]
    return json.dumps(recs, separators=(",", ":")).encode()
