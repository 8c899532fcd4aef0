"""An operator's acknowledgement as a CAP 1.2 ``Update`` of the alert (pure functions, no I/O).

The retained ``city/alerts/{identifier}`` message is the alert's current CAP message, so an
acknowledgement becomes visible there as an ``Update`` that repeats the alert's content,
references the message it follows, lists every operator who acknowledged it as a
``parameter`` ``acknowledgedBy`` (one per operator, in order), and says in the CAP ``note``
who acknowledged it, when, and with what note. Its identifier is the alert's identifier plus
``.ack{n}`` (n: the number of operator acknowledgements so far), a namespace of its own, so it
never collides with the core's ``.update{n}`` / ``.cancel{n}`` messages.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from twin.alerting import cap

ACK_PARAMETER = "acknowledgedBy"


def with_acknowledgements(message: dict, operators: Sequence[str]) -> dict:
    """A copy of a CAP message whose every ``info`` lists ``acknowledgedBy`` once per operator.

    Earlier ``acknowledgedBy`` parameters are replaced; every other parameter is kept, in order.
    """
    out = copy.deepcopy(message)
    for info in out.get("info", []):
        kept = [p for p in info.get("parameter", []) if p["valueName"] != ACK_PARAMETER]
        info["parameter"] = kept + cap.name_values((ACK_PARAMETER, op) for op in operators)
    return out


def acknowledged_by(message: dict) -> list[str]:
    """Operators a CAP message lists as having acknowledged it."""
    return [p["value"] for info in message.get("info", []) for p in info.get("parameter", [])
            if p["valueName"] == ACK_PARAMETER]


def ack_update(alert_id: str, current: dict, previous: dict, operators: Sequence[str], t: float,
               note: str = "") -> dict:
    """The CAP ``Update`` announcing the latest of ``operators``' acknowledgements.

    Parameters
    ----------
    alert_id : str
        Identifier of the alert (its first message).
    current : dict
        The alert's current content (its last CAP message from the twin); copied, not changed.
    previous : dict
        The message this one follows (the alert's latest published message), for ``references``.
    operators : sequence of str
        Everyone who acknowledged the alert so far, oldest first; the last one is the new one.
    t : float
        Time of the acknowledgement. [unix s]
    note : str
        The operator's note, if any.
    """
    if not operators:
        raise ValueError("an acknowledgement Update needs at least one operator")
    message = with_acknowledgements(current, operators)
    stamp = cap.cap_time(t)
    text = f"Acknowledged by operator {operators[-1]} at {stamp}" + (f": {note}" if note else "")
    message.update(identifier=f"{alert_id}.ack{len(operators)}", sent=stamp, msgType="Update",
                   references=cap.reference(previous), note=text)
    return message
