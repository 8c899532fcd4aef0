"""Routes about the twin itself: health, status, grid, layers (values, PNG, legend), point query."""

from __future__ import annotations

import math
import sys
from typing import Literal

import numpy as np
from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from twin.api import rasters, render
from twin.api.errors import ApiError
from twin.api.schemas import Grid, Health, LayerSummary
from twin.api.state import ApiState
from twin.api.view import LayerInfo, TwinView
from twin.district import geo
from twin.district.layers import LEVEL_NAMES

LAYER_NAME = r"^[a-z][a-z0-9_]{0,63}$"
BBOX_DOC = "W,S,E,N in degrees (CGCS2000/WGS84); the cells the box touches"
NODATA_DOC = "level layers: draw no-data cells (-1) translucent grey (show) or leave them transparent (hide)"
STALE_TICKS = 5
"""Health turns stale after this many tick periods (and at least 10 s) without a tick."""


def health_of(last_tick: float | None, now: float, tick_s: float) -> tuple[str, float | None]:
    """(``ok`` / ``starting`` / ``stale``, tick age [s]) from the last tick and the clock [unix s]."""
    if last_tick is None:
        return "starting", None
    age = max(0.0, now - last_tick)
    return ("ok" if age <= max(10.0, STALE_TICKS * tick_s) else "stale"), age


def find_layer(view: TwinView, name: str) -> LayerInfo:
    """A served layer, or `ApiError` 404 naming the layers there are."""
    info = view.layer(name)
    if info is None:
        known = ", ".join(view.layer_names())
        raise ApiError(404, "unknown_layer", f"no layer {name!r}; layers: {known}")
    return info


def _summary(info: LayerInfo) -> LayerSummary:
    return LayerSummary(name=info.name, units=info.units, long_name=info.long_name, kind=info.kind,
                        source=info.source, dtype=str(info.data.dtype))


def _style(info: LayerInfo, vmin: float | None, vmax: float | None, nodata: str) -> render.Style:
    problem = render.check_range(vmin, vmax)
    if problem:
        raise ApiError(422, "bad_range", problem)
    style = render.style_for(info, vmin, vmax, show_nodata=nodata == "show")
    if style.mode == "ramp" and not sys.float_info.min <= style.vmax - style.vmin < math.inf:
        # a ramp over it would divide by zero or overflow (e.g. vmin=1e20 alone: the default vmax, vmin + 1,
        # is vmin again in float64; or vmin=-1e308, vmax=1e308)
        raise ApiError(422, "bad_range", f"the colour range {style.vmin:g}..{style.vmax:g} is too narrow or too "
                       "wide for float64; give vmin and vmax closer to the layer's values")
    return style


def _values_body(view: TwinView, info: LayerInfo, win: rasters.Window) -> dict:
    grid = view.grid
    xmin, ymin, xmax, ymax = win.bounds(grid)
    body = {"name": info.name, "units": info.units, "long_name": info.long_name, "kind": info.kind,
            "source": info.source, "t": info.t, "crs": grid.crs, "cell_size": grid.cell_size,
            "window": win.as_dict(), "shape": list(win.shape), "bounds": [xmin, ymin, xmax, ymax]}
    if info.kind == "level":
        body["flags"] = {str(k): v for k, v in LEVEL_NAMES.items()}
    body["values"] = rasters.json_values(win.take(info.data.values))
    return body


def twin_routes(state: ApiState) -> APIRouter:
    """The router of the twin's own resources."""
    view, config = state.view, state.config
    r = APIRouter(prefix="/api", tags=["twin"])

    @r.get("/health", response_model=Health,
           responses={503: {"model": Health, "description": "stale: no tick for too long"}})
    def health() -> JSONResponse:
        """Liveness: ``ok`` while ticks come, ``starting`` before the first, ``stale`` (503) when they stop."""
        now = view.now()
        status, age = health_of(view.last_tick(), now, view.tick_s)
        body = Health(status=status, t=now, last_tick=view.last_tick(), tick_age_s=age)
        return JSONResponse(body.model_dump(), status_code=503 if status == "stale" else 200)

    @r.get("/status")
    def status() -> dict:
        """The ``city/twin/status`` document as of the last tick: t (that tick), uptime_s, received, accepted,
        duplicates, rejected {reason: n}, devices_seen, units_tracked, alerts_active, tick_ms, lag_ms (wall
        time since the tick), outbox."""
        return view.status()

    @r.get("/grid", response_model=Grid)
    def grid() -> Grid:
        """The grid (CRS, cell size, shape, extent) and every layer served, with units."""
        g, attrs = view.grid, view.static.attrs
        return Grid(district=attrs.get("district"), crs=g.crs, cell_size=g.cell_size, shape=g.shape,
                    origin=(g.x0, g.y0), bounds=g.bounds, bounds_lonlat=g.bounds_lonlat,
                    beidou_level=g.beidou_level, credit=attrs.get("credit"), t=view.last_tick(),
                    layers=[_summary(i) for i in view.all_layers()])

    @r.get("/layers/{name}.png", response_class=Response,
           responses={200: {"content": {"image/png": {}}, "description": "one pixel per cell, north up"}})
    def layer_png(name: str = Path(pattern=LAYER_NAME), bbox: str | None = Query(None, description=BBOX_DOC),
                  vmin: float | None = None, vmax: float | None = None,
                  nodata: Literal["hide", "show"] = Query("hide", description=NODATA_DOC)) -> Response:
        """A layer as a PNG: warning colours for level layers, a colour ramp for the others, transparent
        where there is no data. Headers: ``X-Bounds`` (xmin,ymin,xmax,ymax of the image in the grid
        CRS [m]), ``X-Vmin``/``X-Vmax`` (ramp range). The legend is at ``/api/layers/{name}/legend``."""
        info = find_layer(view, name)
        win = rasters.window_for(view.grid, bbox, config.max_cells)
        style = _style(info, vmin, vmax, nodata)
        png = render.png_bytes(render.colourise(win.take(info.data.values), style))
        headers = {"X-Bounds": ",".join(f"{v:.3f}" for v in win.bounds(view.grid)), "Cache-Control": "no-store"}
        if style.mode == "ramp":
            headers |= {"X-Vmin": f"{style.vmin:g}", "X-Vmax": f"{style.vmax:g}"}
        return Response(png, media_type="image/png", headers=headers)

    @r.get("/layers/{name}/legend")
    def layer_legend(name: str = Path(pattern=LAYER_NAME), vmin: float | None = None, vmax: float | None = None,
                     nodata: Literal["hide", "show"] = Query("hide", description=NODATA_DOC)) -> dict:
        """How ``/api/layers/{name}.png`` draws the layer: level colours, or the ramp's range and stops."""
        info = find_layer(view, name)
        return render.legend(info, _style(info, vmin, vmax, nodata))

    @r.get("/layers/{name}")
    def layer_values(name: str = Path(pattern=LAYER_NAME),
                     bbox: str | None = Query(None, description=BBOX_DOC)) -> dict:
        """A layer's values: ``values`` rows north to south, columns west to east, null where no data;
        with ``units``, ``window`` (rows/cols of the grid, half-open), ``bounds`` (grid CRS [m]) and
        ``t`` (time of a live layer)."""
        info = find_layer(view, name)
        return _values_body(view, info, rasters.window_for(view.grid, bbox, config.max_cells))

    @r.get("/point")
    def point(lon: float = Query(description="longitude [degree]"),
              lat: float = Query(description="latitude [degree]"),
              datum: Literal["CGCS2000", "WGS84", "GCJ02"] = "CGCS2000") -> dict:
        """Everything at a point: its cell (row, col, centre), Beidou grid code, every layer's value
        with units, and the warning levels by name."""
        return point_body(view, lon, lat, datum)

    return r


def point_body(view: TwinView, lon: float, lat: float, datum: str) -> dict:
    """The ``/api/point`` answer."""
    if not (np.isfinite(lon) and np.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise ApiError(422, "bad_lonlat", f"lon must be in -180..180 and lat in -90..90, got {lon}, {lat}")
    lon_c, lat_c = (float(v) for v in geo.to_cgcs2000(lon, lat, datum))
    grid = view.grid
    row, col = (int(v) for v in grid.cell_of_lonlat(lon_c, lat_c))
    if row < 0:
        raise ApiError(404, "outside_grid", f"{lon_c:.6f}, {lat_c:.6f} is outside the twin's grid "
                       f"(W,S,E,N {', '.join(f'{v:.5f}' for v in grid.bounds_lonlat)})")
    x, y = float(grid.x[col]), float(grid.y[row])
    clon, clat = (float(v) for v in geo.to_lonlat(x, y, grid.crs))
    layers, levels = {}, {}
    for info, value in view.cell_values(row, col):
        value = value if np.isfinite(value) else None
        layers[info.name] = {"value": value, "units": info.units, "long_name": info.long_name,
                             "source": info.source}
        if info.kind == "level" and value is not None:
            levels[info.name] = {"value": int(value), "name": LEVEL_NAMES.get(int(value), str(value))}
    level = grid.beidou_level
    return {"lon": lon_c, "lat": lat_c, "datum": "CGCS2000", "row": row, "col": col,
            "cell": {"x": x, "y": y, "lon": clon, "lat": clat, "beidou": geo.beidou_encode(clon, clat, level)},
            "beidou": geo.beidou_encode(lon_c, lat_c, level), "beidou_level": level,
            "t": view.last_tick(), "layers": layers, "levels": levels}
