"""Case routes (立案 → 派遣 → 处置 → 核查 → 结案): list and read cases, dispatch suggestions, and the operator's
changes: open, dispatch, transition, note, attach.

The reads come from `twin.live.query.LiveQuery` (``cases``, ``case``, ``case_suggestions``); every change goes
through ``LiveQuery.case_command``: written to the twin's raw log as a ``$twin/case`` control record first, then
applied by the twin in order with the data and the ticks (a restart replays it), and only then answered. Writes
need the dashboard's token (`twin.api.routes_alerts.token_check`) and say who makes them (``operator``). Times
are twin time [unix s]. See docs/contract/http.md, "Cases".
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from twin.api.errors import ApiError
from twin.api.routes_alerts import token_check
from twin.api.schemas import (
    CaseAttachmentRequest,
    CaseDispatchRequest,
    CaseNoteRequest,
    CaseOpenRequest,
    CaseTransitionRequest,
)
from twin.api.state import ApiState
from twin.cases.model import STATUSES, CaseError
from twin.live.query import AckTimeoutError, AckUnavailableError

HTTP_STATUS_OF = {"unknown_case": 404, "bad_transition": 409, "not_assigned": 409, "bad_request": 422}
"""`twin.cases.model.CaseError` code -> HTTP status (the code is the answer's ``error``)."""
RETRY = {"Retry-After": "5"}
CASE_ID = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$", description="the case's id")
COMMAND_ERRORS = {
    401: {"description": "no token"}, 403: {"description": "wrong token or read-only"},
    503: {"description": "command_unavailable: the service is stopping or too busy"},
    504: {"description": "command_timeout: not applied in time (it stays queued and is applied in order; read the "
                         "case before asking again: a repeated open, note or dispatch to the first suggestion "
                         "would be applied twice, a repeated step is refused as bad_transition)"},
}
CASE_ERRORS = {404: {"description": "unknown_case"},
               409: {"description": "bad_transition: not allowed from the case's status; not_assigned"},
               422: {"description": "invalid_request (the body) or bad_request (refused by the case rules)"}}


def run_case_command(state: ApiState, action: str, body: dict) -> dict:
    """``LiveQuery.case_command`` with its refusals as API errors: `CaseError` by its code (`HTTP_STATUS_OF`),
    a timeout 504 ``command_timeout``, a service that takes no command 503 ``command_unavailable``."""
    try:
        result = state.view.case_command(action, body)
    except CaseError as exc:
        raise ApiError(HTTP_STATUS_OF.get(exc.code, 422), exc.code, exc.detail) from None
    except AckTimeoutError as exc:
        raise ApiError(504, "command_timeout", str(exc), headers=RETRY) from None
    except AckUnavailableError as exc:
        raise ApiError(503, "command_unavailable", str(exc), headers=RETRY) from None
    if state.hub is not None:
        state.hub.poke()
    return result


def case_or_404(state: ApiState, case_id: str) -> dict:
    """The case with its deadlines, overdue steps and events; 404 ``unknown_case``."""
    case = state.view.case(case_id)
    if case is None:
        raise ApiError(404, "unknown_case", f"no case {case_id!r}")
    return case


def _answer(state: ApiState, result: dict) -> dict:
    """The changed case as ``GET /api/cases/{id}`` gives it."""
    case = result["case"]
    return state.view.case(case["id"]) or case


def case_routes(state: ApiState) -> APIRouter:
    """The router of the cases."""
    view = state.view
    r = APIRouter(prefix="/api/cases", tags=["cases"])
    write = [Depends(token_check(state))]

    @r.get("")
    def cases(status: Literal[STATUSES] | None = Query(None, description="only cases in this status"),
              open_: bool = Query(False, alias="open", description="only open cases (not closed or cancelled)")
              ) -> dict:
        """Cases, oldest first: ``{"t", "count", "overdue", "cases": [...]}``. Each case: ``id``, ``district``,
        ``category``, ``priority``, ``place`` {key, name_zh, name_en, lon, lat, radius_m}, ``source``, ``verify``,
        ``status``, ``assignee``, ``alerts``, ``reports``, ``attachments``, ``opened_at``, ``updated_at``,
        ``reached`` {status: t}, ``deadlines`` {step: t}, ``overdue`` [steps]. ``overdue`` at the top counts the
        cases with an overdue step."""
        rows = view.cases(status, open_only=open_)
        return {"t": view.now(), "count": len(rows), "overdue": sum(bool(c.get("overdue")) for c in rows),
                "cases": rows}

    @r.get("/{case_id}", responses={404: CASE_ERRORS[404]})
    def case(case_id: str = CASE_ID) -> dict:
        """One case as in the list, plus ``events``: its whole history (``n``, ``kind``, ``t``, ``actor``,
        ``reason``, ``data``), oldest first."""
        return case_or_404(state, case_id)

    @r.get("/{case_id}/suggestions", responses={404: CASE_ERRORS[404]})
    def suggestions(case_id: str = CASE_ID, limit: int = Query(3, ge=1, le=10)) -> dict:
        """The units to send, best first: the nearest free units of the case's duty by road travel time (by
        straight line where there is no road path). ``{"case", "suggestions": [{unit, unit_type, eta_s,
        distance_m, by}]}``; ``by`` is ``road`` or ``straight``."""
        case_or_404(state, case_id)
        return {"case": case_id, "suggestions": view.case_suggestions(case_id, limit=limit)}

    @r.post("", status_code=201, dependencies=write, responses={**COMMAND_ERRORS, 422: CASE_ERRORS[422]})
    def open_case(body: CaseOpenRequest) -> dict:
        """An operator opens a case at a place (``source`` operator). **201** and the new case."""
        result = run_case_command(state, "open", {
            "category": body.category, "priority": body.priority, "lon": body.lon, "lat": body.lat,
            "name_zh": body.name_zh, "name_en": body.name_en, "actor": body.operator, "reason": body.reason})
        return _answer(state, result)

    @r.post("/{case_id}/dispatch", dependencies=write, responses={**COMMAND_ERRORS, **CASE_ERRORS})
    def dispatch(body: CaseDispatchRequest, case_id: str = CASE_ID) -> dict:
        """Send a unit (``unit`` empty: the first suggestion). The unit gets the task on
        ``city/units/{unit}/tasks``; a case already dispatched is reassigned (the previous unit is told)."""
        result = run_case_command(state, "dispatch", {"case": case_id, "unit": body.unit, "actor": body.operator,
                                                      "reason": body.reason})
        return _answer(state, result)

    @r.post("/{case_id}/transition", dependencies=write, responses={**COMMAND_ERRORS, **CASE_ERRORS})
    def transition(body: CaseTransitionRequest, case_id: str = CASE_ID) -> dict:
        """Move the case a step: ``verified``, ``closed``, ``cancelled``, ``reopened`` (the operator's), or a
        unit's step recorded for it. 409 ``bad_transition`` when the case's status does not allow it."""
        result = run_case_command(state, "transition", {"case": case_id, "kind": body.kind, "actor": body.operator,
                                                        "reason": body.reason})
        return _answer(state, result)

    @r.post("/{case_id}/notes", dependencies=write, responses={**COMMAND_ERRORS, **CASE_ERRORS})
    def note(body: CaseNoteRequest, case_id: str = CASE_ID) -> dict:
        """A note in the case's history (event ``noted``; allowed in every status)."""
        result = run_case_command(state, "note", {"case": case_id, "actor": body.operator, "reason": body.text})
        return _answer(state, result)

    @r.post("/{case_id}/attachments", dependencies=write, responses={**COMMAND_ERRORS, **CASE_ERRORS})
    def attach(body: CaseAttachmentRequest, case_id: str = CASE_ID) -> dict:
        """Attach a link (``http://`` or ``https://``) to a photo or document kept elsewhere (event
        ``attached``; the case's ``attachments`` lists it)."""
        result = run_case_command(state, "attach", {"case": case_id, "url": body.url, "actor": body.operator})
        return _answer(state, result)

    return r
