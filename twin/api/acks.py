"""Operator acknowledgements over HTTP: checked here, applied by the core (`twin.live.core.TwinCore.acknowledge`).

The acknowledgement is durable before it is applied: the live service logs it in its raw log as a
``$twin/ack`` control record, and the core applies it on the ingest thread, in order with the data
and the ticks (`twin.live.service.LiveService.acknowledge`); this waits for that, so the answer
says what happened, and a restart after a crash replays it. The core records the acknowledgement
in the store and publishes a CAP Update listing ``acknowledgedBy`` through the outbox (retained on
``alerts/{id}``, and to every field unit that had the alert); every later message of the alert
lists the operators too.

An operator who had already acknowledged the alert gets 200 with ``already`` true, ``message``
null (nothing is published) and ``t`` the time of the first acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.api.errors import ApiError
from twin.api.view import TwinView
from twin.live.query import AckTimeoutError, AckUnavailableError, AlertNotActiveError


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

    An operator who already acknowledged the alert changes nothing (``already`` is True, ``message`` None).
    Raises `ApiError` 404 for an unknown alert, 409 for a cancelled one, 503 ``ack_timeout`` when the twin did
    not apply it in time (it stays queued; asking again is safe) and 503 ``ack_unavailable`` when the service
    takes no acknowledgement (stopping, or too many waiting).
    """
    try:
        event = view.acknowledge(alert_id, operator, note, t)
    except AlertNotActiveError:
        raise _not_active(view, alert_id) from None
    except AckTimeoutError as exc:
        raise ApiError(503, "ack_timeout", str(exc), headers={"Retry-After": "5"}) from None
    except AckUnavailableError as exc:
        raise ApiError(503, "ack_unavailable", str(exc), headers={"Retry-After": "5"}) from None
    acks = view.acks(alert_id)
    when = event.t if event else next((a["t"] for a in reversed(acks) if a["actor"] == operator), t)
    message = event.message["identifier"] if event else None
    return AckResult(alert_id, operator, when, message, event is None, acks)
