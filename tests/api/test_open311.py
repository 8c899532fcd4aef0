"""Open311 GeoReport v2 over a real live service: the service list, posting requests as a form and as JSON, reading
them back, and errors as Open311 lists; a refused report is dead-lettered by the twin like one from MQTT."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.api.conftest import T0, TOKEN, client_for
from twin.api.routes_open311 import iso, localised, parse_time

KEY = "open311-key-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TUNNEL = {"lat": "31.2397", "long": "121.4870"}
"""The Bund Tunnel's north portal, WGS84 (as Open311 gives it)."""
FORM = {"api_key": KEY, "service_code": "waterlogging", **TUNNEL, "address_string": "中山东一路外滩隧道北口",
        "description": "积水没过脚踝 water over the ankles", "email": "li@example.cn", "phone": "13800000000",
        "first_name": "Li", "last_name": "Na", "media_url": "https://photos.example.cn/a.jpg"}
ISO_SHANGHAI = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
REQUEST_KEYS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                "agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime",
                "address", "lat", "long", "media_url"}


@pytest.fixture
def api(service):
    with client_for(service, token=TOKEN, open311_keys=(KEY,)) as c:
        yield c


def post_form(api, **changes):
    return api.post("/open311/v2/requests.json", data={**FORM, **changes})


def is_open311_error(r, status: int) -> str:
    """The description of an Open311 error answer, after checking its shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1 and set(body[0]) == {"code", "description"}, body
    assert body[0]["code"] == status and body[0]["description"]
    return body[0]["description"]


# ---------------------------------------------------------------- services
def test_the_service_list_has_every_category_in_open311_shape(api):
    services = api.get("/open311/v2/services.json").json()
    codes = [s["service_code"] for s in services]
    assert {"crowd_safety", "waterlogging", "congestion", "road_obstruction", "manhole_cover", "fallen_tree",
            "medical", "other"} <= set(codes)
    for s in services:
        assert set(s) == {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
        assert s["metadata"] is False and s["type"] == "realtime" and s["service_code"] in s["keywords"]
    water = next(s for s in services if s["service_code"] == "waterlogging")
    assert water["service_name"] == "道路积水 · Waterlogging", "Chinese then English"


def test_a_locale_gives_one_language(api):
    zh = {s["service_code"]: s for s in api.get("/open311/v2/services.json", params={"locale": "zh-CN"}).json()}
    en = {s["service_code"]: s for s in api.get("/open311/v2/services.json", params={"locale": "en-US"}).json()}
    assert (zh["waterlogging"]["service_name"], en["waterlogging"]["service_name"]) == ("道路积水", "Waterlogging")
    assert "/" not in en["waterlogging"]["group"] and "/" not in zh["waterlogging"]["description"]
    assert "Standing water" in en["waterlogging"]["description"]
    assert "locale" in is_open311_error(api.get("/open311/v2/services.json", params={"locale": "fr-FR"}), 400)


def test_a_service_definition_has_no_attributes_and_an_unknown_code_is_404(api):
    assert api.get("/open311/v2/services/medical.json").json() == {"service_code": "medical", "attributes": []}
    assert "dragons" in is_open311_error(api.get("/open311/v2/services/dragons.json"), 404)


# ---------------------------------------------------------------- posting
def test_a_form_post_becomes_a_report_in_a_case_and_reads_back_without_contact(api, service):
    r = post_form(api)
    assert r.status_code == 201 and r.headers["content-type"].startswith("application/json")
    [answer] = r.json()
    assert set(answer) == {"service_request_id", "service_notice", "account_id"} and answer["account_id"] is None
    rid = answer["service_request_id"]
    assert re.fullmatch(r"R-open311-[0-9a-f]{16}", rid)
    [request] = api.get(f"/open311/v2/requests/{rid}.json").json()
    assert set(request) == REQUEST_KEYS
    assert (request["service_request_id"], request["service_code"], request["status"]) == (rid, "waterlogging", "open")
    assert request["service_name"] == "道路积水 · Waterlogging"
    assert request["description"] == FORM["description"] and request["address"] == FORM["address_string"]
    assert request["media_url"] == FORM["media_url"]
    assert request["lat"] == pytest.approx(31.2397, abs=1e-5) and request["long"] == pytest.approx(121.4870, abs=1e-5)
    for key in ("requested_datetime", "updated_datetime"):
        assert ISO_SHANGHAI.match(request[key]), request[key]
    assert abs(dt.datetime.fromisoformat(request["requested_datetime"]).timestamp() - service.config.clock()) < 60
    text = r.text + str(api.get(f"/open311/v2/requests/{rid}.json").text)
    for secret in ("li@example.cn", "13800000000", "Li Na"):
        assert secret not in text, "contact details are never returned"
    stored = service.store.report(rid)
    assert stored is not None and "li@example.cn" in str(stored), "but they are kept with the report"
    case = api.get("/api/cases", params={"open": "true"}).json()["cases"]
    assert [c["category"] for c in case] == ["waterlogging"] and case[0]["reports"] == [rid]
    assert case[0]["id"] in answer["service_notice"] and case[0]["id"] in request["service_notice"]


def test_a_json_post_with_a_time_and_media_list_is_taken_too(api):
    body = {"api_key": KEY, "service_code": "fallen_tree", "lat": 31.2405, "long": 121.4855,
            "description": "A plane tree is down across the promenade",
            "requested_datetime": "2025-01-01T08:00:00+08:00",
            "media_url": ["https://photos.example.cn/1.jpg", "https://photos.example.cn/2.jpg"]}
    r = api.post("/open311/v2/requests.json", json=body)
    assert r.status_code == 201, r.text
    rid = r.json()[0]["service_request_id"]
    [request] = api.get(f"/open311/v2/requests/{rid}.json", params={"locale": "en-US"}).json()
    assert request["requested_datetime"] == "2025-01-01T08:00:00+08:00" == iso(T0)
    assert request["media_url"] == "https://photos.example.cn/1.jpg", "Open311 has one media URL: the first"
    assert (request["service_name"], request["status_notes"]) == ("Fallen tree", "new")
    assert "received" in request["service_notice"] and "已受理" not in request["service_notice"]


def test_two_reports_of_the_same_thing_share_a_case(api):
    first = post_form(api).json()[0]["service_request_id"]
    again = post_form(api, lat="31.23975", description="又一位市民报告积水").json()[0]["service_request_id"]
    assert first != again
    cases = api.get("/api/cases", params={"open": "true"}).json()["cases"]
    assert len(cases) == 1 and set(cases[0]["reports"]) == {first, again}, "de-duplicated by place and category"


@pytest.mark.parametrize(("changes", "words"), [
    ({"service_code": ""}, "service_code"), ({"lat": ""}, "lat and long"), ({"long": None}, "lat and long"),
    ({"requested_datetime": "yesterday"}, "requested_datetime"),
])
def test_a_request_without_what_open311_requires_is_400(api, changes, words):
    form = {k: v for k, v in {**FORM, **changes}.items() if v is not None}
    assert words in is_open311_error(api.post("/open311/v2/requests.json", data=form), 400)


@pytest.mark.parametrize(("changes", "words"), [
    ({"lat": "north"}, "lat"), ({"lat": "95"}, "lat"), ({"service_code": "dragons"}, "dragons"),
    ({"description": ""}, "description"), ({"media_url": "ftp://photos.example.cn/a.jpg"}, "media_url"),
])
def test_a_report_the_twin_refuses_is_400_with_its_reason(api, changes, words):
    assert words in is_open311_error(post_form(api, **changes), 400)
    assert api.get("/api/cases").json()["count"] == 0
    assert api.get("/open311/v2/requests.json").json() == []


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
                                  "2024-12-30T08:00:00+08:00", "2025-01-02T08:00:00+08:00"])
def test_a_requested_datetime_far_from_the_twins_time_is_400_and_reads_stay_whole(api, service, when):
    now = service.config.clock()
    words = is_open311_error(post_form(api, requested_datetime=when), 400)
    assert "requested_datetime" in words and "twin's time" in words
    assert api.get("/open311/v2/requests.json").json() == [] and api.get("/api/cases").json()["count"] == 0
    ok = post_form(api, requested_datetime=iso(now - 3600.0))
    assert ok.status_code == 201, ok.text
    rid = ok.json()[0]["service_request_id"]
    r = api.get(f"/open311/v2/requests/{rid}.json")
    assert r.status_code == 200 and r.json()[0]["requested_datetime"] == iso(now - 3600.0)


def test_bodies_that_cannot_be_read_are_400(api):
    post = api.post
    assert "JSON" in is_open311_error(post("/open311/v2/requests.json", content=b"{not json",
                                           headers={"Content-Type": "application/json"}), 400)
    assert "object" in is_open311_error(post("/open311/v2/requests.json", json=[FORM]), 400)
    assert "form" in is_open311_error(post("/open311/v2/requests.json", content=b"x",
                                           headers={"Content-Type": "text/plain"}), 400)
    assert "UTF-8" in is_open311_error(post("/open311/v2/requests.json", content=b"api_key=\xff",
                                            headers={"Content-Type": "application/x-www-form-urlencoded"}), 400)
    assert "larger" in is_open311_error(post("/open311/v2/requests.json", data={**FORM, "description": "x" * 70_000}),
                                        400)


def test_the_api_key_is_checked(api, service):
    assert "api_key" in is_open311_error(post_form(api, api_key=""), 403)
    assert is_open311_error(post_form(api, api_key="not-the-key"), 403) == "invalid api_key"
    assert is_open311_error(post_form(api, api_key=TOKEN), 403) == "invalid api_key", "the dashboard's token is not one"
    with client_for(service, token=TOKEN) as closed:
        assert "--open311-key" in is_open311_error(closed.post("/open311/v2/requests.json", data=FORM), 403)
    assert api.get("/api/cases").json()["count"] == 0


# ---------------------------------------------------------------- reading requests
def test_requests_follow_their_case_to_closed(api, service, driver):
    rid = post_form(api).json()[0]["service_request_id"]
    case = api.get("/api/cases").json()["cases"][0]["id"]
    lon, lat = float(TUNNEL["long"]), float(TUNNEL["lat"])
    driver.position("unit-fire-05", T0, lon, lat, 0.0)
    sent = api.post(f"/api/cases/{case}/dispatch", json={"operator": "W", "unit": "unit-fire-05"}, headers=AUTH)
    assert sent.status_code == 200, sent.text
    [request] = api.get(f"/open311/v2/requests/{rid}.json").json()
    assert (request["status"], request["agency_responsible"]) == ("open", "unit-fire-05")
    assert request["status_notes"] == "已派遣 · dispatched"
    for kind in ("accepted", "on_scene", "disposed", "verified", "closed"):
        r = api.post(f"/api/cases/{case}/transition", json={"operator": "W", "kind": kind, "reason": kind},
                     headers=AUTH)
        assert r.status_code == 200, (kind, r.text)
    [request] = api.get(f"/open311/v2/requests/{rid}.json", params={"locale": "zh-CN"}).json()
    assert (request["status"], request["status_notes"]) == ("closed", "已结案")
    assert request["updated_datetime"] >= request["requested_datetime"]


def test_the_request_list_filters_by_id_status_code_and_dates(api):
    water = post_form(api).json()[0]["service_request_id"]
    tree = post_form(api, service_code="fallen_tree", lat="31.2420", description="树倒了").json()[0][
        "service_request_id"]
    listed = api.get("/open311/v2/requests.json").json()
    assert [r["service_request_id"] for r in listed] == [tree, water], "newest first"
    assert all(set(r) == REQUEST_KEYS for r in listed)
    by_id = api.get("/open311/v2/requests.json", params={"service_request_id": f"{water},nothing,{tree}"}).json()
    assert [r["service_request_id"] for r in by_id] == [water, tree]
    by_code = api.get("/open311/v2/requests.json", params={"service_code": "fallen_tree"}).json()
    assert [r["service_request_id"] for r in by_code] == [tree]
    assert len(api.get("/open311/v2/requests.json", params={"status": "open"}).json()) == 2
    assert api.get("/open311/v2/requests.json", params={"status": "closed"}).json() == []
    assert api.get("/open311/v2/requests.json", params={"end_date": "2024-12-31T00:00:00+08:00"}).json() == []
    later = api.get("/open311/v2/requests.json", params={"start_date": "2025-01-01T00:00:00Z"}).json()
    assert len(later) == 2
    assert "status" in is_open311_error(api.get("/open311/v2/requests.json", params={"status": "lost"}), 400)
    assert "start_date" in is_open311_error(api.get("/open311/v2/requests.json", params={"start_date": "May"}), 400)


def test_an_unknown_request_is_404_in_open311_shape(api):
    assert "R-open311-nothing" in is_open311_error(api.get("/open311/v2/requests/R-open311-nothing.json"), 404)


# ---------------------------------------------------------------- times and names (no twin)
def test_times_are_iso_8601_in_shanghai_and_read_back():
    assert iso(T0) == "2025-01-01T08:00:00+08:00" and iso(None) is None
    assert parse_time("2025-01-01T08:00:00+08:00", "x") == T0 == parse_time("2025-01-01T00:00:00Z", "x")
    assert parse_time("2025-01-01T08:00:00", "x") == T0, "no offset: Shanghai time"


def test_iso_never_raises():
    for bad in (1e20, -1e20, float("nan"), float("inf"), "soon", 253402300800.0 * 10):
        assert iso(bad) is None


def test_names_are_chinese_then_english_unless_a_locale_is_asked():
    assert localised("道路积水", "Waterlogging", None) == "道路积水 · Waterlogging"
    assert localised("道路积水", "Waterlogging", "zh-CN") == "道路积水"
    assert localised("道路积水", "Waterlogging", "en-US") == "Waterlogging"
    assert localised("", "Waterlogging", None) == "Waterlogging"
