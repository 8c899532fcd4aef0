"""Field-unit acknowledgements from ``city/units/{unit}/ack``: ``{"alert","status","t"}``.

Each becomes one record: ``quantity`` = the status (``ack``, ``on_scene``, ``resolved``), ``ref`` = the
alert identifier, ``t`` [s since epoch]; ``value`` is NaN.
"""

from __future__ import annotations

import json

from ingest.batch import Batch
from ingest.decoders._common import guarded, is_number, parse_json
from ingest.decoders.units import ACK_STATUSES
from ingest.rejection import Reason, Rejection, reject

MAX_ALERT_ID = 256
"""Longest alert identifier accepted [character]."""


@guarded
def decode_ack(payload: bytes, *, topic: str, received_at: float) -> Batch | Rejection:
    """Decode one acknowledgement; the unit id is the topic segment before ``ack``."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "ack" or not parts[-2]:
        return reject(Reason.BAD_SCHEMA, f"topic {topic!r} is not .../units/{{unit}}/ack", payload, "topic")
    doc = parse_json(payload)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict):
        return reject(Reason.BAD_SCHEMA, "an ack is a JSON object", payload, "payload")
    missing = [k for k in ("alert", "status", "t") if k not in doc]
    if missing:
        return reject(Reason.BAD_SCHEMA, f"missing {missing}", payload, missing[0])
    extra = doc.keys() - {"alert", "status", "t"}
    if extra:
        return reject(Reason.BAD_SCHEMA, f"unknown fields {sorted(extra)[:5]}", payload, sorted(extra)[0])
    alert, status, t = doc["alert"], doc["status"], doc["t"]
    if not isinstance(alert, str) or not alert or len(alert) > MAX_ALERT_ID:
        return reject(Reason.BAD_SCHEMA, "alert must be a non-empty identifier", payload, "alert")
    if status not in ACK_STATUSES:
        return reject(
            Reason.BAD_SCHEMA, f"status {str(status)[:30]!r} not in {ACK_STATUSES}", payload, "status"
        )
    if not is_number(t):
        return reject(Reason.BAD_SCHEMA, "t must be a finite number", payload, "t")
    return Batch.build(1, device=parts[-2], t=float(t), quantity=status, ref=alert)


def encode_ack(batch: Batch) -> bytes:
    """Encode the first row of an ack batch as JSON. Raises ``ValueError`` on an empty batch."""
    if len(batch) == 0:
        raise ValueError("cannot encode an empty batch")
    r = next(iter(batch.records()))
    return json.dumps(
        {"alert": r["ref"], "status": r["quantity"], "t": r["t"]}, separators=(",", ":")
    ).encode()
