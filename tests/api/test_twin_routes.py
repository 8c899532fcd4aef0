"""Health, status, grid, layer values, layer pictures and the point query."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.testclient import WebSocketDenialResponse

from tests.api.conftest import CHEN_YI_SQUARE, TOKEN, client_for
from twin.api import ApiConfig, create_app
from twin.api.config import LOOPBACK_HOSTS
from twin.api.routes_twin import health_of
from twin.district import geo

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_health_says_starting_then_ok_and_status_is_the_mqtt_status_document(api, scenario, service):
    svc, drv, _ = scenario
    body = api.get("/api/health").json()
    assert body["status"] == "ok" and body["last_tick"] == drv.t
    with client_for(service) as fresh:
        r = fresh.get("/api/health")
        assert r.status_code == 200 and r.json()["status"] == "starting" and r.json()["last_tick"] is None
    status = api.get("/api/status").json()
    assert status["alerts_active"] == len(svc.core.book.active) == 2, "Chen Yi Square's and the promenade's"
    assert status["units_tracked"] == 3
    assert status["devices_seen"] == 12 + 3 + 1, "counters, units, the vehicle"
    assert set(status["rejected"]) >= {"bad_checksum", "outside_grid", "unknown_device"}
    assert {"t", "uptime_s", "received", "accepted", "duplicates", "tick_ms", "lag_ms", "outbox"} <= set(status)
    assert status["t"] == drv.t and status["tick_ms"] == round(svc.last_report.tick_ms, 1)


def test_health_turns_stale_when_ticks_stop():
    assert health_of(None, 100.0, 1.0) == ("starting", None)
    assert health_of(95.0, 100.0, 1.0) == ("ok", 5.0)
    assert health_of(80.0, 100.0, 1.0) == ("stale", 20.0)
    assert health_of(80.0, 100.0, 10.0)[0] == "ok", "five tick periods of grace"


def test_grid_describes_extent_crs_cells_and_every_layer_with_units(api, scenario):
    _, drv, _ = scenario
    g = api.get("/api/grid").json()
    assert g["crs"] == "EPSG:4549" and g["cell_size"] == 10.0 and g["shape"] == [278, 392]
    assert g["bounds"] == [641000.0, 3457020.0, 644920.0, 3459800.0]
    w, s, e, n = g["bounds_lonlat"]
    assert 121.47 < w < 121.49 and 121.51 < e < 121.53 and 31.22 < s < 31.23 and 31.25 < n < 31.26
    assert g["beidou_level"] == 7 and g["district"] == "bund" and "OpenStreetMap" in g["credit"]
    layers = {x["name"]: x for x in g["layers"]}
    assert layers["elevation"]["units"] == "m" and layers["elevation"]["source"] == "static"
    assert layers["crowd_density"]["units"] == "person m-2" and layers["crowd_density"]["source"] == "live"
    assert layers["level_crowd"]["kind"] == "level" and layers["risk_flood"]["kind"] == "risk"
    assert g["t"] == drv.t


def test_layer_values_with_units_nulls_and_a_bbox_subset(api, scenario):
    svc, _, _ = scenario
    full = api.get("/api/layers/elevation").json()
    assert full["units"] == "m" and full["shape"] == [278, 392] and full["t"] is None
    assert np.allclose(np.array(full["values"], dtype=float), svc.static["elevation"].values)
    live = api.get("/api/layers/crowd_density").json()
    density = svc.core.models.layers["crowd_density"].values
    assert live["source"] == "live" and live["units"] == "person m-2" and live["t"] is not None
    got = np.array([[np.nan if v is None else v for v in row] for row in live["values"]])
    assert np.isnan(density).any(), "cells no counter covers have no density"
    assert np.array_equal(np.isnan(got), np.isnan(density)) and np.allclose(got, density, equal_nan=True)
    lon, lat = CHEN_YI_SQUARE
    bbox = f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"
    sub = api.get("/api/layers/level_crowd", params={"bbox": bbox})
    body = sub.json()
    w = body["window"]
    assert 19 <= body["shape"][0] <= 24 and 18 <= body["shape"][1] <= 21, "about 220 m x 190 m of 10 m cells"
    expected = svc.core.models.layers["level_crowd"].values[w["row0"]:w["row1"], w["col0"]:w["col1"]]
    assert body["values"] == expected.tolist() and body["flags"]["4"] == "red"
    x, y = geo.to_projected(lon, lat)
    xmin, ymin, xmax, ymax = body["bounds"]
    assert xmin < x < xmax and ymin < y < ymax


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "121.5,31.2,121.4,31.3", "121.4,31.2,121.5,nan",
                                  "200,31.2,201,31.3"])
def test_a_bad_bbox_is_422(api, bbox):
    r = api.get("/api/layers/elevation", params={"bbox": bbox})
    assert r.status_code == 422 and r.json()["error"] == "bad_bbox" and bbox in r.json()["detail"]


def test_a_bbox_away_from_the_grid_is_empty_and_too_many_cells_is_413(api, scenario):
    body = api.get("/api/layers/elevation", params={"bbox": "100,20,100.1,20.1"}).json()
    assert body["shape"] == [0, 0] and body["values"] == []
    svc, _, _ = scenario
    with client_for(svc, max_cells=1000) as small:
        r = small.get("/api/layers/elevation")
        assert r.status_code == 413 and r.json()["error"] == "too_large"


@pytest.mark.parametrize("name", ["nope", "crs", "..", "level_crowd.nc", "ELEVATION", "x" * 80])
def test_unknown_layers_are_404_or_refused_and_never_read_from_disk(api, name):
    for path in (f"/api/layers/{name}", f"/api/layers/{name}.png", f"/api/layers/{name}/legend"):
        r = api.get(path)
        assert r.status_code in (404, 422), path
        assert r.json()["error"] in ("unknown_layer", "invalid_request", "not_found"), r.json()
    assert "elevation" in api.get("/api/layers/nope").json()["detail"], "the 404 names the known layers"
    assert api.get("/api/layers/..%2F..%2Fetc%2Fpasswd").status_code == 404


def _png(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


def test_level_png_uses_warning_colours_and_is_transparent_without_a_warning(api, scenario):
    svc, _, _ = scenario
    level = svc.core.models.layers["level_crowd"].values
    img = _png(api.get("/api/layers/level_crowd.png"))
    assert img.shape == (278, 392, 4)
    red = img[level == 4]
    assert red.size and (red == (220, 24, 24, 225)).all(), "red level in red"
    assert (img[level <= 0][:, 3] == 0).all(), "no warning and no data: transparent by default"
    shown = _png(api.get("/api/layers/level_crowd.png", params={"nodata": "show"}))
    assert (shown[level == -1] == (128, 128, 128, 110)).all()
    legend = api.get("/api/layers/level_crowd/legend").json()
    assert [e["label"] for e in legend["entries"]] == ["nodata", "none", "blue", "yellow", "orange", "red"]
    assert legend["entries"][-1]["colour"] == "#dc1818" and legend["mode"] == "levels"


def test_continuous_png_has_a_ramp_a_legend_and_a_bbox(api, scenario):
    svc, _, _ = scenario
    r = api.get("/api/layers/elevation.png")
    img = _png(r)
    elev = svc.static["elevation"].values
    assert float(r.headers["X-Vmin"]) == pytest.approx(np.nanmin(elev), abs=1e-4)
    assert float(r.headers["X-Vmax"]) == pytest.approx(np.nanmax(elev), abs=1e-4)
    assert r.headers["X-Bounds"] == "641000.000,3457020.000,644920.000,3459800.000"
    hi, lo = np.unravel_index(np.nanargmax(elev), elev.shape), np.unravel_index(np.nanargmin(elev), elev.shape)
    assert tuple(img[hi][:3]) == (45, 25, 110) and tuple(img[lo][:3]) == (255, 250, 200), "ramp ends"
    assert (img[..., 3] == 210).all(), "a static layer covers the whole grid"
    legend = api.get("/api/layers/crowd_density/legend").json()
    assert legend["vmin"] == 0 and legend["vmax"] == 5.0 and legend["units"] == "person m-2"
    assert legend["stops"][0]["colour"] == "#fffac8" and "no data" in legend["transparent"]
    dens = _png(api.get("/api/layers/crowd_density.png", params={"vmin": 0, "vmax": 10}))
    d = svc.core.models.layers["crowd_density"].values
    assert (dens[~np.isfinite(d)][:, 3] == 0).all() and (dens[d > 0][:, 3] == 210).all()
    part = _png(api.get("/api/layers/elevation.png", params={"bbox": "121.484,31.239,121.487,31.242"}))
    assert 25 <= part.shape[0] <= 40 and 25 <= part.shape[1] <= 35
    bad = api.get("/api/layers/elevation.png", params={"vmin": 3, "vmax": 1})
    assert bad.status_code == 422 and bad.json()["error"] == "bad_range"


def test_point_gives_its_cell_every_layer_levels_and_the_beidou_code(api, scenario):
    svc, drv, alert = scenario
    lon, lat = drv.cell_inside(alert)
    body = api.get("/api/point", params={"lon": lon, "lat": lat}).json()
    grid = svc.core.state.grid
    row, col = (int(v) for v in grid.cell_of_lonlat(lon, lat))
    assert (body["row"], body["col"]) == (row, col)
    assert body["beidou"] == geo.beidou_encode(lon, lat, 7) and body["beidou"].startswith("N51H")
    assert body["layers"]["elevation"] == {"value": float(svc.static["elevation"].values[row, col]), "units": "m",
                                           "long_name": svc.static["elevation"].attrs["long_name"],
                                           "source": "static"}
    density = svc.core.models.layers["crowd_density"].values[row, col]
    assert body["layers"]["crowd_density"]["value"] == pytest.approx(density)
    level = int(svc.core.models.layers["level_crowd"].values[row, col])
    assert level >= 1 and body["levels"]["level_crowd"] == {"value": level, "name": ["blue", "yellow", "orange",
                                                                                       "red"][level - 1]}
    assert abs(body["cell"]["lon"] - lon) < 1e-6 and body["t"] == drv.t
    gx, gy = geo.wgs84_to_gcj02(lon, lat)
    gcj = api.get("/api/point", params={"lon": gx, "lat": gy, "datum": "GCJ02"}).json()
    assert (gcj["row"], gcj["col"]) == (row, col), "GCJ-02 input converted back"


@pytest.mark.parametrize(("params", "status", "error"), [
    ({"lon": 121.60, "lat": 31.30}, 404, "outside_grid"),
    ({"lon": 190, "lat": 31.2}, 422, "bad_lonlat"),
    ({"lon": "nan", "lat": 31.2}, 422, "bad_lonlat"),
    ({"lon": "east", "lat": 31.2}, 422, "invalid_request"),
    ({"lat": 31.2}, 422, "invalid_request"),
    ({"lon": 121.49, "lat": 31.24, "datum": "BD09"}, 422, "invalid_request"),
])
def test_point_errors(api, params, status, error):
    r = api.get("/api/point", params=params)
    assert r.status_code == status and r.json()["error"] == error, r.json()


# ---------------------------------------------------------------- every error is JSON {"error", "detail"}
def _error(r, status: int, error: str) -> object:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json", r.headers["content-type"]
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    return body["detail"]


def test_every_error_is_json_with_a_code_and_a_detail(scenario):
    svc, _, alert = scenario
    app = create_app(svc, ApiConfig(token=TOKEN, allowed_hosts=LOOPBACK_HOSTS))
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/status").status_code == 200
        detail = _error(c.get("/api/status", headers={"Host": "rebound.example.com"}), 400, "invalid_host")
        assert "rebound.example.com" in detail, "wrong Host (DNS rebinding): JSON, not Starlette's plain text"
        _error(c.get("/api/status", headers={"Host": "bad host!"}), 400, "invalid_host")
        assert "not found" in _error(c.get("/api/nowhere"), 404, "not_found").lower()
        r = c.delete("/api/status")
        _error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "GET"
        assert _error(c.get("/api/point", params={"lat": 31.2}), 422, "invalid_request") == [
            {"where": "query.lon", "problem": "Field required"}]
        url = f"/api/alerts/{alert}/ack"
        assert _error(c.post(url, content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}),
                      422, "invalid_request")[0]["where"].startswith("body")
        _error(c.post(url, json={"operator": "Li"}), 401, "unauthorized")
        _error(c.post(url, json={"operator": "Li"}, headers={"Authorization": "Bearer not-the-token"}), 403,
               "forbidden")
    with client_for(svc) as read_only:
        _error(read_only.post(url, json={"operator": "Li"}, headers=AUTH), 403, "writes_disabled")


def test_a_websocket_from_a_foreign_host_is_refused_with_the_json_400(scenario):
    svc, _, _ = scenario
    for hosts, admitted in ((("testserver",), True), (LOOPBACK_HOSTS, False)):  # the test client's Host: testserver
        with TestClient(create_app(svc, ApiConfig(allowed_hosts=hosts))) as c:
            if admitted:
                with c.websocket_connect("/ws") as ws:
                    assert ws.receive_json()["type"] == "snapshot"
            else:
                with pytest.raises(WebSocketDenialResponse) as refused, c.websocket_connect("/ws"):
                    pass
                assert "testserver" in _error(refused.value, 400, "invalid_host")


def test_an_unexpected_exception_is_a_json_500_without_traceback_and_one_log_line(scenario, caplog, monkeypatch):
    svc, _, _ = scenario
    app = create_app(svc, ApiConfig(token=TOKEN))

    def broken() -> dict:
        raise RuntimeError("secret state\nsecond line")

    monkeypatch.setattr(app.state.api.view, "status", broken)
    with TestClient(app) as c, caplog.at_level(logging.INFO):
        r = c.get("/api/status", headers=AUTH)
        assert c.get("/api/grid").status_code == 200, "the app goes on"
    detail = _error(r, 500, "internal_error")
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    errors = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(errors) == 1, [rec.getMessage() for rec in errors]
    line = errors[0].getMessage()
    assert "\n" not in line and errors[0].exc_info is None, "one line, no traceback"
    incident = detail.split("incident ")[1].split(")")[0]
    assert incident in line and "/api/status" in line and "RuntimeError" in line and "test_twin_routes.py" in line
