"""Alert routes: the list as GeoJSON, the history with timelines, one alert as CAP JSON or CAP 1.2 XML, operator
acknowledgement."""

from __future__ import annotations

import hmac
import math
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from twin.alerting import cap
from twin.api import geojson
from twin.api.acks import acknowledge
from twin.api.alert_history import alert_history, period
from twin.api.errors import ApiError
from twin.api.schemas import AckRequest, AckResponse, AlertHistory
from twin.api.state import ApiState

_bearer = HTTPBearer(auto_error=False, description="the API token of the service (writes only)")


def token_check(state: ApiState):
    """A dependency that lets a write through only with ``Authorization: Bearer <token>``.

    401 without credentials, 403 with a wrong token, 403 when the service has no token (read-only).
    """

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        token = state.config.token
        if token is None:
            raise ApiError(403, "writes_disabled", "this service has no API token, so it only reads; "
                           "start it with a token to acknowledge alerts over HTTP")
        if credentials is None:
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(403, "forbidden", "wrong token")

    return check


def _row_or_404(state: ApiState, identifier: str) -> dict:
    row = state.view.alert_row(identifier)
    if row is None:
        raise ApiError(404, "unknown_alert", f"no alert {identifier!r}")
    return row


def alert_feature(view, row: dict, live: dict | None) -> dict:
    """The Feature of a stored alert row, with its acknowledgements, arrivals and live values."""
    ident = row["identifier"]
    return geojson.alert_feature(row, view.acks(ident), view.arrivals(ident), live)


def alert_routes(state: ApiState) -> APIRouter:
    """The router of the alerts."""
    view = state.view
    r = APIRouter(prefix="/api/alerts", tags=["alerts"])

    @r.get("")
    def alerts(state_: Literal["active", "cancelled", "all"] = Query("active", alias="state"),
               limit: int = Query(500, ge=1, le=10_000, description="newest this many")) -> dict:
        """Alerts as a GeoJSON FeatureCollection (areas in lon/lat) with CAP properties: identifier,
        hazard, level, level_name, colour, severity, sent, raised_at, headline (English), headline_zh,
        acknowledged_by, acks, units_on_scene, parameters..., and the live value of an active alert: value, unit,
        peak, peak_at, trend [unit/min], trend_word, trend_arrow, history [[t, value], ...] of the last 30 minutes,
        devices, suppressed (null, or {by: silence | inhibition | storm, id, reason}). Oldest first."""
        rows = view.alert_rows(None if state_ == "all" else state_)[-limit:]
        live = view.alert_live() if state_ != "cancelled" else {}
        return geojson.collection([alert_feature(view, row, live.get(row["identifier"])) for row in rows],
                                  t=view.last_tick())

    @r.get("/history", response_model=AlertHistory,
           responses={400: {"description": "invalid_request: since after until (defaults filled)"},
                      422: {"description": "invalid_request: a time that is not a finite number"}})
    def history(since: float | None = Query(None, description="start of the period [unix s]; default until "
                                                              "minus 3 h"),
                until: float | None = Query(None, description="end of the period [unix s]; default the last tick")
                ) -> dict:
        """The alerts active at some time in the period, newest first (at most the newest 500: ``truncated`` true
        when more matched), each with the highest level it reached, its state, raise and cancel times, place
        and timeline: raised, level (each change), updated, acknowledged, on_scene, cancelled, with ``actor``
        and a short Chinese · English ``text``."""
        for name, value in (("since", since), ("until", until)):
            if value is not None and not math.isfinite(value):
                raise ApiError(422, "invalid_request", [{"where": f"query.{name}", "problem": "must be finite"}])
        try:
            since, until = period(view, since, until)
        except ValueError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        return alert_history(view, since, until)

    @r.get("/{identifier}.xml", response_class=Response,
           responses={200: {"content": {"application/cap+xml": {}}}, 404: {"description": "unknown alert"}})
    def alert_xml(identifier: str) -> Response:
        """The alert's current CAP message as CAP 1.2 XML (as retained on ``city/alerts/{identifier}``)."""
        row = _row_or_404(state, identifier)
        return Response(cap.to_xml(row["message"]), media_type="application/cap+xml")

    @r.get("/{identifier}")
    def alert_json(identifier: str) -> dict:
        """The alert's current CAP message as JSON (docs/contract/mqtt.md 3.1), the one retained on
        ``city/alerts/{id}``; a cancelled alert gives its Cancel."""
        return _row_or_404(state, identifier)["message"]

    @r.post("/{identifier}/ack", response_model=AckResponse, dependencies=[Depends(token_check(state))],
            responses={401: {"description": "no token"}, 403: {"description": "wrong token or read-only"},
                       404: {"description": "unknown alert"}, 409: {"description": "alert already cancelled"},
                       503: {"description": "ack_timeout: not applied in time (stays queued, asking again is "
                                            "safe); ack_unavailable: the service is stopping or too busy"}})
    async def ack(identifier: str, body: AckRequest) -> AckResponse:
        """An operator acknowledges an active alert: written to the twin's raw log first (replayed after a
        crash), then recorded in the store (kind ``operator``) and published as a CAP Update listing
        ``acknowledgedBy`` (retained on ``city/alerts/{id}``, and to the units that had the alert).
        Acknowledging twice changes nothing and says so: ``already`` true, ``message`` null."""
        result = await run_in_threadpool(acknowledge, view, identifier, body.operator, body.note or "")
        state.hub.poke()
        return AckResponse(alert=result.alert, operator=result.operator, t=result.t, already=result.already,
                           message=result.message, acks=result.acks)

    return r
