"""The city API (twin.city.http): city alerts as GeoJSON, districts with status and drill-down links, vital signs
city -> district read from the district twins over HTTP, where a twin that does not answer is shown as
unavailable within the timeout and never blocks the page."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from tests.city.test_merge import CONTEXT, T0, box, district_message, feed
from twin.alerting import cap
from twin.city.http import CityBoard, DistrictLink, DistrictProbe, create_city_app, serve_city
from twin.city.merge import AlertMerger

TIMEOUT_S = 0.5
NODE = {"id": "district:310101", "level": "district", "name": "黄浦区", "name_en": "Huangpu", "parent": "city",
        "indicators": {"people": {"value": 1234, "unit": "person", "level": 1}}}


class _Twin(BaseHTTPRequestHandler):
    """A district twin's API: health and indicators."""

    def do_GET(self):
        if self.path == "/api/health":
            body, code = {"status": "ok", "t": T0, "last_tick": T0}, 200
        elif self.path == "/api/indicators?level=district":
            body, code = {"t": T0, "level": "district", "nodes": [NODE]}, 200
        else:
            body, code = {"error": "not_found"}, 404
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def twins():
    """One answering district twin, and an address that accepts connections but never answers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Twin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    yield f"http://127.0.0.1:{server.server_address[1]}", f"http://127.0.0.1:{silent.getsockname()[1]}"
    server.shutdown()
    silent.close()


@pytest.fixture
def board(twins):
    up, silent = twins
    districts = [DistrictLink("310101", "310101", "黄浦区", "Huangpu", up),
                 DistrictLink("310109", "310109", "虹口区", "Hongkou", silent),
                 DistrictLink("310110", "310110", "杨浦区", "Yangpu", ""),
                 DistrictLink("310115", "310115", "浦东新区", "Pudong New Area", "")]
    merger = AlertMerger(CONTEXT)
    feed(merger, [district_message("310101", "flood", 1, box(0, 0), 3),
                  district_message("310109", "flood", 2, box(1, 0), 4, raised=T0 + 5),
                  district_message("310110", "crowd", 3, box(5, 3), 2)])
    b = CityBoard("310000", "上海市", "Shanghai", districts, status=lambda: {"merger": dict(merger.counts)},
                  tick_s=60.0, now=lambda: T0 + 100)
    b.set_twin_status("310115", {"partition": "310115", "t": T0 + 60, "lag": 0, "alerts_active": 0})
    b.set_twin_status("310109", {"partition": "310109", "t": T0 - 600, "lag": 12, "alerts_active": 1})
    b.set_alerts([(c.identifier, c.last, sorted(c.refs)) for c in merger.city_alerts()], {"310101": 1, "310109": 1,
                                                                                        "310110": 1})
    return b


@pytest.fixture
def client(board):
    probe = DistrictProbe(board.districts, timeout_s=TIMEOUT_S, cache_s=0.0)
    app = create_city_app(board, probe, token="city-secret-token")
    app.post("/api/city/test-write", dependencies=[Depends(app.state.token_check)])(lambda: {"written": True})
    with TestClient(app) as c:
        yield c
    probe.close()


def test_city_alerts_are_geojson_with_their_members_and_polygons(client, board):
    doc = client.get("/api/city/alerts").json()
    assert doc["type"] == "FeatureCollection"
    by_id = {f["id"]: f for f in doc["features"]}
    assert set(by_id) == set(board.alerts())
    merged = next(f for f in doc["features"] if len(f["properties"]["members"]) == 2)
    props = merged["properties"]
    assert props["districts"] == ["310101", "310109"] and props["level"] == "red" and props["hazard"] == "flood"
    assert props["members"] == ["citytwin.310101.flood.20251231T142201Z.00001",
                                "citytwin.310109.flood.20251231T142206Z.00002"]
    assert merged["geometry"]["type"] == "MultiPolygon"
    lon, lat = merged["geometry"]["coordinates"][0][0][0]
    assert 121.48 < lon < 121.50 and 31.24 < lat < 31.25  # lon before lat, at the bridge
    one = client.get(f"/api/city/alerts/{merged['id']}")
    assert one.status_code == 200 and cap.problems(one.json()) == [] and one.json()["sender"] == "twin.city@citytwin"
    missing = client.get("/api/city/alerts/citytwin.city.nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_alert"


def test_districts_link_to_their_twins_and_a_silent_twin_does_not_block_the_page(client, twins):
    started = time.monotonic()
    doc = client.get("/api/city/districts").json()
    assert time.monotonic() - started < TIMEOUT_S + 1.5
    rows = {d["partition"]: d for d in doc["districts"]}
    assert doc["city"] == {"code": "310000", "name": "上海市", "name_en": "Shanghai"}
    # 310101 answers its health; 310109's API is silent and its last tick (status message) 700 s old; 310110 has
    # neither an API nor a status message; 310115 has no API but ticked 40 s ago
    assert [rows[p]["status"] for p in ("310101", "310109", "310110", "310115")] == [
        "ok", "stale", "unknown", "ok"]
    assert rows["310115"]["twin"] == {"status": "ok", "t": T0 + 60, "tick_age_s": 40.0, "lag": 0, "alerts_active": 0}
    assert rows["310109"]["twin"]["tick_age_s"] == 700.0 and rows["310109"]["detail"]  # why the API said nothing
    assert rows["310101"]["api"] == twins[0]
    assert rows["310101"]["links"]["indicators"] == f"{twins[0]}/api/indicators?level=district"
    assert rows["310110"]["api"] is None and "--district-api" in rows["310110"]["detail"]
    assert rows["310109"]["alerts_active"] == 1


def test_indicators_go_city_to_district_from_each_twin_over_http(client):
    started = time.monotonic()
    doc = client.get("/api/city/indicators").json()
    assert time.monotonic() - started < TIMEOUT_S + 1.5
    rows = {d["partition"]: d for d in doc["districts"]}
    assert doc["parent"] == "city" and doc["level"] == "district"
    assert rows["310101"]["status"] == "ok" and rows["310101"]["nodes"] == [NODE] and rows["310101"]["t"] == T0
    assert rows["310109"]["status"] == "unavailable" and rows["310109"]["nodes"] == []
    assert str(TIMEOUT_S) in rows["310109"]["detail"] or "timed out" in rows["310109"]["detail"]
    assert rows["310110"]["status"] == "unknown"


def test_answers_are_cached_so_a_busy_page_does_not_multiply_requests(board):
    calls = []

    def opener(url, timeout):
        calls.append(url)
        raise OSError("refused")

    probe = DistrictProbe(board.districts, timeout_s=TIMEOUT_S, cache_s=60.0, opener=opener)
    first = probe.get("/api/health")
    assert probe.get("/api/health") is first and len(calls) == 2  # two twins with an address, asked once
    assert first["310101"]["status"] == "unavailable" and "refused" in first["310101"]["detail"]
    probe.close()


def test_writes_need_the_token_and_the_api_refuses_to_listen_openly_without_one(client, board):
    assert client.post("/api/city/test-write").status_code == 401
    wrong = client.post("/api/city/test-write", headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    ok = client.post("/api/city/test-write", headers={"Authorization": "Bearer city-secret-token"})
    assert ok.status_code == 200
    with pytest.raises(ValueError, match="without a token"):
        serve_city(board, DistrictProbe([]), host="0.0.0.0", port=0)


def test_the_server_runs_on_loopback_and_stops(board):
    probe = DistrictProbe(board.districts, timeout_s=TIMEOUT_S)
    server = serve_city(board, probe, port=0)
    try:
        import urllib.request

        with urllib.request.urlopen(f"{server.url}/api/city/health", timeout=5) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "ok" and doc["merger"]["accepted"] == 3
    finally:
        server.stop()
        probe.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
