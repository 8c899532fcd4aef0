"""Units as GeoJSON, /metrics in the Prometheus text format, and the /ws event stream."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.websockets import WebSocketDisconnect

from ingest.batch import Batch
from ingest.decoders.senml import encode_senml
from tests.api.conftest import CHEN_YI_SQUARE, CROWD, TOKEN, client_for
from twin.api.routes_live import origin_allowed

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_units_are_geojson_points_with_their_alerts_and_arrivals(api, scenario):
    svc, drv, ident = scenario
    fc = api.get("/api/units").json()
    by_id = {f["id"]: f for f in fc["features"]}
    assert set(by_id) == {"unit-police-04", "unit-fire-05", "unit-fire-06", "veh-001"}
    police = by_id["unit-police-04"]
    assert police["geometry"] == {"type": "Point", "coordinates": list(CHEN_YI_SQUARE)}
    p = police["properties"]
    last_fix = svc.core.state.entities.entities["unit-police-04"].t
    assert p["kind"] == "unit" and p["unit_type"] == "police" and p["t"] == last_fix and p["speed_kmh"] == 4.0
    assert sorted(p["alerts"]) == sorted([ident, drv.neighbour]), "on the square: its alert and the promenade's"
    assert p["on_scene"] == [] and p["time"].endswith("Z")
    assert by_id["unit-fire-06"]["properties"]["on_scene"] == [ident]
    assert by_id["unit-fire-05"]["properties"]["alerts"] == [], "1.8 km away: not routed"
    assert by_id["veh-001"]["properties"]["kind"] == "vehicle" and by_id["veh-001"]["properties"]["speed_kmh"] == 40
    units = api.get("/api/units", params={"kind": "unit"}).json()["features"]
    assert {f["id"] for f in units} == {"unit-police-04", "unit-fire-05", "unit-fire-06"}
    assert [f["id"] for f in api.get("/api/units", params={"kind": "vehicle"}).json()["features"]] == ["veh-001"]
    assert api.get("/api/units", params={"kind": "boats"}).status_code == 422


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_are_prometheus_text_with_ingest_tick_alert_and_outbox_figures(api, scenario):
    svc, drv, _ = scenario
    t = drv.t
    reading = Batch.build(1, device="crowd-bund-01", t=t, quantity="count", value=150.0)
    drv.message("city/sensors/crowd/crowd-bund-01", encode_senml(reading), t)
    drv.message("city/sensors/crowd/crowd-bund-01", encode_senml(reading), t)  # redelivered
    stranger = Batch.build(1, device="crowd-nobody", t=t, quantity="count", value=1.0)
    drv.message("city/sensors/crowd/crowd-nobody", encode_senml(stranger), t)
    drv.message("city/sensors/crowd/crowd-bund-02", b"{not json", t)
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    assert m[("citytwin_ingest_received_total", ())] == 4
    assert m[("citytwin_ingest_accepted_total", ())] == 1  # received = accepted + duplicates + rejected
    assert m[("citytwin_ingest_duplicates_total", ())] == 1
    assert m[("citytwin_ingest_rejected_total", (("reason", "unknown_device"),))] == 1
    assert m[("citytwin_ingest_rejected_total", (("reason", "bad_syntax"),))] == 1
    assert m[("citytwin_ingest_rejected_total", (("reason", "outside_grid"),))] == 0
    active = svc.core.book.active
    assert m[("citytwin_alerts_active", ())] == len(active) == 2, "the square's alert and the promenade's"
    assert {a.hazard for a in active.values()} == {"crowd"}
    for level, colour in enumerate(["blue", "yellow", "orange", "red"], start=1):
        key = ("citytwin_alerts_active_by_level", (("hazard", "crowd"), ("level", colour)))
        assert m.get(key, 0) == sum(a.level == level for a in active.values()), colour
    assert active[scenario[2]].level == 4 and m[("citytwin_alerts_active_by_level", (("hazard", "crowd"),
                                                                                      ("level", "red")))] >= 1
    assert m[("citytwin_outbox_depth", ())] == svc.store.outbox_depth() > 0
    assert m[("citytwin_tick_last_seconds", ())] == pytest.approx(round(svc.last_report.tick_ms, 1) / 1e3)
    assert m[("citytwin_last_tick_timestamp_seconds", ())] == drv.t


def test_tick_durations_and_alert_events_are_counted_while_the_app_runs(service, driver):
    with client_for(service) as c:
        driver.raise_crowd_alert()
        m = _samples(c.get("/metrics").text)
    assert m[("citytwin_tick_duration_seconds_count", ())] == 15
    assert 0 < m[("citytwin_tick_duration_seconds_sum", ())] < 15 * 2.5
    assert m[("citytwin_alert_events_total", (("kind", "raised"),))] == 2, "one per place: the square, the promenade"
    assert service.listeners == [], "the app removes its tick listener when it stops"


def _next(ws, kind: str, limit: int = 2000, **match) -> tuple[dict, list[dict]]:
    """Receive events until one of type or alert kind ``kind`` (matching ``match``); returns it and those seen."""
    seen = []
    for _ in range(limit):
        event = ws.receive_json()
        seen.append(event)
        if kind in (event["type"], event.get("kind")) and all(event.get(k) == v for k, v in match.items()):
            return event, seen
    raise AssertionError(f"no {kind} event in {limit}: {[e['type'] for e in seen]}")


@pytest.mark.timeout(120)
def test_ws_pushes_snapshot_alert_lifecycle_positions_and_ticks(service, driver):
    with client_for(service, token=TOKEN) as c, c.websocket_connect("/ws") as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["alerts"]["features"] == [] and snap["t"] is None
        assert snap["status"]["alerts_active"] == 0
        ident = driver.raise_crowd_alert()
        first, seen = _next(ws, "raised")
        second, more = _next(ws, "raised")
        seen += more
        by_id = {e["feature"]["id"]: e for e in (first, second)}
        assert set(by_id) == {ident, driver.neighbour}, "one alert per place: the square, the promenade"
        raised = by_id[ident]
        f = raised["feature"]
        assert f["properties"]["headline"] == "Red crowd density warning, Chen Yi Square"
        assert f["id"] == ident and f["properties"]["msg_type"] == "Alert" and f["properties"]["hazard"] == "crowd"
        assert f["geometry"]["type"] == "MultiPolygon" and raised["t"] == service.core.book.active[ident].raised_at
        ticks = [e for e in seen if e["type"] == "tick"]
        assert [e["t"] for e in ticks] == sorted(e["t"] for e in ticks) and ticks[0]["status"]["devices_seen"] > 0
        moved = [e for e in seen if e["type"] == "positions"]
        assert moved[0]["entities"][0]["id"] in ("unit-police-04", "unit-fire-05", "veh-001")
        police = next(p for e in moved for p in e["entities"] if p["id"] == "unit-police-04")
        assert (police["lon"], police["lat"]) == CHEN_YI_SQUARE and police["kind"] == "unit"

        assert c.post(f"/api/alerts/{ident}/ack", json={"operator": "Li Wei"}, headers=AUTH).status_code == 200
        acked, _ = _next(ws, "acknowledged")
        assert acked["feature"]["id"] == ident and acked["feature"]["properties"]["acknowledged_by"] == ["Li Wei"]
        assert acked["feature"]["properties"]["message_id"] == f"{ident}.ack1"

        driver.position("unit-fire-06", driver.t + 1, *driver.cell_inside(ident))
        driver.unit_ack("unit-police-04", ident, driver.t + 1)
        driver.run([CROWD])
        arrived, seen = _next(ws, "on_scene")
        assert arrived["feature"]["id"] == ident and arrived["feature"]["properties"]["units_on_scene"] == [
            "unit-fire-06"]
        unit_ack = [e for e in seen if e.get("kind") == "acknowledged"]
        if not unit_ack:
            unit_ack = [_next(ws, "acknowledged")[0]]
        assert unit_ack[0]["feature"]["id"] == ident
        assert unit_ack[0]["feature"]["properties"]["acknowledged_by"] == ["Li Wei", "unit-police-04"]

        driver.run([100] * 60)  # the crowd disperses; the alert clears after the state machine's delay
        cancels = {e["feature"]["id"]: e for e in (_next(ws, "cancelled")[0], _next(ws, "cancelled")[0])}
        assert set(cancels) == {ident, driver.neighbour}, "both places clear"
        cancelled = cancels[ident]
        assert cancelled["feature"]["properties"]["state"] == "cancelled"
        assert cancelled["feature"]["properties"]["msg_type"] == "Cancel"
        r = c.post(f"/api/alerts/{ident}/ack", json={"operator": "Zhao Min"}, headers=AUTH)
        assert r.status_code == 409 and r.json()["error"] == "alert_not_active"
        assert c.get("/api/alerts").json()["features"] == []
        gone = {f["id"]: f for f in c.get("/api/alerts", params={"state": "cancelled"}).json()["features"]}
        assert set(gone) == {ident, driver.neighbour} and "Chen Yi Square" in gone[ident]["properties"]["headline"]
        assert c.get(f"/api/alerts/{ident}").json()["msgType"] == "Cancel"


def test_ws_snapshot_has_the_current_alerts_and_units(api, scenario):
    _, drv, ident = scenario
    with api.websocket_connect("/ws") as ws:
        snap = ws.receive_json()
    alerts = {f["id"]: f["properties"] for f in snap["alerts"]["features"]}
    assert len(alerts) == len(snap["alerts"]["features"]) == 2 and set(alerts) == {ident, drv.neighbour}
    assert alerts[ident]["units_on_scene"] == ["unit-fire-06"] and "Chen Yi Square" in alerts[ident]["headline"]
    assert alerts[drv.neighbour]["units_on_scene"] == [], "unit-fire-06 is inside the square's alert"
    assert len(snap["units"]["features"]) == 4 and snap["status"]["alerts_active"] == 2


def test_ws_refuses_cross_site_pages_unless_their_origin_is_allowed(scenario):
    svc, _, _ = scenario
    with client_for(svc) as c:
        with pytest.raises(WebSocketDisconnect) as exc, c.websocket_connect("/ws", headers={"Origin": "http://evil.example"}):
            pass
        assert exc.value.code == 1008
        with c.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
            assert ws.receive_json()["type"] == "snapshot", "the dashboard's own origin"
    with client_for(svc, cors_origins=("http://ops.example",)) as c, \
            c.websocket_connect("/ws", headers={"Origin": "http://ops.example"}) as ws:
        assert ws.receive_json()["type"] == "snapshot"
    assert origin_allowed(None, "127.0.0.1:8080", ()), "not a browser"
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8080", ())


def test_cors_is_off_by_default_and_lists_only_configured_origins(scenario):
    svc, _, _ = scenario
    with client_for(svc) as c:
        r = c.get("/api/status", headers={"Origin": "http://ops.example"})
        assert "access-control-allow-origin" not in r.headers
    with client_for(svc, cors_origins=("http://ops.example",)) as c:
        r = c.get("/api/status", headers={"Origin": "http://ops.example"})
        assert r.headers["access-control-allow-origin"] == "http://ops.example"
        pre = c.options("/api/alerts/x/ack", headers={"Origin": "http://ops.example", "Access-Control-Request-Method":
                                                      "POST", "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code == 200 and "POST" in pre.headers["access-control-allow-methods"]
        other = c.get("/api/status", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_openapi_docs_list_every_endpoint(api):
    paths = set(api.get("/openapi.json").json()["paths"])
    assert {"/api/health", "/api/status", "/api/grid", "/api/layers/{name}", "/api/layers/{name}.png",
            "/api/layers/{name}/legend", "/api/point", "/api/alerts", "/api/alerts/{identifier}",
            "/api/alerts/{identifier}.xml", "/api/alerts/{identifier}/ack", "/api/units", "/metrics",
            "/api/silences", "/api/silences/{silence_id}", "/api/silences/audit"} <= paths
    docs = api.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text, "no CDN: the docs work offline"
    script = api.get(docs.text.split('src="')[1].split('"')[0])
    assert script.status_code == 200 and len(script.content) > 100_000, "Swagger UI served by the twin"
    assert api.get("/api/nothing").json() == {"error": "not_found", "detail": "Not Found"}
