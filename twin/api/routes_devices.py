"""Device registry routes: list, read, register, change and retire devices (docs/guides/devices.md).

The reads come from the registry database through `twin.live.query.LiveQuery` (``devices``, ``device``,
``device_history``). Every change goes through ``LiveQuery.add_device``, ``update_device`` or ``retire_device``: it is
stored in the registry database, then applied by the twin in order with the data (a ``$twin/registry`` record in its
raw log; a restart replays it), and only then answered, so the device's next message is judged by its new entry.
Writes need the dashboard's token (`twin.api.routes_alerts.token_check`).

A device is a GeoJSON Feature (lon/lat, WGS84) whose ``properties`` are its registry entry (``id``, ``kind``,
``quantities``, ``name``, ``unit_type``, and any others), checked with the registry's rules (`ingest.registry`). The
answers add the Feature's ``id`` and a foreign member ``registry``: ``status`` (``active`` or ``retired``),
``version`` (the registry version of its last change) and ``added`` (the version that registered it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query

from ingest.registry import DEVICE_KINDS, STATUSES, Device
from twin.api.errors import ApiError
from twin.api.routes_alerts import token_check
from twin.api.state import ApiState
from twin.live.query import AckTimeoutError, AckUnavailableError, DeviceError

ID_PATTERN = r"^[^/+#\s\x00-\x1f\x7f]{1,200}$"
"""What a device id may be (`ingest.registry`: no ``/ + #``, no spaces or control characters, at most 200)."""
DEVICE_ID = Path(pattern=ID_PATTERN, description="the device's id")
HTTP_STATUS_OF = {"invalid_device": 400, "unknown_device": 404, "device_exists": 409, "kind_change": 409,
                  "already_retired": 409}
"""`twin.live.query.DeviceError` code -> HTTP status (the code is the answer's ``error``)."""
RETRY = {"Retry-After": "5"}
WRITE_ERRORS = {
    401: {"description": "no token"}, 403: {"description": "wrong token or read-only"},
    503: {"description": "change_unavailable: the twin takes no change now (the change is stored and applied later)"},
    504: {"description": "change_timeout: stored, not applied within the wait (it is applied in order)"},
}
BODY_ERRORS = {400: {"description": "invalid_device: the Feature breaks the registry's rules; detail lists every "
                                    "problem"}}
FEATURE_BODY = Body(description="a GeoJSON Feature: geometry (Point; Polygon for a crowd counter's area; null for "
                                "a vehicle or unit) and properties id, kind, quantities, name, unit_type, ...",
                    examples=[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [121.4905, 31.2380]},
                               "properties": {"id": "rain-bund-07", "kind": "rain", "quantities": ["rain"],
                                              "name": "外滩源 Bund Origin gauge"}}])


def device_feature(device: Device, updated_at: float | None = None) -> dict[str, Any]:
    """The answer for one device: its Feature with ``id`` and ``registry`` (status, version, added[, updated_at])."""
    registry: dict[str, Any] = {"status": device.status, "version": device.version, "added": device.added}
    if updated_at is not None:
        registry["updated_at"] = updated_at
    return {"type": "Feature", "id": device.id, "geometry": device.geometry, "properties": device.properties,
            "registry": registry}


def _problems(exc: DeviceError) -> list[dict[str, str]] | str:
    """An ``invalid_device`` refusal's problems as ``{"where", "problem"}`` (the API's shape of request problems)."""
    if not exc.problems:
        return exc.detail
    out = []
    for text in exc.problems:
        where, sep, problem = text.partition(": ")
        out.append({"where": where, "problem": problem} if sep else {"where": "body", "problem": text})
    return out


def run_change(state: ApiState, change, *args) -> Any:
    """A registry change through the live query, its refusals as API errors (`HTTP_STATUS_OF`; 504
    ``change_timeout``, 503 ``change_unavailable``)."""
    try:
        result = change(*args)
    except DeviceError as exc:
        raise ApiError(HTTP_STATUS_OF.get(exc.code, 400), exc.code, _problems(exc)) from None
    except AckTimeoutError as exc:
        raise ApiError(504, "change_timeout", f"stored in the registry, not applied yet: {exc}", headers=RETRY) \
            from None
    except AckUnavailableError as exc:
        raise ApiError(503, "change_unavailable", f"stored in the registry, applied when the twin can: {exc}",
                       headers=RETRY) from None
    if state.hub is not None:
        state.hub.poke()
    return result


def device_routes(state: ApiState) -> APIRouter:
    """The router of the device registry."""
    view = state.view
    r = APIRouter(prefix="/api/devices", tags=["devices"])
    write = [Depends(token_check(state))]

    @r.get("")
    def devices(kind: Literal[DEVICE_KINDS] | None = Query(None, description="only devices of this kind"),
                status: Literal[STATUSES] | None = Query(None, description="only active or only retired devices"),
                after: str | None = Query(None, pattern=ID_PATTERN, description="the last id of the page before"),
                limit: int = Query(100, ge=1, le=1000, description="devices per page")) -> dict:
        """Registered devices by id, a page at a time: a GeoJSON FeatureCollection of `device` answers plus
        ``version`` (the registry database's), ``applied`` (the version the twin's admission uses now), ``total``
        (devices matching) and ``next`` (the ``after`` of the next page; null on the last)."""
        page = view.devices(kind, status, after, limit)
        last = page.devices[-1].id if len(page.devices) == limit else None
        return {"type": "FeatureCollection", "version": page.version, "applied": page.applied, "total": page.total,
                "next": last, "features": [device_feature(d) for d in page.devices]}

    @r.get("/{identifier}", responses={404: {"description": "unknown_device"}})
    def device(identifier: str = DEVICE_ID,
               history: bool = Query(False, description="add every change of the device, oldest first")) -> dict:
        """One device, active or retired, with ``registry.updated_at`` [unix s]; with ``history``, ``history``:
        ``[{version, op, at, actor, status, geometry, properties}]`` (op ``add``, ``update``, ``retire``)."""
        found = view.device(identifier)
        if found is None:
            raise ApiError(404, "unknown_device", f"no device {identifier!r}")
        changes = view.device_history(identifier)
        out = device_feature(found, changes[-1].at if changes else None)
        if history:
            out["history"] = [{"version": c.version, "op": c.op, "at": c.at, "actor": c.actor,
                               "status": c.device.status, "geometry": c.device.geometry,
                               "properties": c.device.properties} for c in changes]
        return out

    @r.post("", status_code=201, dependencies=write,
            responses={**WRITE_ERRORS, **BODY_ERRORS, 409: {"description": "device_exists: the id is registered"}})
    def add(body: Annotated[dict[str, Any], FEATURE_BODY]) -> dict:
        """Register a new device. **201** once the twin applies it: its next message is admitted."""
        change = run_change(state, view.add_device, body)
        return device_feature(change.device, change.at)

    @r.put("/{identifier}", dependencies=write,
           responses={**WRITE_ERRORS, **BODY_ERRORS, 404: {"description": "unknown_device"},
                      409: {"description": "kind_change: a device's kind never changes"}})
    def update(body: Annotated[dict[str, Any], FEATURE_BODY], identifier: str = DEVICE_ID) -> dict:
        """A device's new entry (moved, other quantities or properties); a retired device is registered again.
        The body's ``properties.id``, when given, must be the path's. Nothing differs: no new version."""
        return device_feature(run_change(state, view.update_device, identifier, body))

    @r.delete("/{identifier}", dependencies=write,
              responses={**WRITE_ERRORS, 404: {"description": "unknown_device"},
                         409: {"description": "already_retired"}})
    def retire(identifier: str = DEVICE_ID) -> dict:
        """Retire a device: once the twin applies it, its messages are refused as ``retired_device`` (dead letters).
        Its entry and history stay; ``PUT`` registers it again."""
        change = run_change(state, view.retire_device, identifier)
        return device_feature(change.device, change.at)

    return r
