"""JSON positions from ``city/beidou/{device}``: ``{"id","t","lon","lat","speed_kmh","course","crs"}``.

A payload is one object or an array of objects of the same device. ``crs`` is ``CGCS2000`` (default),
``WGS84`` or ``GCJ02``; the datum is carried in ``Batch.datum`` and not converted here (the twin does).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ingest.batch import Batch
from ingest.decoders._common import guarded, last_segment, load_json, number, preview
from ingest.decoders.units import DATUMS
from ingest.rejection import Reason, Refusal

_KEYS = frozenset({"id", "t", "lon", "lat", "speed_kmh", "course", "crs"})
_RANGES = {"lon": (-180.0, 180.0), "lat": (-90.0, 90.0), "speed_kmh": (0.0, 2000.0), "course": (0.0, 360.0)}


@guarded
def decode_position(payload: bytes, *, topic: str, received_at: float) -> Batch:
    """Decode JSON position(s) into ``position`` records (lon/lat [degree], speed [km h-1], course [degree])."""
    return position_records(load_json(payload), device=last_segment(topic))


def position_records(doc: Any, *, device: str) -> Batch:
    """The ``position`` records of a parsed payload of ``device``; raises ``Refusal`` for bad input."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise Refusal(Reason.BAD_SCHEMA, "empty array", "payload")
    rows = [_row(item, i, device) for i, item in enumerate(items)]
    cols = list(zip(*rows, strict=True))
    return Batch.build(
        len(rows),
        device=device,
        t=cols[0],
        quantity="position",
        lon=cols[1],
        lat=cols[2],
        speed_kmh=cols[3],
        course_deg=cols[4],
        datum=list(cols[5]),
    )


def _row(item: Any, i: int, device: str) -> tuple:
    if not isinstance(item, dict):
        raise Refusal(Reason.BAD_SCHEMA, f"position {i} is not an object", f"[{i}]")
    extra = item.keys() - _KEYS
    if extra:
        raise Refusal(Reason.BAD_SCHEMA, f"unknown fields {sorted(extra)[:5]}", f"[{i}].{sorted(extra)[0]}")
    for key in ("id", "t", "lon", "lat"):
        if key not in item:
            raise Refusal(Reason.BAD_SCHEMA, f"missing {key}", f"[{i}].{key}")
    if not isinstance(item["id"], str):
        raise Refusal(Reason.BAD_SCHEMA, "id must be a string", f"[{i}].id")
    if item["id"] != device:
        raise Refusal(
            Reason.IDENTITY_MISMATCH, f"id {item['id'][:60]!r} on the topic of {device!r}", f"[{i}].id"
        )
    vals = {}
    for key in ("t", "lon", "lat", "speed_kmh", "course"):
        x = item.get(key)
        if x is None and key in ("speed_kmh", "course"):
            vals[key] = math.nan
            continue
        x = number(x, f"[{i}].{key}", key)
        lo, hi = _RANGES.get(key, (-math.inf, math.inf))
        if not lo <= x <= hi:
            raise Refusal(Reason.OUT_OF_RANGE, f"{key} {x} outside [{lo}, {hi}]", f"[{i}].{key}")
        vals[key] = x
    crs = item.get("crs", "CGCS2000")
    if crs not in DATUMS:
        raise Refusal(Reason.BAD_SCHEMA, f"crs {preview(crs)} not one of {DATUMS}", f"[{i}].crs")
    return vals["t"], vals["lon"], vals["lat"], vals["speed_kmh"], vals["course"], crs


def encode_position(batch: Batch) -> bytes:
    """Encode ``position`` rows of one device as JSON (an object for one row, else an array)."""
    items = []
    for r in batch.records():
        item: dict[str, Any] = {"id": r["device"], "t": r["t"], "lon": r["lon"], "lat": r["lat"]}
        if not math.isnan(r["speed_kmh"]):
            item["speed_kmh"] = r["speed_kmh"]
        if not math.isnan(r["course_deg"]):
            item["course"] = r["course_deg"]
        item["crs"] = r["datum"] or "CGCS2000"
        items.append(item)
    return json.dumps(items[0] if len(items) == 1 else items, separators=(",", ":")).encode()
