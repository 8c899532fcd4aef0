"""Operator acknowledgements: recorded in the store and published as a CAP Update.

`acknowledge` runs under the core's lock, so no tick can slip an Update of the same alert
between reading its current message and storing the acknowledgement's message. The Update
goes through the store's outbox like every other message (retained on ``alerts/{id}``, and
to every field unit that had the alert), so a broker outage delays it but loses nothing.

Not logged in the raw log: after a crash, recovery from a snapshot taken before the
acknowledgement does not see it in the core (the store keeps it, and its message). The core
does not copy ``acknowledgedBy`` onto its own later Updates either. Both need a hook in the
service and core (see the API's report); until then this module is the whole mechanism.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twin.api.ackcap import ack_update
from twin.api.errors import ApiError
from twin.api.view import TwinView

OPERATOR = "operator"


@dataclass(frozen=True)
class AckResult:
    """What an acknowledgement did."""

    alert: str
    operator: str
    t: float
    message: str | None
    already: bool
    acks: list[dict]


def operators_of(acks: list[dict]) -> list[str]:
    """Operators who acknowledged, oldest first, each once."""
    return list(dict.fromkeys(a["actor"] for a in acks if a["kind"] == OPERATOR and a["status"] == "ack"))


def _alert_row(alert, t: float) -> dict:
    return {"identifier": alert.identifier, "hazard": alert.hazard, "level": int(alert.level), "state": "active",
            "raised_at": alert.raised_at, "updated_at": t, "cancelled_at": None,
            "cells": [int(c) for c in alert.cells]}


def _not_active(view: TwinView, alert_id: str) -> ApiError:
    if view.alert_row(alert_id) is None:
        return ApiError(404, "unknown_alert", f"no alert {alert_id!r}")
    return ApiError(409, "alert_not_active", f"alert {alert_id!r} has been cancelled; nothing to acknowledge")


def acknowledge(view: TwinView, alert_id: str, operator: str, note: str = "", t: float | None = None) -> AckResult:
    """Record an operator's acknowledgement of an active alert and publish the CAP Update.

    An operator who already acknowledged the alert changes nothing (``already`` is True).
    Raises `ApiError` 404 for an unknown alert and 409 for a cancelled one.
    """
    core, store = view.core, view.store
    with core.lock:
        if t is None:  # twin time, never before the tick the operator saw
            t = max(view.now(), view.last_tick() or float("-inf"))
        alert = core.book.active.get(alert_id)
        if alert is None:
            raise _not_active(view, alert_id)
        before = operators_of(store.acks(alert_id))
        if operator in before:
            return AckResult(alert_id, operator, t, None, True, store.acks(alert_id))
        store.record_ack(alert_id, operator, OPERATOR, "ack", t)
        previous = store.messages(alert_id)[-1]
        message = ack_update(alert_id, alert.last, previous, [*before, operator], t, note)
        body = json.dumps(message, separators=(",", ":")).encode()
        area = core.router.areas.get(alert_id)
        units = sorted(area.delivered) if area else []
        outbox = [(f"{view.prefix}alerts/{alert_id}", body, True)]
        outbox += [(f"{view.prefix}units/{u}/alerts", body, False) for u in units]
        store.record(_alert_row(alert, t), message, outbox)
    view.wake_publisher()
    return AckResult(alert_id, operator, t, message["identifier"], False, store.acks(alert_id))
