"""Moving entities across districts: handover records and who holds a vehicle or unit (docs/city-deployment.md 5).

The ingest workers route each fix of a vehicle or field unit to the district its position lies in, so a fix is
never lost at a border: it is applied by the district it lies in. That district may not have held the entity
before. It then *claims* it: it publishes a handover record on the shared partition ``handover`` of the stream,

====================  ================================================================================
header / field        value
====================  ================================================================================
``Twin-Kind``         ``handover``
``Twin-Time``         the fix's time [s since 1970-01-01 UTC], ``repr(float)``
``Twin-District``     the claiming twin's partition
data                  JSON ``{"device": id, "t": fix time, "district": partition}``
message id            ``handover:<partition>:<device digest>:<t>`` (a replay after a restart is stored once)
====================  ================================================================================

and every district twin reads that partition (`twin.live.district_feed`). A twin that holds the entity compares
its own last fix with the claim's, as ``(t, partition)`` pairs so that equal times still name one holder:

- its own is older: it *drops* the entity (not located any more: no alerts are routed to it here; its last fix
  time becomes the claim's, so a late fix older than the claim does not bring it back);
- its own is newer (a fix came back to this district before the claim was read): it claims again, with its own
  fix, and the other twin drops it when it reads that.

Every claim carries a later fix than the one it answers, so the exchange ends, with the twin of the latest fix
holding the entity and the others not. A twin that does not hold the entity only takes the claim's time as its
last fix time (the same rule as a drop).

A dropped entity stays in the twin's entity table (it is in the registry) with ``row = col = -1``: that is how
`twin.live.entities.Entity` says "not located", so the state module needs no change.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from ingest.batch import Batch
from ingest.stream.base import HANDOVER, KIND, TIME, Record
from twin.live.entities import Entity, EntityTable

HANDOVER_PARTITION = "handover"
"""The shared partition of handover records (subject ``twin.batches.handover`` on JetStream)."""
DISTRICT = "Twin-District"
"""Header of a handover record: the partition of the twin that claims the entity."""
MOVER_KINDS = ("vehicle", "unit")
"""Entity kinds handed over between districts."""


@dataclass(frozen=True)
class Handover:
    """A claim: ``district`` holds ``device`` since its fix at ``t`` [s since 1970-01-01 UTC]."""

    device: str
    t: float
    district: str

    def message(self) -> tuple[bytes, str, dict[str, str]]:
        """``(data, message id, headers)`` of the handover record (module docstring)."""
        data = json.dumps({"device": self.device, "t": self.t, "district": self.district}).encode()
        digest = hashlib.blake2b(self.device.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        return data, f"handover:{self.district}:{digest}:{self.t!r}", {KIND: HANDOVER, TIME: repr(self.t),
                                                                       DISTRICT: self.district}


def parse_handover(record: Record) -> Handover | None:
    """The claim a record carries; None when it is not a well-formed handover record."""
    if record.kind != HANDOVER:
        return None
    try:
        doc = json.loads(record.data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    device, t, district = doc.get("device"), doc.get("t"), doc.get("district")
    if not (isinstance(device, str) and device and isinstance(district, str) and district
            and isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)):
        return None
    return Handover(device, float(t), district)


# ---------------------------------------------------------------- who holds what
def movers_in(batch: Batch, table: EntityTable) -> dict[str, bool]:
    """The vehicles and units with a position fix in ``batch``, each with whether this twin holds it now."""
    rows = batch.quantity == "position"
    if not rows.any():
        return {}
    out = {}
    for device in np.unique(batch.device[rows]).tolist():
        e = table.entities.get(str(device))
        if e is not None and e.kind in MOVER_KINDS:
            out[e.id] = e.located
    return out


def new_holds(before: dict[str, bool], table: EntityTable, district: str) -> list[Handover]:
    """The claims of the entities located now that were not held before (``movers_in`` before the batch)."""
    out = []
    for device, held in before.items():
        e = table.entities.get(device)
        if not held and e is not None and e.located:
            out.append(Handover(device, float(e.t), district))
    return out


def drop(entity: Entity, t: float) -> None:
    """This twin no longer holds ``entity``: not located, last fix time ``t`` (the claim's) if that is later."""
    entity.row = entity.col = -1
    entity.lon = entity.lat = entity.x = entity.y = float("nan")
    entity.speed_kmh = entity.course_deg = float("nan")
    entity.t = t if math.isnan(entity.t) else max(entity.t, t)


def answer(table: EntityTable, claim: Handover, district: str) -> str:
    """Apply another twin's claim to this twin's ``table`` (module docstring); what was done: ``drop``, ``reclaim``
    (this twin keeps it and must claim again), ``note`` (not held here: its last fix time taken) or ``ignore``
    (this twin's own claim, or an entity it does not know)."""
    e = table.entities.get(claim.device)
    if claim.district == district or e is None or e.kind not in MOVER_KINDS:
        return "ignore"
    if not e.located:
        e.t = claim.t if math.isnan(e.t) else max(e.t, claim.t)
        return "note"
    if (e.t, district) > (claim.t, claim.district):
        return "reclaim"
    drop(e, claim.t)
    return "drop"


__all__ = ["DISTRICT", "HANDOVER_PARTITION", "MOVER_KINDS", "Handover", "answer", "drop", "movers_in", "new_holds",
           "parse_handover"]
