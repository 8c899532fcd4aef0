"""The risk ledger (风险清零): per district and day, cases opened, closed, open and overdue, the median time of each
step, and every open risk point until it is closed; as JSON and as a daily CSV export.

Read from ``LiveQuery.ledger`` / ``ledger_csv`` (`twin.cases.ledger`); days are Asia/Shanghai calendar dates of
twin time. See docs/contract/http.md, "Risk ledger".
"""

from __future__ import annotations

import datetime as dt
import re

from fastapi import APIRouter, Query
from fastapi.responses import Response

from twin.alerting.cap import SHANGHAI_TZ
from twin.api.errors import ApiError
from twin.api.state import ApiState

CSV_TYPE = "text/csv; charset=utf-8"
MAX_TIME = 4_102_444_800.0
"""Latest ``at`` the schema takes (2100-01-01) [unix s]."""
FUTURE_S = 86_400.0
"""How far after the twin's time ``at`` may be [s]."""


def csv_filename(district: str | None, t: float) -> str:
    """``ledger-{district}-{YYYY-MM-DD}.csv`` of the Shanghai date of twin time ``t`` [unix s] (the district's
    name reduced to safe characters)."""
    day = dt.datetime.fromtimestamp(t, SHANGHAI_TZ).date().isoformat()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", district or "").strip("-") or "twin"
    return f"ledger-{name}-{day}.csv"


def ledger_routes(state: ApiState) -> APIRouter:
    """The router of the ledger."""
    view = state.view
    r = APIRouter(prefix="/api", tags=["cases"])

    @r.get("/ledger", responses={422: {"description": "invalid_request; bad_time: later than a day after now"}})
    def ledger(at: float | None = Query(None, ge=0, le=MAX_TIME, allow_inf_nan=False,
                                        description="the twin time to give it at [unix s]; default now")) -> dict:
        """The ledger: per district and day, ``opened``, ``closed``, ``cancelled``, ``open``, ``overdue``,
        ``median_s`` per step (``dispatch``, ``on_scene``, ``dispose``, ``verify``, ``close``; null without data),
        and ``open_points``: every open case (id, category, place names, status, priority, opened_at, overdue
        steps) until it is closed (see `twin.cases.ledger.ledger`)."""
        now = view.now()
        if at is not None and at > now + FUTURE_S:
            raise ApiError(422, "bad_time", f"at {at:.0f} is more than a day after the twin's time {now:.0f}: the "
                           "ledger counts what has happened")
        return view.ledger(now if at is None else at)

    @r.get("/ledger.csv", response_class=Response,
           responses={200: {"content": {"text/csv": {}}, "description": "one row per district and day"}})
    def ledger_csv() -> Response:
        """The ledger as CSV (UTF-8, a header line first, one row per district and day) as of now, as a download
        named ``ledger-{district}-{YYYY-MM-DD}.csv`` after the twin's date."""
        t = view.now()
        name = csv_filename(view.static.attrs.get("district"), t)
        return Response(view.ledger_csv(t), media_type=CSV_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    return r
