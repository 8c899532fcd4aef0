"""Live routes: field units and vehicles as GeoJSON, the ``/ws`` event stream, ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from twin.api import geojson
from twin.api.events import CLOSE
from twin.api.state import ApiState

KINDS = {"unit": ("unit",), "vehicle": ("vehicle",), "all": ("unit", "vehicle")}
POLICY_VIOLATION, TRY_AGAIN_LATER = 1008, 1013


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """A WebSocket handshake's Origin is acceptable: absent (not a browser), the same host as the
    server (the dashboard), or listed in the CORS origins."""
    if not origin:
        return True
    if origin in allowed or "*" in allowed:
        return True
    return bool(host) and urlsplit(origin).netloc == host


async def _send(ws: WebSocket, queue: asyncio.Queue, done: anyio.CancelScope) -> None:
    """Forward queued events until the hub closes the queue (then close with 1013)."""
    while (text := await queue.get()) is not CLOSE:
        await ws.send_text(text)
    await ws.close(TRY_AGAIN_LATER)
    done.cancel()


async def _receive(ws: WebSocket, done: anyio.CancelScope) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()
    done.cancel()


async def stream(ws: WebSocket, queue: asyncio.Queue) -> None:
    """Send events and watch for the client leaving, until either side ends (anyio task group, so the
    server's cancellation on shutdown reaches both)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_send, ws, queue, tg.cancel_scope)
        tg.start_soon(_receive, ws, tg.cancel_scope)


def live_routes(state: ApiState) -> APIRouter:
    """The router of units, events and metrics."""
    view, hub = state.view, state.hub
    r = APIRouter()

    @r.get("/api/units", tags=["live"])
    def units(kind: Literal["unit", "vehicle", "all"] = Query("all", description="field units, vehicles or both")
              ) -> dict:
        """Located field units and vehicles as a GeoJSON FeatureCollection of Points (lon/lat), with their
        last report time, speed, course, cell, the active alerts each unit was sent (``alerts``) and those
        it is on scene of (``on_scene``)."""
        features = [geojson.entity_feature(e) for e in view.entities(KINDS[kind])]
        return geojson.collection(features, t=view.last_tick())

    @r.get("/metrics", response_class=Response, tags=["live"],
           responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    def metrics() -> Response:
        """Prometheus text exposition: ingest counters (received, accepted, duplicates, rejected by reason),
        tick durations, active alerts, outbox depth."""
        return Response(state.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @r.websocket("/ws")
    async def events(ws: WebSocket) -> None:
        """Live events as JSON text messages: a ``snapshot`` first, then ``alert``, ``positions`` and
        ``tick`` events as they happen (see `twin.api.events`)."""
        if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), state.config.cors_origins):
            await ws.close(POLICY_VIOLATION)
            return
        await ws.accept()
        queue = hub.subscribe()
        state.metrics.ws_clients.inc()
        try:
            await ws.send_text(await hub.snapshot())
            await stream(ws, queue)
        except WebSocketDisconnect:
            pass
        finally:
            hub.unsubscribe(queue)
            state.metrics.ws_clients.dec()

    return r
