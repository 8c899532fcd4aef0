"""Issue 15 (part): ``GET /api/links``, the live twin's road links with their speeds and congestion levels.

A live service on the Bund at 10 m with its road network; four probes drive the longest link of East
Zhongshan No. 1 Road (中山东一路) at 36 km/h (`tests.test_probe_links`), through the real core.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.config import TrafficConfig
from tests.api.conftest import REGISTRY, T0, client_for, close_service
from tests.test_probe_links import _drive, _long_link
from twin.district import geo
from twin.district.dataset import grid_of
from twin.district.roads import road_network_from_sources
from twin.live.core import CoreConfig
from twin.live.models import LiveConfig
from twin.live.service import LiveService, ServiceConfig, TwinClock

DRIVEN_KMH = 36.0


@pytest.fixture(scope="module")
def network(bund10, bund_sources):
    return road_network_from_sources(bund_sources, grid_of(bund10[0]))


def service_with_network(grid, state_dir, network) -> LiveService:
    """A live service over the Bund twin file with the road network (a broker it never connects to)."""
    live = LiveConfig(road_network=network)
    return LiveService(ServiceConfig(broker="mqtt://127.0.0.1:9", grid=grid, registry=REGISTRY, state_dir=state_dir,
                                     core=CoreConfig(tick_s=5.0, live=live), clock=TwinClock(start=T0)))


@pytest.fixture(scope="module")
def driven(bund_file, network, tmp_path_factory):
    """A service whose twin has the road network, after four probes drove one link: (service, link id)."""
    svc = service_with_network(bund_file, tmp_path_factory.mktemp("links") / "state", network)
    link = _long_link(network)
    _drive(svc.core, network, link, ["veh-001", "veh-002", "veh-003", "veh-004"], 240.0, 5.0)
    yield svc, link
    close_service(svc)


@pytest.fixture(scope="module")
def api(driven):
    with client_for(driven[0]) as c:
        yield c


def test_every_link_is_a_lonlat_feature_and_the_driven_one_has_its_speed(api, driven, network):
    svc, link = driven
    r = api.get("/api/links")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["type"] == "FeatureCollection" and body["links"] == len(network.links)
    assert body["t"] == pytest.approx(svc.core.last_tick)
    features = body["features"]
    assert [f["properties"]["link_id"] for f in features] == network.links["link_id"].tolist()
    west, south, east, north = grid_of(svc.static).bounds_lonlat
    for f in features:
        assert f["geometry"]["type"] == "LineString" and len(f["geometry"]["coordinates"]) >= 2
        lon, lat = np.array(f["geometry"]["coordinates"]).T
        assert (west - 1e-3 <= lon).all() and (lon <= east + 1e-3).all(), f["id"]
        assert (south - 1e-3 <= lat).all() and (lat <= north + 1e-3).all(), f["id"]
        assert set(f["properties"]) == {
            "link_id", "name", "name_en", "road_class", "lanes", "length_m", "free_flow_kmh", "tunnel", "bridge",
            "elevated", "speed_kmh", "speed_window_kmh", "samples", "vehicles", "confidence", "travel_time_s", "level",
            "congestion_kmh", "loops", "tpi", "warning", "incident"}

    p = features[link]["properties"]
    assert p["name"] == "中山东一路" and p["road_class"] == "arterial" and p["tunnel"] is False
    assert p["speed_kmh"] == pytest.approx(DRIVEN_KMH, abs=2.0)
    assert p["speed_window_kmh"] == pytest.approx(DRIVEN_KMH, abs=2.0)
    assert p["vehicles"] >= 2 and p["samples"] >= 2 and 0.0 < p["confidence"] <= 1.0
    assert p["travel_time_s"] == pytest.approx(p["length_m"] / (p["speed_kmh"] / 3.6), rel=0.01)
    # GB/T 33171 for an arterial (the twin's thresholds): above 40 km/h smooth, 30-40 basically smooth
    smooth, basic = TrafficConfig().gbt_kmh[2][:2]
    assert basic < DRIVEN_KMH <= smooth and p["level"] == 1
    # no stop on the way: the congestion speed is the window's speed; basically smooth warns of nothing; no baseline
    assert p["congestion_kmh"] == pytest.approx(p["speed_window_kmh"], abs=0.01)
    assert p["warning"] == 0 and p["incident"] == -1 and p["loops"] == 0
    # TPI-like: extra travel time r = 50 / v - 1 (0.2 .. 0.5 -> index 2 .. 4), piecewise linear
    r = 50.0 / p["congestion_kmh"] - 1.0
    assert 0.2 < r < 0.5 and p["tpi"] == pytest.approx(2.0 + 2.0 * (r - 0.2) / 0.3, abs=0.05)
    assert body["district_index"] is not None and body["district_index"] >= 0.0

    # its geometry is the link's, unprojected (first and last vertex within 0.5 m)
    line = network.links.geometry.iloc[link]
    coords = np.array(features[link]["geometry"]["coordinates"])
    x, y = geo.to_projected(coords[:, 0], coords[:, 1], network.links.crs.to_string())
    ends = np.array(line.coords)[[0, -1]]
    assert np.hypot(x[[0, -1]] - ends[:, 0], y[[0, -1]] - ends[:, 1]).max() < 0.5

    undriven = [f["properties"] for f in features if f["properties"]["speed_kmh"] is None]
    assert len(undriven) > 0.95 * len(features)
    assert all(q["level"] == -1 and q["travel_time_s"] is None for q in undriven)


def test_bbox_min_confidence_and_speed_filters(api, driven, network):
    _, link = driven
    whole = api.get("/api/links").json()["features"]
    coords = np.array(whole[link]["geometry"]["coordinates"])
    mid = coords[len(coords) // 2]
    box = f"{mid[0] - 0.0005},{mid[1] - 0.0005},{mid[0] + 0.0005},{mid[1] + 0.0005}"
    near = api.get("/api/links", params={"bbox": box}).json()["features"]
    ids = {f["id"] for f in near}
    assert link in ids and 0 < len(ids) < len(whole) / 10
    for f in near:  # every link answered crosses the box
        lon, lat = np.array(f["geometry"]["coordinates"]).T
        assert lon.max() >= mid[0] - 0.0005 and lon.min() <= mid[0] + 0.0005
        assert lat.max() >= mid[1] - 0.0005 and lat.min() <= mid[1] + 0.0005
    far = api.get("/api/links", params={"bbox": "121.0,31.0,121.01,31.01"}).json()
    assert far["features"] == [] and far["links"] == len(network.links)

    sure = api.get("/api/links", params={"min_confidence": 0.3}).json()["features"]
    assert link in {f["id"] for f in sure}
    assert all(f["properties"]["confidence"] >= 0.3 for f in sure) and len(sure) < 20
    moving = api.get("/api/links", params={"with_speed": "true", "geometry": "false"}).json()["features"]
    assert link in {f["id"] for f in moving}
    assert all(f["geometry"] is None and f["properties"]["speed_kmh"] is not None for f in moving)

    for bad in ("1,2,3", "121.5,31.3,121.4,31.2", "nan,0,1,1", "a,b,c,d"):
        r = api.get("/api/links", params={"bbox": bad})
        assert r.status_code == 422 and r.json()["error"] == "bad_bbox", bad
    for bad in ("-0.1", "1.5", "nan", "x"):
        r = api.get("/api/links", params={"min_confidence": bad})
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", bad


def test_the_route_is_fast_and_in_the_openapi_description(api):
    api.get("/api/links")  # the static half is built once, on the first request
    start = time.perf_counter()
    for _ in range(5):
        assert api.get("/api/links").status_code == 200
    per_request = (time.perf_counter() - start) / 5
    assert per_request < 0.5, f"{per_request * 1e3:.0f} ms per /api/links of the whole Bund"
    doc = api.get("/openapi.json").json()
    op = doc["paths"]["/api/links"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"bbox", "min_confidence", "with_speed", "geometry"}
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_roads_give_the_tpi_like_index_of_each_road_and_the_district(api, driven, network):
    body = api.get("/api/roads").json()
    assert "TPI-like" in body["label"] and "not the official" in body["label"]
    roads = {r["road"]: r for r in body["roads"]}
    row = roads["East Zhongshan No. 1 Road"]  # the only road driven: the district's index is its index
    assert set(roads) == {"East Zhongshan No. 1 Road"} and row["name_zh"] == "中山东一路"
    assert row["index"] == pytest.approx(body["district_index"]) and 2.0 < row["index"] < 4.0
    on_road = network.links["name_en"] == "East Zhongshan No. 1 Road"
    assert row["length_m"] == pytest.approx(network.links.loc[on_road, "length_m"].sum(), abs=0.2)
    assert row["warning_m"] == {"blue": 0.0, "yellow": 0.0, "orange": 0.0, "red": 0.0} and row["incidents"] == 0
    doc = api.get("/openapi.json").json()
    assert "404" in doc["paths"]["/api/roads"]["get"]["responses"]


def test_without_a_road_network_it_is_a_json_404(service):
    with client_for(service) as c:
        for path in ("/api/links", "/api/roads"):
            r = c.get(path)
            assert r.status_code == 404 and r.headers["content-type"] == "application/json"
            body = r.json()
            assert set(body) == {"error", "detail"} and body["error"] == "no_road_network"


def test_the_read_interface_gives_the_links_or_none(driven, service):
    from twin.live.query import LiveQuery

    svc, link = driven
    road = LiveQuery(svc).road_links()
    assert road is not None and len(road.speed_kmh) == len(road.links) == len(road.level)
    assert road.level.dtype == np.int8 and road.level[link] == 1 and road.t == svc.core.last_tick
    road.speed_kmh[:] = 0.0  # a copy: the twin's own layers are untouched
    assert svc.core.models.link_layers["link_speed"].values[link] == pytest.approx(DRIVEN_KMH, abs=2.0)
    assert LiveQuery(service).road_links() is None


def test_hostile_query_values_get_json_errors_never_a_500(api):
    """The fuzz test's hostile values (tests/api/test_fuzz_http.py) in each parameter, on a twin with its links
    (the fuzz test's own scenario has no road network, so it sees only the 404)."""
    from tests.api.test_fuzz_http import HOSTILE, error_problem

    for name in ("bbox", "min_confidence", "with_speed", "geometry"):
        for value in HOSTILE:
            r = api.get("/api/links", params={name: value})
            assert r.status_code in (200, 422), (name, value[:40], r.status_code)
            assert error_problem(r.status_code, r.headers["content-type"], r.text) is None, (name, value[:40])
