"""The alert history (GET /api/alerts/history): alerts of a period with their timelines (issue 18)."""

from __future__ import annotations

from tests.api.conftest import QUIET, T0, TOKEN, client_for
from twin.api.alert_history import alert_history, timeline

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _message(ident: str, msg_type: str, level: str, sent: str) -> dict:
    params = [{"valueName": "warningLevel", "value": level}]
    return {"identifier": ident, "msgType": msg_type, "sent": sent,
            "info": [{"language": "en-US", "parameter": params, "area": [{"areaDesc": "Somewhere; 某处"}]}]}


def test_a_timeline_by_hand():
    """raised yellow 08:00:00, up to red 08:00:10, operator ack (its own Update skipped) 08:00:15, the area grows
    08:00:20, a unit on scene (arrival and its own report, once) 08:00:25, down to orange 08:00:30, cancelled
    08:00:40 (Shanghai time: 00:00:00 UTC = T0)."""
    a = "citytwin.bund.flood.x"
    messages = [_message(a, "Alert", "yellow", "2025-01-01T08:00:00+08:00"),
                _message(f"{a}.update1", "Update", "red", "2025-01-01T08:00:10+08:00"),
                _message(f"{a}.ack1", "Update", "red", "2025-01-01T08:00:15+08:00"),
                _message(f"{a}.update3", "Update", "red", "2025-01-01T08:00:20+08:00"),
                _message(f"{a}.update4", "Update", "orange", "2025-01-01T08:00:30+08:00"),
                _message(f"{a}.cancel5", "Cancel", "orange", "2025-01-01T08:00:40+08:00")]
    acks = [{"actor": "Li", "kind": "operator", "status": "ack", "t": T0 + 15},
            {"actor": "unit-7", "kind": "unit", "status": "on_scene", "t": T0 + 26}]
    arrivals = [{"unit_id": "unit-7", "t": T0 + 25, "seconds_after_alert": 25.0}]
    row = {"identifier": a, "level": 3, "state": "cancelled", "raised_at": T0, "cancelled_at": T0 + 40}
    steps, highest = timeline(row, messages, acks, arrivals)
    assert highest == 4, "red was reached, though it ended orange"
    assert [(s["t"] - T0, s["kind"], s["level"], s["actor"]) for s in steps] == [
        (0, "raised", 2, "twin"), (10, "level", 4, "twin"), (15, "acknowledged", 4, "Li"),
        (20, "updated", 4, "twin"), (25, "on_scene", 4, "unit-7"), (30, "level", 3, "twin"),
        (40, "cancelled", 3, "twin")]
    texts = [s["text"] for s in steps]
    assert texts[0] == "发布黄色预警 · raised at yellow" and texts[1] == "升级为红色 · up to red"
    assert texts[2] == "值班员 Li 已确认 · acknowledged by operator Li" and texts[5] == "降级为橙色 · down to orange"
    assert texts[6] == "解除 · cancelled"


def test_an_alert_raised_acknowledged_and_cancelled_lists_those_in_order(service, driver):
    ident = driver.raise_crowd_alert()
    raised_at = service.core.book.active[ident].raised_at
    assert raised_at == T0 + 40, "the fifth tick: the second of the evening crowd, 40 s after the first"
    with client_for(service, token=TOKEN) as c:
        assert c.post(f"/api/alerts/{ident}/ack", json={"operator": "Li Wei"}, headers=AUTH).status_code == 200
        acked_at = driver.t
        events = driver.run([QUIET] * 12)  # the crowd leaves: the level steps down, then the alert clears
        [cancel] = [e for e in events if e.kind == "cancelled" and e.alert.identifier == ident]
        r = c.get("/api/alerts/history")
        assert r.status_code == 200, r.json()
        body = r.json()
        assert body["until"] == driver.t and body["since"] == driver.t - 3 * 3600 and body["truncated"] is False
        by_id = {a["identifier"]: a for a in body["alerts"]}
        assert set(by_id) == {ident, driver.neighbour}
        assert [a["identifier"] for a in body["alerts"]] == sorted(by_id, reverse=True), "newest first"
        alert = by_id[ident]
        assert alert["hazard"] == "crowd" and alert["level"] == 4 and alert["state"] == "cancelled"
        assert alert["raised_at"] == raised_at and alert["cancelled_at"] == cancel.t
        assert alert["place_name"] == "Chen Yi Square" and alert["areaDesc"].startswith("Chen Yi Square")
        steps = alert["timeline"]
        kinds = [s["kind"] for s in steps]
        assert kinds[0] == "raised" and kinds[-1] == "cancelled"
        assert kinds.index("raised") < kinds.index("acknowledged") < kinds.index("cancelled")
        assert [s["t"] for s in steps] == sorted(s["t"] for s in steps)
        [ack] = [s for s in steps if s["kind"] == "acknowledged"]
        assert ack["actor"] == "Li Wei" and ack["t"] == acked_at and ack["level"] == 4
        assert steps[0]["t"] == raised_at and steps[0]["level"] == 4 and steps[-1]["t"] == cancel.t
        downs = [s["level"] for s in steps if s["kind"] == "level"]
        assert downs == sorted(downs, reverse=True) and all(lv < 4 for lv in downs), "it stepped down"
        # the period: an alert cancelled before it starts is not in it; one raised after it ends neither
        later = c.get("/api/alerts/history", params={"since": cancel.t + 1}).json()
        assert ident not in {a["identifier"] for a in later["alerts"]}
        earlier = c.get("/api/alerts/history", params={"since": T0 - 100, "until": raised_at - 1}).json()
        assert earlier["alerts"] == [] and earlier["until"] == raised_at - 1


def test_the_history_is_capped_to_the_newest_alerts(scenario):
    svc, drv, alert = scenario
    from twin.api.view import TwinView

    view = TwinView(svc)
    body = alert_history(view, None, None, limit=1)
    assert body["truncated"] is True and len(body["alerts"]) == 1
    assert body["alerts"][0]["identifier"] == max(alert, drv.neighbour), "the newest (same raise time: by id)"
    assert alert_history(view, None, None)["truncated"] is False


def test_history_is_not_taken_for_an_alert_identifier_and_checks_its_period(api, scenario):
    _, _, alert = scenario
    r = api.get("/api/alerts/history")
    assert r.status_code == 200 and "alerts" in r.json(), "not the /api/alerts/{id} route"
    active = {a["identifier"]: a for a in r.json()["alerts"]}[alert]
    assert active["state"] == "active" and active["cancelled_at"] is None
    assert active["place"] == "crowd:area:crowd-bund-05", "an active alert's place key from the live twin"
    on_scene = [s for s in active["timeline"] if s["kind"] == "on_scene"]
    assert [s["actor"] for s in on_scene] == ["unit-fire-06"]
    assert "unit-police-04" in [s["actor"] for s in active["timeline"] if s["kind"] == "acknowledged"]
    r = api.get("/api/alerts/history", params={"since": 100, "until": 50})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert api.get("/api/alerts/history", params={"since": "inf"}).status_code == 422
