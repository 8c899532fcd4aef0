"""The case book: deterministic ids, events in the store (SQLite and PostgreSQL), replay, audit == state,
listeners, de-duplication by place and overdue steps."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests import test_store
from tests.cases import BUND, T0
from twin.alerting.store import Store
from twin.cases.book import CaseBook, case_day
from twin.cases.limits import TimeLimits
from twin.cases.model import EVENT_KINDS, CaseError, CasePlace
from twin.district.geo import to_lonlat, to_projected

store = test_store.store
"""The fixture: a store over SQLite and over PostgreSQL (tests/test_store.py)."""


def _open(book, t=T0, **kw):
    args = {"category": "waterlogging", "priority": 1, "place": BUND, "source": "alert", "actor": "rules",
            "reason": "flood alert at orange", "verify": "sensors", "alert": "A1", **kw}
    return book.open(t, **args)


def _walk(book, case_id, t):
    """dispatched .. closed, one step a minute from ``t``."""
    for k, (kind, data) in enumerate([("dispatched", {"unit": "fire-01"}), ("accepted", {"unit": "fire-01"}),
                                      ("en_route", {}), ("on_scene", {}), ("disposed", {}), ("verified", {}),
                                      ("closed", {})], start=1):
        book.apply(case_id, kind, t + 60 * k, "fire-01" if "unit" in data else "op", "step", **data)


def test_ids_are_the_district_the_shanghai_day_and_a_sequence(store):
    book = CaseBook(store, "bund")
    first = _open(book)
    second = _open(book, T0 + 17 * 3600, alert=None)  # 01:00 next day in Shanghai
    assert (first.id, second.id, book.sequence) == ("bund-20250101-0001", "bund-20250102-0002", 2)
    assert case_day(T0 + 15.99 * 3600) == "20250101" and case_day(T0 + 16 * 3600) == "20250102"
    rows = store.case_events()
    assert [(r["key"], r["kind"], r["data"].get("alert")) for r in rows] == [
        ("bund-20250101-0001#0", "opened", None), ("bund-20250101-0001#1", "linked", "A1"),
        ("bund-20250102-0002#0", "opened", None)]
    assert rows[0]["data"]["place"]["name_zh"] == "外滩隧道北口" and rows[0]["reason"] == "flood alert at orange"


def test_load_rebuilds_the_live_book_from_the_store(store):
    book = CaseBook(store, "bund")
    a, b, c = _open(book), _open(book, T0 + 10, alert="A2"), _open(book, T0 + 20, source="report", alert=None,
                                                                   report="R-12345-9")
    _walk(book, a.id, T0 + 30)
    book.apply(b.id, "dispatched", T0 + 40, "op", "nearest", unit="fire-02")
    book.apply(b.id, "declined", T0 + 50, "fire-02", "engine busy", unit="fire-02")
    book.apply(c.id, "cancelled", T0 + 60, "op", "duplicate of a phone call")
    book.apply(a.id, "noted", T0 + 900, "inspector", "checked on site: dry")
    CaseBook(store, "other").open(T0, category="other", priority=3, place=BUND, source="operator", actor="op")
    audit = CaseBook.load(store, "bund")
    assert audit.cases() == book.cases() and audit.sequence == book.sequence == 3
    assert [x.status for x in audit.cases()] == ["closed", "new", "cancelled"]
    assert _open(audit, T0 + 70).id == "bund-20250101-0004"


def test_replay_after_a_restore_writes_nothing_twice(store):
    book = CaseBook(store, "bund")
    case = _open(book)
    snapshot = book.save_state()
    later = _open(book, T0 + 5, alert="A9")
    _walk(book, case.id, T0 + 10)
    rows = store.case_events()
    again = CaseBook(store, "bund")
    again.restore_state(snapshot)
    assert again.cases() == [case] and again.sequence == 1
    assert _open(again, T0 + 5, alert="A9") == later  # the same input makes the same case and keys
    _walk(again, case.id, T0 + 10)
    assert store.case_events() == rows and again.cases() == book.cases()
    assert store.append_case_events([e.to_row() for e in case.events]) == 0


def test_listeners_hear_every_event_once_in_order_and_a_failing_one_stops_nothing():
    book, heard = CaseBook(None, "bund"), []

    def broken(case, event):
        raise RuntimeError("listener bug")

    book.listeners += [broken, lambda case, event: heard.append((event.key, case.status, len(case.events)))]
    case = _open(book)
    _walk(book, case.id, T0)
    assert heard == [(f"{case.id}#{n}", s, n + 1) for n, s in enumerate(
        ["new", "new", "dispatched", "accepted", "en_route", "on_scene", "disposed", "verified", "closed"])]
    with pytest.raises(CaseError):
        book.apply(case.id, "dispatched", T0 + 999, "op", unit="x")
    assert len(heard) == 9  # a refused event is not heard


def test_refused_events_are_not_written_and_errors_have_codes(store):
    book = CaseBook(store, "bund")
    case = _open(book)
    for call, code in ((lambda: book.apply("bund-20250101-0099", "noted", T0, "op", "x"), "unknown_case"),
                       (lambda: book.apply(case.id, "closed", T0, "op"), "bad_transition"),
                       (lambda: book.apply(case.id, "opened", T0, "op"), "bad_request"),
                       (lambda: book.apply(case.id, "noted", float("inf"), "op", "x"), "bad_request"),
                       (lambda: book.apply(case.id, "noted", T0, "op", "x", blob=object()), "bad_request"),
                       (lambda: _open(book, category="Not A Code"), "bad_request")):
        with pytest.raises(CaseError) as err:
            call()
        assert err.value.code == code
    book.apply(case.id, "dispatched", T0 + 1, "op", unit="police-01")
    with pytest.raises(CaseError) as err:
        book.apply(case.id, "accepted", T0 + 2, "police-02", unit="police-02")
    assert err.value.code == "not_assigned"
    assert len(store.case_events()) == 3 and book.sequence == 1


def _offset(lon, lat, east_m, north_m):
    x, y = to_projected(lon, lat)
    return to_lonlat(x + east_m, y + north_m)


def test_near_finds_the_open_case_of_the_category_within_the_radius_and_window():
    book = CaseBook(None, "bund")
    case = _open(book, category="road_obstruction", alert=None, source="operator")
    lon80, lat80 = _offset(BUND.lon, BUND.lat, 80.0, 0.0)
    lon120, lat120 = _offset(BUND.lon, BUND.lat, 0.0, -120.0)
    assert book.near(lon80, lat80, "road_obstruction", 100.0, T0 - 1800) == case
    assert book.near(lon120, lat120, "road_obstruction", 100.0, T0 - 1800) is None
    assert book.near(lon80, lat80, "waterlogging", 100.0, T0 - 1800) is None
    assert book.near(lon80, lat80, "road_obstruction", 100.0, T0 + 1) is None  # opened before the window
    far_lon, far_lat = _offset(BUND.lon, BUND.lat, 60.0, 0.0)
    nearer = _open(book, T0 + 5, category="road_obstruction", alert=None, source="operator",
                   place=CasePlace("report:x", "北", "N", far_lon, far_lat))
    assert book.near(lon80, lat80, "road_obstruction", 100.0, T0 - 1800) == nearer
    book.apply(nearer.id, "cancelled", T0 + 6, "op", "dup")
    assert book.near(lon80, lat80, "road_obstruction", 100.0, T0 - 1800) == case


def test_open_for_alert_and_case_lists():
    book = CaseBook(None, "bund")
    a, b = _open(book), _open(book, T0 + 1, alert="A2")
    book.apply(b.id, "cancelled", T0 + 2, "op", "false alarm")
    assert book.open_for_alert("A1") == a and book.open_for_alert("A2") is None
    assert [c.id for c in book.cases()] == [a.id, b.id] and book.cases(open_only=True) == [book.get(a.id)]
    assert book.cases("cancelled") == [book.get(b.id)] and book.get("nope") is None
    with pytest.raises(CaseError, match="unknown status"):
        book.cases("lost")


def test_overdue_steps_escalate_once_per_round():
    book = CaseBook(None, "bund")  # bundled limits, priority 1: dispatch 120 s, accept 120 s, on scene 600 s
    case = _open(book)
    assert book.overdue(T0 + 120) == []
    assert [(c.id, s, d) for c, s, d in book.overdue(T0 + 121)] == [(case.id, "dispatch", T0 + 120)]
    book.apply(case.id, "escalated", T0 + 121, "desk", "dispatch overdue", step="dispatch", deadline=T0 + 120)
    assert book.overdue(T0 + 500) == []
    book.apply(case.id, "dispatched", T0 + 200, "op", unit="fire-01")
    assert [(s, d) for _, s, d in book.overdue(T0 + 321)] == [("accept", T0 + 320)]
    book.apply(case.id, "en_route", T0 + 330, "fire-01")  # en route ends the accept step too
    assert [(s, d) for _, s, d in book.overdue(T0 + 801)] == [("on_scene", T0 + 800)]
    book.apply(case.id, "on_scene", T0 + 900, "fire-01")
    book.apply(case.id, "disposed", T0 + 1000, "fire-01", "pumped dry")
    book.apply(case.id, "reopened", T0 + 1100, "inspector", "water back")
    assert [(s, d) for _, s, d in book.overdue(T0 + 1221)] == [("dispatch", T0 + 1220)]  # a new round escalates again
    book.apply(case.id, "cancelled", T0 + 1300, "op", "handled by the district")
    assert book.overdue(T0 + 99999) == []


def test_overdue_follows_the_case_priority_and_category_limits(tmp_path):
    path = tmp_path / "limits.yaml"
    path.write_text("priorities:\n" + "".join(
        f"  {p}: {{dispatch: {60 * p}, accept: 60, on_scene: 60, dispose: 60, verify: 60, close: 60}}\n"
        for p in (1, 2, 3)) + "categories:\n  waterlogging:\n    2: {dispatch: 5 min}\n", encoding="utf-8")
    book = CaseBook(None, "bund", TimeLimits.load(path))
    case = _open(book)
    book.apply(case.id, "prioritised", T0 + 1, "op", "less urgent", priority=2)
    assert [(s, d) for _, s, d in book.overdue(T0 + 301)] == [("dispatch", T0 + 300)]
    other = _open(book, T0, category="other", alert=None, priority=3)
    assert [(c.id, s) for c, s, _ in book.overdue(T0 + 181)] == [(other.id, "dispatch")]


class BookMachine(RuleBasedStateMachine):
    """Any mix of opens and events: the store's audit is always the live book, every event heard once."""

    def __init__(self):
        super().__init__()
        self.store = Store.open(":memory:")
        self.book = CaseBook(self.store, "bund")
        self.heard = []
        self.book.listeners.append(lambda case, event: self.heard.append(event.key))
        self.t = T0

    @rule(dt=st.floats(0, 900), priority=st.sampled_from([1, 2, 3]))
    def open_case(self, dt, priority):
        self.t += dt
        _open(self.book, self.t, priority=priority, alert=None)

    @precondition(lambda self: self.book.sequence > 0)
    @rule(k=st.integers(0, 20), kind=st.sampled_from(EVENT_KINDS), dt=st.floats(0, 900),
          unit=st.sampled_from([None, "fire-01", "fire-02"]))
    def event(self, k, kind, dt, unit):
        self.t += dt
        case = self.book.cases()[k % self.book.sequence]
        data = {"unit": unit} if unit else {}
        if kind == "escalated":
            data = {"step": "dispatch", "deadline": self.t}
        with contextlib.suppress(CaseError):
            self.book.apply(case.id, kind, self.t, "op", "why", **data)

    @rule()
    def snapshot_and_restore(self):
        again = CaseBook(self.store, "bund")
        again.restore_state(self.book.save_state())
        assert again.cases() == self.book.cases()

    @invariant()
    def audit_is_state(self):
        assert CaseBook.load(self.store, "bund").cases() == self.book.cases()
        assert self.heard == [r["key"] for r in self.store.case_events()]
        for c, step, _ in self.book.overdue(self.t):
            assert c.is_open and step not in c.escalated

    def teardown(self):
        self.store.close()


TestBookMachine = BookMachine.TestCase
TestBookMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
