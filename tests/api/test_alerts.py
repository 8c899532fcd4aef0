"""Alerts as GeoJSON, CAP JSON and CAP XML; operator acknowledgement and its token rule."""

from __future__ import annotations

import json

import pytest
from xsdata.formats.dataclass.parsers import XmlParser

from tests.api.conftest import NEIGHBOUR, SQUARE, TOKEN, client_for
from twin.alerting import cap
from twin.alerting.cap import info_block
from twin.alerting.compose import acknowledged_by

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_alerts_are_geojson_with_cap_properties_acks_and_units_on_scene(api, scenario):
    svc, drv, ident = scenario
    fc = api.get("/api/alerts").json()
    assert fc["type"] == "FeatureCollection" and fc["t"] == drv.t
    by_place = {f["properties"]["place"]: f for f in fc["features"]}
    assert len(by_place) == len(fc["features"]) == 2 and set(by_place) == {SQUARE, NEIGHBOUR}, "one per place"
    assert by_place[NEIGHBOUR]["id"] == drv.neighbour
    f = by_place[SQUARE]
    p = f["properties"]
    alert = svc.core.book.active[ident]
    assert f["id"] == p["identifier"] == ident and p["place_name"] == "Chen Yi Square"
    assert p["hazard"] == "crowd" and p["level"] == alert.level and p["level_name"] == cap.LEVEL_COLOUR[alert.level]
    assert p["severity"] == cap.LEVEL_SEVERITY[alert.level] and p["sent"] == alert.last["sent"]
    assert p["raised_at"] == alert.raised_at and p["state"] == "active" and p["event"] == "Crowd density warning"
    assert p["acknowledged_by"] == ["unit-police-04"] and p["acks"][0]["kind"] == "unit"
    assert p["units_on_scene"] == ["unit-fire-06"]
    assert p["cells"] == alert.cells.size and p["area_m2"] == pytest.approx(alert.cells.size * 100.0)
    assert p["beidou"] and all(c.startswith("N51H") for c in p["beidou"])
    assert f["geometry"]["type"] == "MultiPolygon"
    ring = f["geometry"]["coordinates"][0][0]
    assert ring[0] == ring[-1] and all(121.47 < lon < 121.53 and 31.22 < lat < 31.26 for lon, lat in ring)
    lon, lat = drv.cell_inside(ident)
    lons, lats = zip(*ring, strict=True)
    assert min(lons) <= lon <= max(lons) and min(lats) <= lat <= max(lats), "lon/lat order, not CAP's lat,lon"
    assert api.get("/api/alerts", params={"state": "cancelled"}).json()["features"] == []
    assert api.get("/api/alerts", params={"state": "everything"}).status_code == 422


def test_one_alert_as_cap_json_and_cap_xml(api, scenario):
    svc, _, ident = scenario
    body = api.get(f"/api/alerts/{ident}").json()
    assert body == svc.core.book.active[ident].last and cap.problems(body) == []
    r = api.get(f"/api/alerts/{ident}.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/cap+xml")
    from cap_tools.models import Alert as CapAlert

    parsed = XmlParser().from_string(r.text, CapAlert)
    assert parsed.identifier == ident and parsed.msg_type.value == body["msgType"]
    assert parsed.infos[0].areas[0].polygons == info_block(body, "en-US")["area"][0]["polygon"]
    for path in (f"/api/alerts/{ident}x", f"/api/alerts/{ident}x.xml", "/api/alerts/nope"):
        r = api.get(path)
        assert r.status_code == 404 and r.json()["error"] == "unknown_alert", path


def test_writes_need_the_bearer_token(api, scenario):
    _, _, ident = scenario
    url, body = f"/api/alerts/{ident}/ack", {"operator": "Wang Fang"}
    r = api.post(url, json=body)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
    r = api.post(url, json=body, headers={"Authorization": "Bearer wrong-token-123"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = api.post(url, json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401
    svc, _, _ = scenario
    with client_for(svc) as read_only:
        r = read_only.post(url, json=body, headers=AUTH)
        assert r.status_code == 403 and r.json()["error"] == "writes_disabled"
    assert [a["actor"] for a in svc.store.acks(ident)] == ["unit-police-04"], "nothing was recorded"


@pytest.mark.parametrize("body", [{}, {"operator": ""}, {"operator": "   "}, {"operator": "a\nb"},
                                  {"operator": "x" * 65}, {"operator": "ok", "note": "n" * 501}])
def test_a_bad_ack_body_is_422(api, scenario, body):
    _, _, ident = scenario
    r = api.post(f"/api/alerts/{ident}/ack", json=body, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request", r.json()
    assert r.json()["detail"][0]["where"].startswith("body")


def test_an_unknown_alert_cannot_be_acknowledged(api):
    r = api.post("/api/alerts/citytwin.bund.crowd.nothing/ack", json={"operator": "Wang Fang"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "unknown_alert"


def _retained(store, topic: str) -> dict:
    """The last retained payload queued for a topic (what the broker will hold)."""
    items = [i for i in store.pending(10_000) if i.topic == topic and i.retain]
    return json.loads(items[-1].payload)


def test_an_operator_ack_is_stored_and_the_retained_cap_shows_it(service, driver):
    ident = driver.raise_crowd_alert()
    store = service.store
    [before] = [a["message"] for a in store.alerts("active") if a["identifier"] == ident]
    with client_for(service, token=TOKEN) as c:
        r = c.post(f"/api/alerts/{ident}/ack", json={"operator": "Li Wei", "note": "crowd stewards sent"},
                   headers=AUTH)
        assert r.status_code == 200, r.json()
        body = r.json()
        assert body["already"] is False and body["message"] == f"{ident}.ack1" and body["t"] == driver.t
        assert body["acks"] == [{"actor": "Li Wei", "kind": "operator", "status": "ack", "t": driver.t}]
        retained = _retained(store, f"city/alerts/{ident}")
        assert retained["identifier"] == f"{ident}.ack1" and retained["msgType"] == "Update"
        assert acknowledged_by(retained) == ["Li Wei"] and "crowd stewards sent" in retained["note"]
        assert retained["references"] == cap.reference(before) and cap.problems(retained) == []
        assert info_block(retained, "en-US")["area"] == info_block(before, "en-US")["area"], \
            "the same alert, now acknowledged"
        unit_copy = [json.loads(i.payload) for i in store.pending(10_000)
                     if i.topic == "city/units/unit-police-04/alerts"]
        assert unit_copy[-1]["identifier"] == f"{ident}.ack1", "units that had the alert hear of the ack"
        assert c.get(f"/api/alerts/{ident}").json() == retained, "the API shows the retained message"
        acked = {f["id"]: f["properties"]["acknowledged_by"] for f in c.get("/api/alerts").json()["features"]}
        assert acked == {ident: ["Li Wei"], driver.neighbour: []}, "the square's alert, not its neighbour's"
        again = c.post(f"/api/alerts/{ident}/ack", json={"operator": "Li Wei"}, headers=AUTH).json()
        assert again["already"] is True and again["message"] is None and len(again["acks"]) == 1
        second = c.post(f"/api/alerts/{ident}/ack", json={"operator": "Zhao Min"}, headers=AUTH).json()
        assert second["message"] == f"{ident}.ack2"
        assert acknowledged_by(_retained(store, f"city/alerts/{ident}")) == ["Li Wei", "Zhao Min"]
    assert [m["identifier"] for m in store.messages(ident)] == [ident, f"{ident}.ack1", f"{ident}.ack2"]
    assert service.core.book.active[ident].last["identifier"] == f"{ident}.ack2"
    events = [e for e in driver.run([100] * 60) if e.alert.identifier == ident]  # the crowd disperses
    assert events[0].kind == "updated" and events[-1].kind == "cancelled"
    for e in events:
        assert acknowledged_by(e.message) == ["Li Wei", "Zhao Min"], "later messages stay acknowledged"
