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

Large packs of plain ``{"n","v","t"}`` records after a base record (what a logger flushing its buffer
sends) take a fast path that builds the columns with C-level list operations and numpy; it gives the
same result as the general path and falls back to it whenever the pack has any other shape.
"""

from __future__ import annotations

import json
import math
import re
from operator import itemgetter
from typing import Any

import numpy as np

from ingest.batch import Batch
from ingest.decoders._common import guarded, is_number, load_json, number
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
_NV = itemgetter("n", "v")
_NVT = itemgetter("n", "v", "t")


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
    out = senml_records(load_json(payload), kind=parts[-2], device=parts[-1], received_at=received_at)
    return row_batch(out) if type(out) is tuple else out


Row = tuple[str, float, str, float]
"""One decoded record: (device, t [s], quantity, value in the canonical unit)."""


def row_batch(row: Row) -> Batch:
    """The one-record ``Batch`` of a ``Row``."""
    device, t, quantity, value = row
    return Batch.build(1, device=device, t=t, quantity=quantity, value=value)


def senml_records(pack: Any, *, kind: str, device: str, received_at: float) -> Row | Batch:
    """The records of a parsed SenML pack (``json.loads`` of the payload) sent by ``device`` of ``kind``.

    A one-record pack comes back as a plain ``Row`` (the ingest loop's fast path: no numpy arrays per
    message), others as a ``Batch``. Raises ``Refusal`` for bad input.
    """
    single = _single(pack, received_at, kind, device)
    if single is not None:
        return single
    cols = _fast_columns(pack, received_at)
    if cols is None:
        cols = _slow_columns(pack, received_at)
    return _to_batch(*cols, kind=kind, device=device)


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


def _fast_columns(pack: Any, received_at: float) -> tuple[Any, np.ndarray, Any, np.ndarray] | None:
    """Columns of a ``[{base..., n, v[, t][, u]}, {n, v[, t]}, ...]`` pack, or None for another shape."""
    if not isinstance(pack, list) or len(pack) < 2 or not isinstance(pack[0], dict):
        return None
    first, rest = pack[0], pack[1:]
    if not first.keys() <= _FAST_FIRST_KEYS or "n" not in first or "v" not in first:
        return None
    if set(map(type, rest)) != {dict}:
        return None
    getter = _NVT if "t" in rest[0] else _NV
    width = 3 if getter is _NVT else 2
    if sum(map(len, rest)) != width * len(rest):
        return None
    try:
        cols = list(zip(*map(getter, rest), strict=True))
    except (KeyError, TypeError, ValueError):
        return None
    base_unit, unit = first.get("bu"), first.get("u", first.get("bu"))
    if unit != base_unit or (base_unit is not None and not isinstance(base_unit, str)):
        return None
    bn, bt = first.get("bn", ""), first.get("bt", 0.0)
    ft = first.get("t", 0.0)
    if not isinstance(bn, str) or not (is_number(bt) and is_number(ft)):
        return None
    if "bver" in first:
        _check_version(first["bver"], 0)
    ns = (first["n"], *cols[0])
    vals = (first["v"], *cols[1])
    if not set(map(type, ns)) <= {str} or not set(map(type, vals)) <= {int, float}:
        return None
    ts = (ft, *cols[2]) if width == 3 else (ft, *([0] * len(rest)))
    if not set(map(type, ts)) <= {int, float}:
        return None
    try:
        t = np.array(ts, dtype=np.float64) + float(bt)
        v = np.array(vals, dtype=np.float64)
    except OverflowError:  # an int no float holds: the general path refuses it as out_of_range
        return None
    if not (np.isfinite(t).all() and np.isfinite(v).all()):
        return None
    rel = np.abs(t) < RELATIVE_LIMIT
    if rel.any():
        t[rel] += received_at
    unique = {bn + n for n in set(ns)}
    if not all(_NAME_RE.match(n) for n in unique):
        return None
    names: Any = bn + ns[0] if len(unique) == 1 else [bn + n for n in ns]
    return names, t, unit or "", v


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
