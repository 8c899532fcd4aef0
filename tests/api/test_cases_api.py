"""The case routes and the field units' routes over a real live service (tests/api/conftest.py): an operator opens,
dispatches, steps and annotates cases; a unit reads its tasks and answers them; tokens, errors and /ws case events."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import CHEN_YI_SQUARE, T0, TOKEN, client_for
from twin.api.events import EventBuilder
from twin.live.query import AckTimeoutError, AckUnavailableError, TickReport

AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNIT_TOKENS = {"unit-police-01": "police-01-token", "unit-police-02": "police-02-token"}
POLICE_01 = {"Authorization": f"Bearer {UNIT_TOKENS['unit-police-01']}"}
POLICE_02 = {"Authorization": f"Bearer {UNIT_TOKENS['unit-police-02']}"}
SPILL = (121.4862, 31.2391)
"""A spilled load on East Zhongshan No. 1 Road near Jiujiang Road (CGCS2000)."""
UNITS = {"unit-police-01": (121.4864, 31.2392), "unit-police-02": (121.4880, 31.2330),
         "unit-police-03": (121.4840, 31.2450), "unit-fire-05": (121.4863, 31.2392)}
"""Where the units stand: police-01 20 m from the spill (inside its case area), police-02 700 m, police-03 650 m;
a fire unit beside it."""
OPEN = {"operator": "Wang Fang", "category": "road_obstruction", "priority": 2, "lon": SPILL[0], "lat": SPILL[1],
        "name_zh": "中山东一路近九江路", "name_en": "East Zhongshan No. 1 Rd at Jiujiang Rd",
        "reason": "CCTV: spilled load"}


@pytest.fixture
def api(service, driver):
    """The API over a fresh twin whose units stand at `UNITS` (one tick), with the dashboard's and two units' tokens."""
    for unit, (lon, lat) in UNITS.items():
        driver.position(unit, T0, lon, lat, 0.0)
    driver.tick(T0)
    with client_for(service, token=TOKEN, unit_tokens=UNIT_TOKENS) as c:
        yield c


def open_case(api, **changes) -> dict:
    r = api.post("/api/cases", json={**OPEN, **changes}, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()


def step(api, case_id: str, kind: str, reason: str = "seen on CCTV"):
    return api.post(f"/api/cases/{case_id}/transition", json={"operator": "Wang Fang", "kind": kind, "reason": reason},
                    headers=AUTH)


# ---------------------------------------------------------------- reading and opening
def test_an_operator_opens_a_case_and_reads_it_back_with_its_history(api):
    case = open_case(api)
    assert re.fullmatch(r"bund-\d{8}-0001", case["id"])
    assert (case["status"], case["category"], case["priority"], case["source"], case["assignee"]) == \
        ("new", "road_obstruction", 2, "operator", "")
    assert case["place"]["name_zh"] == "中山东一路近九江路" and case["place"]["lon"] == pytest.approx(SPILL[0])
    assert set(case["deadlines"]) == {"dispatch"} and case["deadlines"]["dispatch"] > case["opened_at"]
    assert case["overdue"] == []
    one = api.get(f"/api/cases/{case['id']}").json()
    [opened] = one["events"]
    assert (opened["kind"], opened["actor"], opened["reason"]) == ("opened", "Wang Fang", "CCTV: spilled load")
    listed = api.get("/api/cases", params={"open": "true"}).json()
    assert listed["count"] == 1 and listed["overdue"] == 0 and [c["id"] for c in listed["cases"]] == [case["id"]]
    assert listed["t"] >= T0
    assert api.get("/api/cases", params={"status": "closed"}).json()["cases"] == []
    assert api.get("/api/cases", params={"status": "lost"}).status_code == 422


def test_the_suggestions_are_the_nearest_free_units_of_the_duty(api):
    case = open_case(api)
    got = api.get(f"/api/cases/{case['id']}/suggestions").json()
    assert got["case"] == case["id"]
    units = [s["unit"] for s in got["suggestions"]]
    assert units[0] == "unit-police-01", "20 m away"
    assert "unit-fire-05" not in units, "a road obstruction is police duty"
    assert all(s["unit_type"] == "police" and s["by"] in ("road", "straight") for s in got["suggestions"])
    etas = [s["eta_s"] for s in got["suggestions"]]
    assert etas == sorted(etas) and all(s["distance_m"] > 0 for s in got["suggestions"])
    assert len(api.get(f"/api/cases/{case['id']}/suggestions", params={"limit": 1}).json()["suggestions"]) == 1
    assert api.get(f"/api/cases/{case['id']}/suggestions", params={"limit": 0}).status_code == 422


def test_dispatch_sends_the_first_suggestion_or_the_unit_chosen_and_busy_units_are_not_suggested(api):
    first = open_case(api)
    sent = api.post(f"/api/cases/{first['id']}/dispatch", json={"operator": "Wang Fang"}, headers=AUTH).json()
    assert (sent["status"], sent["assignee"]) == ("dispatched", "unit-police-01")
    assert [e["kind"] for e in sent["events"]] == ["opened", "dispatched"]
    second = open_case(api, name_en="the same road, 10 m on")
    suggested = [s["unit"] for s in api.get(f"/api/cases/{second['id']}/suggestions").json()["suggestions"]]
    assert "unit-police-01" not in suggested, "busy with the first case"
    chosen = api.post(f"/api/cases/{second['id']}/dispatch",
                      json={"operator": "Wang Fang", "unit": "unit-police-03", "reason": "coming off patrol"},
                      headers=AUTH).json()
    assert chosen["assignee"] == "unit-police-03" and chosen["events"][-1]["reason"] == "coming off patrol"
    moved = api.post(f"/api/cases/{second['id']}/dispatch", json={"operator": "Wang Fang", "unit": "unit-police-02"},
                     headers=AUTH).json()
    assert (moved["status"], moved["assignee"]) == ("dispatched", "unit-police-02"), "re-dispatch reassigns"


def test_the_operator_walks_a_case_to_closed_and_steps_out_of_order_are_409(api):
    case = open_case(api)
    ident = case["id"]
    assert api.post(f"/api/cases/{ident}/dispatch", json={"operator": "Wang Fang", "unit": "unit-police-01"},
                    headers=AUTH).status_code == 200
    early = step(api, ident, "verified")
    assert early.status_code == 409 and early.json()["error"] == "bad_transition"
    assert "verified" in early.json()["detail"]
    for kind in ("accepted", "en_route", "on_scene", "disposed", "verified", "closed"):
        r = step(api, ident, kind, f"by radio: {kind}")
        assert r.status_code == 200, (kind, r.text)
        assert r.json()["status"] == kind
    closed = api.get(f"/api/cases/{ident}").json()
    assert not closed["open"] and closed["events"][-1]["actor"] == "Wang Fang"
    assert api.get("/api/cases", params={"open": "true"}).json()["count"] == 0
    assert [c["id"] for c in api.get("/api/cases", params={"status": "closed"}).json()["cases"]] == [ident]
    assert step(api, ident, "cancelled").status_code == 409, "a closed case cannot be cancelled"
    reopened = step(api, ident, "reopened", "the load is back on the road")
    assert reopened.status_code == 200 and reopened.json()["status"] == "new"


def test_a_case_can_be_cancelled_with_a_reason(api):
    ident = open_case(api)["id"]
    r = step(api, ident, "cancelled", "a duplicate of a 12345 report")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["events"][-1]["reason"] == "a duplicate of a 12345 report"
    assert step(api, ident, "cancelled", "").status_code == 422, "a reason is required"


def test_notes_and_attachments_are_kept_in_the_history(api):
    ident = open_case(api)["id"]
    text = "driver called back\nno injuries"
    noted = api.post(f"/api/cases/{ident}/notes", json={"operator": "Li Wei", "text": text}, headers=AUTH)
    assert noted.status_code == 200
    last = noted.json()["events"][-1]
    assert (last["kind"], last["actor"], last["reason"]) == ("noted", "Li Wei", "driver called back\nno injuries")
    url = "https://cctv.example.cn/bund/cam-12/20250101T0800.jpg"
    attached = api.post(f"/api/cases/{ident}/attachments", json={"operator": "Li Wei", "url": url}, headers=AUTH)
    assert attached.status_code == 200 and attached.json()["attachments"] == [url]
    assert attached.json()["events"][-1]["kind"] == "attached"
    for bad in ("ftp://cctv.example.cn/x.jpg", "javascript:alert(1)", "https://", "https://a b.cn/x"):
        r = api.post(f"/api/cases/{ident}/attachments", json={"operator": "Li Wei", "url": bad}, headers=AUTH)
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", bad
    assert api.post(f"/api/cases/{ident}/notes", json={"operator": "Li Wei", "text": "  "},
                    headers=AUTH).status_code == 422


@pytest.mark.parametrize("body", [
    {**OPEN, "operator": ""}, {**OPEN, "operator": "Wang\u202eFang"}, {**OPEN, "priority": 4},
    {**OPEN, "category": "Road Obstruction"}, {**OPEN, "lon": 200.0}, {**OPEN, "reason": ""},
    {k: v for k, v in OPEN.items() if k != "lat"},
])
def test_a_bad_open_body_is_422(api, body):
    r = api.post("/api/cases", json=body, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


def test_the_case_rules_refusals_are_their_codes(api):
    r = api.post("/api/cases", json={**OPEN, "category": "dragons"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "bad_request" and "dragons" in r.json()["detail"]
    assert api.get("/api/cases/bund-20250101-9999").json() == {"error": "unknown_case",
                                                               "detail": "no case 'bund-20250101-9999'"}
    for path, body in (("dispatch", {"operator": "W"}), ("notes", {"operator": "W", "text": "x"}),
                       ("transition", {"operator": "W", "kind": "closed", "reason": "x"})):
        r = api.post(f"/api/cases/bund-20250101-9999/{path}", json=body, headers=AUTH)
        assert r.status_code == 404 and r.json()["error"] == "unknown_case", path
    assert api.get("/api/cases/bund-20250101-9999/suggestions").status_code == 404
    ident = open_case(api)["id"]
    r = api.post(f"/api/cases/{ident}/dispatch", json={"operator": "W", "unit": "unit-nobody-99"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "bad_request"


def test_case_writes_need_the_dashboard_token(api, service):
    assert api.post("/api/cases", json=OPEN).status_code == 401
    wrong = api.post("/api/cases", json=OPEN, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    assert api.post("/api/cases", json=OPEN, headers=POLICE_01).status_code == 403, "a unit's token is not enough"
    assert api.get("/api/cases").status_code == 200, "reading needs none"
    with client_for(service) as read_only:
        r = read_only.post("/api/cases", json=OPEN, headers=AUTH)
        assert r.status_code == 403 and r.json()["error"] == "writes_disabled"


@pytest.mark.parametrize(("error", "status", "code"), [(AckTimeoutError("not in 10 s"), 504, "command_timeout"),
                                                        (AckUnavailableError("stopping"), 503, "command_unavailable")])
def test_a_twin_that_does_not_take_the_command_in_time_says_so(api, monkeypatch, error, status, code):
    view = api.app.state.api.view

    def refuse(*_args, **_kw):
        raise error

    monkeypatch.setattr(view, "case_command", refuse)
    r = api.post("/api/cases", json=OPEN, headers=AUTH)
    assert r.status_code == status and r.json()["error"] == code and r.headers["retry-after"] == "5"


# ---------------------------------------------------------------- the field units' routes
def test_a_unit_reads_its_tasks_position_and_nothing_of_other_units(api):
    ident = open_case(api)["id"]
    api.post(f"/api/cases/{ident}/dispatch", json={"operator": "W", "unit": "unit-police-01"}, headers=AUTH)
    mine = api.get("/api/units/unit-police-01/tasks", headers=POLICE_01)
    assert mine.status_code == 200
    body = mine.json()
    assert body["unit"] == "unit-police-01" and [t["case"] for t in body["tasks"]] == [ident]
    [task] = body["tasks"]
    assert (task["kind"], task["status"], task["category"], task["priority"]) == ("task", "dispatched",
                                                                                 "road_obstruction", 2)
    assert (task["category_zh"], task["category_en"]) == ("道路障碍", "Road obstruction")
    assert task["place"]["name_en"] == OPEN["name_en"] and set(task["deadlines"]) == {"accept", "on_scene"}
    assert task["summary_zh"] and task["summary_en"]
    assert body["position"]["lon"] == pytest.approx(UNITS["unit-police-01"][0]) and body["alerts"] == []
    other = api.get("/api/units/unit-police-02/tasks", headers=POLICE_02).json()
    assert other["tasks"] == [], "police-02 has no task"
    refused = api.get("/api/units/unit-police-02/tasks", headers=POLICE_01)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden", "another unit's token"
    assert api.get("/api/units/unit-police-01/tasks").status_code == 401
    assert api.get("/api/units/unit-police-01/tasks", headers=AUTH).status_code == 200, "the dashboard's token too"
    unlisted = api.get("/api/units/unit-police-03/tasks", headers=POLICE_01)
    assert unlisted.status_code == 403


def test_a_unit_answers_its_task_step_by_step_with_notes(api):
    ident = open_case(api)["id"]
    api.post(f"/api/cases/{ident}/dispatch", json={"operator": "W", "unit": "unit-police-01"}, headers=AUTH)
    url = f"/api/units/unit-police-01/tasks/{ident}/status"
    accepted = api.post(url, json={"status": "accepted", "note": "2 officers, 3 min away"}, headers=POLICE_01)
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    last = accepted.json()["events"][-1]
    assert (last["kind"], last["actor"]) == ("accepted", "unit-police-01")
    assert "2 officers, 3 min away" in (last["reason"] + str(last.get("data", {})))
    on_the_way = api.post(url, json={"status": "en_route"}, headers=POLICE_01)
    assert on_the_way.json()["status"] == "en_route"
    too_soon = api.post(url, json={"status": "disposed"}, headers=POLICE_01)
    assert too_soon.status_code == 409 and too_soon.json()["error"] == "bad_transition"
    assert api.post(url, json={"status": "verified"}, headers=POLICE_01).status_code == 422, "not a unit's step"
    assert api.post(url, json={"status": "accepted", "note": "x" * 501}, headers=POLICE_01).status_code == 422
    not_mine = api.post(f"/api/units/unit-police-02/tasks/{ident}/status", json={"status": "accepted"},
                        headers=POLICE_02)
    assert not_mine.status_code == 409 and not_mine.json()["error"] == "not_assigned"
    assert api.post(url, json={"status": "accepted"}, headers=POLICE_02).status_code == 403
    unknown = api.post("/api/units/unit-police-01/tasks/bund-20250101-9999/status", json={"status": "accepted"},
                       headers=POLICE_01)
    assert unknown.status_code in (404, 409)


def test_declining_puts_the_case_back_to_new(api):
    ident = open_case(api)["id"]
    api.post(f"/api/cases/{ident}/dispatch", json={"operator": "W", "unit": "unit-police-02"}, headers=AUTH)
    r = api.post(f"/api/units/unit-police-02/tasks/{ident}/status", json={"status": "declined", "note": "tyre burst"},
                 headers=POLICE_02)
    assert r.status_code == 200 and (r.json()["status"], r.json()["assignee"]) == ("new", "")
    assert api.get("/api/units/unit-police-02/tasks", headers=POLICE_02).json()["tasks"] == []


def test_without_any_token_for_a_unit_its_routes_are_closed(service):
    with client_for(service) as c:
        r = c.get("/api/units/unit-police-01/tasks", headers=POLICE_01)
        assert r.status_code == 403 and r.json()["error"] == "unit_tokens_missing"
        assert "--unit-tokens" in r.json()["detail"]
    with client_for(service, unit_tokens={"unit-police-01": "police-01-token"}) as c:
        assert c.get("/api/units/unit-police-01/tasks", headers=POLICE_01).status_code == 200
        assert c.get("/api/units/unit-police-02/tasks", headers=POLICE_01).json()["error"] == "unit_tokens_missing"


@pytest.mark.parametrize("tokens", [{"unit-police-01": "short"}, {"unit police": "long-enough-token"},
                                    {"unit-police-01": TOKEN},
                                    {"unit-police-01": "same-token-1", "u2": "same-token-1"}])
def test_unit_tokens_are_checked_when_the_api_is_configured(service, tokens):
    with pytest.raises(ValueError):
        client_for(service, token=TOKEN, unit_tokens=tokens)


# ---------------------------------------------------------------- /ws and OpenAPI
@pytest.mark.timeout(120)
def test_case_events_go_out_on_ws_with_the_next_tick(service, driver):
    with client_for(service, token=TOKEN) as c, c.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "snapshot"
        case = c.post("/api/cases", json=OPEN, headers=AUTH).json()
        driver.tick(T0 + 10)
        seen = [ws.receive_json()]
        while seen[-1]["type"] != "tick":
            seen.append(ws.receive_json())
        assert [e for e in seen if e["type"] == "case"] == [
            {"type": "case", "case": case["id"], "kind": "opened", "t": case["opened_at"], "status": "new",
             "actor": "Wang Fang"}]


def test_a_tick_report_without_case_events_gives_none():
    report = TickReport(T0, [], 1.0, [])
    assert EventBuilder._case_events(report) == []
    report.case_events = [{"case": "c1", "kind": "closed", "t": T0, "status": "closed", "actor": "twin", "x": 1}]
    assert EventBuilder._case_events(report) == [{"type": "case", "case": "c1", "kind": "closed", "t": T0,
                                                   "status": "closed", "actor": "twin"}]


def test_the_openapi_description_lists_the_case_and_unit_routes(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/api/cases", "/api/cases/{case_id}", "/api/cases/{case_id}/suggestions",
                 "/api/cases/{case_id}/dispatch", "/api/cases/{case_id}/transition", "/api/cases/{case_id}/notes",
                 "/api/cases/{case_id}/attachments", "/api/units/{unit}/tasks",
                 "/api/units/{unit}/tasks/{case_id}/status", "/api/ledger", "/api/ledger.csv"):
        assert path in paths, path
    assert paths["/api/cases/{case_id}/dispatch"]["post"]["responses"]["409"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_a_unit_sent_an_alert_sees_it_and_the_case_it_opened(scenario):
    svc, driver, alert = scenario
    token = {"unit-police-04": "police-04-token"}
    with client_for(svc, token=TOKEN, unit_tokens=token) as c:
        got = c.get("/api/units/unit-police-04/tasks", headers={"Authorization": "Bearer police-04-token"}).json()
        [task] = got["tasks"]
        case = c.get(f"/api/cases/{task['case']}").json()
    assert sorted(a["identifier"] for a in got["alerts"]) == sorted([alert, driver.neighbour])
    square = next(a for a in got["alerts"] if a["identifier"] == alert)
    assert (square["level"], square["level_name"], square["hazard"]) == (4, "red", "crowd")
    assert square["headline_zh"] == "陈毅广场人群密度红色预警" and "Chen Yi Square" in square["headline"]
    assert abs(square["centre"][0] - CHEN_YI_SQUARE[0]) < 0.001 and abs(square["centre"][1] - CHEN_YI_SQUARE[1]) < 0.001
    assert (task["category"], task["category_zh"], task["priority"]) == ("crowd_safety", "人群拥挤", 1)
    assert case["source"] == "alert" and set(case["alerts"]) & {alert, driver.neighbour}, "the alert opened it"
    assert case["assignee"] == "unit-police-04", "dispatched automatically to the police unit on the square"
