"""The FastAPI application over a live service (`create_app`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from twin import __version__
from twin.api.config import ApiConfig
from twin.api.errors import install_handlers
from twin.api.page import page_routes
from twin.api.routes_alerts import alert_routes
from twin.api.routes_basemap import basemap_routes
from twin.api.routes_live import live_routes
from twin.api.routes_twin import twin_routes
from twin.api.state import ApiState

DESCRIPTION = """The live digital twin of a city district (docs/contract/http.md 3.3).

Reads are open; the one write, `POST /api/alerts/{id}/ack`, needs `Authorization: Bearer <token>`.
Errors are JSON `{"error": "<code>", "detail": ...}`. Positions are CGCS2000 lon/lat (the same frame as
WGS84 to well under a metre); grids are in the twin's projected CRS (see `/api/grid`).
"""


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
    install_handlers(app)
    for router in (twin_routes(state), alert_routes(state), live_routes(state), basemap_routes(state), page_routes()):
        app.include_router(router)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    if config.allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))
    return app
