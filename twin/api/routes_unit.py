"""Field-unit routes: a unit's tasks and alerts, and its answers to a task (the field page ``/unit`` uses them).

Each unit may have its own token (`twin.api.config.ApiConfig.unit_tokens`): it opens that unit's routes and no
other's; the dashboard's token opens every unit's. No token: 401; a wrong one: 403. An answer goes through
``LiveQuery.case_command("task_answer", ...)``, under the same rules as an answer on MQTT
``city/units/{unit}/tasks/status`` (docs/contract/http.md, "Field units").
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from twin.api import geojson
from twin.api.errors import ApiError
from twin.api.routes_cases import CASE_ERRORS, CASE_ID, COMMAND_ERRORS, run_case_command
from twin.api.schemas import UnitTaskAnswer
from twin.api.state import ApiState

UNIT_ID = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$", description="the field unit's id")
_bearer = HTTPBearer(auto_error=False, description="the unit's own token, or the dashboard's")
AUTH_ERRORS = {401: {"description": "no token"},
               403: {"description": "forbidden: a wrong token, or another unit's; unit_tokens_missing"}}
ALERT_KEYS = ("identifier", "hazard", "level", "level_name", "colour", "headline", "headline_zh", "area_desc",
              "area_desc_zh", "raised_at", "instruction")


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def unit_check(state: ApiState):
    """A dependency that lets a request for unit ``{unit}`` through with that unit's token or the dashboard's."""

    def check(unit: str = UNIT_ID,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None) -> str:
        own, dashboard = state.config.unit_tokens.get(unit), state.config.token
        if own is None and dashboard is None:
            raise ApiError(403, "unit_tokens_missing", f"this twin has no token for unit {unit!r} and no dashboard "
                           "token: start it with --unit-tokens FILE (or --http-token) to open the field page")
        if credentials is None:
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <token> (the unit's token)",
                           headers={"WWW-Authenticate": "Bearer"})
        if not (_same(credentials.credentials, own) or _same(credentials.credentials, dashboard)):
            raise ApiError(403, "forbidden", f"wrong token for unit {unit!r}")
        return unit

    return check


def _centre(geometry: dict | None) -> list[float] | None:
    """The mean of the first ring's corners of a (Multi)Polygon [lon, lat]: where the map points."""
    coords = (geometry or {}).get("coordinates") or []
    ring = coords[0][0] if geometry and geometry.get("type") == "MultiPolygon" and coords else \
        (coords[0] if coords else [])
    points = ring[:-1] if len(ring) > 1 else ring
    if not points:
        return None
    return [round(sum(p[0] for p in points) / len(points), 7), round(sum(p[1] for p in points) / len(points), 7)]


def unit_alerts(state: ApiState, alert_ids: list[str]) -> list[dict]:
    """Short summaries of the active alerts a unit was sent: `ALERT_KEYS` and ``centre`` [lon, lat]."""
    view, out = state.view, []
    for ident in alert_ids:
        row = view.alert_row(ident)
        if row is None:
            continue
        feature = geojson.alert_feature(row, [], [])
        props = feature["properties"]
        out.append({**{k: props.get(k) for k in ALERT_KEYS}, "centre": _centre(feature.get("geometry"))})
    return out


def unit_routes(state: ApiState) -> APIRouter:
    """The router of the field units' routes."""
    view = state.view
    r = APIRouter(prefix="/api/units/{unit}", tags=["field units"])
    allowed = Depends(unit_check(state))

    @r.get("/tasks", responses=AUTH_ERRORS)
    def tasks(unit: str = allowed) -> dict:
        """The unit's open tasks (cases assigned to it), newest first, its position and its active alerts:
        ``{"unit", "t", "position": {lon, lat, t, speed_kmh, course_deg} | null, "tasks": [...], "alerts":
        [...]}``. A task is the case as in ``GET /api/cases`` (place, status, deadlines, overdue)."""
        me = next((e for e in view.entities(("unit",)) if e["id"] == unit), None)
        position = None if me is None else {k: geojson.finite(me.get(k))
                                            for k in ("lon", "lat", "t", "speed_kmh", "course_deg")}
        return {"unit": unit, "t": view.now(), "position": position, "tasks": view.unit_tasks(unit),
                "alerts": unit_alerts(state, list(me.get("alerts", ())) if me else [])}

    @r.post("/tasks/{case_id}/status", responses={**AUTH_ERRORS, **COMMAND_ERRORS, **CASE_ERRORS})
    def answer(body: UnitTaskAnswer, case_id: str = CASE_ID, unit: str = allowed) -> dict:
        """The unit answers its task: ``accepted``, ``en_route``, ``on_scene``, ``disposed`` or ``declined``,
        with an optional note (kept in the case's history). 409 ``not_assigned`` when the case is not the unit's,
        409 ``bad_transition`` when the step does not follow the case's status. Answers the case with
        ``warning``: "" when the step was taken, else why it was only noted (a step the case had reached already,
        or an on-scene claim the unit's Beidou position does not confirm)."""
        result = run_case_command(state, "task_answer", {"unit": unit, "case": case_id, "status": body.status,
                                                         "note": body.note})
        case = view.case(result["case"]["id"]) or result["case"]
        return {**case, "warning": result.get("warning", "")}

    return r
