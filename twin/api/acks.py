"""Operator acknowledgements over HTTP: checked here, applied by the core (`twin.live.core.TwinCore.acknowledge`).

The core records the acknowledgement in the store and publishes a CAP Update listing
``acknowledgedBy`` through the outbox (retained on ``alerts/{id}``, and to every field unit that
had the alert); every later message of the alert lists the operators too. It runs under the
core's lock, in order with the ticks.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.api.errors import ApiError
from twin.api.view import TwinView
from twin.live.query import AlertNotActiveError


@dataclass(frozen=True)
class AckResult:
    """What an acknowledgement did."""

    alert: str
    operator: str
    t: float
    message: str | None
    already: bool
    acks: list[dict]


def _not_active(view: TwinView, alert_id: str) -> ApiError:
    if view.alert_row(alert_id) is None:
        return ApiError(404, "unknown_alert", f"no alert {alert_id!r}")
    return ApiError(409, "alert_not_active", f"alert {alert_id!r} has been cancelled; nothing to acknowledge")


def acknowledge(view: TwinView, alert_id: str, operator: str, note: str = "", t: float | None = None) -> AckResult:
    """Have the core record an operator's acknowledgement of an active alert and publish its CAP Update.

    An operator who already acknowledged the alert changes nothing (``already`` is True).
    Raises `ApiError` 404 for an unknown alert and 409 for a cancelled one.
    """
    try:
        event = view.acknowledge(alert_id, operator, note, t)
    except AlertNotActiveError:
        raise _not_active(view, alert_id) from None
    acks = view.acks(alert_id)
    when = event.t if event else next((a["t"] for a in reversed(acks) if a["actor"] == operator), t)
    message = event.message["identifier"] if event else None
    return AckResult(alert_id, operator, when, message, event is None, acks)
