"""The risk ledger over HTTP: today's counts as cases open and close, the open risk points, the CSV download."""

from __future__ import annotations

import csv
import io

import pytest

from tests.api.conftest import T0, TOKEN, client_for
from twin.api.routes_ledger import csv_filename

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLACE = {"lon": 121.4862, "lat": 31.2391, "name_zh": "中山东一路近九江路", "name_en": "East Zhongshan No. 1 Rd"}


@pytest.fixture
def api(service, driver):
    driver.position("unit-police-01", T0, PLACE["lon"], PLACE["lat"], 0.0)
    driver.tick(T0)
    with client_for(service, token=TOKEN) as c:
        yield c


def open_case(api, category: str = "road_obstruction") -> str:
    body = {"operator": "Wang Fang", "category": category, "priority": 3, **PLACE, "reason": "patrol report"}
    r = api.post("/api/cases", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def walk_to_closed(api, ident: str) -> None:
    assert api.post(f"/api/cases/{ident}/dispatch", json={"operator": "W", "unit": "unit-police-01"},
                    headers=AUTH).status_code == 200
    for kind in ("accepted", "on_scene", "disposed", "verified", "closed"):
        r = api.post(f"/api/cases/{ident}/transition", json={"operator": "W", "kind": kind, "reason": kind},
                     headers=AUTH)
        assert r.status_code == 200, (kind, r.text)


def test_an_empty_ledger_has_today_with_nothing(api):
    got = api.get("/api/ledger").json()
    assert got["district"] == "bund" and got["t"] >= T0
    [today] = got["days"]
    assert today["day"] == "2025-01-01"
    assert (today["opened"], today["closed"], today["open"], today["overdue"]) == (0, 0, 0, 0)
    assert got["totals"]["open"] == 0 and got["open_points"] == []


def test_the_ledger_counts_cases_opened_closed_and_still_open_and_lists_the_open_points(api):
    closed, still = open_case(api), open_case(api, "manhole_cover")
    walk_to_closed(api, closed)
    got = api.get("/api/ledger").json()
    today = got["days"][-1]
    assert (today["opened"], today["closed"], today["open"]) == (2, 1, 1)
    assert got["totals"] == {**got["totals"], "opened": 2, "closed": 1, "open": 1}
    [point] = got["open_points"]
    assert (point["id"], point["category"], point["status"], point["name_zh"]) == \
        (still, "manhole_cover", "new", PLACE["name_zh"])
    assert set(today["median_s"]) == {"dispatch", "on_scene", "dispose", "verify", "close"}
    assert today["median_s"]["close"] is not None and today["median_s"]["close"] >= 0


def test_the_ledger_at_an_earlier_time_is_as_it_was_then(api):
    open_case(api)
    before = api.get("/api/ledger", params={"at": T0 - 1}).json()
    assert before["totals"]["opened"] == 0 and before["t"] == T0 - 1
    assert api.get("/api/ledger", params={"at": "soon"}).status_code == 422
    assert api.get("/api/ledger", params={"at": "nan"}).status_code == 422
    assert api.get("/api/ledger", params={"at": -1}).status_code == 422
    future = api.get("/api/ledger", params={"at": T0 + 7 * 86400})
    assert future.status_code == 422 and future.json()["error"] == "bad_time"


def test_the_csv_is_a_utf8_download_named_after_the_district_and_day(api):
    ident = open_case(api)
    walk_to_closed(api, ident)
    open_case(api)
    r = api.get("/api/ledger.csv")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="ledger-bund-2025-01-01.csv"'
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    assert [(row["district"], row["day"], row["opened"], row["closed"], row["open"]) for row in rows] == \
        [("bund", "2025-01-01", "2", "1", "1")]
    assert float(rows[0]["median_close_s"]) >= 0 and rows[0]["overdue"] == "0"


def test_the_file_name_is_safe_and_dated_in_shanghai():
    assert csv_filename("bund", T0 + 16 * 3600 - 1) == "ledger-bund-2025-01-01.csv"
    assert csv_filename("bund", T0 + 16 * 3600) == "ledger-bund-2025-01-02.csv", "midnight in Shanghai is 16:00 UTC"
    assert csv_filename('a"b/../c d', T0) == "ledger-a-b-c-d-2025-01-01.csv"
    assert csv_filename(None, T0) == "ledger-twin-2025-01-01.csv"


def test_reading_the_ledger_needs_no_token(service):
    with client_for(service) as c:
        assert c.get("/api/ledger").status_code == 200 and c.get("/api/ledger.csv").status_code == 200
