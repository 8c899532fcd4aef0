"""The FastAPI application over a live service (`create_app`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from twin import __version__
from twin.api.config import ApiConfig
from twin.api.errors import TrustedHosts, install_handlers
from twin.api.page import page_routes
from twin.api.routes_alerts import alert_routes
from twin.api.routes_basemap import basemap_routes
from twin.api.routes_buildings import building_routes
from twin.api.routes_cases import case_routes
from twin.api.routes_devices import device_routes
from twin.api.routes_frames import frame_routes
from twin.api.routes_ledger import ledger_routes
from twin.api.routes_links import links_routes
from twin.api.routes_live import live_routes
from twin.api.routes_open311 import Open311Error, open311_error, open311_routes
from twin.api.routes_silences import silence_routes
from twin.api.routes_twin import twin_routes
from twin.api.routes_unit import unit_routes
from twin.api.routes_vitals import vitals_routes
from twin.api.schemas import ErrorBody
from twin.api.state import ApiState

DESCRIPTION = """The live digital twin of a city district (docs/contract/http.md 3.3).

Reads are open; the writes, `POST /api/alerts/{id}/ack`, `POST /api/silences`, `DELETE /api/silences/{id}`,
`POST /api/cases...` and `POST`, `PUT`, `DELETE /api/devices...`, need `Authorization: Bearer <token>`.
A field unit's routes (`/api/units/{unit}/tasks...`, used by its page `/unit`) need that unit's own token or the
dashboard's.
Errors are JSON `{"error": "<code>", "detail": ...}`, but under `/open311/v2` (Open311 GeoReport v2 citizen
reports, `api_key` for posting) they are Open311's `[{"code", "description"}]`. Positions are CGCS2000 lon/lat
(the same frame as WGS84 to well under a metre; Open311's are WGS84); grids are in the twin's projected CRS
(see `/api/grid`).
"""

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
FASTAPI_422 = ("HTTPValidationError", "ValidationError")
"""FastAPI's own 422 body, which its OpenAPI describes by default; this API answers `ErrorBody` instead."""


def document_errors(schema: dict) -> dict:
    """Make an OpenAPI description say what the errors really are (in place; returns it).

    Every 4xx/5xx response that names no body of its own gets `ErrorBody` (FastAPI would describe
    its default 422 body, which `twin.api.errors` replaces), and every operation gets a ``4XX``
    response with it: any client error of any route is ``{"error", "detail"}``.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components["ErrorBody"] = body
    for name in FASTAPI_422:
        components.pop(name, None)
    content = {"application/json": {"schema": ERROR_REF}}
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code, response in responses.items():
                if code[:1] not in ("4", "5"):
                    continue
                schemas = [m.get("schema", {}) for m in response.get("content", {}).values()]
                if not any(schemas) or any(s.get("$ref", "").endswith(FASTAPI_422) for s in schemas):
                    response["content"] = dict(content)
                if code == "422":
                    response["description"] = "invalid request: error invalid_request (or a route's own code)"
            responses.setdefault("4XX", {"description": 'an error: JSON {"error": "<code>", "detail": ...}',
                                         "content": dict(content)})
    return schema


def _openapi_with_errors(app: FastAPI) -> Callable[[], dict]:
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    return openapi


def create_app(service, config: ApiConfig | None = None) -> FastAPI:
    """The HTTP API of a running `twin.live.service.LiveService`, read through `twin.live.query.LiveQuery`.

    The app adds a tick listener to the service while it runs (its lifespan) and removes it
    when it stops. CORS is off unless ``config.cors_origins`` lists origins. ``/docs`` (Swagger UI) and
    ``/redoc`` load their scripts from the installed fastapi-offline package, so they work offline.
    """
    config = config or ApiConfig()
    state = ApiState.of(service, config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await state.hub.start()
        state.view.add_tick_listener(state.on_tick)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                state.view.remove_tick_listener(state.on_tick)
            await state.hub.stop()

    app = FastAPIOffline(title="citytwin", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.api = state
    install_handlers(app)  # first: its 500 middleware then sits inside CORS and the Host check
    app.add_exception_handler(Open311Error, open311_error)
    for router in (twin_routes(state), alert_routes(state), silence_routes(state), live_routes(state),
                   links_routes(state), basemap_routes(state), building_routes(state), case_routes(state),
                   unit_routes(state), vitals_routes(state), frame_routes(state),
                   ledger_routes(state), device_routes(state), open311_routes(state), page_routes()):
        app.include_router(router)
    app.openapi = _openapi_with_errors(app)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    if config.allowed_hosts is not None:
        app.add_middleware(TrustedHosts, allowed_hosts=config.allowed_hosts)
    return app
