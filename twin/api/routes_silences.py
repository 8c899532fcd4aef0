"""Silence routes (静默): list, create, read and expire silences, and their audit trail.

The routes reach the twin's `twin.alerting.silences.SilenceBook` through ``state.view.silences()``; a twin without
one answers 503 ``silences_unavailable``. Writes need the service's token (as ``POST /api/alerts/{id}/ack``).
Times are twin time [unix s]. See docs/guides/silences-and-inhibition.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query

from twin.alerting.silences import Silence
from twin.api.errors import ApiError
from twin.api.routes_alerts import token_check
from twin.api.schemas import (
    SilenceAudit,
    SilenceAuditRow,
    SilenceExpireRequest,
    SilenceList,
    SilenceMatcher,
    SilenceOut,
    SilenceRequest,
)
from twin.api.state import ApiState

WRITE_ERRORS = {401: {"description": "no token"}, 403: {"description": "wrong token or read-only"},
                503: {"description": "silences_unavailable: this twin keeps no silences"}}
SILENCE_ID = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="the silence's id")


def _book(state: ApiState):
    get = getattr(state.view, "silences", None)
    book = get() if callable(get) else None
    if book is None:
        raise ApiError(503, "silences_unavailable", "this twin keeps no silences (its live core has no silence "
                       "book); silences need a running twin with an alert store")
    return book


def _out(s: Silence, t: float) -> SilenceOut:
    row = s.to_row()
    return SilenceOut(**{**row, "matchers": [SilenceMatcher(**m) for m in row["matchers"]], "state": s.state(t)})


def silence_routes(state: ApiState) -> APIRouter:
    """The router of the silences."""
    r = APIRouter(prefix="/api/silences", tags=["silences"])

    @r.get("", response_model=SilenceList, responses={503: WRITE_ERRORS[503]})
    def silences(state_: Literal["active", "pending", "expired", "all"] = Query("all", alias="state")) -> SilenceList:
        """Silences in a state at the twin's time (all by default), oldest first."""
        book, t = _book(state), state.view.now()
        return SilenceList(t=t, silences=[_out(s, t) for s in book.list(t, state_)])

    @r.get("/audit", response_model=SilenceAudit, responses={503: WRITE_ERRORS[503]})
    def audit(silence: str | None = Query(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
                                          description="only this silence's changes"),
              limit: int = Query(500, ge=1, le=10_000, description="newest this many")) -> SilenceAudit:
        """Every change of the silences (create, expire): who, when, why, the silence before and after."""
        rows = _book(state).audit(silence, limit)
        return SilenceAudit(rows=[SilenceAuditRow(**row) for row in rows])

    @r.get("/{silence_id}", response_model=SilenceOut,
           responses={404: {"description": "unknown silence"}, 503: WRITE_ERRORS[503]})
    def silence(silence_id: str = SILENCE_ID) -> SilenceOut:
        """One silence."""
        book = _book(state)
        s = book.get(silence_id)
        if s is None:
            raise ApiError(404, "unknown_silence", f"no silence {silence_id!r}")
        return _out(s, state.view.now())

    @r.post("", response_model=SilenceOut, status_code=201, dependencies=[Depends(token_check(state))],
            responses={**WRITE_ERRORS, 400: {"description": "invalid_silence: the silence cannot be made (unknown "
                                                            "label, bad regular expression, end before start, ...)"}})
    def create(body: SilenceRequest) -> SilenceOut:
        """Make a silence: alerts matching all its matchers are not delivered to units from ``starts_at`` (now by
        default) until ``ends_at`` (or ``duration_s`` after the start); they are still recorded, published on
        ``city/alerts/{id}`` and shown greyed. Stored with an audit row."""
        book, now = _book(state), state.view.now()
        end = body.ends_at
        if (end is None) == (body.duration_s is None):
            raise ApiError(400, "invalid_silence", "give either ends_at or duration_s")
        if end is None:
            end = max(body.starts_at if body.starts_at is not None else now, now) + body.duration_s
        try:
            s = book.create([m.model_dump() for m in body.matchers], end, body.created_by, body.comment, now,
                            starts_at=body.starts_at)
        except ValueError as exc:
            raise ApiError(400, "invalid_silence", str(exc)) from None
        return _out(s, now)

    @r.delete("/{silence_id}", response_model=SilenceOut, dependencies=[Depends(token_check(state))],
              responses={**WRITE_ERRORS, 404: {"description": "unknown silence"},
                         409: {"description": "silence_expired: it has already ended"},
                         422: {"description": "who and why missing or invalid"}})
    def expire(silence_id: str = SILENCE_ID, body: Annotated[SilenceExpireRequest | None, Body()] = None,
               who: str | None = Query(None, max_length=64, description="who ends it (or in the body)"),
               why: str | None = Query(None, max_length=500, description="why (or in the body)")) -> SilenceOut:
        """End a pending or active silence now (its alerts go to units again from the next tick); who and why are
        required, in the JSON body or the query. Stored with an audit row."""
        book, now = _book(state), state.view.now()
        if body is None:
            try:
                body = SilenceExpireRequest(who=who or "", why=why or "")
            except ValueError as exc:
                problems = [{"where": f"query.{'.'.join(map(str, e.get('loc', ())))}", "problem": e.get("msg", "")}
                            for e in getattr(exc, "errors", list)()]
                raise ApiError(422, "invalid_request", problems or "say who and why") from None
        if book.get(silence_id) is None:
            raise ApiError(404, "unknown_silence", f"no silence {silence_id!r}")
        try:
            s = book.expire(silence_id, body.who, body.why, now)
        except KeyError:
            raise ApiError(404, "unknown_silence", f"no silence {silence_id!r}") from None
        except ValueError as exc:
            raise ApiError(409, "silence_expired", str(exc)) from None
        return _out(s, now)

    return r
