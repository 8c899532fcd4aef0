"""The store's case tables on SQLite and PostgreSQL: case events (append-only, replay-safe) and citizen reports."""

from __future__ import annotations

from tests import test_store
from tests.cases import T0, events_to

store = test_store.store
"""The fixture: a store over SQLite and over PostgreSQL (tests/test_store.py)."""


def test_case_events_are_appended_once_in_order(store):
    first = [e.to_row() for e in events_to("accepted")]
    second = [e.to_row() for e in events_to("dispatched", case="bund-20250101-0002", t0=T0 + 5)]
    assert store.append_case_events(first[:2]) == 2
    assert store.append_case_events(second) == 2
    assert store.append_case_events(first) == 1  # only #2 is new
    assert store.append_case_events([]) == 0
    keys = [r["key"] for r in store.case_events()]
    assert keys == ["bund-20250101-0001#0", "bund-20250101-0001#1", "bund-20250101-0002#0", "bund-20250101-0002#1",
                    "bund-20250101-0001#2"]
    rows = store.case_events("bund-20250101-0001")
    assert [(r["n"], r["kind"], r["t"], r["actor"], r["reason"]) for r in rows] == [
        (0, "opened", T0, "rules", "flood alert"), (1, "dispatched", T0 + 60, "op", "why"),
        (2, "accepted", T0 + 120, "op", "why")]
    assert rows[0]["data"]["place"]["name_zh"] == "外滩隧道北口" and rows[1]["data"] == {"unit": "fire-01"}
    assert rows[0]["seq"] < rows[1]["seq"] < rows[2]["seq"] and rows[0]["recorded_at"] > 0
    assert store.case_events("nope") == []


def _report(rid="R-12345-77", case_id=None, t=T0):
    return {"id": rid, "source": "12345", "source_id": rid.rsplit("-", 1)[1], "case_id": case_id,
            "category": "waterlogging", "t": t, "lon": 121.49, "lat": 31.24,
            "body": {"description": "隧道口积水 30 cm", "address": "中山东一路", "media_url": [], "contact": "138"}}


def test_reports_are_recorded_once_found_and_linked(store):
    assert store.record_report(_report()) is True
    assert store.record_report({**_report(), "category": "other"}) is False
    assert store.record_report(_report("R-app-5", case_id="bund-20250101-0001", t=T0 - 10)) is True
    got = store.report("R-12345-77")
    assert {k: v for k, v in got.items() if k != "recorded_at"} == _report()
    assert store.report("R-none") is None
    assert [r["id"] for r in store.reports()] == ["R-app-5", "R-12345-77"]
    assert [r["id"] for r in store.reports("bund-20250101-0001")] == ["R-app-5"]
    assert store.set_report_case("R-12345-77", "bund-20250101-0001") is True
    assert store.set_report_case("R-none", "bund-20250101-0001") is False
    assert [r["id"] for r in store.reports("bund-20250101-0001")] == ["R-app-5", "R-12345-77"]


def test_the_case_tables_survive_reopening(tmp_path):
    from twin.alerting.store import Store

    s = Store.open(tmp_path / "a.db")
    s.append_case_events([e.to_row() for e in events_to("new")])
    s.record_report(_report())
    s.close()
    s2 = Store.open(tmp_path / "a.db")
    assert [r["key"] for r in s2.case_events()] == ["bund-20250101-0001#0"] and s2.report("R-12345-77")
    s2.close()
