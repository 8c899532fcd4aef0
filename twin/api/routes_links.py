"""Road links: ``GET /api/links``, the live twin's directed road links as GeoJSON with their speeds and levels.

The static part of each feature (its lon/lat geometry and the link's attributes) is built once per road network
and kept (`LinkFeatures`); a request adds the last tick's outputs (`twin.live.query.LiveQuery.road_links`) and is
encoded straight to JSON text (no FastAPI encoder over thousands of features).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from twin.api.errors import ApiError
from twin.api.geojson import iso_time
from twin.api.rasters import parse_bbox
from twin.api.state import ApiState
from twin.district import geo
from twin.district.roads import road_names
from twin.live.query import RoadLinks

LEVEL_NAMES = {-1: "nodata", 0: "smooth", 1: "basically_smooth", 2: "light", 3: "moderate", 4: "severe"}
"""GB/T 33171 congestion levels by code (-1: no speed)."""
WARNING_NAMES = {-1: "nodata", 0: "none", 1: "blue", 2: "yellow", 3: "orange", 4: "red"}
"""Warning levels of a link by code."""
STATIC = ("link_id", "name", "name_en", "road_class", "lanes", "length_m", "free_flow_kmh", "tunnel", "bridge",
          "elevated")
"""The link attributes every feature carries, from the road network."""
BBOX_DOC = "W,S,E,N in degrees (CGCS2000/WGS84): only the links that cross the box"
DIGITS = 7
"""Decimals of the lon/lat coordinates (about 1 cm)."""


def _plain(value: Any) -> Any:
    """A JSON value of a table cell: numpy scalars as Python ones; missing text and NaN as None."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return None if value is None or value == "" else str(value)


def _number(value: float, digits: int) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


@dataclass(frozen=True)
class LinkFeatures:
    """The static half of the ``/api/links`` features of one road network (built once, then only read)."""

    geometries: list[dict]
    """GeoJSON LineString of each link in lon/lat, in the direction of travel."""
    properties: list[dict]
    """The link's attributes (`STATIC`) of each link."""
    lonlat: np.ndarray
    """The links as shapely LineStrings in lon/lat (for ``bbox``)."""

    @classmethod
    def of(cls, links) -> LinkFeatures:
        """Project the links' geometry (grid CRS) to CGCS2000 lon/lat and keep their attributes."""
        geoms = links.geometry.to_numpy()
        crs = links.crs.to_string() if links.crs is not None else geo.DEFAULT_CRS
        lonlat = shapely.transform(geoms, lambda xy: np.column_stack(geo.to_lonlat(xy[:, 0], xy[:, 1], crs)))
        geometries = [{"type": "LineString", "coordinates": np.round(shapely.get_coordinates(g), DIGITS).tolist()}
                      for g in lonlat]
        columns = {c: links[c].tolist() for c in STATIC}
        properties = [{c: _plain(columns[c][k]) for c in STATIC} for k in range(len(links))]
        return cls(geometries, properties, np.asarray(lonlat))


class LinkCache:
    """`LinkFeatures` of the road network the service runs with, built on the first request (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: Any = None
        self._features: LinkFeatures | None = None

    def features(self, links) -> LinkFeatures:
        with self._lock:
            if self._features is None or self._links is not links:
                self._features, self._links = LinkFeatures.of(links), links
            return self._features


def link_collection(road: RoadLinks, static: LinkFeatures, bbox: tuple[float, float, float, float] | None = None,
                    min_confidence: float | None = None, with_speed: bool = False, geometry: bool = True) -> dict:
    """The ``/api/links`` FeatureCollection of the links that pass the filters, in link order."""
    keep = np.ones(len(road.links), bool)
    if bbox is not None:
        keep &= shapely.intersects(static.lonlat, shapely.box(*bbox))
    if min_confidence is not None:
        keep &= np.nan_to_num(road.confidence, nan=0.0) >= min_confidence
    if with_speed:
        keep &= np.isfinite(road.speed_kmh)
    features = []
    for k in np.flatnonzero(keep).tolist():
        props = dict(static.properties[k])
        props.update(speed_kmh=_number(road.speed_kmh[k], 2), speed_window_kmh=_number(road.speed_window_kmh[k], 2),
                     congestion_kmh=_number(road.congestion_kmh[k], 2),
                     samples=_count(road.samples[k]), vehicles=_count(road.vehicles[k]), loops=_count(road.loops[k]),
                     confidence=_number(road.confidence[k], 3), travel_time_s=_number(road.travel_time_s[k], 1),
                     level=int(road.level[k]), tpi=_number(road.tpi[k], 2), warning=int(road.warning[k]),
                     incident=int(road.incident[k]))
        features.append({"type": "Feature", "id": props["link_id"],
                         "geometry": static.geometries[k] if geometry else None, "properties": props})
    return {"type": "FeatureCollection", "t": road.t, "time": iso_time(road.t), "links": len(road.links),
            "district_index": _number(road.district_index, 2), "features": features}


def road_table(road: RoadLinks) -> dict:
    """The ``/api/roads`` body: the district's TPI-like index and each named road's, worst first, with the road's
    length, its length at each warning level and its incidents."""
    _, zh, names = road_names(road.links)
    length = road.links["length_m"].to_numpy(float)
    rows = []
    for name, index in road.road_index.items():
        on = names == name
        rows.append({"road": name, "name_zh": next((z for z in zh[on] if z), None), "index": _number(index, 2),
                     "length_m": round(float(length[on].sum()), 1),
                     "warning_m": {lvl: round(float(length[on & (road.warning == code)].sum()), 1)
                                   for code, lvl in WARNING_NAMES.items() if code > 0},
                     "incidents": int((road.incident[on] == 1).sum())})
    rows.sort(key=lambda r: (-(r["index"] if r["index"] is not None else -1.0), r["road"]))
    return {"t": road.t, "time": iso_time(road.t), "district_index": _number(road.district_index, 2),
            "label": "TPI-like index, 0 (free) to 10 (gridlock); not the official Traffic Performance Index",
            "roads": rows}


def _count(value: float) -> int:
    return int(value) if math.isfinite(value) else 0


def links_routes(state: ApiState) -> APIRouter:
    """The router of ``/api/links``."""
    view = state.view
    cache = LinkCache()
    r = APIRouter(prefix="/api", tags=["live"])

    @r.get("/links", response_class=JSONResponse,
           responses={200: {"description": "a GeoJSON FeatureCollection of LineStrings (lon/lat)"},
                      404: {"description": "error no_road_network: the twin runs without a road network"}})
    def links(bbox: str | None = Query(None, description=BBOX_DOC),
              min_confidence: float | None = Query(None, ge=0.0, le=1.0,
                                                   description="only links whose speed confidence is at least this"),
              with_speed: bool = Query(False, description="only links with a speed now"),
              geometry: bool = Query(True, description="false: features without geometry (null), for a client "
                                                       "that has them from an earlier answer")) -> Response:
        """The directed road links as a GeoJSON FeatureCollection of LineStrings (CGCS2000 lon/lat, in the
        direction of travel), in link order, with the last tick's outputs: ``link_id, name, name_en, road_class,
        lanes, length_m`` [m], ``free_flow_kmh`` [km h-1], ``tunnel, bridge, elevated``, ``speed_kmh`` (smoothed
        space-mean speed) and ``speed_window_kmh`` (the last window's) [km h-1], ``samples`` (traversals in the
        window), ``vehicles``, ``loops`` (fresh loop detectors fused on it), ``confidence`` (0-1), ``travel_time_s``
        [s], ``congestion_kmh`` (the speed the levels use: stop-line waits shorter than a signal cycle left out,
        loops fused), ``level`` (GB/T 33171 congestion level for the link's class: 0 smooth, 1 basically smooth,
        2 light, 3 moderate, 4 severe, -1 no speed), ``tpi`` (TPI-like index 0-10), ``warning`` (0 none, 1 blue,
        2 yellow, 3 orange, 4 red, -1 no data) and ``incident`` (1 declared, 0 none, -1 not tested).
        Top level: ``t`` (the tick [unix s]), ``time``, ``links`` (how many the network has), ``district_index``
        (TPI-like)."""
        box = parse_bbox(bbox) if bbox is not None else None
        road = view.road_links()
        if road is None:
            raise ApiError(404, "no_road_network", "this twin runs without a road network: build it with the twin "
                           "(twin grid build writes the links beside the twin file) and restart the service")
        body = link_collection(road, cache.features(road.links), box, min_confidence, with_speed, geometry)
        text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})

    @r.get("/roads", response_class=JSONResponse,
           responses={200: {"description": "the district's and each named road's TPI-like index"},
                      404: {"description": "error no_road_network: the twin runs without a road network"}})
    def roads() -> Response:
        """The congestion index of the district and of each named road (TPI-like, 0 free to 10 gridlock,
        length-weighted over the links with data; not the official Traffic Performance Index), worst first, with
        each road's length [m], its length at each warning level [m] and its incidents now."""
        road = view.road_links()
        if road is None:
            raise ApiError(404, "no_road_network", "this twin runs without a road network: build it with the twin "
                           "(twin grid build writes the links beside the twin file) and restart the service")
        text = json.dumps(road_table(road), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})

    return r
