"""The alert store and outbox on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import os
import uuid

import pytest

from twin.alerting.store import Store

PG_URL = os.environ.get("CITYTWIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_store():
    import psycopg

    name = f"citytwin_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    return Store.open(url), name


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store.open(tmp_path / "alerts.db")
        yield s
        s.close()
        return
    import psycopg

    s, name = _pg_store()
    yield s
    s.close()
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name}")


def _alert(state="active", level=2):
    return {"identifier": "a1", "hazard": "crowd", "level": level, "state": state, "raised_at": 1.0,
            "updated_at": 2.0, "cancelled_at": None, "cells": [1, 2, 3]}


def test_alerts_messages_and_outbox_are_written_together(store):
    msg = {"identifier": "a1", "msgType": "Alert", "sent": "2025-01-01T08:00:00+08:00"}
    store.record(_alert(), msg, [("city/alerts/a1", b'{"x":1}', True), ("city/units/u1/alerts", b"1", False)])
    assert [a["identifier"] for a in store.alerts("active")] == ["a1"]
    assert store.messages("a1") == [msg]
    pending = store.pending()
    assert [(p.topic, p.payload, p.retain) for p in pending] == [
        ("city/alerts/a1", b'{"x":1}', True), ("city/units/u1/alerts", b"1", False)]
    assert store.outbox_depth() == 2
    store.mark_published(pending[0].seq)
    assert [p.topic for p in store.pending()] == ["city/units/u1/alerts"]
    cancel = {"identifier": "a1.cancel2", "msgType": "Cancel", "sent": "2025-01-01T08:10:00+08:00"}
    store.record({**_alert("cancelled"), "cancelled_at": 3.0}, cancel,
                 [("city/alerts/a1", b"cancel", True), ("city/alerts/a1", None, True)])
    assert store.alerts("active") == [] and store.alerts("cancelled")[0]["message"] == cancel
    assert [p.payload for p in store.pending()] == [b"1", b"cancel", None], "order is kept"


def test_replayed_events_are_stored_once(store):
    msg = {"identifier": "a1", "msgType": "Alert", "sent": "2025-01-01T08:00:00+08:00"}
    assert store.record(_alert(), msg, [("city/alerts/a1", b"x", True)]) is True
    assert store.record(_alert(), msg, [("city/alerts/a1", b"x", True)]) is False
    store.enqueue([("city/units/u1/alerts", b"x", False)], key="a1@u1")
    store.enqueue([("city/units/u1/alerts", b"x", False)], key="a1@u1")
    store.record_ack("a1", "u1", "unit", "ack", 5.0)
    store.record_ack("a1", "u1", "unit", "ack", 5.0)
    assert store.outbox_depth() == 2 and len(store.messages("a1")) == 1 and len(store.acks("a1")) == 1


def test_acks_arrivals_and_meta(store):
    store.record_ack("a1", "unit-7", "unit", "ack", 10.0)
    store.record_ack("a1", "operator:li", "operator", "ack", 11.0)
    assert [a["actor"] for a in store.acks("a1")] == ["unit-7", "operator:li"]
    assert store.record_arrival("a1", "unit-7", 70.0, 60.0) is True
    assert store.record_arrival("a1", "unit-7", 80.0, 70.0) is False
    assert store.arrivals("a1") == [{"unit_id": "unit-7", "t": 70.0, "seconds_after_alert": 60.0}]
    store.set_meta("sequence", "41")
    store.set_meta("sequence", "42")
    assert store.get_meta("sequence") == "42" and store.get_meta("nothing", "x") == "x"


def test_a_failed_transaction_leaves_nothing(store):
    with pytest.raises(KeyError):
        store.record({"identifier": "bad"}, {"identifier": "m"}, [("t", b"x", False)])
    assert store.alerts() == [] and store.pending() == []


def test_reopening_keeps_everything(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path}/a.db")
    s.record(_alert(), {"identifier": "a1", "msgType": "Alert", "sent": "x"}, [("t", b"1", False)])
    s.close()
    s2 = Store.open(tmp_path / "a.db")
    assert s2.outbox_depth() == 1 and s2.alerts()[0]["identifier"] == "a1"
    s2.close()


def _row(ident, raised, cancelled=None):
    return {"identifier": ident, "hazard": "flood", "level": 2, "state": "cancelled" if cancelled else "active",
            "raised_at": raised, "updated_at": cancelled or raised, "cancelled_at": cancelled, "cells": [1]}


def test_the_alerts_of_a_time_window_with_their_messages_acks_and_arrivals(store):
    # a: 10-20, b: 30-50, c: 60- (active), d: 100- (raised after the window)
    for ident, raised, cancelled in (("a", 10.0, 20.0), ("b", 30.0, 50.0), ("c", 60.0, None), ("d", 100.0, None)):
        store.record(_row(ident, raised), {"identifier": f"{ident}.1", "msgType": "Alert", "sent": "x"}, [])
        if cancelled:
            store.record(_row(ident, raised, cancelled), {"identifier": f"{ident}.2", "msgType": "Cancel",
                                                          "sent": "y"}, [])
    # window 25-70: b (cancelled at 50 >= 25) and c (active), newest raised first; a ended before, d starts after
    assert [a["identifier"] for a in store.alerts_between(25.0, 70.0)] == ["c", "b"]
    assert [a["identifier"] for a in store.alerts_between(20.0, 30.0)] == ["b", "a"]  # both bounds inclusive
    assert [a["identifier"] for a in store.alerts_between(0.0, 1000.0, limit=2)] == ["d", "c"]
    row = store.alerts_between(25.0, 70.0)[1]
    assert row == {**store.alerts("cancelled")[1], "identifier": "b"} and row["cancelled_at"] == 50.0
    store.record_ack("b", "unit-7", "unit", "ack", 31.0)
    store.record_ack("b", "operator:li", "operator", "ack", 32.0)
    store.record_arrival("b", "unit-7", 40.0, 10.0)
    many = [f"x{k}" for k in range(1200)]  # three chunks of ids
    messages = store.messages_for(["b", "c", "nothing", *many])
    assert messages["b"] == store.messages("b") and [m["identifier"] for m in messages["b"]] == ["b.1", "b.2"]
    assert messages["c"] == store.messages("c") and messages["nothing"] == [] and len(messages) == 3 + 1200
    acks = store.acks_for(["b", "c"])
    assert acks == {"b": store.acks("b"), "c": []} and [a["actor"] for a in acks["b"]] == ["unit-7", "operator:li"]
    assert store.arrivals_for(["b", "c"]) == {"b": [{"unit_id": "unit-7", "t": 40.0, "seconds_after_alert": 10.0}],
                                              "c": []}
    assert store.messages_for([]) == {}
