"""The city API: merged city alerts, the districts with their status and a link to each district twin's own API,
and the vital signs city -> district (docs/guides/city-tier.md).

- ``GET /api/city/health``: the city tier's counters (clock, merger, units).
- ``GET /api/city/alerts``: the active city alerts as a GeoJSON FeatureCollection (lon/lat, WGS84 = CGCS2000);
  ``GET /api/city/alerts/{identifier}``: one city alert's current CAP message (JSON).
- ``GET /api/city/districts``: the manifest's districts, each with its status (its twin's ``GET /api/health``,
  else the status message it publishes after every tick on ``{prefix}twin/status/<partition>``), the district
  alerts it has active, and ``api``, the base URL of its twin's own API (the drill-down).
- ``GET /api/city/indicators``: for each district, the nodes its twin's ``GET /api/indicators?level=district``
  returns. **Over HTTP, not from the stores**: district twins may run on other machines with their own database,
  and their API is the contract they keep. Every district is asked at once with a short timeout
  (`PROBE_TIMEOUT_S`) and the answers are kept `CACHE_S`, so the page never waits longer than the timeout: a twin
  that does not answer (or has no API address) is listed with ``status`` ``unavailable`` (``unknown``) and a
  ``detail``.
- ``GET /api/city/units``: the field units the tier follows, with their district and the city alerts they had.
- ``GET /api/city/map``: the districts' boundaries and each district twin's ground (`twin.city.citymap`).
- ``GET /``: the city page (`CITY_PAGE`, its files in ``twin/api/static/``: ``city.html``, ``city.js``,
  ``city.css`` with the dashboard's ``palette.css`` and ``levels.js``): the map of the districts coloured by
  status, with their active alerts and key vital signs, the city alerts on the map and in a list, and a link per
  district to its twin's own page and API (the drill-down). It loads nothing from other sites (the dashboard's
  Content-Security-Policy) and polls the API above every few seconds.

Errors are JSON ``{"error": "<code>", "detail": ...}``. The API only reads today; writes, when they come, take
``Authorization: Bearer <token>`` as the district API's do (`token_check`), and `serve_city` refuses to listen
beyond loopback without a token. It uses the twin API's server (`twin.api.server.serve_app`) and page rules
(`twin.api.page`).
"""

from __future__ import annotations

import concurrent.futures
import hmac
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import shapely
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.middleware.trustedhost import TrustedHostMiddleware

from twin import __version__
from twin.alerting import cap
from twin.api.config import LOOPBACK_HOSTS
from twin.api.page import CSP, HEADERS, static_files
from twin.api.server import ServerHandle, is_loopback, serve_app

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 1.5
"""How long a district twin has to answer one request [s]."""
CACHE_S = 2.0
"""District answers are reused this long [s] (a busy page does not multiply requests)."""
MAX_BODY = 8 << 20
"""Largest district answer read [byte]."""
STALE_TICKS = 3
"""A district twin whose last tick is more than this many ticks old (and at least 10 s) is stale."""
CITY_PAGE = "city.html"
"""The city page's HTML file in the twin API's static folder (package data of ``twin.api``)."""
CITY_FILES = (CITY_PAGE, "city.js", "city.css", "palette.css", "levels.js")
"""The static files the city page loads: the only ones the city API serves under ``/static/``."""


@dataclass(frozen=True)
class DistrictLink:
    """A district of the manifest and where its twin's API is (``api`` "" when not known)."""

    partition: str
    code: str
    name: str
    name_en: str
    api: str = ""


@dataclass
class CityBoard:
    """What the API shows, kept up to date by the city tier (thread-safe: one lock, copies out).

    ``status`` returns the tier's counters (clock, merger, units), ``units`` the followed units.
    """

    code: str
    name: str
    name_en: str
    districts: list[DistrictLink]
    status: Callable[[], dict] = dict
    units: Callable[[], list[dict]] = list
    tick_s: float = 60.0
    """The city clock's tick [s]: a district twin whose last tick is older than `STALE_TICKS` ticks is stale."""
    now: Callable[[], float] = time.time
    """Twin time [unix s]."""
    map: dict = field(default_factory=lambda: {"type": "FeatureCollection", "features": []})
    """The city page's map (`twin.city.citymap.city_map`): district boundaries and each twin's ground; set once,
    read only."""
    _alerts: dict[str, tuple[dict, list[str]]] = field(default_factory=dict)
    _district_alerts: dict[str, int] = field(default_factory=dict)
    _twins: dict[str, dict] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_twin_status(self, partition: str, doc: dict) -> None:
        """The last status document a district twin published (``{prefix}twin/status/<partition>``)."""
        with self._lock:
            self._twins[partition] = dict(doc)

    def twin_status(self, partition: str) -> dict | None:
        """A district twin's last status, summarised: ``t`` (its last tick), ``tick_age_s``, ``lag``,
        ``alerts_active``, ``status`` (ok or stale by the tick's age); None before any."""
        with self._lock:
            doc = self._twins.get(partition)
        if doc is None:
            return None
        t = doc.get("t")
        age = max(0.0, self.now() - t) if isinstance(t, int | float) and math.isfinite(t) else None
        fresh = age is not None and age <= max(10.0, STALE_TICKS * self.tick_s)
        return {"status": "ok" if fresh else "stale", "t": t, "tick_age_s": None if age is None else round(age, 1),
                "lag": doc.get("lag"), "alerts_active": doc.get("alerts_active")}

    def set_alerts(self, alerts: Sequence[tuple[str, dict, list[str]]], district_alerts: dict[str, int]) -> None:
        """Every active city alert as (first identifier, current message, member district alert identifiers), in
        order, and the number of active district alerts per district."""
        with self._lock:
            self._alerts = {identifier: (message, list(members)) for identifier, message, members in alerts}
            self._district_alerts = dict(district_alerts)

    def alerts(self) -> dict[str, tuple[dict, list[str]]]:
        """First identifier -> (current message, members)."""
        with self._lock:
            return dict(self._alerts)

    def district_alerts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._district_alerts)


# ---------------------------------------------------------------- alerts as GeoJSON
def _lonlat_polygons(message: dict) -> shapely.Geometry:
    polygons = []
    for area in cap.info_block(message, "en-US").get("area") or []:
        for text in area.get("polygon") or []:
            pairs = [tuple(float(v) for v in p.split(",")) for p in str(text).split()]
            polygons.append(shapely.Polygon([(lon, lat) for lat, lon in pairs]))
    return shapely.MultiPolygon(polygons) if polygons else shapely.GeometryCollection()


def _parameters(info: dict) -> dict[str, str]:
    return {p.get("valueName"): p.get("value") for p in info.get("parameter") or [] if isinstance(p, dict)}


def alert_feature(identifier: str, message: dict, members: Sequence[str]) -> dict:
    """A city alert as a GeoJSON Feature: its polygons, and properties ``identifier`` (first), ``message``
    (current identifier), ``msgType``, ``sent``, ``hazard``, ``level`` (the colour), ``severity``, ``headline``
    (English), ``headline_zh``, ``districts``, ``members`` (the district alerts it covers), ``areaM2``."""
    en, zh = cap.info_block(message, "en-US"), cap.info_block(message, "zh-CN")
    params = _parameters(en)
    try:
        geometry = shapely.geometry.mapping(_lonlat_polygons(message))
    except (ValueError, TypeError):
        geometry = None
    return {"type": "Feature", "id": identifier, "geometry": geometry,
            "properties": {"identifier": identifier, "message": message.get("identifier"),
                           "msgType": message.get("msgType"), "sent": message.get("sent"),
                           "hazard": params.get("hazard"), "level": params.get("warningLevel"),
                           "severity": en.get("severity"), "headline": en.get("headline"),
                           "headline_zh": zh.get("headline"), "districts": (params.get("districts") or "").split(),
                           "members": list(members), "areaM2": params.get("areaM2")}}


# ---------------------------------------------------------------- asking the district twins
class DistrictProbe:
    """Asks every district twin's API at once, with a timeout, and keeps the answers `CACHE_S` (module docstring).

    ``get(path)`` returns, per partition, ``{"status": "ok" | "unavailable" | "unknown", "detail": str,
    "http": int | None, "body": <JSON> | None}``.
    """

    def __init__(self, districts: Sequence[DistrictLink], timeout_s: float = PROBE_TIMEOUT_S,
                 cache_s: float = CACHE_S, opener: Callable[..., Any] = urllib.request.urlopen) -> None:
        self.districts, self.timeout_s, self.cache_s, self.opener = list(districts), timeout_s, cache_s, opener
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(16, len(self.districts))),
                                                           thread_name_prefix="city-probe")
        self._cache: dict[str, tuple[float, dict[str, dict]]] = {}
        self._lock = threading.Lock()

    def _ask(self, url: str) -> dict:
        try:
            with self.opener(url, timeout=self.timeout_s) as response:
                body = response.read(MAX_BODY + 1)
                code = response.status
        except urllib.error.HTTPError as exc:
            body, code = exc.read(MAX_BODY + 1) if exc.fp else b"", exc.code
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return {"status": "unavailable", "detail": f"no answer from {url}: {reason}", "http": None, "body": None}
        if len(body) > MAX_BODY:
            return {"status": "unavailable", "detail": f"{url} answered more than {MAX_BODY} bytes", "http": code,
                    "body": None}
        try:
            doc = json.loads(body)
        except ValueError:
            return {"status": "unavailable", "detail": f"{url} answered HTTP {code}, not JSON", "http": code,
                    "body": None}
        return {"status": "ok" if code < 400 else "unavailable", "detail": "" if code < 400 else f"HTTP {code}",
                "http": code, "body": doc}

    def get(self, path: str) -> dict[str, dict]:
        """The answers of every district twin to ``GET {api}{path}`` (cached; waits at most the timeout)."""
        with self._lock:
            hit = self._cache.get(path)
            if hit is not None and time.monotonic() - hit[0] < self.cache_s:
                return hit[1]
            futures = {d.partition: self._pool.submit(self._ask, d.api.rstrip("/") + path)
                       for d in self.districts if d.api}
            concurrent.futures.wait(futures.values(), timeout=self.timeout_s + 0.5)
            out = {}
            for d in self.districts:
                future = futures.get(d.partition)
                if future is None:
                    out[d.partition] = {"status": "unknown", "detail": "no API address for this district twin "
                                        "(twin city-tier --district-api CODE=URL)", "http": None, "body": None}
                elif not future.done():
                    out[d.partition] = {"status": "unavailable", "detail": f"no answer within {self.timeout_s:g} s",
                                        "http": None, "body": None}
                else:
                    out[d.partition] = future.result()
            self._cache[path] = (time.monotonic(), out)
            return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- the app
_bearer = HTTPBearer(auto_error=False, description="the city tier's API token (writes only)")


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


class TokenError(Exception):
    """A write without the right token: the response to send."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def token_check(token: str | None):
    """A dependency that lets a write through only with ``Authorization: Bearer <token>`` (as the district API):
    401 without credentials, 403 with a wrong one, 403 when the tier has no token (it then only reads)."""

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if token is None:
            raise TokenError(_error(403, "writes_disabled", "this city tier has no API token, so it only reads"))
        if credentials is None:
            raise TokenError(_error(401, "unauthorized", "send Authorization: Bearer <token>",
                                    {"WWW-Authenticate": "Bearer"}))
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise TokenError(_error(403, "forbidden", "wrong token"))

    return check


def create_city_app(board: CityBoard, probe: DistrictProbe, token: str | None = None,
                    allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The city API over a `CityBoard` (module docstring)."""
    app = FastAPIOffline(title="citytwin city tier", version=__version__,
                         description="The city tier of the partitioned deployment: merged city alerts, districts "
                                     "with drill-down to each district twin's API, vital signs city -> district.")
    app.state.token_check = token_check(token)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.exception_handler(TokenError)
    async def _token_error(request, exc: TokenError) -> JSONResponse:
        return exc.response

    @app.get("/api/city/health")
    def health() -> dict:
        """The tier's counters: clock (ticks, failures, last tick), merger (accepted, rejected), units."""
        return {"status": "ok", "t": time.time(), **board.status()}

    @app.get("/api/city/alerts")
    def alerts() -> dict:
        """The active city alerts as a GeoJSON FeatureCollection, by anchor."""
        return {"type": "FeatureCollection",
                "features": [alert_feature(i, m, members) for i, (m, members) in board.alerts().items()]}

    @app.get("/api/city/alerts/{identifier}")
    def alert(identifier: str):
        """One city alert's current CAP 1.2 message (JSON)."""
        found = board.alerts().get(identifier)
        if found is None:
            return _error(404, "unknown_alert", f"no active city alert {identifier[:120]!r}")
        return found[0]

    @app.get("/api/city/districts")
    def districts() -> dict:
        """The districts, each with ``status``: its twin's own health over HTTP (ok, starting, stale) when it
        answers, else what its last status message says (ok or stale by the age of its last tick), else
        unavailable (an API that does not answer) or unknown; ``twin`` (that status message: t, tick_age_s, lag,
        alerts_active), ``alerts_active`` (the district alerts the tier holds) and ``api`` (its twin's API: the
        drill-down)."""
        health = probe.get("/api/health")
        counts = board.district_alerts()
        rows = []
        for d in board.districts:
            h, twin = health[d.partition], board.twin_status(d.partition)
            body = h["body"] if isinstance(h["body"], dict) else {}
            if body.get("status") in ("ok", "starting", "stale"):
                status = body["status"]
            else:
                status = twin["status"] if twin is not None else h["status"]
            rows.append({"partition": d.partition, "code": d.code, "name": d.name, "name_en": d.name_en,
                         "status": status, "detail": h["detail"], "twin": twin,
                         "alerts_active": counts.get(d.partition, 0), "api": d.api or None,
                         "links": {"api": d.api or None,
                                   "indicators": f"{d.api.rstrip('/')}/api/indicators?level=district" if d.api
                                   else None}})
        return {"city": {"code": board.code, "name": board.name, "name_en": board.name_en}, "districts": rows}

    @app.get("/api/city/indicators")
    def indicators() -> dict:
        """City -> district vital signs: per district, the nodes of its twin's ``/api/indicators?level=district``
        (``status`` unavailable or unknown, with ``detail``, when it did not answer)."""
        answers = probe.get("/api/indicators?level=district")
        rows = []
        for d in board.districts:
            a = answers[d.partition]
            body = a["body"] if isinstance(a["body"], dict) else {}
            status = a["status"] if a["status"] != "ok" or isinstance(body.get("nodes"), list) else "unavailable"
            rows.append({"partition": d.partition, "code": d.code, "name": d.name, "name_en": d.name_en,
                         "status": status, "detail": a["detail"] or ("" if status == "ok" else "no nodes in answer"),
                         "t": body.get("t"), "api": d.api or None,
                         "nodes": body.get("nodes", []) if status == "ok" else []})
        return {"level": "district", "parent": "city",
                "city": {"code": board.code, "name": board.name, "name_en": board.name_en}, "districts": rows}

    @app.get("/api/city/units")
    def units() -> dict:
        """The field units the tier follows: last position (lon, lat, t), district, city alerts they had."""
        return {"units": board.units()}

    @app.get("/api/city/map")
    def city_map() -> dict:
        """The districts' boundaries (``kind`` district: code, name, name_en, partitions, label [lon, lat]) and
        the ground of each district twin (``kind`` twin: partition, code) as a GeoJSON FeatureCollection
        (lon/lat)."""
        return board.map

    _page_routes(app)
    return app


def _page_routes(app: FastAPI) -> None:
    """``GET /`` (the city page) and ``GET /static/{name}`` (only `CITY_FILES`), out of the OpenAPI schema."""
    packaged = static_files()
    missing = [name for name in CITY_FILES if name not in packaged]
    if missing:
        raise FileNotFoundError(f"the city page's files {missing} are missing from twin/api/static")
    files = {name: packaged[name] for name in CITY_FILES}

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        body, media = files[CITY_PAGE]
        return Response(body, media_type=media,
                        headers={**HEADERS, "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in files:
            return _error(404, "not_found", f"no static file {name[:80]!r}")
        body, media = files[name]
        return Response(body, media_type=media, headers=HEADERS)


# ---------------------------------------------------------------- serving
def serve_city(board: CityBoard, probe: DistrictProbe, host: str = "127.0.0.1", port: int = 8090,
               token: str | None = None) -> ServerHandle:
    """Serve the city API from a background thread; returns once it accepts connections. Port 0 picks a free
    port. ValueError for a non-loopback host without a token; OSError when the address cannot be bound."""
    if not is_loopback(host) and not token:
        raise ValueError(f"refusing to serve the city API on {host}, beyond loopback, without a token")
    if token is not None and len(token) < 8:
        raise ValueError("the API token must be at least 8 characters long")
    hosts = LOOPBACK_HOSTS if is_loopback(host) and ":" not in host else None
    return serve_app(create_city_app(board, probe, token, hosts), host, port, "city-http", "the city API")
