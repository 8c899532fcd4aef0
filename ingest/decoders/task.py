"""Field units' answers to their tasks, from ``city/units/{unit}/tasks/status``:
``{"case", "status", "t"[, "note"]}``.

Each answer becomes one record: ``device`` = the unit, ``quantity`` = ``task_{status}`` (``status`` one of
``ingest.decoders.units.TASK_STATUSES``), ``ref`` = the case id, ``t`` [s since epoch], ``note`` = the unit's
note ("" without one); ``value`` is NaN. Whether the case exists and is the unit's is the twin's to decide.
"""

from __future__ import annotations

import json
from typing import Any

from ingest.batch import Batch
from ingest.decoders._common import guarded, load_json, number, preview
from ingest.decoders.units import TASK_STATUSES
from ingest.rejection import Reason, Refusal

MAX_CASE_ID = 128
"""Longest case id accepted [character]."""
MAX_NOTE = 500
"""Longest note accepted [character]."""
QUANTITY_PREFIX = "task_"
"""A task answer's ``quantity`` is this prefix and its status."""
REQUIRED = ("case", "status", "t")
FIELDS = frozenset((*REQUIRED, "note"))


@guarded
def decode_task(payload: bytes, *, topic: str, received_at: float) -> Batch:
    """Decode one task answer; the unit id is the topic segment before ``tasks/status``."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[-2:] != ["tasks", "status"] or not parts[-3]:
        raise Refusal(Reason.BAD_SCHEMA, f"topic {topic[:120]!r} is not .../units/{{unit}}/tasks/status", "topic")
    return task_records(load_json(payload), unit=parts[-3])


def task_records(doc: Any, *, unit: str) -> Batch:
    """The record of a parsed task answer of ``unit``; raises ``Refusal`` for bad input."""
    check_fields(doc, "a task answer", REQUIRED, FIELDS)
    case = text_field(doc["case"], "case", low=1, high=MAX_CASE_ID)
    status = doc["status"]
    if status not in TASK_STATUSES:
        raise Refusal(Reason.BAD_SCHEMA, f"status {preview(status)} not in {TASK_STATUSES}", "status")
    t = number(doc["t"], "t", "t")
    note = text_field(doc["note"], "note", low=0, high=MAX_NOTE) if "note" in doc else ""
    return Batch.build(1, device=unit, t=t, quantity=QUANTITY_PREFIX + status, ref=case, note=note)


def encode_task_status(batch: Batch) -> bytes:
    """Encode the first row of a task-answer batch as JSON (``note`` left out when empty). Raises ``ValueError``
    on an empty batch or a row that is not a task answer."""
    if len(batch) == 0:
        raise ValueError("cannot encode an empty batch")
    r = next(iter(batch.records()))
    if not r["quantity"].startswith(QUANTITY_PREFIX):
        raise ValueError(f"quantity {r['quantity']!r} is not a task answer")
    doc = {"case": r["ref"], "status": r["quantity"][len(QUANTITY_PREFIX) :], "t": r["t"]}
    if r["note"]:
        doc["note"] = r["note"]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# --- checks shared with ingest.decoders.report ------------------------------------------------------------


def check_fields(doc: Any, what: str, required: tuple[str, ...], allowed: frozenset[str]) -> None:
    """``doc`` is a JSON object with every ``required`` field and no field outside ``allowed``; raises
    ``Refusal(bad_schema)`` naming the first missing or unknown field."""
    if not isinstance(doc, dict):
        raise Refusal(Reason.BAD_SCHEMA, f"{what} is a JSON object, not {preview(doc)}", "payload")
    missing = [k for k in required if k not in doc]
    if missing:
        raise Refusal(Reason.BAD_SCHEMA, f"{what} lacks the required fields {missing}", missing[0])
    extra = sorted(doc.keys() - allowed)
    if extra:
        shown = ", ".join(preview(k) for k in extra[:5])
        allowed_text = ", ".join(sorted(allowed))
        raise Refusal(Reason.BAD_SCHEMA, f"unknown fields {shown} (allowed: {allowed_text})", extra[0])


def text_field(x: Any, field: str, *, low: int, high: int) -> str:
    """``x`` as text of ``low`` to ``high`` characters; raises ``Refusal(bad_schema)`` for anything else,
    including text with a lone surrogate (a ``"\\ud800"`` escape), which no UTF-8 output could carry."""
    if type(x) is not str:
        raise Refusal(Reason.BAD_SCHEMA, f"{field} must be text, not {preview(x)}", field)
    if not low <= len(x) <= high:
        raise Refusal(Reason.BAD_SCHEMA, f"{field} has {len(x)} characters, allowed {low} to {high}", field)
    try:
        x.encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal(Reason.BAD_SCHEMA, f"{field} is not valid Unicode text (a lone surrogate)", field) from None
    return x
