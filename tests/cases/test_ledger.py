"""The risk ledger on a hand-built set of cases over two Shanghai days: counts, medians per step, overdue counting,
open points and the CSV export."""

from __future__ import annotations

import pytest

from tests.cases import BUND, T0
from twin.cases.book import CaseBook
from twin.cases.ledger import CSV_HEADER, ledger, ledger_csv

H = 3600.0
DAY2 = T0 + 16 * H
"""2025-01-02 00:00 in Shanghai."""
NOW = T0 + 20 * H + 100


def _steps(book, case_id, steps):
    for kind, t, data in steps:
        book.apply(case_id, kind, t, "op", "step", **data)


@pytest.fixture
def cases():
    """A: closed on day 1 (dispatch 60 s, on scene 240 s, dispose 1000 s, verify 600 s, close 100 s);
    B: on scene on day 1 past its dispose limit (3600 s), closed on day 2; C: cancelled on day 1;
    D: opened on day 2 at priority 3, still new; E: another district."""
    book = CaseBook(None, "bund")
    kw = {"category": "waterlogging", "place": BUND, "source": "alert", "actor": "rules"}
    a = book.open(T0, priority=1, **kw).id
    b = book.open(T0 + 100, priority=1, **kw).id
    c = book.open(T0 + 200, priority=3, **kw).id
    unit = {"unit": "fire-01"}
    _steps(book, a, [("dispatched", T0 + 60, unit), ("accepted", T0 + 90, {}), ("on_scene", T0 + 300, {}),
                     ("disposed", T0 + 1300, {}), ("verified", T0 + 1900, {}), ("closed", T0 + 2000, {})])
    _steps(book, b, [("dispatched", T0 + 400, unit), ("on_scene", T0 + 1000, {}), ("disposed", DAY2 + H, {}),
                     ("verified", DAY2 + H + 60, {}), ("closed", DAY2 + H + 120, {})])
    _steps(book, c, [("cancelled", T0 + 500, {})])
    book.open(T0 + 20 * H, priority=3, **kw)
    other = CaseBook(None, "pudong").open(T0, priority=1, **kw)
    return [*book.cases(), other]


def test_counts_and_medians_per_day(cases):
    out = ledger(cases, NOW, "bund")
    day1, day2 = out["days"]
    assert {k: day1[k] for k in ("day", "opened", "closed", "cancelled", "open", "overdue")} == {
        "day": "2025-01-01", "opened": 3, "closed": 1, "cancelled": 1, "open": 1, "overdue": 1}
    assert day1["median_s"] == {"dispatch": 180.0, "on_scene": 420.0, "dispose": 1000.0, "verify": 600.0,
                                "close": 100.0}
    assert {k: day2[k] for k in ("day", "opened", "closed", "cancelled", "open", "overdue")} == {
        "day": "2025-01-02", "opened": 1, "closed": 1, "cancelled": 0, "open": 1, "overdue": 0}
    assert day2["median_s"] == {"dispatch": None, "on_scene": None, "dispose": DAY2 + H - (T0 + 1000),
                                "verify": 60.0, "close": 60.0}
    assert out["totals"] == {"opened": 4, "closed": 2, "cancelled": 1, "open": 1, "overdue": 0}
    assert (out["district"], out["t"]) == ("bund", NOW)


def test_open_points_list_every_open_case_with_its_overdue_steps(cases):
    points = ledger(cases, NOW, "bund")["open_points"]
    assert [(p["id"], p["status"], p["priority"], p["overdue"]) for p in points] == [
        ("bund-20250102-0004", "new", 3, [])]
    assert points[0]["name_zh"] == "外滩隧道北口" and points[0]["name_en"] == "Bund Tunnel north portal"
    assert points[0]["opened_at"] == T0 + 20 * H and points[0]["category"] == "waterlogging"
    later = ledger(cases, T0 + 20 * H + 901, "bund")  # priority 3 may wait 900 s for dispatch
    assert later["open_points"][0]["overdue"] == ["dispatch"]
    assert later["totals"]["overdue"] == 1 and later["days"][1]["overdue"] == 1


def test_the_ledger_is_as_of_its_time(cases):
    out = ledger(cases, T0 + 1000, "bund")  # A on scene, B just on scene, C cancelled, D not yet opened
    assert len(out["days"]) == 1
    assert {k: out["days"][0][k] for k in ("opened", "closed", "cancelled", "open", "overdue")} == {
        "opened": 3, "closed": 0, "cancelled": 1, "open": 2, "overdue": 0}
    assert [p["status"] for p in out["open_points"]] == ["on_scene", "on_scene"]
    assert out["days"][0]["median_s"]["dispatch"] == 180.0 and out["days"][0]["median_s"]["dispose"] is None


def test_an_empty_ledger_has_todays_row_of_zeros():
    out = ledger([], T0, "bund")
    assert out["days"] == [{"day": "2025-01-01", "opened": 0, "closed": 0, "cancelled": 0, "open": 0, "overdue": 0,
                            "median_s": dict.fromkeys(("dispatch", "on_scene", "dispose", "verify", "close"))}]
    assert out["totals"]["open"] == 0 and out["open_points"] == []


def test_the_csv_has_a_header_and_one_row_per_district_and_day(cases):
    text = ledger_csv(cases, NOW, "bund")
    lines = text.splitlines()
    assert lines[0] == ",".join(CSV_HEADER) == ("district,day,opened,closed,cancelled,open,overdue,median_dispatch_s,"
                                                "median_on_scene_s,median_dispose_s,median_verify_s,median_close_s")
    assert lines[1:] == ["bund,2025-01-01,3,1,1,1,1,180.0,420.0,1000.0,600.0,100.0",
                         "bund,2025-01-02,1,1,0,1,0,,,60200.0,60.0,60.0"]
    assert text.endswith("\n") and text.encode("utf-8")
