"""Stored level frames (the timeline scrubber): the level layers of every tick of the last hour, as PNG pictures.

The frames are kept by the live twin (`twin.live.query.LiveQuery.layer_frames` / ``layer_frame``); a frame is drawn
exactly as ``/api/layers/{name}.png`` draws the same level layer (`twin.api.render`: the warning colours, level 0
and no data transparent, or no data grey with ``nodata=show``), so the map looks the same live and replayed.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import xarray as xr
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from twin.api import rasters, render
from twin.api.errors import ApiError
from twin.api.routes_twin import BBOX_DOC, LAYER_NAME, NODATA_DOC
from twin.api.schemas import Frames
from twin.api.state import ApiState
from twin.api.view import LIVE, LayerInfo
from twin.live.query import (
    FRAME_NAMES,  # the stored level layers: a request for another is refused without a store read
)

log = logging.getLogger(__name__)




def _mismatch(name: str, when: float, why: str) -> ApiError:
    log.error("stored frame %s at %.0f does not fit the grid: %s", name, when, why)
    return ApiError(409, "frame_mismatch", f"the stored frame of {name!r} does not fit the twin's grid ({why}): the "
                    "state database was written by a twin of another grid; start with a fresh one")


def frame_routes(state: ApiState) -> APIRouter:
    """The router of the stored frames."""
    view, config = state.view, state.config
    r = APIRouter(prefix="/api/frames", tags=["twin"])

    @r.get("", response_model=Frames)
    def frames() -> dict:
        """The level layers stored per tick (``names``) and the times of the stored frames (``times``, the last
        hour, oldest first) [unix s]."""
        return view.layer_frames()

    @r.get("/{name}.png", response_class=Response,
           responses={200: {"content": {"image/png": {}}, "description": "one pixel per cell, north up; header "
                                                                         "X-Frame-Time"},
                      404: {"description": "unknown_layer: not a stored level layer; no_frame: none stored at or "
                                           "before at"},
                      409: {"description": "frame_mismatch: the stored frame does not fit the grid (a state "
                                           "database of a twin built at another resolution)"}})
    def frame_png(name: str = Path(pattern=LAYER_NAME),
                  at: float | None = Query(None, description="twin time [unix s]: the frame at or before it; default "
                                                             "the newest"),
                  bbox: str | None = Query(None, description=BBOX_DOC),
                  nodata: Literal["hide", "show"] = Query("hide", description=NODATA_DOC)) -> Response:
        """A stored level frame as a PNG, drawn as ``/api/layers/{name}.png`` draws the layer. Headers
        ``X-Frame-Time`` (the frame's time [unix s]) and ``X-Bounds`` (xmin,ymin,xmax,ymax in the grid CRS [m])."""
        if name not in FRAME_NAMES:
            raise ApiError(404, "unknown_layer", f"no stored frames of {name!r}; frames: {', '.join(FRAME_NAMES)}")
        if at is not None and not math.isfinite(at):
            raise ApiError(422, "invalid_request", [{"where": "query.at", "problem": "must be finite"}])
        when = at
        if when is None:
            when = view.last_tick() if view.last_tick() is not None else view.now()
        try:
            found = view.layer_frame(name, when)
        except ValueError as exc:  # a stored frame of another grid (decode_frame): the store outlived the twin
            raise _mismatch(name, when, str(exc)) from None
        if found is None:
            raise ApiError(404, "no_frame", f"no frame of {name!r} stored at or before {when:.0f}")
        values, t = found
        if values.shape != view.grid.shape:
            raise _mismatch(name, when, f"a frame of {values.shape} cells for a grid of {view.grid.shape}")
        win = rasters.window_for(view.grid, bbox, config.max_cells)
        info = LayerInfo(name, xr.DataArray(values, dims=("y", "x")), LIVE, t)
        style = render.style_for(info, show_nodata=nodata == "show")
        png = render.png_bytes(render.colourise(win.take(values), style))
        headers = {"X-Bounds": ",".join(f"{v:.3f}" for v in win.bounds(view.grid)), "X-Frame-Time": f"{t:.3f}",
                   "Cache-Control": "no-store"}
        return Response(png, media_type="image/png", headers=headers)

    return r
