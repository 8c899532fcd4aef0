"""The vital signs over HTTP: indicators, their history, the management tree's polygons, stored level frames and
the indicator gauges of /metrics (issue 18)."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import T0, client_for
from twin.api.routes_frames import FRAME_NAMES

ORDER = ["people", "water", "traffic", "alerts", "cases", "sensors", "units"]
"""The indicators, in the page's order (twin.live.vitals)."""


def test_the_city_node_has_the_seven_indicators_of_the_last_tick(api, scenario):
    svc, drv, _ = scenario
    r = api.get("/api/indicators")
    assert r.status_code == 200
    body = r.json()
    assert body["t"] == drv.t and body["level"] == "city"
    [city] = body["nodes"]
    assert city["id"] == "city" and city["parent"] is None and city["name_en"] == "City"
    ind = city["indicators"]
    assert list(ind) == ORDER
    for item in ind.values():
        assert {"value", "unit", "level", "trend", "trend_arrow", "detail"} <= set(item)
        assert -1 <= item["level"] <= 4
    # two red crowd alerts are open (Chen Yi Square and the Bank of China promenade beside it)
    assert ind["alerts"]["value"] == 2 and ind["alerts"]["level"] == 4
    assert ind["alerts"]["detail"]["by_level"] == {"1": 0, "2": 0, "3": 0, "4": 2}
    # people: crowd density times walkable area, summed over the cells with data
    live = svc.core.live_layers()
    density, walkable = live["crowd_density"].values, svc.static["walkable_area"].values
    has = np.isfinite(density)
    assert ind["people"]["unit"] == "person" and ind["people"]["level"] == 4, "the square is red"
    assert ind["people"]["value"] == pytest.approx(float(np.sum(density[has] * walkable[has])), abs=1.0)
    assert ind["people"]["detail"]["cells_with_data"] == int(has.sum())
    assert ind["water"]["unit"] == "m" and ind["sensors"]["unit"] == "%"


def test_districts_and_the_children_of_one_node(api, scenario):
    _, drv, _ = scenario
    body = api.get("/api/indicators", params={"level": "district"}).json()
    ids = {n["id"] for n in body["nodes"]}
    assert "district:310101" in ids and all(n["parent"] == "city" for n in body["nodes"])
    huangpu = next(n for n in body["nodes"] if n["id"] == "district:310101")
    assert huangpu["name"] == "黄浦区" and huangpu["name_en"] == "Huangpu"
    assert huangpu["indicators"]["alerts"]["value"] == 2, "both alerts are on the Bund, in Huangpu"
    streets = api.get("/api/indicators", params={"level": "street", "parent": "district:310101"}).json()
    assert streets["nodes"] and all(n["parent"] == "district:310101" for n in streets["nodes"])
    assert streets["t"] == drv.t


def test_an_unknown_level_is_400_and_a_time_before_any_tick_has_no_values(api):
    r = api.get("/api/indicators", params={"level": "province"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request" and "province" in r.json()["detail"]
    r = api.get("/api/admin-units", params={"level": "province"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    body = api.get("/api/indicators", params={"at": T0 - 3600}).json()
    assert body["t"] is None and body["nodes"][0]["indicators"] == {}
    assert api.get("/api/indicators", params={"at": "nan"}).status_code == 422


def test_the_history_of_a_node_is_every_tick_oldest_first(api, scenario):
    _, drv, _ = scenario
    body = api.get("/api/indicators/history", params={"node": "city", "indicator": "alerts"}).json()
    assert body["node"] == "city" and list(body["series"]) == ["alerts"]
    points = body["series"]["alerts"]["points"]
    times = [p[0] for p in points]
    ticks = [T0 + 10 * k for k in range(drv.k)]
    assert times[0] == T0 and times == sorted(set(times)) and set(times) <= set(ticks), "tick times, oldest first"
    assert T0 + 10 not in times, "a quiet tick like the one before is not stored again: the value holds till the next"
    assert points[-1][1:] == [2, 4] and points[0][1:] == [0, 0], "no alert at first, two red ones now"
    window = api.get("/api/indicators/history",
                     params={"node": "city", "indicator": "alerts", "from": drv.t - 20, "to": drv.t}).json()
    assert [p[0] for p in window["series"]["alerts"]["points"]] == [t for t in times if drv.t - 20 <= t <= drv.t]
    every = api.get("/api/indicators/history", params={"node": "city"}).json()
    assert list(every["series"]) == ORDER and every["series"]["people"]["unit"] == "person"


def test_history_errors(api, scenario):
    r = api.get("/api/indicators/history", params={"node": "district:999999"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_node"
    r = api.get("/api/indicators/history", params={"node": "city", "indicator": "happiness"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = api.get("/api/indicators/history", params={"node": "city", "from": 10, "to": 5})
    assert r.status_code == 400 and r.json()["detail"] == "from (10) is after to (5)"
    default = api.get("/api/indicators/history", params={"indicator": "alerts"}).json()
    assert default["node"] == "city", "the city's history by default"


def test_a_history_from_after_the_last_tick_is_400(api, scenario):
    """``to`` defaults to the last tick: a ``from`` after it is an empty period, said so (not an empty answer)."""
    _, drv, _ = scenario
    r = api.get("/api/indicators/history", params={"from": drv.t + 1})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert r.json()["detail"] == f"from ({drv.t + 1:.0f}) is after to ({drv.t:.0f}; the last tick when not given)"
    assert api.get("/api/indicators/history", params={"from": drv.t}).status_code == 200, "one instant is a period"


def test_a_tree_that_cannot_be_built_is_503_not_the_requests_fault(service, tmp_path, caplog):
    """A broken districts file is the server's problem: 503 ``tree_unavailable`` and an ERROR line; an unknown
    level is still the request's (400)."""
    (tmp_path / "districts.geojson").write_text("{not json", encoding="utf-8")
    vitals = service.core.vitals
    vitals._folder, vitals._tree = tmp_path, None
    with client_for(service) as c:
        for path, params in (("/api/admin-units", {}), ("/api/admin-units", {"level": "district"}),
                             ("/api/indicators", {"level": "city"}), ("/api/indicators/history", {})):
            r = c.get(path, params=params)
            assert r.status_code == 503 and r.json()["error"] == "tree_unavailable", (path, r.json())
            assert "districts.geojson" in r.json()["detail"]
        assert any(rec.levelname == "ERROR" and "management tree unavailable" in rec.getMessage()
                   for rec in caplog.records)
        for path in ("/api/admin-units", "/api/indicators"):
            r = c.get(path, params={"level": "province"})
            assert r.status_code == 400 and r.json()["error"] == "invalid_request" and "province" in r.json()["detail"]


def test_admin_units_are_geojson_polygons_in_lon_lat(api):
    body = api.get("/api/admin-units", params={"level": "district"}).json()
    assert body["type"] == "FeatureCollection"
    props = {f["properties"]["id"]: f["properties"] for f in body["features"]}
    assert props["district:310101"] == {"id": "district:310101", "level": "district", "name": "黄浦区",
                                        "name_en": "Huangpu", "parent": "city"}
    ring = np.array(body["features"][0]["geometry"]["coordinates"][0]
                    if body["features"][0]["geometry"]["type"] == "Polygon"
                    else body["features"][0]["geometry"]["coordinates"][0][0])
    assert 121.3 < ring[:, 0].mean() < 121.7 and 31.1 < ring[:, 1].mean() < 31.4, "lon/lat around the Bund"
    everything = api.get("/api/admin-units").json()["features"]
    levels = {f["properties"]["level"] for f in everything}
    assert levels == {"city", "district", "street", "unit"}


# ---------------------------------------------------------------- frames
def test_frames_list_the_stored_ticks_and_draw_like_the_live_layer(api, scenario):
    _, drv, _ = scenario
    body = api.get("/api/frames").json()
    assert body["names"] == ["level", "level_crowd", "level_flood", "level_traffic"]
    times, ticks = body["times"], [T0 + 10 * k for k in range(drv.k)]
    assert times[0] == T0 and times == sorted(set(times)) and set(times) <= set(ticks), "tick times, oldest first"
    assert T0 + 10 not in times, "a frame like the one before is not stored again"
    live = api.get("/api/layers/level_crowd.png")
    frame = api.get("/api/frames/level_crowd.png", params={"at": drv.t})
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
    stored_at = float(frame.headers["X-Frame-Time"])
    assert stored_at in ticks, "the last frame stored at or before the last tick"
    assert frame.headers["X-Bounds"] == live.headers["X-Bounds"]
    assert frame.content == live.content, "the newest frame is the live layer, drawn the same way"
    newest = api.get("/api/frames/level_crowd.png")
    assert float(newest.headers["X-Frame-Time"]) == stored_at, "default: the newest frame"
    shown = api.get("/api/frames/level_crowd.png", params={"at": drv.t, "nodata": "show"}).content
    assert shown == api.get("/api/layers/level_crowd.png", params={"nodata": "show"}).content


def test_an_earlier_frame_is_the_one_at_or_before_the_time(api, scenario):
    first = api.get("/api/frames/level_crowd.png", params={"at": T0 + 5})
    assert float(first.headers["X-Frame-Time"]) == T0, "at or before: the first tick's frame"
    pixels = np.asarray(Image.open(io.BytesIO(first.content)))
    assert (pixels[..., 3] == 0).all(), "no crowd level before the evening crowd: all transparent"
    now = np.asarray(Image.open(io.BytesIO(api.get("/api/frames/level_crowd.png").content)))
    red = (now[..., 0] == 220) & (now[..., 1] == 24) & (now[..., 2] == 24) & (now[..., 3] == 225)
    assert red.any(), "the square in red now"
    r = api.get("/api/frames/level_crowd.png", params={"at": T0 - 1})
    assert r.status_code == 404 and r.json()["error"] == "no_frame"


def test_the_api_frame_names_are_the_live_twins(api):
    assert list(FRAME_NAMES) == api.get("/api/frames").json()["names"] == ["level", "level_crowd", "level_flood",
                                                                           "level_traffic"]


def test_a_frame_picture_checks_its_name_without_reading_the_store(service, monkeypatch):
    def listing():
        raise AssertionError("the frame list was read for one picture")

    with client_for(service) as c:
        monkeypatch.setattr(c.app.state.api.view, "layer_frames", listing)
        r = c.get("/api/frames/crowd_density.png", params={"at": T0})
        assert r.status_code == 404 and r.json()["error"] == "unknown_layer"
        r = c.get("/api/frames/level.png", params={"at": T0})
        assert r.status_code == 404 and r.json()["error"] == "no_frame"


def test_a_frame_of_another_grid_is_409(service, caplog):
    """A state database reused after the twin was rebuilt at another resolution: its frames do not decode to the
    grid's shape (12 cells here)."""
    service.store.record_vitals(T0, "t", {}, {"level_crowd": zlib.compress(bytes(12))})
    with client_for(service) as c:
        r = c.get("/api/frames/level_crowd.png", params={"at": T0})
        assert r.status_code == 409 and r.json()["error"] == "frame_mismatch", r.json()
        assert "12 cells" in r.json()["detail"]
    assert any(rec.levelname == "ERROR" and "does not fit the grid" in rec.getMessage() for rec in caplog.records)


def test_frames_of_an_unknown_layer_and_before_any_tick_are_404(api, service):
    r = api.get("/api/frames/crowd_density.png")
    assert r.status_code == 404 and r.json()["error"] == "unknown_layer"
    with client_for(service) as fresh:
        assert fresh.get("/api/frames").json()["times"] == []
        r = fresh.get("/api/frames/level.png")
        assert r.status_code == 404 and r.json()["error"] == "no_frame" and "X-Frame-Time" not in r.headers


# ---------------------------------------------------------------- metrics
def test_metrics_export_every_indicator_of_every_node(api, scenario):
    text = api.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.labels["node"], s.labels["indicator"]): s.value for s in families["citytwin_indicator"].samples}
    levels = {(s.labels["node"], s.labels["indicator"]): s.value
              for s in families["citytwin_indicator_level"].samples}
    assert values[("city", "alerts")] == 2.0 and levels[("city", "alerts")] == 4.0
    assert levels[("city", "people")] == 4.0
    assert ("city", "traffic") not in values, "no traffic data: no value, only its level"
    assert levels[("city", "traffic")] == -1.0
    node_levels = {s.labels["node"]: s.labels["node_level"] for s in families["citytwin_indicator_level"].samples}
    assert node_levels["city"] == "city" and node_levels["district:310101"] == "district"
    units = api.get("/api/admin-units", params={"level": "unit"}).json()["features"]
    assert {f["properties"]["id"] for f in units} <= set(node_levels), "every grid unit is exported"
    assert sum(1 for n in node_levels.values() if n == "unit") == len(units)
