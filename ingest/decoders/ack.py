"""Field-unit acknowledgements from ``city/units/{unit}/ack``: ``{"alert","status","t"}``.

Each becomes one record: ``quantity`` = the status (``ack``, ``on_scene``, ``resolved``), ``ref`` = the
alert identifier, ``t`` [s since epoch]; ``value`` is NaN.
"""

from __future__ import annotations

import json
from typing import Any

from ingest.batch import Batch
from ingest.decoders._common import guarded, load_json, number, preview
from ingest.decoders.units import ACK_STATUSES
from ingest.rejection import Reason, Refusal

MAX_ALERT_ID = 256
"""Longest alert identifier accepted [character]."""


@guarded
def decode_ack(payload: bytes, *, topic: str, received_at: float) -> Batch:
    """Decode one acknowledgement; the unit id is the topic segment before ``ack``."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "ack" or not parts[-2]:
        raise Refusal(Reason.BAD_SCHEMA, f"topic {topic!r} is not .../units/{{unit}}/ack", "topic")
    return ack_records(load_json(payload), unit=parts[-2])


def ack_records(doc: Any, *, unit: str) -> Batch:
    """The record of a parsed acknowledgement of ``unit``; raises ``Refusal`` for bad input."""
    if not isinstance(doc, dict):
        raise Refusal(Reason.BAD_SCHEMA, "an ack is a JSON object", "payload")
    missing = [k for k in ("alert", "status", "t") if k not in doc]
    if missing:
        raise Refusal(Reason.BAD_SCHEMA, f"missing {missing}", missing[0])
    extra = doc.keys() - {"alert", "status", "t"}
    if extra:
        raise Refusal(Reason.BAD_SCHEMA, f"unknown fields {sorted(extra)[:5]}", sorted(extra)[0])
    alert, status, t = doc["alert"], doc["status"], doc["t"]
    if not isinstance(alert, str) or not alert or len(alert) > MAX_ALERT_ID:
        raise Refusal(Reason.BAD_SCHEMA, "alert must be a non-empty identifier", "alert")
    if status not in ACK_STATUSES:
        raise Refusal(Reason.BAD_SCHEMA, f"status {preview(status)} not in {ACK_STATUSES}", "status")
    return Batch.build(1, device=unit, t=number(t, "t", "t"), quantity=status, ref=alert)


def encode_ack(batch: Batch) -> bytes:
    """Encode the first row of an ack batch as JSON. Raises ``ValueError`` on an empty batch."""
    if len(batch) == 0:
        raise ValueError("cannot encode an empty batch")
    r = next(iter(batch.records()))
    return json.dumps(
        {"alert": r["ref"], "status": r["quantity"], "t": r["t"]}, separators=(",", ":")
    ).encode()
