"""The alert history (GET /api/alerts/history): alerts of a period with their timelines (issue 18)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from tests.api.conftest import QUIET, T0, TOKEN, client_for
from twin.alerting import cap
from twin.api.alert_history import alert_history, timeline, update_text
from twin.live.query import LiveQuery

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
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert r.json()["detail"] == "since (100) is after until (50; the last tick when not given)"
    assert api.get("/api/alerts/history", params={"since": "inf"}).status_code == 422


def test_since_after_the_last_tick_is_400_and_since_defaults_to_three_hours_before_until(api, scenario):
    _, drv, _ = scenario
    r = api.get("/api/alerts/history", params={"since": drv.t + 1})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", "until defaults to the last tick"
    body = api.get("/api/alerts/history", params={"until": T0}).json()
    assert (body["since"], body["until"]) == (T0 - 3 * 3600, T0), "since: three hours before until"


def _params(message: dict, **values: str) -> dict:
    message["info"][0]["parameter"] += [{"valueName": k, "value": v} for k, v in values.items()]
    return message


def test_an_update_says_what_it_changed():
    """A routine refresh is a new value, not an area: the text names what changed since the message before."""
    a = "citytwin.bund.crowd.x"
    first = _params(_message(a, "Alert", "red", "2025-01-01T08:00:00+08:00"), cells="10", areaM2="1000",
                    value="4.60 person/m2")
    refresh = _params(_message(f"{a}.update1", "Update", "red", "2025-01-01T08:00:10+08:00"), cells="10",
                      areaM2="1000", value="5.10 person/m2")
    grown = _params(_message(f"{a}.update2", "Update", "red", "2025-01-01T08:00:20+08:00"), cells="12",
                    areaM2="1200", value="5.20 person/m2")
    same = _params(_message(f"{a}.update3", "Update", "red", "2025-01-01T08:00:30+08:00"), cells="12",
                   areaM2="1200", value="5.20 person/m2")
    merged = _params(_message(f"{a}.update4", "Update", "red", "2025-01-01T08:00:40+08:00"), cells="12",
                     areaM2="1200", value="5.20 person/m2")
    merged["references"] = "twin,a.update3,2025-01-01T08:00:30+08:00 twin,b,2025-01-01T08:00:00+08:00"
    noted = _params(_message(f"{a}.update5", "Update", "red", "2025-01-01T08:00:50+08:00"), cells="12",
                    areaM2="1200")
    noted["note"] = "sensor crowd-bund-05 back online"
    row = {"identifier": a, "level": 4, "state": "active", "raised_at": T0, "cancelled_at": None}
    steps, _ = timeline(row, [first, refresh, grown, same, merged, noted], [], [])
    assert [s["kind"] for s in steps] == ["raised"] + ["updated"] * 5
    assert [s["text"] for s in steps[1:]] == [
        "数值更新 5.10 person/m2 · value now 5.10 person/m2",
        "范围更新 (1000 → 1200 m²) · area updated (1000 → 1200 m²)",
        "更新 · updated",
        "并入相邻预警1条 · absorbed 1 neighbouring alert",
        "更新 · updated: sensor crowd-bund-05 back online"]
    moved = _params(_message(f"{a}.update6", "Update", "red", "2025-01-01T08:01:00+08:00"), cells="12",
                    areaM2="1200", value="5.20 person/m2")
    moved["info"][0]["area"] = [{"areaDesc": "Elsewhere; 别处"}]
    assert update_text(same, moved) == "范围更新 · area updated", "the same size elsewhere"


# ---------------------------------------------------------------- cost
def _store_of(n_alerts: int, per_alert: int):
    """An in-memory store of ``n_alerts`` alerts 10 s apart from T0, each ``per_alert`` CAP messages 1 s apart (an
    Alert, Updates with a value and an area of 40 points, every other one ending in a Cancel) and one operator ack."""
    from twin.alerting.store import Store

    store = Store.open(":memory:")
    ring = [" ".join(f"{31.24 + i * 1e-4:.4f},{121.48 + i * 1e-4:.4f}" for i in range(40))]
    for n in range(n_alerts):
        ident, raised = f"citytwin.bund.crowd.{n:04d}", T0 + 10 * n
        for k in range(per_alert):
            kind = "Alert" if k == 0 else "Cancel" if (k == per_alert - 1 and n % 2) else "Update"
            message = _params(_message(ident if k == 0 else f"{ident}.update{k}", kind, "red",
                                       cap.cap_time(raised + k)), cells="10", areaM2="1000",
                              value=f"{4 + 0.01 * k:.2f} person/m2")
            message["info"][0]["area"][0]["polygon"] = ring
            store.record({"identifier": ident, "hazard": "crowd", "level": 4,
                          "state": "cancelled" if kind == "Cancel" else "active", "raised_at": raised,
                          "updated_at": raised + k, "cancelled_at": raised + k if kind == "Cancel" else None,
                          "cells": [1, 2]}, message, [])
        store.record_ack(ident, "Li", "operator", "ack", raised + 3)
    return store


def test_five_hundred_alerts_of_ten_thousand_messages_take_a_few_store_reads():
    """The history reads the store a constant number of times (it was 1 + 3 per alert: 1,501 here, 0.8 s holding the
    store's lock that the tick needs), and answers within a generous bound (0.4-1 s measured on a loaded 2-core
    machine)."""
    store = _store_of(500, 20)
    last = T0 + 10 * 499 + 100
    view = LiveQuery.__new__(LiveQuery)  # the real query methods over the store, no service around it
    view._service = SimpleNamespace(store=store, clock=lambda: last,
                                    core=SimpleNamespace(last_tick=last, alert_live=dict))
    reads, held = [], []
    read = store._all

    def counted(*args):
        start = time.perf_counter()
        try:
            return read(*args)
        finally:
            reads.append(args[0])
            held.append(time.perf_counter() - start)

    store._all = counted
    start = time.perf_counter()
    body = alert_history(view, T0 - 10, last)
    took = time.perf_counter() - start
    assert len(body["alerts"]) == 500 and body["truncated"] is False
    assert body["alerts"][0]["identifier"] == "citytwin.bund.crowd.0499", "newest first"
    assert sum(len(a["timeline"]) for a in body["alerts"]) == 500 * (20 + 1), "every message and the ack"
    assert len(reads) <= 4, reads
    assert sum(held) < 1.0 and took < 10.0, (sum(held), took)
    truncated = alert_history(view, T0 - 10, last, limit=499)
    assert truncated["truncated"] is True and len(truncated["alerts"]) == 499
    store.close()
