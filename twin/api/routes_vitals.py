"""The city's vital signs (城市运行体征): indicators of the management tree, their history, and the tree's polygons.

Read through `twin.live.query.LiveQuery` (``indicators``, ``indicator_history``, ``admin_units``); the indicators,
their units, levels and rules are those of `twin.live.vitals`, the tree (city → district → street → grid unit) that
of `twin.district.admin`.
"""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Query

from twin.api.errors import ApiError
from twin.api.schemas import IndicatorHistory, Indicators
from twin.api.state import ApiState
from twin.district.admin import ADMIN_LEVELS

log = logging.getLogger(__name__)

LEVELS = ADMIN_LEVELS
"""The levels of the management tree, top down (`twin.district.admin.ADMIN_LEVELS`)."""


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ApiError(422, "invalid_request", [{"where": f"query.{name}", "problem": "must be finite"}])


def _level(level: str) -> None:
    """400 ``invalid_request`` for a level not in `LEVELS` (checked here, so that a ValueError of the tree itself is
    the server's problem, not the request's)."""
    if level not in LEVELS:
        raise ApiError(400, "invalid_request", f"unknown level {level[:40]!r}; levels: {', '.join(LEVELS)}")


def _tree_unavailable(exc: ValueError) -> ApiError:
    """503 ``tree_unavailable``, logged: the management tree could not be built (a bad districts or ``--units``
    file: `twin.district.admin.AdminTree.build` raises ValueError with one line naming the file)."""
    log.error("management tree unavailable: %s", exc)
    return ApiError(503, "tree_unavailable", f"the management tree could not be built: {exc}")


def vitals_routes(state: ApiState) -> APIRouter:
    """The router of the vital signs."""
    view = state.view
    r = APIRouter(prefix="/api", tags=["vital signs"])

    @r.get("/indicators", response_model=Indicators,
           responses={400: {"description": "invalid_request: an unknown level"},
                      503: {"description": "tree_unavailable: the management tree could not be built"}})
    def indicators(level: str = Query("city", description="city, district, street or unit"),
                   at: float | None = Query(None, description="twin time [unix s]: the values stored at or before "
                                                              "it (24 h kept); default the last tick"),
                   parent: str | None = Query(None, description="only the children of this node, e.g. "
                                                                "district:310101")) -> dict:
        """The indicators of every node of a level (or of one node's children): people, water, traffic, alerts,
        cases, sensors, units, each ``{value, unit, level (0-4, -1 no data), trend (now minus about 1 h ago),
        trend_arrow, detail}``. ``t`` is the tick they are of (null, and empty indicators, before any)."""
        _finite("at", at)
        _level(level)
        try:
            return view.indicators(level, at, parent)
        except ValueError as exc:
            raise _tree_unavailable(exc) from None

    @r.get("/indicators/history", response_model=IndicatorHistory,
           responses={400: {"description": "invalid_request: an unknown indicator, or from after to (to defaulting "
                                                     "to the last tick)"},
                      404: {"description": "unknown_node"},
                      503: {"description": "tree_unavailable: the management tree could not be built"}})
    def indicator_history(node: str = Query("city", description="a node id: city, district:<adcode>, "
                                                                "street:<slug>, unit:<code>; default city"),
                          indicator: str | None = Query(None, description="one indicator (default all)"),
                          since: float | None = Query(None, alias="from", description="[unix s]; default an hour "
                                                                                     "before to"),
                          until: float | None = Query(None, alias="to", description="[unix s]; default the last "
                                                                                   "tick")) -> dict:
        """A node's stored indicators, oldest first: ``series`` {name: {unit, points [[t, value, level], ...]}},
        every tick of the last hour and one a minute before (24 h kept)."""
        _finite("from", since)
        _finite("to", until)
        end = until if until is not None else view.last_tick()
        if since is not None and end is not None and since > end:
            raise ApiError(400, "invalid_request", f"from ({since:.0f}) is after to ({end:.0f}"
                           f"{'' if until is not None else '; the last tick when not given'})")
        try:
            view.admin_units("city")  # the tree (cached after the first call): its failure is not the request's
        except ValueError as exc:
            raise _tree_unavailable(exc) from None
        try:
            return view.indicator_history(node, indicator, since, until)
        except KeyError:
            raise ApiError(404, "unknown_node", f"no node {node[:80]!r} in the management tree; ids: city, "
                           "district:<adcode>, street:<slug>, unit:<code> (see /api/admin-units)") from None
        except ValueError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None

    @r.get("/admin-units", responses={400: {"description": "invalid_request: an unknown level"},
                                       503: {"description": "tree_unavailable: the management tree could not be "
                                                            "built (a bad districts or units file)"}})
    def admin_units(level: str | None = Query(None, description="city, district, street or unit; default all")
                    ) -> dict:
        """The management tree's nodes (网格化管理: city, districts 区, streets 街道, grid units 网格) as a GeoJSON
        FeatureCollection in lon/lat (CGCS2000), properties ``{id, level, name, name_en, parent}``."""
        if level is not None:
            _level(level)
        try:
            return view.admin_units(level)
        except ValueError as exc:
            raise _tree_unavailable(exc) from None

    return r
